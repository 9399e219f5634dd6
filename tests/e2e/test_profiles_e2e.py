"""Profiles on the real Claude Code: `gptme-subscription profile enable|disable` and `claude -p`.

Each test is what a user does: `/login` as each account and `slot add` it (the main dir runs
on the live link, our hooks installed in the shared settings.json), `profile enable` from the
CLI, then Claude Code with `CLAUDE_CONFIG_DIR=~/.claude-profiles/SLOT`. Claude Code talks to
its real hostnames through the loopback RefreshProxy, so an expired access token is refreshed
at the fake's token endpoint, which answers a reused refresh token `invalid_grant` and revokes
the family: a token chain with two homes shows up as `invalid_grant` or a lost pair.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ..support.fake_api import FakeAnthropicServer, bash, end_turn
from .claude_harness import ClaudeSandbox, Fleet, wait_for

pytestmark = pytest.mark.e2e

ACCOUNTS = ["alice", "bob", "carol"]  # carol logs in last: she is live, on the link
CREDENTIALS = ".credentials.json"

FileState = tuple[str, int, str]  # kind, mode, sha256 of the bytes or the link's target


def tree(root: Path) -> dict[str, FileState]:
    """Every entry under `root` (links not followed): kind, mode, content hash or target."""
    out: dict[str, FileState] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                state = ("link", mode, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                state = ("dir", mode, "")
            else:
                state = ("file", mode, hashlib.sha256(path.read_bytes()).hexdigest())
            out[str(path.relative_to(root))] = state
    return out


def changed(before: dict[str, FileState], after: dict[str, FileState]) -> list[str]:
    """Paths added, removed or changed between two `tree` snapshots."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def pair(path: Path) -> tuple[str, str]:
    """(access token, refresh token) of a credential file."""
    oauth = json.loads(path.read_text())["claudeAiOauth"]
    return oauth["accessToken"], oauth["refreshToken"]


def assert_private_file(path: Path) -> None:
    """A slot's one home: a regular 0600 file (no link of any kind, docs/facts.md fact 12)."""
    st = path.lstat()
    assert stat.S_ISREG(st.st_mode), f"{path} is not a regular file"
    assert stat.S_IMODE(st.st_mode) == 0o600, f"{path} mode {oct(st.st_mode & 0o777)}"
    assert st.st_nlink == 1, f"{path} has {st.st_nlink} links"


def transcript(fleet: Fleet, session_id: str) -> Path:
    """A session's transcript in the main dir's projects (shared with every profile)."""
    (path,) = (fleet.sandbox.claude_dir / "projects").glob(f"*/{session_id}.jsonl")
    return path


def enable(fleet: Fleet, *slots: str) -> dict[str, Any]:
    """`profile enable [SLOT...] --json` as the person runs it; its report."""
    doc: dict[str, Any] = json.loads(fleet.cli("profile", "enable", *slots, "--json").stdout)
    return doc


def ours_in(profile: Path) -> list[str]:
    """Files of our tool's in a profile: slot files, pending logins, backups (must be none)."""
    return sorted(
        p.name
        for p in profile.iterdir()
        if p.name.startswith(f"{CREDENTIALS}.") or p.name.startswith(".gptme-subscription")
    )


@pytest.fixture
def onboarded(fleet: Fleet) -> Fleet:
    """Three accounts logged in and added, carol live; alice logged in long ago (expired)."""
    fleet.onboard(ACCOUNTS, expired=["alice"])
    return fleet


# ---------------------------------------------------------------- refresh in a profile


def test_a_profile_session_refreshes_in_its_profile_and_nothing_else_changes(
    onboarded: Fleet, fake_api: FakeAnthropicServer
) -> None:
    fleet = onboarded
    report = enable(fleet, "alice")
    assert [s["slot"] for s in report["slots"]] == ["alice"]
    profile = fleet.profile_dir("alice")
    assert stat.S_IMODE(fleet.profiles_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(profile.lstat().st_mode) == 0o700 and profile.is_dir()
    assert_private_file(profile / ".claude.json")
    assert_private_file(profile / CREDENTIALS)
    spent_refresh = pair(profile / CREDENTIALS)[1]
    home_before = tree(fleet.sandbox.home)
    fake_api.script_each_turn(bash("echo hi"), end_turn("ok"))

    run = fleet.run("say hi", profile="alice").check()

    (grant,) = fake_api.token_refreshes()
    assert grant.account == "alice" and grant.old_refresh_token == spent_refresh
    assert fake_api.invalid_grant_events() == []
    access, refresh = fake_api.current_tokens("alice")
    calls = fake_api.messages_calls(session_id=run.session_id)
    assert calls and {c.token for c in calls} == {access}
    # the profile's credential holds the rotated pair, as the one home of alice's chain
    credential = profile / CREDENTIALS
    assert_private_file(credential)
    assert pair(credential) == (access, refresh)
    # nothing else changed: outside the profile not a byte (live link, other slots,
    # settings.json, ~/.claude.json) but the transcript in the shared projects dir and, in the
    # backup ring, a copy of alice's rotated pair (our Stop hook in the profile keeps one);
    # inside it only Claude Code's own files
    moved = changed(home_before, tree(fleet.sandbox.home))
    ring = ".claude/.gptme-subscription-backups/alice."
    own = (f"{profile.relative_to(fleet.sandbox.home)}/", ".claude/projects/", ring)
    assert [p for p in moved if not p.startswith(own)] == []
    kept = [p for p in moved if p.startswith(ring) and (fleet.sandbox.home / p).exists()]
    assert [pair(fleet.sandbox.home / p) for p in kept] == [(access, refresh)]
    assert transcript(fleet, run.session_id).is_file()
    assert (profile / "settings.json").is_symlink()
    assert ours_in(profile) == []
    assert fleet.sandbox.live_target() == f"{CREDENTIALS}.carol"
    assert not fleet.sandbox.slot_path("alice").exists()


def test_two_sessions_in_one_profile_refresh_once(
    onboarded: Fleet, fake_api: FakeAnthropicServer
) -> None:
    """Both start on the expired token; Claude Code's lock in the profile lets one refresh."""
    fleet = onboarded
    enable(fleet, "alice")
    delay = 2.0  # the first refresh is still unanswered when the second session starts up
    fake_api.set_token_delay(delay)
    fake_api.script_each_turn(end_turn("ok"))

    procs = [fleet.start(f"session {i}", profile="alice") for i in range(2)]
    runs = [p.finish(Fleet.RUN_TIMEOUT) for p in procs]

    for run in runs:
        run.check()
    (grant,) = fake_api.token_refreshes()
    assert grant.account == "alice"
    assert fake_api.invalid_grant_events() == []
    assert max(p.started_at for p in procs) < grant.received_at + delay
    access, refresh = fake_api.current_tokens("alice")
    for run in runs:
        calls = fake_api.messages_calls(session_id=run.session_id)
        assert calls and {c.token for c in calls} == {access}
    assert pair(fleet.profile_dir("alice") / CREDENTIALS) == (access, refresh)
    assert ours_in(fleet.profile_dir("alice")) == []


# ---------------------------------------------------------------- the round trip


def can_refresh(server: FakeAnthropicServer, refresh_token: str) -> bool:
    """Spend `refresh_token` at the fake's token endpoint: does it grant a new pair?"""
    body = json.dumps({"grant_type": "refresh_token", "refresh_token": refresh_token}).encode()
    request = urllib.request.Request(
        f"{server.base_url}/v1/oauth/token",
        data=body,
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return bool(json.loads(response.read()).get("refresh_token"))
    except urllib.error.HTTPError:
        return False


def doctor(fleet: Fleet) -> tuple[int, list[dict[str, str]]]:
    proc = fleet.cli("doctor", "--json", check=False)
    return proc.returncode, json.loads(proc.stdout)["checks"]


def test_enable_then_disable_round_trips_every_chain(
    onboarded: Fleet, fake_api: FakeAnthropicServer
) -> None:
    """Every slot not live goes into its profile and back; alice refreshes in between."""
    fleet, sandbox = onboarded, onboarded.sandbox
    settings = sandbox.settings_path.read_bytes()
    slot_bytes = {n: sandbox.slot_path(n).read_bytes() for n in ACCOUNTS}
    exit_before, checks_before = doctor(fleet)
    assert exit_before == 0 and {c["status"] for c in checks_before} == {"OK"}, checks_before

    report = enable(fleet)  # no slot named: every slot but the live one

    assert sorted(s["slot"] for s in report["slots"]) == ["alice", "bob"]
    for name in ("alice", "bob"):
        assert not os.path.lexists(sandbox.slot_path(name))
        assert_private_file(fleet.profile_dir(name) / CREDENTIALS)
        assert (fleet.profile_dir(name) / CREDENTIALS).read_bytes() == slot_bytes[name]
    fake_api.script_each_turn(end_turn("ok"))
    run = fleet.run("hi", profile="alice").check()
    assert [g.account for g in fake_api.token_refreshes()] == ["alice"]

    report = json.loads(fleet.cli("profile", "disable", "--json").stdout)

    assert sorted(s["slot"] for s in report["slots"]) == ["alice", "bob"]
    # every chain is back in its main-dir slot file, alice's rotated pair included
    assert pair(sandbox.slot_path("alice")) == fake_api.current_tokens("alice")
    for name in ("bob", "carol"):
        assert sandbox.slot_path(name).read_bytes() == slot_bytes[name]
    for name in ACCOUNTS:
        assert_private_file(sandbox.slot_path(name))
        assert not os.path.lexists(fleet.profile_dir(name) / CREDENTIALS)
    assert not os.path.lexists(fleet.profile_dir("bob"))  # nothing ran there: gone
    # alice's dir stays for Claude Code's own files (transcripts, sessions), with no token
    assert ours_in(fleet.profile_dir("alice")) == []
    kept = [p for p in fleet.profile_dir("alice").rglob("*") if p.is_file()]
    assert [p for p in kept if b"sk-ant-ort" in p.read_bytes()] == []
    assert sandbox.live_target() == f"{CREDENTIALS}.carol"
    assert sandbox.settings_path.read_bytes() == settings
    assert transcript(fleet, run.session_id).is_file()  # history stays where --resume looks
    exit_after, checks_after = doctor(fleet)
    assert exit_after == 0 and {c["status"] for c in checks_after} == {"OK"}, checks_after
    # no token lost: every slot's refresh token is its account's newest, and it still refreshes
    assert fake_api.invalid_grant_events() == []
    for name in ACCOUNTS:
        refresh = pair(sandbox.slot_path(name))[1]
        assert fake_api.owner_of(refresh) == name, fake_api.describe_token(refresh)
        assert can_refresh(fake_api, refresh), f"{name}: {fake_api.describe_token(refresh)}"
    assert fake_api.invalid_grant_events() == []


def test_disable_waits_for_a_session_mid_turn_in_the_profile(
    onboarded: Fleet, fake_api: FakeAnthropicServer
) -> None:
    """A credential never moves from under a running turn: refused, then done once it ends."""
    fleet = onboarded
    enable(fleet, "alice")
    profile = fleet.profile_dir("alice")
    fake_api.script_each_turn(bash("sleep 4"), end_turn("ok"))  # margin for a slow CLI
    proc = fleet.start("take a while", profile="alice")
    assert wait_for(lambda: bool(fake_api.messages_calls(session_id=proc.session_id)))
    before = tree(fleet.sandbox.home)

    refused = fleet.cli("profile", "disable", "alice", check=False)
    run = proc.finish(Fleet.RUN_TIMEOUT)

    assert refused.returncode == 1 and "mid-turn" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    moved = changed(before, tree(fleet.sandbox.home))
    assert f"{profile.relative_to(fleet.sandbox.home)}/{CREDENTIALS}" not in moved
    assert not os.path.lexists(fleet.sandbox.slot_path("alice"))
    run.check()
    fleet.cli("profile", "disable", "alice")
    assert pair(fleet.sandbox.slot_path("alice")) == fake_api.current_tokens("alice")
    assert fake_api.invalid_grant_events() == []


# ---------------------------------------------------------------- bad input


@pytest.fixture
def quiet_fleet(claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer) -> Fleet:
    """The same user, no Claude Code run needed: no proxy."""
    fleet = Fleet(claude_sandbox, fake_api)
    fleet.onboard(ACCOUNTS)
    return fleet


def plant_symlink(fleet: Fleet) -> list[str]:
    elsewhere = fleet.sandbox.home / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    fleet.profiles_dir.mkdir(mode=0o700)
    fleet.profile_dir("bob").symlink_to(elsewhere)
    return ["enable", "bob"]


def plant_loose_dir(fleet: Fleet) -> list[str]:
    fleet.profiles_dir.mkdir(mode=0o700)
    fleet.profile_dir("bob").mkdir()
    fleet.profile_dir("bob").chmod(0o777)
    return ["enable", "bob"]


def two_homes(action: str):  # type: ignore[no-untyped-def]
    """alice in her profile, and her slot file back in the main dir behind the live link."""

    def plant(fleet: Fleet) -> list[str]:
        enable(fleet, "alice")
        data = (fleet.profile_dir("alice") / CREDENTIALS).read_bytes()
        fd = os.open(fleet.sandbox.slot_path("alice"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        fleet.sandbox.link_live("alice")
        return [action, "alice"]

    return plant


@pytest.mark.parametrize(
    ("plant", "message"),
    [
        (lambda fleet: ["enable", "nosuch"], "no slot named nosuch"),
        (plant_symlink, "is a symlink"),
        (plant_loose_dir, "is writable by others (mode 0777"),
        (two_homes("enable"), "two homes"),
        (two_homes("disable"), "two homes"),
    ],
    ids=[
        "unknown-slot",
        "symlinked-profile",
        "profile-mode-0777",
        "two-homes-enable",
        "two-homes-disable",
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    quiet_fleet: Fleet, plant: Any, message: str
) -> None:
    fleet = quiet_fleet
    args = plant(fleet)
    before = tree(fleet.sandbox.home)
    events_before = fleet.events("profile-enable") + fleet.events("profile-disable")

    proc = fleet.cli("profile", *args, check=False)

    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert proc.stdout == ""
    assert changed(before, tree(fleet.sandbox.home)) == []
    assert fleet.events("profile-enable") + fleet.events("profile-disable") == events_before
