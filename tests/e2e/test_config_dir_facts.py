"""Pin docs/facts.md facts 11-15: what Claude Code does with `CLAUDE_CONFIG_DIR=P`.

A profile gives a slot its own config dir P, with everything but the credential and
`.claude.json` shared with the main dir by symlink. That is safe only if a process in P keeps
to P for what holds a token chain (locks, credential, `.claude.json`) and still finds the
shared parts (settings, hooks and the statusline; `projects/` for `--resume`). Each test runs
the real Claude Code (`claude -p`; for the statusline, interactive on a pty) with
`CLAUDE_CONFIG_DIR=P` in a sandbox HOME whose main dir is logged in as another account (bob),
so a read or write of the wrong dir shows up as the wrong token or a changed file.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from ..support.fake_api import FakeAnthropicServer, bash, end_turn
from .claude_harness import ClaudeRun, ClaudeSandbox, RefreshProxy, _write_private, lock_held_for

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 60.0


class Profile:
    """A config dir P for one account beside the sandbox's main `~/.claude` (bob's)."""

    def __init__(self, sandbox: ClaudeSandbox, server: FakeAnthropicServer, account: str) -> None:
        self.sandbox = sandbox
        self.server = server
        self.account = account
        self.dir = sandbox.root / "profiles" / account
        self.dir.mkdir(parents=True, mode=0o700)
        self.dir.chmod(0o700)

    @property
    def credentials(self) -> Path:
        return self.dir / ".credentials.json"

    @property
    def claude_json(self) -> Path:
        return self.dir / ".claude.json"

    @property
    def env(self) -> dict[str, str]:
        return {"CLAUDE_CONFIG_DIR": str(self.dir)}

    def write_claude_json(self, extra: dict[str, Any] | None = None) -> None:
        """`P/.claude.json` with onboarding done and the project trusted (no `oauthAccount`)."""
        doc: dict[str, Any] = {
            "hasCompletedOnboarding": True,
            "projects": {str(self.sandbox.project): {"hasTrustDialogAccepted": True}},
            **(extra or {}),
        }
        _write_private(self.claude_json, json.dumps(doc, indent=2) + "\n")

    def write_credential(self, path: Path | None = None) -> Path:
        """The account's newest pair as a 0600 file (at `P/.credentials.json` by default)."""
        path = path or self.credentials
        doc = self.server.credential_doc(self.account)
        _write_private(path, json.dumps(doc, indent=2) + "\n")
        return path

    def read_claude_json(self) -> dict[str, Any]:
        return dict(json.loads(self.claude_json.read_text()))

    def run(self, prompt: str, **kwargs: Any) -> ClaudeRun:
        return self.sandbox.run(prompt, timeout=RUN_TIMEOUT, env=self.env, **kwargs)


def snapshot(path: Path) -> tuple[bytes, int, int]:
    """Bytes, mtime and inode of a file: equal snapshots mean nobody touched it."""
    st = path.stat()
    return path.read_bytes(), st.st_mtime_ns, st.st_ino


@pytest.fixture
def main_dir(claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer) -> ClaudeSandbox:
    """The main dir as a user leaves it: logged in as bob (live file, `oauthAccount` bob)."""
    fake_api.add_account("alice")
    fake_api.add_account("bob")
    claude_sandbox.login_as("bob")
    return claude_sandbox


@pytest.fixture
def alice(main_dir: ClaudeSandbox, fake_api: FakeAnthropicServer) -> Profile:
    """Alice's profile: her credential, a seeded `.claude.json`, nothing shared yet."""
    profile = Profile(main_dir, fake_api, "alice")
    profile.write_credential()
    profile.write_claude_json()
    return profile


def expire_alice(profile: Profile, proxy: RefreshProxy) -> None:
    """Let alice's access token have expired, and route Claude Code so that it refreshes."""
    profile.server.expire("alice")
    profile.write_credential()
    profile.sandbox.use_proxy(proxy)


# ---------------------------------------------------------------- fact 11: locks


@pytest.mark.parametrize("lock", [".oauth_refresh.lock", "../alice.lock"])
def test_a_profile_refresh_waits_for_the_profile_locks(
    alice: Profile, fake_api: FakeAnthropicServer, refresh_proxy: RefreshProxy, lock: str
) -> None:
    """`P/.oauth_refresh.lock` and `P.lock` (beside P, not in HOME) guard a refresh in P."""
    expire_alice(alice, refresh_proxy)
    fake_api.script_each_turn(end_turn("ok"))
    with lock_held_for(alice.dir / lock) as released:
        alice.run("hi").check()

    (refresh,) = fake_api.token_refreshes()
    assert released and refresh.received_at >= released[0]
    assert refresh.account == "alice" and fake_api.invalid_grant_events() == []
    assert not (alice.dir / ".oauth_refresh.lock").exists()
    assert not (alice.dir.parent / "alice.lock").exists()


def test_a_profile_writes_the_rotated_pair_under_its_storage_write_lock(
    alice: Profile, fake_api: FakeAnthropicServer, refresh_proxy: RefreshProxy
) -> None:
    """`P/.storage-write.lock` guards the write of P/.credentials.json itself."""
    expire_alice(alice, refresh_proxy)
    fake_api.script_each_turn(bash("echo hi"), end_turn("ok"))
    with lock_held_for(alice.dir / ".storage-write.lock") as released:
        alice.run("say hi").check()

    assert released and alice.credentials.stat().st_mtime >= released[0]
    assert (
        alice.sandbox.read_credentials(alice.credentials)["refreshToken"]
        == (fake_api.current_tokens("alice")[1])
    )
    assert len(fake_api.token_refreshes()) == 1 and fake_api.invalid_grant_events() == []


def test_the_main_dir_locks_do_not_hold_up_a_profile_refresh(
    alice: Profile, fake_api: FakeAnthropicServer, refresh_proxy: RefreshProxy
) -> None:
    """Every lock of the main dir held for the whole run: the profile refreshes regardless."""
    expire_alice(alice, refresh_proxy)
    fake_api.script_each_turn(end_turn("ok"))
    home, main = alice.sandbox.home, alice.sandbox.claude_dir
    held = [
        main / ".oauth_refresh.lock",
        home / ".claude.lock",
        main / ".storage-write.lock",
        home / ".claude.json.lock",
        main / ".claude.json.lock",
    ]
    for path in held:
        path.mkdir()

    alice.run("hi").check()

    (refresh,) = fake_api.token_refreshes()
    assert refresh.account == "alice"
    assert (
        alice.sandbox.read_credentials(alice.credentials)["refreshToken"]
        == (fake_api.current_tokens("alice")[1])
    )
    assert all(path.is_dir() for path in held)


# ---------------------------------------------------------------- fact 12: the credential


@pytest.mark.parametrize("shape", ["file", "symlink"])
def test_a_profile_reads_and_rotates_only_its_own_credential(
    alice: Profile, fake_api: FakeAnthropicServer, refresh_proxy: RefreshProxy, shape: str
) -> None:
    """P/.credentials.json is read and replaced (a new inode, a link too); ~/.claude's stays."""
    expire_alice(alice, refresh_proxy)
    spent_refresh = fake_api.current_tokens("alice")[1]
    elsewhere = alice.dir.parent / "alice.slot.json"
    if shape == "symlink":
        alice.write_credential(elsewhere)
        alice.credentials.unlink()
        alice.credentials.symlink_to(elsewhere)
    before_ino = alice.credentials.stat().st_ino
    main_before = snapshot(alice.sandbox.live)
    fake_api.script_each_turn(bash("echo hi"), end_turn("ok"))

    alice.run("say hi").check()

    access, refresh = fake_api.current_tokens("alice")
    (grant,) = fake_api.token_refreshes()
    assert grant.old_refresh_token == spent_refresh and grant.account == "alice"
    assert [c.token for c in fake_api.messages_calls()] == [access, access]
    assert fake_api.invalid_grant_events() == []
    # The rotated pair lands in P as a regular 0600 file that replaced the old one.
    cred = alice.credentials
    assert cred.is_file() and not cred.is_symlink()
    assert cred.stat().st_mode & 0o777 == 0o600
    assert cred.stat().st_ino != before_ino
    assert alice.sandbox.read_credentials(cred)["refreshToken"] == refresh
    if shape == "symlink":  # the link target keeps the spent token: the drift of fact 5
        assert alice.sandbox.read_credentials(elsewhere)["refreshToken"] == spent_refresh
    # The main dir's credential (bob's) is neither read for a request nor written.
    assert snapshot(alice.sandbox.live) == main_before
    assert fake_api.messages_calls(token=fake_api.current_tokens("bob")[0]) == []


# ---------------------------------------------------------------- fact 13: .claude.json


def test_a_profile_reads_and_writes_its_own_claude_json(
    alice: Profile, fake_api: FakeAnthropicServer, refresh_proxy: RefreshProxy
) -> None:
    """P/.claude.json (not ~/.claude.json) holds MCP servers and gets alice's `oauthAccount`."""
    sandbox = alice.sandbox
    started = sandbox.root / "mcp-started"
    started.mkdir()

    def mcp(name: str) -> dict[str, Any]:
        script = sandbox.write_script(f"mcp-{name}", f'touch "{started}/{name}"\n')
        return {name: {"type": "stdio", "command": str(script)}}

    alice.write_claude_json({"mcpServers": mcp("profile")})
    main_doc = sandbox.read_claude_json()
    main_doc["mcpServers"] = mcp("main")
    _write_private(sandbox.claude_json, json.dumps(main_doc, indent=2) + "\n")
    main_before = snapshot(sandbox.claude_json)
    expire_alice(alice, refresh_proxy)
    # A tool call gives the asynchronous `oauthAccount` write (after the profile fetch) time
    # to land before a one-answer `-p` run exits.
    fake_api.script_each_turn(bash("echo hi"), end_turn("ok"))

    alice.run("say hi").check()

    assert sorted(p.name for p in started.iterdir()) == ["profile"]
    doc = alice.read_claude_json()
    account = doc["oauthAccount"]
    assert account["emailAddress"] == "alice@example.invalid"
    assert account["accountUuid"] == fake_api.account("alice").account_uuid
    assert doc["hasCompletedOnboarding"] is True and doc["userID"]
    assert doc["mcpServers"] == mcp("profile")
    assert snapshot(sandbox.claude_json) == main_before
    assert not (sandbox.home / ".claude.json.lock").exists()


def test_a_profile_without_claude_json_does_not_fall_back_to_the_main_one(
    alice: Profile, fake_api: FakeAnthropicServer
) -> None:
    """With no P/.claude.json, `-p` still runs and starts a fresh one; ~/.claude.json stays."""
    alice.claude_json.unlink()
    main_before = snapshot(alice.sandbox.claude_json)
    fake_api.script_each_turn(end_turn("ok"))

    alice.run("hi").check()

    assert snapshot(alice.sandbox.claude_json) == main_before
    doc = alice.read_claude_json()
    assert doc["userID"] and doc["firstStartTime"]
    # nothing of the main one was copied: no onboarding flag, no trusted projects, no account
    assert not {"hasCompletedOnboarding", "projects", "oauthAccount"} & set(doc)
    assert alice.claude_json.stat().st_mode & 0o777 == 0o600


# ---------------------------------------------------------------- fact 14: --resume


def start_in_main_dir(sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer) -> ClaudeRun:
    """A first turn in the main dir (bob): its transcript lands in ~/.claude/projects."""
    fake_api.script_each_turn(end_turn("noted"))
    run = sandbox.run("remember PINEAPPLE-42", timeout=RUN_TIMEOUT).check()
    transcripts = list((sandbox.claude_dir / "projects").glob(f"*/{run.session_id}.jsonl"))
    assert len(transcripts) == 1
    return run


def test_resume_in_a_profile_does_not_find_a_main_dir_session(
    alice: Profile, fake_api: FakeAnthropicServer
) -> None:
    first = start_in_main_dir(alice.sandbox, fake_api)
    fake_api.reset_requests()

    run = alice.run("what did I ask?", extra_args=["--resume", first.session_id])

    assert run.returncode == 1
    assert f"No conversation found with session ID: {first.session_id}" in run.stderr
    assert fake_api.messages_calls() == []
    assert not list((alice.dir / "projects").glob(f"*/{first.session_id}.jsonl"))


def test_resume_in_a_profile_finds_a_main_dir_session_through_a_projects_symlink(
    alice: Profile, fake_api: FakeAnthropicServer
) -> None:
    first = start_in_main_dir(alice.sandbox, fake_api)
    main_projects = alice.sandbox.claude_dir / "projects"
    (alice.dir / "projects").symlink_to(main_projects)
    fake_api.reset_requests()
    fake_api.script_each_turn(end_turn("you said pineapple"))

    run = alice.run("what did I ask?", extra_args=["--resume", first.session_id]).check()

    assert run.result["session_id"] == first.session_id
    (call,) = fake_api.messages_calls()
    assert call.mentions("PINEAPPLE-42") and call.mentions("what did I ask?")
    assert call.token == fake_api.current_tokens("alice")[0]
    (transcript,) = main_projects.glob(f"*/{first.session_id}.jsonl")
    assert "what did I ask?" in transcript.read_text()
    assert (alice.dir / "projects").is_symlink()


# ---------------------------------------------------------------- fact 15: shared settings


def test_hooks_from_a_symlinked_settings_json_run_and_see_the_config_dir(
    alice: Profile, fake_api: FakeAnthropicServer
) -> None:
    sandbox = alice.sandbox
    out = sandbox.root / "hook-env"
    out.mkdir()
    dump = sandbox.write_script(
        "dump-env", f'cat > "{out}/$1.json"; env > "{out}/$1.env"; echo SL\n'
    )
    for event in ("SessionStart", "UserPromptSubmit", "PreToolUse", "Stop", "SessionEnd"):
        sandbox.add_hook(event, f"{dump} {event}")
    settings = sandbox.read_settings()
    settings["statusLine"] = {"type": "command", "command": f"{dump} statusLine"}
    sandbox.write_settings(settings)
    (alice.dir / "settings.json").symlink_to(sandbox.settings_path)
    settings_before = snapshot(sandbox.settings_path)
    fake_api.script_each_turn(bash("echo hi"), end_turn("ok"))

    run = alice.run("say hi").check()

    ran = sorted(p.stem for p in out.glob("*.env"))
    # every hook ran; the statusline is a part of the interactive screen and never runs in -p
    assert ran == sorted(["PreToolUse", "SessionEnd", "SessionStart", "Stop", "UserPromptSubmit"])
    for event in ran:
        env = dict(
            line.split("=", 1)
            for line in (out / f"{event}.env").read_text().splitlines()
            if "=" in line
        )
        assert env["CLAUDE_CONFIG_DIR"] == str(alice.dir)
        doc = json.loads((out / f"{event}.json").read_text())
        assert doc["session_id"] == run.session_id
        assert Path(doc["transcript_path"]).parent.parent == alice.dir / "projects"
    assert (alice.dir / "settings.json").is_symlink()
    assert snapshot(sandbox.settings_path) == settings_before


def test_hooks_of_a_main_dir_session_see_no_config_dir(
    main_dir: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    """Without CLAUDE_CONFIG_DIR, Claude Code does not set one for its hooks."""
    out = main_dir.root / "hook-env"
    out.mkdir()
    dump = main_dir.write_script("dump-env", f'cat >/dev/null; env > "{out}/$1.env"\n')
    main_dir.add_hook("SessionStart", f"{dump} SessionStart")
    fake_api.script_each_turn(end_turn("ok"))

    main_dir.run("hi", timeout=RUN_TIMEOUT).check()

    env = (out / "SessionStart.env").read_text().splitlines()
    assert not [line for line in env if line.startswith("CLAUDE_CONFIG_DIR=")]


def test_the_statusline_from_a_symlinked_settings_json_runs_in_an_interactive_profile_session(
    alice: Profile, fake_api: FakeAnthropicServer
) -> None:
    """The statusline needs the interactive screen: Claude Code on a pty, killed once it ran."""
    sandbox = alice.sandbox
    out = sandbox.root / "statusline"
    out.mkdir()
    script = sandbox.write_script(
        "statusline", f'cat > "{out}/stdin.json"; env > "{out}/env"; echo STATUS-MARK\n'
    )
    sandbox.write_settings({"statusLine": {"type": "command", "command": str(script)}})
    (alice.dir / "settings.json").symlink_to(sandbox.settings_path)
    env = sandbox.env({**alice.env, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"})

    screen = run_on_a_pty(sandbox, env, until=out / "env", timeout=RUN_TIMEOUT)

    assert (out / "env").exists(), screen[-2000:]
    assert f"CLAUDE_CONFIG_DIR={alice.dir}" in (out / "env").read_text().splitlines()
    doc = json.loads((out / "stdin.json").read_text())
    assert Path(doc["transcript_path"]).parent.parent == alice.dir / "projects"
    assert (alice.dir / "settings.json").is_symlink()


def run_on_a_pty(sandbox: ClaudeSandbox, env: dict[str, str], until: Path, timeout: float) -> str:
    """Start interactive `claude` in the project on a pty; kill it once `until` exists.

    Returns what it drew. The child carries the sandbox's marker, so `close()` reaps anything
    it left behind.
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child: become Claude Code
        os.chdir(sandbox.project)
        os.execve(sandbox.claude_bin, [sandbox.claude_bin], env)
    screen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until.exists():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    screen += os.read(fd, 65536)
                except OSError:  # the child is gone
                    break
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    return screen.decode(errors="replace")
