"""`usage` on transcripts the real Claude Code wrote: our hook pack installed, two slots on the
link, a session on each; every call in the transcripts goes to the slot that served it.
"""

from __future__ import annotations

import json

import pytest

from ..support.fake_api import FakeAnthropicServer, end_turn
from .claude_harness import ClaudeSandbox
from .test_hook_pack import TOK_A, TOK_B, gptme_subscription, run, setup

pytestmark = pytest.mark.e2e


def by(sandbox: ClaudeSandbox, server: FakeAnthropicServer, key: str) -> dict[str, dict]:
    doc = json.loads(gptme_subscription(sandbox, server, "usage", "--json", "--by", key))
    return {row["key"]: row for row in doc["rows"]}


def test_each_session_s_calls_go_to_the_slot_that_served_them(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    setup(claude_sandbox, fake_api)
    fake_api.script_each_turn(end_turn("ok"))

    first = run(claude_sandbox, fake_api, "hello").check()
    assert {c.token for c in fake_api.messages_calls(session_id=first.session_id)} == {TOK_A}
    after_first = by(claude_sandbox, fake_api, "account")
    assert set(after_first) == {"a"}  # nothing unknown: the hooks named the slot
    calls_on_a = after_first["a"]["requests"]
    assert calls_on_a >= 1 and after_first["a"]["output_tokens"] > 0

    gptme_subscription(claude_sandbox, fake_api, "switch", "b")
    second = run(claude_sandbox, fake_api, "again").check()
    assert {c.token for c in fake_api.messages_calls(session_id=second.session_id)} == {TOK_B}

    accounts = by(claude_sandbox, fake_api, "account")
    assert set(accounts) == {"a", "b"}
    assert accounts["a"]["requests"] == calls_on_a  # the first session's calls stay on a
    sessions = by(claude_sandbox, fake_api, "session")
    assert set(sessions) == {first.session_id, second.session_id}
    assert accounts["b"]["requests"] == sessions[second.session_id]["requests"]
    assert accounts["b"]["cost_usd"] > 0  # the model Claude Code asked for is priced
