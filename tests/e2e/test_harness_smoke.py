"""Re-check DESIGN.md's facts on the pinned Claude Code with plain shell hooks (not our product).

Each test runs the real `claude -p` in a temp HOME against the fake API on 127.0.0.1; the
hooks here are throwaway shell scripts written by the test.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from ..support.fake_api import (
    OAUTH_BETA,
    FakeAnthropicServer,
    api_error,
    bash,
    end_turn,
    make_profile_doc,
    ratelimit_headers,
)
from .claude_harness import ClaudeSandbox, RefreshProxy, lock_held_for

pytestmark = pytest.mark.e2e

TOK_A, TOK_B = "sk-ant-oat01-fake-slot-a", "sk-ant-oat01-fake-slot-b"
EVENTS = ("SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop", "SessionEnd")


def two_slots(sandbox: ClaudeSandbox) -> None:
    sandbox.write_slot("a", TOK_A)
    sandbox.write_slot("b", TOK_B)
    sandbox.link_live("a")


def dump_stdin_hooks(sandbox: ClaudeSandbox, events: tuple[str, ...] = EVENTS) -> Path:
    """A hook per event that appends its stdin (one JSON doc per line) to hooks/<event>.jsonl."""
    out = sandbox.root / "hooks"
    out.mkdir()
    script = sandbox.write_script("dump-stdin", f'{{ cat; echo; }} >> "{out}/$1.jsonl"\n')
    for event in events:
        sandbox.add_hook(event, f"{script} {event}")
    return out


def hook_inputs(out: Path, event: str) -> list[dict[str, Any]]:
    path = out / f"{event}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def context_hook(event: str, text: str) -> str:
    doc = {"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}}
    return f"cat >/dev/null; echo '{json.dumps(doc)}'"


def flip_to(sandbox: ClaudeSandbox, slot: str) -> str:
    """Shell for a hook that flips the live link to `slot` and touches it (DESIGN fact 4)."""
    return (
        f"cat >/dev/null; cd '{sandbox.claude_dir}' && "
        f"ln -sfn .credentials.json.{slot} .credentials.json && touch .credentials.json.{slot}"
    )


# ---------------------------------------------------------------- fact 2


def test_headless_turn_uses_the_slot_token_and_runs_the_bash_tool(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    two_slots(claude_sandbox)
    fake_api.script_each_turn(bash("echo tool-ran > tool-output.txt; echo hi"), end_turn("bye"))

    run = claude_sandbox.run("say hi", timeout=45).check()

    assert run.result["result"] == "bye" and run.result["session_id"] == run.session_id
    assert (claude_sandbox.project / "tool-output.txt").read_text() == "tool-ran\n"
    calls = fake_api.messages_calls()
    assert [c.step for c in calls] == [0, 1]
    for call in calls:
        assert call.request.path == "/v1/messages?beta=true"
        assert call.token == TOK_A  # read through the live symlink
        assert call.session_id == run.session_id
        assert OAUTH_BETA in call.request.headers["anthropic-beta"]
        assert call.body["stream"] is True
        assert "Bash" in call.tool_names
        assert "x-api-key" not in call.request.headers
    first, second = calls
    assert first.mentions("say hi")
    results = [
        block
        for message in second.body["messages"]
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    assert len(results) == 1 and "hi" in json.dumps(results[0]) and not results[0]["is_error"]
    # Nothing went anywhere but the fake API: no other route was asked for.
    assert {r.route for r in fake_api.requests() if r.method != "CONNECT"} == {"/v1/messages"}
    assert claude_sandbox.live_target() == ".credentials.json.a"


# ---------------------------------------------------------------- fact 3


def test_every_hook_fires_with_its_stdin_and_context_reaches_the_model(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    two_slots(claude_sandbox)
    out = dump_stdin_hooks(claude_sandbox)
    claude_sandbox.add_hook("SessionStart", context_hook("SessionStart", "MARKER-123"))
    claude_sandbox.add_hook("UserPromptSubmit", context_hook("UserPromptSubmit", "PROMPT-456"))
    claude_sandbox.add_hook("PreToolUse", context_hook("PreToolUse", "PRETOOL-789"))
    fake_api.script_each_turn(bash("echo hi"), end_turn("all done"))

    run = claude_sandbox.run("please say hi", timeout=45).check()

    first, second = fake_api.messages_calls()
    assert first.mentions("MARKER-123") and first.mentions("PROMPT-456")
    assert not first.mentions("PRETOOL-789") and second.mentions("PRETOOL-789")

    inputs = {event: hook_inputs(out, event) for event in EVENTS}
    assert {event: len(docs) for event, docs in inputs.items()} == dict.fromkeys(EVENTS, 1)
    for event, (doc,) in inputs.items():
        assert doc["hook_event_name"] == event
        assert doc["session_id"] == run.session_id
        assert doc["cwd"] == str(claude_sandbox.project)
        assert doc["transcript_path"].endswith(f"{run.session_id}.jsonl")
    start = inputs["SessionStart"][0]
    assert start["source"] == "startup"
    assert "prompt_id" not in start  # on 2.1.330 SessionStart has neither prompt_id nor model
    prompt = inputs["UserPromptSubmit"][0]
    assert prompt["prompt"] == "please say hi" and prompt["prompt_id"]
    pre = inputs["PreToolUse"][0]
    assert pre["tool_name"] == "Bash" and pre["tool_input"]["command"] == "echo hi"
    assert pre["tool_use_id"] and pre["prompt_id"] == prompt["prompt_id"]
    assert inputs["PostToolUse"][0]["tool_use_id"] == pre["tool_use_id"]
    stop = inputs["Stop"][0]
    assert stop["stop_hook_active"] is False and stop["last_assistant_message"] == "all done"
    end = inputs["SessionEnd"][0]
    assert end["reason"] == "other" and end["prompt_id"] == prompt["prompt_id"]


# ---------------------------------------------------------------- fact 4


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("SessionStart", [TOK_B, TOK_B]),
        ("UserPromptSubmit", [TOK_B, TOK_B]),
        ("PreToolUse", [TOK_A, TOK_B]),  # the next request of the same turn
        ("PostToolUse", [TOK_A, TOK_B]),
    ],
)
def test_flipping_the_live_link_in_a_hook_changes_the_next_request_token(
    claude_sandbox: ClaudeSandbox,
    fake_api: FakeAnthropicServer,
    event: str,
    expected: list[str],
) -> None:
    two_slots(claude_sandbox)
    claude_sandbox.add_hook(event, flip_to(claude_sandbox, "b"))
    fake_api.script_each_turn(bash("echo hi"), end_turn("done"))

    claude_sandbox.run("say hi", timeout=45).check()

    assert [c.token for c in fake_api.messages_calls()] == expected
    assert claude_sandbox.live_target() == ".credentials.json.b"
    # Flips leave both slot files as they were: nothing was rewritten.
    assert claude_sandbox.read_credentials(claude_sandbox.slot_path("a"))["accessToken"] == TOK_A


# ---------------------------------------------------------------- the harness itself


def test_concurrent_sessions_get_their_own_scripts(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    two_slots(claude_sandbox)
    slow, quick = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
    fake_api.script_messages(bash("sleep 4"), end_turn("slept"), session_id=slow)
    fake_api.script_messages(bash("echo quick"), end_turn("quick"), session_id=quick)

    a = claude_sandbox.start("sleep a bit", session_id=slow)
    deadline = time.monotonic() + 20
    while not fake_api.messages_calls(session_id=slow) and time.monotonic() < deadline:
        time.sleep(0.05)
    b = claude_sandbox.run("be quick", session_id=quick, timeout=45).check()
    run_a = a.finish(timeout=45).check()

    assert run_a.result["result"] == "slept" and b.result["result"] == "quick"
    a_calls, b_calls = (
        fake_api.messages_calls(session_id=slow),
        fake_api.messages_calls(session_id=quick),
    )
    assert len(a_calls) == len(b_calls) == 2
    # B ran its whole turn while A's tool was sleeping.
    assert a_calls[0].received_at < b_calls[0].received_at
    assert b_calls[-1].received_at < a_calls[-1].received_at


def test_a_hung_run_is_killed_at_its_timeout_with_everything_it_started(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    two_slots(claude_sandbox)
    # (2.1.330's Bash tool refuses a long standalone `sleep N` as a tool_use_error)
    fake_api.script_each_turn(bash("python3 -c 'import time; time.sleep(120)'"))

    started = time.monotonic()
    run = claude_sandbox.run("hang", timeout=6)

    assert run.timed_out and run.returncode is None and not run.ok
    assert time.monotonic() - started < 15
    assert claude_sandbox.running_processes() == []  # the Bash tool's sleep is gone too


def test_a_rejected_429_ends_the_turn_with_stop_failure_rate_limit(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    two_slots(claude_sandbox)
    out = dump_stdin_hooks(claude_sandbox, ("Stop", "StopFailure"))
    headers = ratelimit_headers(time.time(), five_hour=1.0, status="rejected")
    fake_api.script_messages(api_error(429, "rate_limit_error", "limited", **headers))

    run = claude_sandbox.run("hit the limit", timeout=45)

    assert run.returncode == 1 and run.result["is_error"] is True
    assert len(fake_api.messages_calls()) == 1  # a rejected unified limit is not retried
    assert hook_inputs(out, "Stop") == []
    (failure,) = hook_inputs(out, "StopFailure")
    assert failure["session_id"] == run.session_id and failure["error"] == "rate_limit"
    assert "limit" in failure["last_assistant_message"]


def test_ratelimit_headers_reach_claude_code_as_a_rate_limit_event(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    two_slots(claude_sandbox)
    now = time.time()
    fake_api.set_ratelimit_headers(ratelimit_headers(now, five_hour=0.42, seven_day=0.17))

    run = claude_sandbox.run("hi", timeout=45, output_format="stream-json").check()

    (event,) = [e for e in run.events if e.get("type") == "rate_limit_event"]
    windows = event["rate_limit_info"]["unifiedWindows"]
    assert windows["five_hour"]["utilization"] == 0.42
    assert windows["seven_day"]["utilization"] == 0.17
    assert windows["five_hour"]["resetsAt"] == int(now + 3 * 3600)


# ---------------------------------------------------------------- facts 5 and 6


def test_expired_token_is_refreshed_through_the_proxy_and_the_link_becomes_a_file(
    claude_sandbox: ClaudeSandbox,
    fake_api: FakeAnthropicServer,
    refresh_proxy: RefreshProxy,
) -> None:
    now_ms = int(time.time() * 1000)
    claude_sandbox.write_slot("a", TOK_A, "sk-ant-ort01-fake-a-1", expires_at_ms=now_ms - 60_000)
    claude_sandbox.write_slot("b", TOK_B, "sk-ant-ort01-fake-b-1")
    claude_sandbox.link_live("a")
    fake_api.add_refresh_grant(
        "sk-ant-ort01-fake-a-1", "sk-ant-oat01-fake-a-2", "sk-ant-ort01-fake-a-2"
    )
    fake_api.set_profile("sk-ant-oat01-fake-a-2", make_profile_doc("alice@example.invalid"))
    fake_api.script_each_turn(bash("echo hi"), end_turn("refreshed"))
    claude_sandbox.use_proxy(refresh_proxy)

    run = claude_sandbox.run("say hi", timeout=50).check()

    assert run.result["result"] == "refreshed"
    (refresh,) = fake_api.token_refreshes()
    assert refresh.old_refresh_token == "sk-ant-ort01-fake-a-1"
    token_call = next(r for r in fake_api.requests() if r.route == "/v1/oauth/token")
    assert token_call.headers["x-e2e-original-host"] == "platform.claude.com"
    grant = token_call.json()
    assert grant["grant_type"] == "refresh_token"
    assert grant["client_id"] == "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
    # Every model request used the new token, via the real hostname.
    calls = fake_api.messages_calls()
    assert [c.token for c in calls] == ["sk-ant-oat01-fake-a-2"] * 2
    assert {c.request.headers["x-e2e-original-host"] for c in calls} == {"api.anthropic.com"}

    # The link was replaced by a regular 0600 file with the new pair; the slot kept the old.
    assert not claude_sandbox.live.is_symlink() and claude_sandbox.live.is_file()
    assert claude_sandbox.live.stat().st_mode & 0o777 == 0o600
    live = claude_sandbox.read_credentials()
    assert live["refreshToken"] == "sk-ant-ort01-fake-a-2"
    assert live["accessToken"] == "sk-ant-oat01-fake-a-2"
    assert live["expiresAt"] > now_ms
    slot = claude_sandbox.read_credentials(claude_sandbox.slot_path("a"))
    assert slot["refreshToken"] == "sk-ant-ort01-fake-a-1"  # spent: only the live file is good
    account = claude_sandbox.read_claude_json()["oauthAccount"]
    assert account["emailAddress"] == "alice@example.invalid"
    # The proxy never dialed anything but the fake API.
    assert "refusing upstream" not in refresh_proxy.log()


@pytest.mark.parametrize("lock", [".claude/.oauth_refresh.lock", ".claude.lock"])
def test_claude_code_waits_for_a_held_refresh_lock(
    claude_sandbox: ClaudeSandbox,
    fake_api: FakeAnthropicServer,
    refresh_proxy: RefreshProxy,
    lock: str,
) -> None:
    """Fact 7: 2.1.330 takes both locks (mkdir); while either is held it does not refresh."""
    expired = int(time.time() * 1000) - 60_000
    claude_sandbox.write_slot("a", TOK_A, "sk-ant-ort01-fake-a-1", expires_at_ms=expired)
    claude_sandbox.link_live("a")
    fake_api.script_each_turn(end_turn("ok"))
    claude_sandbox.use_proxy(refresh_proxy)
    held = claude_sandbox.home / lock
    with lock_held_for(held) as released:
        claude_sandbox.run("hi", timeout=45).check()

    (refresh,) = fake_api.token_refreshes()
    assert released and refresh.received_at >= released[0]
    assert not claude_sandbox.live.is_symlink()
    assert not held.exists() and not (claude_sandbox.claude_dir / ".oauth_refresh.lock").exists()
