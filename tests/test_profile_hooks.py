"""The Claude Code hooks inside a profile session: real hook processes with
`CLAUDE_CONFIG_DIR=<profiles>/<slot>` (as Claude Code gives them, docs/facts.md fact 15).

A session in a profile runs on its slot for its whole life: its hooks never heal, switch or
defer the main dir's live link, never count as mid-turn on it, and mark only their own slot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gptme_subscription_plugin import fsutil
from gptme_subscription_plugin.hookstatus import write_hook_status
from gptme_subscription_plugin.turns import TurnRegistry
from gptme_subscription_plugin.usage.cache import UsageCache

from .support.sandbox import Sandbox, hook_payload, tree

# alice is live; carol is the link's other slot; bob lives in its profile
SLOTS = ("alice", "carol", "bob")


@pytest.fixture
def sb(tmp_path: Path, fake_server) -> Sandbox:
    sandbox = Sandbox(tmp_path, SLOTS, server=fake_server, usage=(10, 30))
    (sandbox.claude / "settings.json").write_text('{"hooks": {}}\n')
    sandbox.run("profile", "enable", "bob", code=0)
    assert (profile(sandbox) / ".credentials.json").is_file()
    return sandbox


def profile(sb: Sandbox, slot: str = "bob") -> Path:
    return sb.home / ".claude-profiles" / slot


def in_profile(sb: Sandbox, slot: str = "bob") -> dict[str, str]:
    return {"CLAUDE_CONFIG_DIR": str(profile(sb, slot))}


def entry(sb: Sandbox, session: str) -> dict[str, object]:
    doc = json.loads(TurnRegistry(sb.state).path_for(session).read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("main_dir_set", [False, True], ids=["default-dirs", "claude-dir-set"])
def test_hooks_in_a_profile_leave_every_main_dir_file_alone_even_when_the_live_slot_is_spent(
    sb: Sandbox, main_dir_set: bool
) -> None:
    """With the live slot spent, link mode would switch at Stop; a profile session does not,
    whether the main claude dir comes from the default or is configured."""
    sb.set_usage("alice", five=20, week=99)
    env = in_profile(sb)
    if main_dir_set:
        env["GPTME_SUBSCRIPTION_CLAUDE_DIR"] = str(sb.claude)
    write_hook_status(sb.state, {"live": "alice", "level": 2, "text": "[subscription] hot 91%"})
    main_before, profile_before = tree(sb.claude), tree(profile(sb))

    start, _ = sb.hook("session-start", hook_payload("SessionStart", session="p1"), **env)
    text = start["hookSpecificOutput"]["additionalContext"]
    assert "slot bob's profile" in text and "never switched" in text
    assert "5h 10%" in text and "7d 30%" in text  # bob's own usage, polled with its credential
    assert "systemMessage" not in start  # healthy: nothing for the person
    assert (
        sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit", session="p1"), **env)[0]
        is None
    )
    pre, _ = sb.hook("pre-tool-use", hook_payload("PreToolUse", session="p1"), **env)
    assert pre is None  # the live slot's warning is not this session's business
    assert entry(sb, "p1")["state"] == "busy" and entry(sb, "p1")["slot"] == "bob"
    assert sb.hook("stop", hook_payload("Stop", session="p1"), **env)[0] is None
    assert entry(sb, "p1")["state"] == "idle" and entry(sb, "p1")["slot"] == "bob"
    sb.hook("session-end", hook_payload("SessionEnd", session="p1"), **env)

    assert tree(sb.claude) == main_before
    assert tree(profile(sb)) == profile_before
    assert sb.live() == "alice"
    assert "pending" not in sb.rotation()
    assert sb.events("switch") == [] and sb.events("pending") == [] and sb.events("heal") == []
    # a session on the link, at the same boundary, does switch
    out, _ = sb.hook("stop", hook_payload("Stop", session="l1"))
    assert sb.live() == "carol" and "alice -> carol" in out["systemMessage"]


def test_a_busy_profile_session_does_not_hold_up_a_link_flip_but_a_busy_link_session_does(
    sb: Sandbox,
) -> None:
    sb.set_usage("alice", five=20, week=99)
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit", session="p1"), **in_profile(sb))
    sb.hook("pre-tool-use", hook_payload("PreToolUse", session="p1"), **in_profile(sb))
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit", session="l2"))
    m = sb.manager()
    assert m.busy_sessions() == ["l2"]
    assert sorted(m.busy_sessions(everywhere=True)) == ["l2", "p1"]

    sb.hook("stop", hook_payload("Stop", session="l1"))
    assert sb.live() == "alice"  # l2 is mid-turn on the link: pending
    assert sb.rotation()["pending"]["slot"] == "carol"
    sb.hook("stop", hook_payload("Stop", session="l2"))
    assert sb.live() == "carol"  # p1 is still mid-turn, in its profile: no matter
    assert entry(sb, "p1")["state"] == "busy"


def test_a_rate_limit_in_a_profile_marks_its_slot_and_says_how_to_continue(sb: Sandbox) -> None:
    """The StopFailure worker, in the foreground (Claude Code does not wait for the hook)."""
    env = in_profile(sb)
    sb.hook("session-start", hook_payload("SessionStart", session="p1"), **env)
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit", session="p1"), **env)
    main_before = tree(sb.claude)

    out, _ = sb.hook(
        "stop-failure-worker",
        hook_payload("StopFailure", session="p1", error="rate_limit"),
        **env,
    )
    rotation = sb.rotation()
    assert set(rotation["limited"]) == {"bob"} and set(rotation["refusing"]) == {"bob"}
    until = rotation["limited"]["bob"]
    assert until > time.time()
    line = out["systemMessage"]
    assert out["hookSpecificOutput"] == {
        "hookEventName": "StopFailure",
        "additionalContext": line,
    }
    at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(until))
    assert f"slot bob (this session's profile) is spent until {at}" in line
    assert line.endswith(
        "To continue on another slot: gptme-subscription run -- claude --resume p1"
    )
    assert sb.events("rate-limited")[-1]["slot"] == "bob"
    assert tree(sb.claude) == main_before and sb.live() == "alice"

    # the session's next prompt, on the spent slot, hears it again, agent and person alike
    again, _ = sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit", session="p1"), **env)
    assert again["systemMessage"] == again["hookSpecificOutput"]["additionalContext"]
    assert "slot bob" in again["systemMessage"] and "--resume p1" in again["systemMessage"]
    # a link session is not told about bob
    assert sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit", session="l1"))[0] is None


def test_a_refused_credential_in_a_profile_marks_its_slot_and_says_so(sb: Sandbox) -> None:
    out, _ = sb.hook(
        "stop-failure-worker",
        hook_payload("StopFailure", session="p1", error="authentication_failed"),
        **in_profile(sb),
    )
    assert set(sb.rotation()["rejected"]) == {"bob"}
    line = out["systemMessage"]
    assert "refused slot bob's credential" in line and "gptme-subscription reauth bob" in line
    assert line.endswith("gptme-subscription run -- claude --resume p1")
    assert sb.live() == "alice"


def test_a_turn_answered_in_a_profile_ends_its_slots_refusal_streak(sb: Sandbox) -> None:
    env = in_profile(sb)
    sb.hook("stop-failure-worker", hook_payload("StopFailure", error="rate_limit"), **env)
    doc = sb.rotation()
    fsutil.atomic_write_text(sb.state / "rotation.json", json.dumps({**doc, "limited": {}}))
    assert set(sb.rotation()["refusing"]) == {"bob"}
    assert sb.hook("stop", hook_payload("Stop"), **env)[0] is None
    assert sb.rotation()["refusing"] == {}


@pytest.mark.parametrize("kind", ["symlink", "elsewhere"])
def test_a_config_dir_that_is_not_our_profile_is_not_treated_as_one(
    sb: Sandbox, tmp_path: Path, kind: str
) -> None:
    """A planted link in the profiles dir, or a dir outside it: the session counts as a link
    session (it holds up flips), and the look-alike gets a line that says why."""
    if kind == "symlink":
        config_dir = profile(sb, "dave")
        config_dir.symlink_to(sb.claude)  # looks like a profile, is the main dir
        why: str | None = "is a symlink, not a profile of ours"
    else:
        config_dir = tmp_path / "elsewhere" / "bob"
        config_dir.mkdir(parents=True, mode=0o700)
        why = None
    env = {"CLAUDE_CONFIG_DIR": str(config_dir)}
    start, _ = sb.hook("session-start", hook_payload("SessionStart", session="x1"), **env)
    if why is not None:
        note = start["systemMessage"]
        assert why in note and "not treated as a profile" in note
    else:
        assert "profile" not in json.dumps(start)
    sb.hook("user-prompt-submit", hook_payload("UserPromptSubmit", session="x1"), **env)
    assert entry(sb, "x1")["slot"] is None and entry(sb, "x1")["state"] == "busy"

    sb.set_usage("alice", five=20, week=99)
    sb.hook("stop", hook_payload("Stop", session="l1"), GPTME_SUBSCRIPTION_POLL_INTERVAL="0")
    assert sb.live() == "alice"  # x1 counts as mid-turn on the link: pending
    assert sb.rotation()["pending"]["slot"] == "carol"
    sb.hook("stop", hook_payload("Stop", session="x1"), **env)
    sb.hook("stop", hook_payload("Stop", session="l1"))
    assert sb.live() == "carol"  # once x1's turn is over


def test_a_profile_others_may_write_is_refused_and_nothing_is_marked(sb: Sandbox) -> None:
    profile(sb).chmod(0o777)
    env = in_profile(sb)
    before = sb.rotation()
    for event, name in (("session-start", "SessionStart"), ("stop-failure-worker", "StopFailure")):
        out, err = sb.hook(event, hook_payload(name, session="x1", error="rate_limit"), **env)
        assert out is None and "writable by others" in err
    assert sb.rotation() == before and sb.live() == "alice"
    assert not TurnRegistry(sb.state).path_for("x1").exists()


def test_the_statusline_in_a_profile_records_its_slots_rate_limits(sb: Sandbox) -> None:
    now = time.time()
    doc = {
        "session_id": "p1",
        "rate_limits": {
            "five_hour": {"used_percentage": 64, "resets_at": now + 3600},
            "seven_day": {"used_percentage": 41, "resets_at": now + 86400},
        },
    }
    proc = sb.run("statusline", stdin=json.dumps(doc), code=0, **in_profile(sb))
    assert proc.stdout.startswith("slot bob (profile) 5h 64%")
    cache = UsageCache(sb.state, poll_interval=180)
    bob = cache.get("bob", time.time())
    assert bob is not None and bob.five_hour is not None
    assert round(bob.five_hour.utilization * 100) == 64
    alice = cache.get("alice", time.time())
    assert (
        alice is None or alice.five_hour is None or round(alice.five_hour.utilization * 100) != 64
    )
    assert os.readlink(sb.claude / ".credentials.json") == ".credentials.json.alice"


def test_pre_tool_use_in_a_profile_stays_on_the_fast_path(sb: Sandbox) -> None:
    code = (
        "import io, sys, json\n"
        "sys.stdin = io.TextIOWrapper(io.BytesIO(json.dumps({'session_id': 'p1'}).encode()))\n"
        "from gptme_subscription_plugin.entry import main\n"
        "main(['hook', 'pre-tool-use'])\n"
        "roots = ('pydantic', 'gptme', 'filelock', 'typing')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in roots)\n"
        "print(json.dumps(bad), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**sb.env, **in_profile(sb)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == []
    assert entry(sb, "p1")["slot"] == "bob" and entry(sb, "p1")["state"] == "busy"


def test_a_refresh_in_the_profile_reaches_the_slots_lineage_and_backup_ring(sb: Sandbox) -> None:
    """Claude Code refreshes bob's credential in his profile; at the next Stop our hook keeps a
    copy of the new pair in the main dir's backup ring, as it does for the live slot."""
    from gptme_subscription_plugin.credentials import load_credential

    from .support.credentials import credential_bytes

    fresh = credential_bytes("bob", 2)
    fsutil.atomic_write_bytes(profile(sb) / ".credentials.json", fresh)
    ring = sb.claude / ".gptme-subscription-backups"
    assert fresh not in [p.read_bytes() for p in ring.iterdir()]

    sb.hook("stop", hook_payload("Stop", session="p1"), **in_profile(sb))

    assert fresh in [p.read_bytes() for p in ring.iterdir()]
    lineage = sb.manager().slots.lineage("bob")
    assert lineage[-1] == load_credential(profile(sb) / ".credentials.json").refresh_fingerprint
