"""`profile enable` / `profile disable` on real files, symlinks and locks: one home per chain.

Claude Code in a profile is played by an atomic rewrite of `<profile>/.credentials.json` with
the next generation of the slot's tokens (fact 12: a temp file renamed over the regular file).
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from gptme_subscription_plugin import fsutil
from gptme_subscription_plugin.credentials import load_credential
from gptme_subscription_plugin.profiles import ProfileError, Profiles, seed_global_config
from gptme_subscription_plugin.turns import TurnRegistry

from .support.credentials import credential_bytes, refresh_token, write_slot
from .support.sandbox import Sandbox, tree

SLOTS = ("alice", "bob", "carol")
MAIN_CLAUDE_JSON = {
    "hasCompletedOnboarding": True,
    "lastOnboardingVersion": "2.1.330",
    "oauthAccount": {"accountUuid": "uuid-alice", "emailAddress": "alice@example.com"},
    "mcpServers": {"tools": {"command": "tools-server"}},
    "projects": {
        "/work/repo": {"hasTrustDialogAccepted": True, "history": [{"display": "hi"}]},
        "/work/other": {"history": []},
    },
    "userID": "u-1",
}


@pytest.fixture
def sb(tmp_path: Path) -> Sandbox:
    """Three slots (alice live), shared settings, CLAUDE.md, commands and projects in the
    main dir, and a main `.claude.json` with an account, trust and an MCP server."""
    sandbox = Sandbox(tmp_path, SLOTS, lock_wait="1")
    (sandbox.claude / "settings.json").write_text('{"hooks": {"Stop": []}}\n')
    (sandbox.claude / "CLAUDE.md").write_text("be brief\n")
    (sandbox.claude / "commands").mkdir()
    (sandbox.claude / "projects").mkdir()
    fsutil.atomic_write_text(sandbox.home / ".claude.json", json.dumps(MAIN_CLAUDE_JSON))
    sandbox.run("slot", "list", code=0)  # the state dir settles before any snapshot
    return sandbox


def profiles_dir(sb: Sandbox) -> Path:
    return sb.home / ".claude-profiles"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def claude_code_refreshes_in(profile: Path, name: str, generation: int) -> None:
    fsutil.atomic_write_bytes(profile / ".credentials.json", credential_bytes(name, generation))


def refresh_of(path: Path) -> str | None:
    return load_credential(path).refresh_token


def refused(sb: Sandbox, *args: str) -> str:
    """A refusal: exit 1, nothing on stdout, one line on stderr, and nothing changed."""
    before = tree(sb.root)
    proc = sb.run(*args, code=1)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "sk-ant" not in proc.stderr
    assert tree(sb.root) == before
    return lines[0]


# ---------------------------------------------------------------- the round trip


def test_enable_then_disable_round_trips_every_refresh_token(sb: Sandbox) -> None:
    settings = (sb.claude / "settings.json").read_bytes()
    main_json = (sb.home / ".claude.json").read_bytes()

    sb.run("profile", "enable", "bob", "carol", code=0)

    root = profiles_dir(sb)
    assert mode(root) == 0o700
    for name in ("bob", "carol"):
        profile = root / name
        cred = profile / ".credentials.json"
        assert mode(profile) == 0o700
        assert stat.S_ISREG(cred.lstat().st_mode) and cred.lstat().st_nlink == 1
        assert mode(cred) == 0o600
        assert refresh_of(cred) == refresh_token(name, 1)
        assert not os.path.lexists(sb.claude / f".credentials.json.{name}")  # one home
        for entry in ("settings.json", "CLAUDE.md", "commands", "projects"):
            assert os.readlink(profile / entry) == str(sb.claude / entry)
        for entry in ("agents", "skills", "plugins"):  # not in the main dir: not linked
            assert not os.path.lexists(profile / entry)
        seeded = profile / ".claude.json"
        assert mode(seeded) == 0o600
        assert json.loads(seeded.read_text()) == {
            "hasCompletedOnboarding": True,
            "lastOnboardingVersion": "2.1.330",
            "mcpServers": {"tools": {"command": "tools-server"}},
            "projects": {"/work/repo": {"hasTrustDialogAccepted": True}},
        }
    assert sb.live() == "alice"

    # Claude Code in bob's profile refreshes in place: the profile's file is the newest pair
    claude_code_refreshes_in(root / "bob", "bob", 2)
    sb.run("profile", "disable", "bob", "carol", code=0)

    assert refresh_of(sb.claude / ".credentials.json.bob") == refresh_token("bob", 2)
    assert refresh_of(sb.claude / ".credentials.json.carol") == refresh_token("carol", 1)
    assert refresh_of(sb.claude / ".credentials.json.alice") == refresh_token("alice", 1)
    for name in SLOTS:
        assert mode(sb.claude / f".credentials.json.{name}") == 0o600
    assert not (root / "bob").exists() and not (root / "carol").exists()
    assert not (root / "bob.lock").exists()
    assert (sb.claude / "settings.json").read_bytes() == settings
    assert (sb.home / ".claude.json").read_bytes() == main_json
    assert (sb.claude / "commands").is_dir() and not (sb.claude / "commands").is_symlink()
    assert sb.live() == "alice"
    kinds = [(e["kind"], e["slot"]) for e in sb.events() if e["kind"].startswith("profile-")]
    assert kinds == [
        ("profile-enable", "bob"),
        ("profile-enable", "carol"),
        ("profile-disable", "bob"),
        ("profile-disable", "carol"),
    ]
    assert "sk-ant" not in (sb.state / "events.jsonl").read_text()


def test_enable_without_a_slot_takes_every_slot_but_the_live_one(sb: Sandbox) -> None:
    doc = json.loads(sb.run("profile", "enable", "--json", code=0).stdout)

    assert [s["slot"] for s in doc["slots"]] == ["bob", "carol"]
    doc = json.loads(sb.run("profile", "disable", "--json", code=0).stdout)
    assert [s["slot"] for s in doc["slots"]] == ["bob", "carol"]
    assert sorted(p.name for p in profiles_dir(sb).iterdir()) == []


# ---------------------------------------------------------------- refusals


def test_enable_refuses_the_live_slot(sb: Sandbox) -> None:
    assert "alice is live" in refused(sb, "profile", "enable", "alice")


def test_enable_refuses_an_unknown_slot_and_moves_no_other(sb: Sandbox) -> None:
    assert "no slot named nosuch" in refused(sb, "profile", "enable", "bob", "nosuch")


@pytest.mark.planted_files
def test_enable_refuses_a_profile_dir_that_is_not_ours(sb: Sandbox) -> None:
    profile = profiles_dir(sb) / "bob"
    fsutil.ensure_private_dir(profile)
    profile.chmod(0o777)  # anyone could have planted files in it

    assert "writable by others" in refused(sb, "profile", "enable", "bob")


def test_enable_refuses_a_profile_dir_that_is_a_symlink(sb: Sandbox) -> None:
    fsutil.ensure_private_dir(profiles_dir(sb))
    elsewhere = sb.root / "elsewhere"
    fsutil.ensure_private_dir(elsewhere)
    (profiles_dir(sb) / "bob").symlink_to(elsewhere)

    assert "symlink" in refused(sb, "profile", "enable", "bob")


def test_a_slot_with_two_homes_is_refused_both_ways(sb: Sandbox) -> None:
    sb.run("profile", "enable", "bob", code=0)
    write_slot(sb.claude, "bob", credential_bytes("bob", 3))  # a second home appears

    assert "two homes" in refused(sb, "profile", "enable", "bob")
    assert "two homes" in refused(sb, "profile", "disable", "bob")


def test_disable_refuses_a_slot_that_is_not_in_a_profile(sb: Sandbox) -> None:
    assert "not in a profile" in refused(sb, "profile", "disable", "bob")


def test_a_session_mid_turn_refuses_enable_and_disable(sb: Sandbox) -> None:
    sb.run("profile", "enable", "carol", code=0)
    TurnRegistry(sb.state).mark_busy("worker-1", time.time())

    assert "mid-turn" in refused(sb, "profile", "enable", "bob")
    assert "mid-turn" in refused(sb, "profile", "disable", "carol")


# ---------------------------------------------------------------- locks


def test_a_held_profile_lock_makes_enable_wait_then_fail_with_nothing_changed(
    sb: Sandbox,
) -> None:
    fsutil.ensure_private_dir(profiles_dir(sb))
    held = profiles_dir(sb) / "bob.lock"  # Claude Code in bob's profile is refreshing (fact 11)
    held.mkdir(mode=0o700)
    before = tree(sb.root)

    started = time.monotonic()
    proc = sb.run("profile", "enable", "bob", code=3)
    waited = time.monotonic() - started

    assert waited >= 1.0  # lock_wait is 1 s in this sandbox
    assert waited < 1.0 + 15.0  # and then it gave up (bound: interpreter start-up on a busy CI)
    assert str(held) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert tree(sb.root) == before
    assert refresh_of(sb.claude / ".credentials.json.bob") == refresh_token("bob", 1)

    held.rmdir()
    sb.run("profile", "enable", "bob", code=0)
    assert refresh_of(profiles_dir(sb) / "bob" / ".credentials.json") == refresh_token("bob", 1)


def test_a_held_main_lock_makes_enable_wait_too(sb: Sandbox) -> None:
    held = sb.claude / ".oauth_refresh.lock"
    held.mkdir(mode=0o700)
    before = tree(sb.root)

    sb.run("profile", "enable", "bob", code=3)

    assert tree(sb.root) == before


# ---------------------------------------------------------------- --dry-run and --json


def test_dry_run_changes_nothing_and_says_what_it_would_do(sb: Sandbox) -> None:
    before = tree(sb.root)
    doc = json.loads(sb.run("profile", "enable", "bob", "--dry-run", "--json", code=0).stdout)

    assert tree(sb.root) == before
    assert doc["dry_run"] is True
    [change] = doc["slots"]
    assert change["action"] == "would-enable"
    assert change["linked"] == ["settings.json", "CLAUDE.md", "commands", "projects"]

    sb.run("profile", "enable", "bob", code=0)
    before = tree(sb.root)
    out = sb.run("profile", "disable", "bob", "--dry-run", code=0).stdout
    assert tree(sb.root) == before
    assert "would disable bob" in out and "nothing changed" in out


def test_json_shape(sb: Sandbox) -> None:
    doc: dict[str, Any] = json.loads(sb.run("profile", "enable", "bob", "--json", code=0).stdout)

    assert set(doc) == {"action", "dry_run", "profiles_dir", "slots"}
    assert doc["action"] == "enable" and doc["dry_run"] is False
    assert doc["profiles_dir"] == str(profiles_dir(sb))
    [change] = doc["slots"]
    assert set(change) == {
        "slot",
        "action",
        "profile",
        "refresh_fingerprint",
        "linked",
        "removed",
        "seeded",
        "notes",
    }
    assert change["action"] == "enabled" and change["seeded"] is True
    assert change["profile"] == str(profiles_dir(sb) / "bob")
    assert (
        change["refresh_fingerprint"]
        == load_credential(profiles_dir(sb) / "bob" / ".credentials.json").refresh_fingerprint
    )
    assert "sk-ant" not in json.dumps(doc)


def test_the_profiles_dir_setting_is_honoured(sb: Sandbox) -> None:
    elsewhere = sb.root / "my-profiles"
    sb.run("profile", "enable", "bob", code=0, GPTME_SUBSCRIPTION_PROFILES_DIR=str(elsewhere))

    assert (elsewhere / "bob" / ".credentials.json").is_file()
    assert not profiles_dir(sb).exists()


# ---------------------------------------------------------------- in process


def test_home_of_names_each_home(sb: Sandbox) -> None:
    m = sb.manager()
    profiles = Profiles(m.slots, m.busy_sessions)
    profiles.enable(["bob"])

    assert profiles.home_of("alice") == "link"
    assert profiles.home_of("bob") == "profile"
    assert profiles.home_of("nosuch") is None
    write_slot(sb.claude, "bob", credential_bytes("bob", 2))
    assert profiles.home_of("bob") == "ambiguous"
    with pytest.raises(ProfileError, match="two homes"):
        profiles.disable(["bob"])


def test_a_profile_that_kept_its_own_files_is_kept_with_a_note(sb: Sandbox) -> None:
    m = sb.manager()
    profiles = Profiles(m.slots, m.busy_sessions)
    profiles.enable(["bob"])
    profile = profiles.profile_dir("bob")
    (profile / "backups").mkdir(mode=0o700)  # Claude Code's own, made while a session ran there

    [change] = profiles.disable(["bob"])

    assert refresh_of(sb.claude / ".credentials.json.bob") == refresh_token("bob", 1)
    assert sorted(p.name for p in profile.iterdir()) == ["backups"]
    assert change.notes and "backups" in change.notes[0]


def test_the_seed_never_carries_the_account() -> None:
    assert "oauthAccount" not in seed_global_config(MAIN_CLAUDE_JSON)
    assert "userID" not in seed_global_config(MAIN_CLAUDE_JSON)
    assert seed_global_config({}) == {}
