"""Sandboxes: a throwaway HOME with real slot files and live link, a state dir, and the
environment our CLI and hooks run in. The one builder the tests share.

`Sandbox` is the common case (slots, env, our CLI and hooks as processes, the manager and slot
store in process); `Cli` keeps every output it saw, `GptmeSandbox` adds a gptme workspace, and
`ScriptSandbox` a usage script answering from a table the test writes.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from gptme_subscription_plugin.config import Config
from gptme_subscription_plugin.identity import IdentityResolver
from gptme_subscription_plugin.manager import SubscriptionManager
from gptme_subscription_plugin.slots import SlotStore
from gptme_subscription_plugin.state import StateStore
from gptme_subscription_plugin.turns import TurnRegistry

from .credentials import access_token, credential_bytes, link_live, write_slot
from .fake_api import FakeAnthropicServer
from .usage import DAY, H, make_usage_doc

UNREACHABLE = "http://127.0.0.1:9"  # a closed port on loopback: a poll there fails at once
# Credentials in the environment that would override the credential file.
OVERRIDING_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
DEFAULT_SLOTS = ("alice", "bob")


def run_ours(
    args: Sequence[str],
    env: Mapping[str, str],
    *,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    prefix: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """`python -m gptme_subscription_plugin ARGS` as a process (after `prefix`, e.g. setpriv),
    text mode, output captured, exit status not checked; no `stdin`: an empty one (never the
    test runner's, which may be a pipe that stays open)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "gptme_subscription_plugin", *args],
        env=dict(env),
        input=stdin if stdin is not None else "",
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def hook_payload(event: str, session: str = "s1", **extra: Any) -> dict[str, Any]:
    """The stdin JSON Claude Code gives a hook for `event` (its own fields in `extra`)."""
    return {
        "session_id": session,
        "hook_event_name": event,
        "cwd": "/tmp",
        "transcript_path": "/tmp/t.jsonl",
        **extra,
    }


def tree(root: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Every entry under `root` and `root` itself: mode and content (a link's target), to
    compare before and after."""
    out: dict[str, tuple[int, bytes | str | None]] = {}
    for path in sorted([root, *root.rglob("*")]):
        st = path.lstat()
        body: bytes | str | None = None
        if stat.S_ISLNK(st.st_mode):
            body = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            try:
                body = path.read_bytes()
            except OSError as exc:
                body = f"<unreadable: {exc.strerror}>"
        out[str(path.relative_to(root))] = (st.st_mode, body)
    return out


class Sandbox:
    """Slot files for `slots` (the first one live) in `root/home/.claude`, the state dir
    `root/state`, and `env`: what our CLI and hooks see (usage from `server`, or from
    `api_base`, else from a closed port)."""

    def __init__(
        self,
        root: Path,
        slots: Sequence[str] = DEFAULT_SLOTS,
        *,
        server: FakeAnthropicServer | None = None,
        api_base: str | None = None,
        expires_at: float | None = None,  # the slots' access tokens; default: in an hour
        usage: tuple[float, float] | None = None,  # (5-hour %, weekly %) of every slot
        five_hour_resets_in: float = H,  # set_usage's default
        poll_timeout: str | None = "2",
        lock_wait: str | None = "2",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.home = root / "home"
        self.claude = self.home / ".claude"
        self.state = root / "state"
        self.server = server
        self.api_base = api_base or (server.base_url if server is not None else UNREACHABLE)
        self.five_hour_resets_in = five_hour_resets_in
        self.env: dict[str, str] = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(root / "cfg"),
            "GPTME_SUBSCRIPTION_STATE_DIR": str(self.state),
            "GPTME_SUBSCRIPTION_API_BASE": self.api_base,
        }
        if poll_timeout is not None:
            self.env["GPTME_SUBSCRIPTION_POLL_TIMEOUT"] = poll_timeout
        if lock_wait is not None:
            self.env["GPTME_SUBSCRIPTION_LOCK_WAIT"] = lock_wait
        self.env.update(env or {})
        expiry = time.time() + 3600 if expires_at is None else expires_at
        for name in slots:
            write_slot(self.claude, name, credential_bytes(name, expires_at=expiry))
            if usage is not None:
                self.set_usage(name, *usage)
        if slots:
            link_live(self.claude, slots[0])

    # ------------------------------------------------------------ the outside world

    def set_usage(
        self,
        name: str,
        five: float | None,
        week: float | None,
        week_in: float = 3 * DAY,
        *,
        five_in: float | None = None,
        models: Mapping[str, float] | None = None,
        scoped: Mapping[str, float] | None = None,
        generation: int = 1,
    ) -> None:
        """What the usage endpoint answers for `name`'s token (percentages 0-100, resets
        from now; `models`: sonnet/opus weekly windows, `scoped`: limits[] entries)."""
        assert self.server is not None, "this sandbox has no fake API"
        models = dict(models or {})
        unknown = set(models) - {"sonnet", "opus"}
        assert not unknown, f"no named window for {sorted(unknown)}"
        doc = make_usage_doc(
            time.time(),
            five_hour=five,
            seven_day=week,
            five_hour_resets_in=self.five_hour_resets_in if five_in is None else five_in,
            seven_day_resets_in=week_in,
            sonnet=models.get("sonnet"),
            opus=models.get("opus"),
            scoped=scoped,
        )
        self.server.set_usage(access_token(name, generation), doc)

    def apply_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """This process sees only the sandbox (for in-process calls); undone after the test."""
        for key in list(os.environ):
            if key.startswith(("GPTME_SUBSCRIPTION_", "XDG_")) or key in OVERRIDING_ENV:
                monkeypatch.delenv(key, raising=False)
        monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
        for key, value in self.env.items():
            if key != "PATH":
                monkeypatch.setenv(key, value)

    # ------------------------------------------------------------ our code, as processes

    def run(
        self,
        *args: str,
        code: int | None = None,
        stdin: str | None = None,
        cwd: Path | None = None,
        timeout: float = 60,
        prefix: Sequence[str] = (),
        **env: str,
    ) -> subprocess.CompletedProcess[str]:
        """Our CLI with the sandbox's env (plus `env`); its exit status must be `code` when
        given."""
        proc = run_ours(
            args, {**self.env, **env}, stdin=stdin, cwd=cwd, timeout=timeout, prefix=prefix
        )
        if code is not None:
            assert proc.returncode == code, (proc.stdout, proc.stderr)
        return proc

    def hook(
        self, event: str, payload: Mapping[str, Any] | str | None = None, **env: str
    ) -> tuple[dict[str, Any] | None, str]:
        """One hook as Claude Code runs it: exit 0, no token in its output, stdout empty or
        one JSON object; (that object or None, stderr)."""
        stdin = payload if isinstance(payload, str) else json.dumps(payload or {})
        proc = self.run("hook", event, stdin=stdin, **env)
        assert proc.returncode == 0, proc.stderr
        assert "sk-ant" not in proc.stdout + proc.stderr
        out = proc.stdout.strip()
        if not out:
            return None, proc.stderr
        doc = json.loads(out)  # stdout is exactly one JSON object
        assert isinstance(doc, dict)
        return doc, proc.stderr

    # ------------------------------------------------------------ our code, in process

    def config(self, **overrides: Any) -> Config:
        """The core config of this sandbox (what the env above loads to, and `overrides`)."""
        paths: dict[str, Any] = {
            "claude_dir": self.claude,
            "state_dir": self.state,
            "home": self.home,
            "api_base": self.api_base,
        }
        return Config(**{**paths, **overrides})

    def manager(
        self, clock: Callable[[], float] = time.time, **overrides: Any
    ) -> SubscriptionManager:
        """The manager in process over this sandbox (`overrides` go to its config)."""
        return SubscriptionManager(self.config(**overrides), clock=clock)

    def slot_store(self, keep: int = 5, lock_wait: float = 2.0, clock: Any = None) -> SlotStore:
        """The slot store alone, its identity lookups against this sandbox's API."""
        self.home.mkdir(exist_ok=True)
        state = StateStore(self.state)
        return SlotStore(
            self.claude,
            state,
            self.home / ".claude.json",
            backup_keep=keep,
            lock_wait=lock_wait,
            clock=clock,
            resolver=IdentityResolver(state, self.api_base, 2.0, clock=clock or time.time),
        )

    # ------------------------------------------------------------ what is on disk

    def live(self) -> str | None:
        """The slot the live link names (None: not a link)."""
        target = self.live_link()
        return None if target is None else target.rsplit(".", 1)[1]

    def live_link(self) -> str | None:
        """The live link's target as written (None: not a link)."""
        path = self.claude / ".credentials.json"
        return os.readlink(path) if path.is_symlink() else None

    def rotation(self) -> dict[str, Any]:
        path = self.state / "rotation.json"
        doc = json.loads(path.read_text()) if path.exists() else {}
        assert isinstance(doc, dict)
        return doc

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The events log, oldest first (only those of `kind` when given)."""
        path = self.state / "events.jsonl"
        if not path.exists():
            return []
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        return [e for e in map(json.loads, lines) if kind is None or e["kind"] == kind]


class Cli(Sandbox):
    """Our CLI as a person runs it: a command must succeed unless told otherwise, and every
    output is kept so the test can check that none holds a token."""

    def __init__(self, root: Path, server: FakeAnthropicServer, **kw: Any) -> None:
        super().__init__(root, server=server, **kw)
        self.outputs: list[str] = []

    def run(  # type: ignore[override]
        self, *args: str, code: int | None = 0, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        proc = super().run(*args, code=code, **kw)
        self.outputs += [proc.stdout, proc.stderr]
        return proc

    def json(self, *args: str, code: int | None = 0) -> Any:
        return json.loads(self.run(*args, "--json", code=code).stdout)


class GptmeSandbox(Sandbox):
    """For the gptme plugin: a workspace `root/ws`, the XDG dirs gptme uses inside `root`,
    and any traffic beyond loopback sent to a closed port. Used in process (`apply_env`) by
    the unit tests and as a subprocess environment (`env`) by the end-to-end test."""

    def __init__(self, root: Path, server: FakeAnthropicServer) -> None:
        self.ws = root / "ws"
        self.ws.mkdir(parents=True)
        env = {
            "XDG_DATA_HOME": str(root / "data"),
            "XDG_STATE_HOME": str(root / "xdg-state"),
            "HTTP_PROXY": UNREACHABLE,
            "HTTPS_PROXY": UNREACHABLE,
            "NO_PROXY": "127.0.0.1,localhost",
        }
        super().__init__(root, server=server, env=env)
        self.set_usage("alice", five=10, week=30)
        self.set_usage("bob", five=5, week=20)

    def registry(self) -> TurnRegistry:
        return TurnRegistry(self.state)

    def entry(self, session_id: str) -> dict[str, Any] | None:
        path = self.registry().path_for(session_id)
        doc = json.loads(path.read_text()) if path.exists() else None
        assert doc is None or isinstance(doc, dict)
        return doc


# A stand-in for 0.1.0's check-claude-usage.sh: it starts `claude` from ~/.local/bin, which
# needs the onboarding flag of `.claude.json` (in $CLAUDE_CONFIG_DIR when set, else in HOME)
# and reads the credential of its config dir.
CLAUDE_LIKE = """
import json, os, sys
home = os.environ["HOME"]
if not os.access(os.path.join(home, ".local", "bin", "claude"), os.X_OK):
    print("claude: command not found", file=sys.stderr)
    sys.exit(127)
config_dir = os.environ.get("CLAUDE_CONFIG_DIR")
global_config = os.path.join(config_dir or home, ".claude.json")
try:
    with open(global_config) as fh:
        onboarded = json.load(fh).get("hasCompletedOnboarding") is True
except OSError:
    onboarded = False
if not onboarded:
    print("claude: onboarding has not been completed", file=sys.stderr)
    sys.exit(1)
credentials = os.path.join(config_dir or os.path.join(home, ".claude"), ".credentials.json")
"""
# A script that asks about the credential file the upstream contract names, nothing else.
PLAIN = """
import json, os, sys
home = os.environ["HOME"]
config_dir = os.environ.get("CLAUDE_CONFIG_DIR")
credentials = os.environ["CLAUDE_USAGE_CREDS_FILE"]
"""
# Both answer per account from a table the test writes (keyed by slot name, recovered from
# the synthetic token), and log each call.
ANSWER = """
with open(credentials) as fh:
    token = json.load(fh)["claudeAiOauth"]["accessToken"]
slot = token.split("-test-", 1)[1].rsplit("-access-", 1)[0]
with open(os.environ["GSP_TEST_LOG"], "a") as fh:
    fh.write(json.dumps({"slot": slot, "argv": sys.argv[1:], "home": home,
                         "config_dir": config_dir, "cwd": os.getcwd()}) + "\\n")
with open(os.environ["GSP_TEST_TABLE"]) as fh:
    answer = json.load(fh).get(slot)
if answer is None:
    print("claude: not logged in", file=sys.stderr)
    sys.exit(1)
print(json.dumps(answer))
"""


def script_answer(five: float, week: float, week_reset_in: float = 3 * DAY) -> dict[str, Any]:
    """One usage-script answer, 0.1.0's shape (0-1 fractions, seconds from now)."""

    def window(used: float, resets_in: float) -> dict[str, float]:
        return {"utilization": used, "resets_in_seconds": resets_in}

    return {"five_hour": window(five, 2 * H), "seven_day": window(week, week_reset_in)}


class ScriptSandbox(Sandbox):
    """A user's HOME with Claude Code set up (onboarded, `claude` on ~/.local/bin), slots,
    and a usage script answering from a table (`write_answers`) and logging each call."""

    def __init__(
        self,
        root: Path,
        server: FakeAnthropicServer,
        names: Sequence[str],
        claude_like: bool = False,
    ) -> None:
        self.log = root / "script-calls.jsonl"
        self.table = root / "script-answers.json"
        env = {"GSP_TEST_LOG": str(self.log), "GSP_TEST_TABLE": str(self.table)}
        super().__init__(root, names, server=server, expires_at=time.time() + 8 * H, env=env)
        (self.home / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True}))
        claude_bin = self.home / ".local" / "bin" / "claude"
        claude_bin.parent.mkdir(parents=True)
        claude_bin.write_text("#!/bin/sh\nexit 0\n")
        claude_bin.chmod(0o755)
        self.script = root / "check-claude-usage"
        body = (CLAUDE_LIKE if claude_like else PLAIN) + ANSWER
        self.script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
        self.script.chmod(0o755)
        self.answers: dict[str, dict[str, Any]] = {}
        self.write_answers()

    def write_answers(self, **answers: dict[str, Any] | None) -> None:
        for name, doc in answers.items():
            if doc is None:
                self.answers.pop(name, None)
            else:
                self.answers[name] = doc
        self.table.write_text(json.dumps(self.answers))

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def cli(self, *args: str, code: int | None = 0, script: bool = True) -> str:
        """Our CLI run from `root` (with the usage script unless `script` is False); its
        stdout, which must hold no token."""
        env = {"GPTME_SUBSCRIPTION_USAGE_SCRIPT": str(self.script)} if script else {}
        proc = self.run(*args, code=code, cwd=self.root, timeout=120, **env)
        assert "sk-ant" not in proc.stdout + proc.stderr
        return proc.stdout

    def line(self, out: str, slot: str) -> str:
        return next(line for line in out.splitlines() if line.startswith(f"{slot} "))

    def script_manager(self, order: list[str]) -> SubscriptionManager:
        """The manager in process, usage from the script, `order` as the fallback order."""
        return self.manager(
            usage_script=self.script,
            fallback_order=order,
            poll_interval=180,
            poll_timeout=5.0,
            lock_wait=2.0,
        )
