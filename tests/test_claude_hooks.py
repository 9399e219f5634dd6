"""Claude Code hooks as Claude Code runs them: real processes, stdin JSON, stdout JSON, exit 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from gptme_subscription_plugin.hookstatus import write_hook_status

from .support.credentials import credential_bytes
from .support.sandbox import Sandbox, hook_payload, tree

EVENTS = [
    "session-start",
    "user-prompt-submit",
    "pre-tool-use",
    "stop",
    "stop-failure",
    "session-end",
]


@pytest.fixture
def sb(tmp_path, fake_server):
    return Sandbox(tmp_path, server=fake_server, usage=(10, 30))


def test_session_start_injects_the_pressure_summary(sb):
    out, _ = sb.hook("session-start", hook_payload("SessionStart", source="startup"))
    spec = out["hookSpecificOutput"]
    assert spec["hookEventName"] == "SessionStart"
    text = spec["additionalContext"]
    assert text.startswith("[subscription] live slot alice: 5h 10%")
    assert "weekly 30%" in text and "next: bob" in text and "advice:" in text


def test_session_start_warns_about_credential_overrides(sb, tmp_path):
    project = tmp_path / "proj"
    (project / ".claude").mkdir(parents=True)
    (project / ".claude" / "settings.json").write_text(json.dumps({"apiKeyHelper": "x"}))
    out, _ = sb.hook(
        "session-start", hook_payload("SessionStart", cwd=str(project)), ANTHROPIC_API_KEY="k"
    )
    text = out["hookSpecificOutput"]["additionalContext"]
    assert "ANTHROPIC_API_KEY" in text and "apiKeyHelper" in text
    assert "overrides the subscription slots" in out["systemMessage"]


def test_stop_switches_when_alone_and_tells_the_person(sb):
    sb.set_usage("alice", five=20, week=99)
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit"))
    out, _ = sb.hook("stop", hook_payload("Stop", stop_hook_active=False))
    assert sb.live() == "bob"
    assert out == {"systemMessage": out["systemMessage"]} and "alice -> bob" in out["systemMessage"]


def test_switch_waits_for_the_other_session_then_lands_at_its_boundary(sb):
    sb.set_usage("alice", five=20, week=99)
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit", session="A"))
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit", session="B"))
    sb.hook("pre-tool-use", hook_payload("PreToolUse", session="B", tool_name="Bash"))
    sb.hook("stop", hook_payload("Stop", session="A"))
    assert sb.live() == "alice"  # B is mid-turn: pending, not flipped
    sb.hook("pre-tool-use", hook_payload("PreToolUse", session="B", tool_name="Bash"))
    assert sb.live() == "alice"  # PreToolUse never flips
    sb.hook("stop", hook_payload("Stop", session="B"))
    assert sb.live() == "bob"


def test_stop_says_so_when_an_urgent_switch_must_wait(sb):
    """A pending outcome is falsy (it is not a switch yet), and it is still what Stop reports."""
    sb.set_usage("alice", five=20, week=99)
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit", session="B"))  # B is mid-turn
    out, _ = sb.hook("stop", hook_payload("Stop", session="A"))
    assert sb.live() == "alice"
    assert "pending" in out["systemMessage"] and "mid-turn" in out["systemMessage"]


def test_user_prompt_submit_applies_a_pending_switch_when_everyone_is_idle(sb):
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit", session="B"))
    subprocess.run(
        [sys.executable, "-m", "gptme_subscription_plugin", "switch", "bob"],
        env=sb.env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert sb.live() == "alice"
    sb.hook("stop", hook_payload("Stop", session="B"))  # B ends: the pending manual switch lands
    assert sb.live() == "bob"
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit", session="C"))
    assert sb.live() == "bob"


def test_stop_failure_rate_limit_switches_at_once(sb):
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit"))
    out, _ = sb.hook(
        "stop-failure",
        hook_payload("StopFailure", error="rate_limit", error_details="429 Too Many Requests"),
    )
    assert out is None  # Claude Code ignores StopFailure output and does not wait for it
    deadline = time.monotonic() + 15
    while sb.live() != "bob" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sb.live() == "bob"  # the detached worker moved to another slot
    rotation = json.loads((sb.state / "rotation.json").read_text())
    assert rotation["limited"]["alice"] > time.time()

    def switches() -> list[dict]:  # the worker logs the switch just after the flip
        lines = (sb.state / "events.jsonl").read_text().splitlines()
        return [e for e in map(json.loads, lines) if e["kind"] == "switch"]

    while not switches() and time.monotonic() < deadline:
        time.sleep(0.05)
    switch = switches()
    assert switch[-1]["slot"] == "bob" and "rate-limited" in switch[-1]["reason"]


def test_user_prompt_submit_decides_on_cached_usage_when_nobody_else_is_mid_turn(sb):
    sb.set_usage("alice", five=20, week=99)
    sb.hook("session-start", hook_payload("SessionStart", source="startup"))  # polls both slots
    sb.server.reset_requests()
    out, _ = sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit"))
    assert sb.live() == "bob"  # before the turn's first request
    assert "alice -> bob" in out["systemMessage"]
    assert not [r for r in sb.server.requests() if r.route == "/api/oauth/usage"]  # no network


def test_user_prompt_submit_leaves_the_live_slot_alone_while_another_session_works(sb):
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit", session="B"))  # B is mid-turn
    sb.set_usage("alice", five=20, week=99)
    sb.hook("session-start", hook_payload("SessionStart", session="A", source="startup"))
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit", session="A"))
    assert sb.live() == "alice"
    sb.hook("stop", hook_payload("Stop", session="B"))  # decides; A is mid-turn now: pending
    assert sb.live() == "alice"
    sb.hook("stop", hook_payload("Stop", session="A"))
    assert sb.live() == "bob"


def test_stop_failure_on_a_spent_model_window_limits_only_that_model(sb, tmp_path):
    now = time.time()
    for name, opus in (("alice", 100), ("bob", 97)):  # bob: past our threshold, not out
        sb.set_usage(name, five=20, week=40, models={"opus": opus})
    sb.hook("session-start", hook_payload("SessionStart", source="startup"))
    transcript = tmp_path / "s1.jsonl"
    answer = {"type": "assistant", "message": {"role": "assistant", "model": "claude-opus-4-5"}}
    transcript.write_text(json.dumps(answer) + "\n")
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit", transcript_path=str(transcript)))
    assert sb.live() == "alice"  # no slot serves every model: alice serves all but Opus
    sb.hook(
        "stop-failure",
        hook_payload("StopFailure", error="rate_limit", transcript_path=str(transcript)),
    )
    deadline = time.monotonic() + 15
    while sb.live() != "bob" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sb.live() == "bob"  # alice refused Opus, bob has a little Opus left
    rotation = json.loads((sb.state / "rotation.json").read_text())
    assert "alice" not in rotation.get("limited", {})
    # the 5-hour reset is the soonest in sight (that reading may be what lagged)
    assert rotation["limited_models"]["alice"]["opus"] == pytest.approx(now + 3600, abs=5)
    status = json.loads(sb.run("status", "--json").stdout)
    alice = next(s for s in status["slots"] if s["name"] == "alice")
    assert alice["limited_until"] is None and set(alice["limited_models"]) == {"opus"}
    assert "opus limited" in sb.run("status").stdout


def test_a_slot_refusing_for_longer_than_a_5_hour_window_waits_for_its_weekly_reset(sb):
    sb.set_usage("alice", five=10, week=30, week_in=2 * 86400)
    sb.hook("session-start", hook_payload("SessionStart", source="startup"))  # caches the readings
    rotation = sb.state / "rotation.json"
    doc = json.loads(rotation.read_text()) if rotation.exists() else {}
    started = time.time() - 6 * 3600  # alice has refused since then and answered nothing
    rotation.write_text(json.dumps({**doc, "refusing": {"alice": started}}))
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit"))
    sb.hook("stop-failure-worker", hook_payload("StopFailure", error="rate_limit"))
    doc = json.loads(rotation.read_text())
    # not the 5-hour reset in an hour: a weekly window is spent, so its reset
    assert doc["limited"]["alice"] == pytest.approx(time.time() + 2 * 86400, abs=60)
    assert doc["refusing"] == {"alice": started}
    assert sb.live() == "bob"
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit"))
    sb.hook("stop", hook_payload("Stop"))  # a turn answered on bob ends nothing of alice's
    assert json.loads(rotation.read_text())["refusing"] == {"alice": started}


def test_a_turn_answered_on_a_refusing_slot_ends_its_refusal_streak(sb):
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit"))
    sb.hook("stop-failure-worker", hook_payload("StopFailure", error="rate_limit"))
    rotation = sb.state / "rotation.json"
    first = json.loads(rotation.read_text())
    assert set(first["refusing"]) == {"alice"}
    assert first["limited"]["alice"] < time.time() + 2 * 3600  # a first refusal: a guess
    rotation.write_text(json.dumps({**first, "limited": {}}))  # the limit lifted
    assert sb.run("switch", "alice", "--force").returncode == 0
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit"))
    assert sb.live() == "alice"
    sb.hook("stop", hook_payload("Stop"))  # and alice answered the turn
    assert json.loads(rotation.read_text())["refusing"] == {}


def test_stop_failure_on_a_refused_credential_marks_it_rejected_and_switches(sb):
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit"))
    out, _ = sb.hook(
        "stop-failure",
        hook_payload("StopFailure", error="authentication_failed", error_details="401"),
    )
    assert out is None
    deadline = time.monotonic() + 15
    while sb.live() != "bob" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sb.live() == "bob"
    rotation = json.loads((sb.state / "rotation.json").read_text())
    assert rotation["rejected"]["alice"]["source"] == "StopFailure authentication_failed"
    assert "limited" not in rotation or "alice" not in rotation["limited"]
    status = sb.run("status", "--json")
    alice = next(s for s in json.loads(status.stdout)["slots"] if s["name"] == "alice")
    assert alice["rejected"]["source"] == "StopFailure authentication_failed"
    again = sb.run("switch", "alice")
    assert again.returncode == 1 and "refused alice's credential" in again.stderr + again.stdout
    assert sb.live() == "bob"


def test_stop_failure_for_other_errors_changes_nothing(sb):
    """The detached worker's run, in the foreground: a server error says nothing of the slot."""
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit"))
    claude_before, rotation_before = tree(sb.claude), sb.rotation()
    out, _ = sb.hook("stop-failure-worker", hook_payload("StopFailure", error="server_error"))
    assert out is None and sb.live() == "alice"
    assert tree(sb.claude) == claude_before and sb.rotation() == rotation_before
    assert sb.events("switch") == []


def test_pre_tool_use_warns_once_per_crossing(sb):
    write_hook_status(sb.state, {"live": "alice", "level": 1, "text": "[subscription] hot 81%"})
    out, _ = sb.hook("pre-tool-use", hook_payload("PreToolUse", tool_name="Bash"))
    assert out == {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "additionalContext": "[subscription] hot 81%",
        }
    }
    assert sb.hook("pre-tool-use", hook_payload("PreToolUse", tool_name="Bash"))[0] is None
    other, _ = sb.hook("pre-tool-use", hook_payload("PreToolUse", session="s2", tool_name="Bash"))
    assert other is not None  # every session hears it once
    write_hook_status(sb.state, {"live": "alice", "level": 2, "text": "[subscription] hotter 91%"})
    out, _ = sb.hook("pre-tool-use", hook_payload("PreToolUse", tool_name="Bash"))
    assert out["hookSpecificOutput"]["additionalContext"] == "[subscription] hotter 91%"


def test_pre_tool_use_marks_the_session_busy(sb):
    sb.hook("pre-tool-use", hook_payload("PreToolUse", session="worker", tool_name="Read"))
    entry = json.loads((sb.state / "sessions" / "worker.json").read_text())
    assert entry["state"] == "busy"
    sb.hook("session-end", hook_payload("SessionEnd", session="worker", reason="other"))
    assert not (sb.state / "sessions" / "worker.json").exists()


def test_next_hook_heals_a_refreshed_live_file(sb):
    sb.hook("session-start", hook_payload("SessionStart"))  # sees the healthy link to alice
    live = sb.claude / ".credentials.json"
    live.unlink()
    live.write_bytes(credential_bytes("alice", 2))  # Claude Code refreshed: link -> file
    out, _ = sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit"))
    assert live.is_symlink() and sb.live() == "alice"
    slot = json.loads((sb.claude / ".credentials.json.alice").read_text())
    assert slot["claudeAiOauth"]["refreshToken"].endswith("refresh-2")
    assert "copied live credential into alice" in out["systemMessage"]


def test_an_unattributable_live_file_is_left_alone_and_reported(sb):
    live = sb.claude / ".credentials.json"
    live.unlink()
    live.write_bytes(credential_bytes("stranger"))  # never seen, no identity on record
    out, _ = sb.hook("session-start", hook_payload("SessionStart"))
    assert not live.is_symlink()
    assert "kept aside" in out["systemMessage"] and "slot add NAME" in out["systemMessage"]
    kept = json.loads((sb.claude / ".gptme-subscription-pending-login").read_text())
    assert kept["claudeAiOauth"]["refreshToken"].endswith("stranger-refresh-1")
    for name in ("alice", "bob"):
        slot = json.loads((sb.claude / f".credentials.json.{name}").read_text())
        assert name in slot["claudeAiOauth"]["refreshToken"]


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("stdin", ["{not json", "[1, 2]", "", "null", '{"session_id": 5}'])
def test_garbage_stdin_never_fails_the_session(sb, event, stdin):
    before = os.readlink(sb.claude / ".credentials.json")
    sb.hook(event, stdin)  # asserts exit 0 and JSON-or-nothing on stdout
    assert os.readlink(sb.claude / ".credentials.json") == before


@pytest.mark.parametrize("event", EVENTS)
def test_broken_installation_never_fails_the_session(sb, tmp_path, event):
    cfg = tmp_path / "cfg" / "gptme-subscription"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text("poll_interval = [")  # corrupt config
    out, err = sb.hook(event, hook_payload("Stop"))
    assert out is None or isinstance(out, dict)
    (cfg / "config.toml").unlink()
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("")
    sb.hook(event, hook_payload("Stop"), GPTME_SUBSCRIPTION_STATE_DIR=str(blocker))
    (sb.claude / ".credentials.json.alice").unlink()  # the live slot vanished
    sb.hook(event, hook_payload("Stop"))


def test_unknown_event_is_harmless(sb):
    assert sb.hook("bogus", hook_payload("Bogus"))[0] is None


def test_pre_tool_use_imports_neither_pydantic_nor_gptme_nor_filelock_nor_typing(sb):
    code = (
        "import io, sys, json\n"
        "sys.stdin = io.TextIOWrapper(io.BytesIO(json.dumps({'session_id': 'x'}).encode()))\n"
        "from gptme_subscription_plugin.entry import main\n"
        "main(['hook', 'pre-tool-use'])\n"
        "roots = ('pydantic', 'gptme', 'filelock', 'typing')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in roots)\n"
        "print(json.dumps(bad), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=sb.env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []


def test_no_hook_path_imports_gptme(sb):
    for event in EVENTS:
        code = (
            "import io, sys, json\n"
            "sys.stdin = io.TextIOWrapper(io.BytesIO(json.dumps({'session_id': 'x'}).encode()))\n"
            "from gptme_subscription_plugin.entry import main\n"
            f"main(['hook', '{event}'])\n"
            "found = [m for m in sys.modules if m.split('.')[0] == 'gptme']\n"
            "print(json.dumps(found), file=sys.stderr)\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], env=sb.env, capture_output=True, text=True, timeout=60
        )
        assert json.loads(proc.stderr.strip().splitlines()[-1]) == [], event


def test_our_hooks_do_nothing_inside_a_usage_script(sb, tmp_path):
    """A usage script's `claude` loads the user's settings, our hooks included: they stay out."""
    nested_out = tmp_path / "nested-hook-stdout"
    script = tmp_path / "usage.sh"
    nested = json.dumps(hook_payload("SessionStart", session="nested"))
    script.write_text(
        "#!/bin/sh\n"
        f"echo '{nested}' | {sys.executable} -m gptme_subscription_plugin hook session-start"
        f" >> {nested_out}\n"
        'echo \'{"five_hour": {"utilization": 0.1, "resets_in_seconds": 3600}}\'\n'
    )
    script.chmod(0o700)
    env = {"GPTME_SUBSCRIPTION_USAGE_SCRIPT": str(script), "GPTME_SUBSCRIPTION_POLL_INTERVAL": "0"}
    out, _ = sb.hook("session-start", hook_payload("SessionStart"), **env)
    assert out is not None  # the outer hook answered, having asked the script
    assert nested_out.exists()  # the script ran and ran our hook
    assert nested_out.read_text() == ""
    assert "nested" not in json.dumps([p.name for p in (sb.state / "sessions").glob("*")])
