"""What a session inside a profile needs from us.

A session started with `CLAUDE_CONFIG_DIR=<profiles>/<slot>` runs the hooks of the shared
settings.json with that env (docs/facts.md fact 15), so our hooks see the profile as their
claude dir. There the credential is a regular file by design (fact 12): the slot's one home,
refreshed in place by Claude Code. Healing it as drift (relinking the live path to a slot file)
would replace the only copy of the slot's newest refresh token with a dangling link.

Its transcripts go to `P/projects`; only when that links to the main dir's does `--resume` find
them from another dir (fact 14), so the link must exist before the first session in P.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from .support.fake_api import FakeAnthropicServer
from .support.sandbox import Sandbox, hook_payload, tree

SLOTS = ("carol", "alice", "bob")  # carol live


@pytest.fixture
def sb(tmp_path: Path, fake_server: FakeAnthropicServer) -> Sandbox:
    sandbox = Sandbox(tmp_path, SLOTS, server=fake_server, usage=(20.0, 30.0))
    sandbox.run("profile", "enable", "alice", code=0)
    return sandbox


@pytest.mark.parametrize("event", ["SessionStart", "UserPromptSubmit", "Stop", "SessionEnd"])
def test_hooks_in_a_profile_leave_its_credential_and_the_main_dir_alone(
    sb: Sandbox, event: str
) -> None:
    profile = sb.home / ".claude-profiles" / "alice"
    credential = profile / ".credentials.json"
    data = credential.read_bytes()
    home_before = tree(sb.home)

    sb.hook(event, hook_payload(event), CLAUDE_CONFIG_DIR=str(profile))

    assert credential.is_file() and not credential.is_symlink()
    assert credential.read_bytes() == data
    assert tree(sb.home) == home_before


def test_enable_makes_the_main_projects_dir_so_transcripts_are_shared(
    tmp_path: Path, fake_server: FakeAnthropicServer
) -> None:
    sandbox = Sandbox(tmp_path, SLOTS, server=fake_server, usage=(20.0, 30.0))
    main = sandbox.claude / "projects"
    assert not main.exists()

    out = sandbox.run("profile", "enable", "alice", code=0).stdout

    link = sandbox.home / ".claude-profiles" / "alice" / "projects"
    assert link.is_symlink() and os.readlink(link) == str(main)
    assert main.is_dir() and stat.S_IMODE(main.stat().st_mode) == 0o700
    assert "projects" in out
    sandbox.run("profile", "disable", "alice", code=0)
    assert not os.path.lexists(link) and main.is_dir()
