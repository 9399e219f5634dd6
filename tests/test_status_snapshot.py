"""Every status surface renders one snapshot: `status --json`, the gptme tool's `status`
answer and the statusline agree on the same sandbox state (real files, a real hook process,
usage from the loopback fake API)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from gptme_subscription_plugin.gptme_plugin.answers import parse_command, run

from .support.credentials import access_token
from .support.fake_api import FakeAnthropicServer
from .support.sandbox import Sandbox, hook_payload


def cli_verdicts(doc: dict[str, Any]) -> dict[str, str]:
    """Each slot's verdict as `status --json` gives it: rejected, else its credential health."""
    return {
        s["name"]: "rejected" if s["rejected"] is not None else s["credential"]["health"]
        for s in doc["slots"]
    }


def test_status_and_the_gptme_tool_agree_on_one_state(
    tmp_path: Path, fake_server: FakeAnthropicServer
) -> None:
    sb = Sandbox(tmp_path, ("alice", "bob", "carol"), server=fake_server)
    for name, week in (("alice", 50), ("bob", 20), ("carol", 10)):
        sb.set_usage(name, five=10, week=week)
    fake_server.set_fault("401", token=access_token("carol"))  # Anthropic refuses carol
    sb.hook("user-prompt-submit", hook_payload("user-prompt-submit", "s1", prompt="go"))
    switch = json.loads(sb.run("switch", "bob", "--json", code=0).stdout)
    assert switch["status"] == "pending"  # s1 is mid-turn

    doc = json.loads(sb.run("status", "--refresh", "--json", code=0).stdout)
    answer = run(parse_command(None, ["status"], None), sb.manager(), time.time(), sb.env)
    data = answer.data

    assert doc["live"] == data["live"] == "alice"
    assert doc["pending"]["slot"] == "bob" and data["pending"] == doc["pending"]
    assert doc["sessions_mid_turn"] == data["sessions_mid_turn"] == ["s1"]
    verdicts = {s["name"]: s["health"] for s in data["slots"]}
    assert cli_verdicts(doc) == verdicts == {"alice": "valid", "bob": "valid", "carol": "rejected"}
    assert [s["name"] for s in data["slots"] if not s["usable"]] == ["carol"]
    assert any(n.startswith("carol: ") for n in doc["notes"]), doc["notes"]
    assert data["notes"] == doc["notes"]
    assert "carol: " in answer.text and "rejected" in answer.text

    line = sb.run("statusline", stdin="{}", code=0).stdout.strip()  # as Claude Code runs it
    assert line.startswith(f"slot {doc['live']} ") and line.endswith("-> bob pending"), line
