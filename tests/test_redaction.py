"""Text from outside is redacted and capped before it is shown or stored.

The usage endpoint here echoes the caller's Authorization header into the answer (a model name
and a reset date), as a broken proxy or a hostile endpoint might. The conftest checks every state
file and every CLI output for tokens after the test; this test also reads them itself.
"""

from __future__ import annotations

import json
import time

from gptme_subscription_plugin.redact import REDACTED, clean_external, scrub

from .support.credentials import access_token
from .support.sandbox import Sandbox, hook_payload
from .support.usage import iso


def echoing_usage(token: str) -> dict:
    now = time.time()
    return {
        "five_hour": {"utilization": 10, "resets_at": f"Bearer {token}"},
        "seven_day": {"utilization": 97, "resets_at": iso(now + 3 * 86400)},
        "limits": [
            {
                "kind": "weekly_scoped",
                "percent": 99,
                "resets_at": iso(now + 3 * 86400),
                "scope": {"model": {"display_name": f"Opus {token}"}},
            }
        ],
    }


def test_an_endpoint_echoing_the_token_gets_it_nowhere(tmp_path, fake_server) -> None:
    sb = Sandbox(tmp_path, server=fake_server)
    for name in ("alice", "bob"):
        fake_server.set_usage(access_token(name), echoing_usage(access_token(name)))
    sb.hook("session-start", hook_payload("SessionStart"))
    out, _ = sb.hook("stop", hook_payload("Stop"))
    texts = [json.dumps(out or {})]
    for args in (("status",), ("status", "--json")):
        texts.append(sb.run(*args).stdout)
    for path in [*sb.state.rglob("*"), *sb.claude.glob(".gptme-subscription-*")]:
        if path.is_file():
            texts.append(path.read_text(errors="replace"))
    joined = "\n".join(texts)
    assert "sk-ant-" not in joined
    cache = json.loads((sb.state / "usage" / "alice.json").read_text())
    assert "sk-ant" not in json.dumps(cache)


def test_clean_external_blanks_tokens_and_caps() -> None:
    text = "err\n  Bearer abc.def sk-ant-oat01-XYZ " + "A" * 40 + " tail " * 50
    cleaned = clean_external(text, 80)
    assert "sk-ant" not in cleaned and "abc.def" not in cleaned and "A" * 40 not in cleaned
    assert "\n" not in cleaned and len(cleaned) <= 80 and REDACTED in cleaned
    assert scrub("line1\nsk-ant-ort01-q\n") == f"line1\n{REDACTED}\n"
