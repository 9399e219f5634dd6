"""Run the real Claude Code CLI headless against the fake Anthropic API on loopback.

    sandbox = ClaudeSandbox(tmp_path, fake_api, claude_bin)
    sandbox.write_slot("a", access_token="tok-a")
    sandbox.link_live("a")
    sandbox.add_hook("SessionStart", "cat > $HOME/start.json")
    fake_api.script_each_turn(bash("echo hi"), end_turn("ok"))
    run = sandbox.run("say hi").check()
    assert {c.token for c in fake_api.messages_calls()} == {"tok-a"}

Everything stays on this machine. Claude Code gets a temp HOME (`.claude/` 0700, onboarding
done, the project trusted), a clean environment (never ANTHROPIC_API_KEY), and either

- `ANTHROPIC_BASE_URL=<fake API>`, with `HTTPS_PROXY` pointing at the fake API too: it refuses
  CONNECT, so any stray HTTPS request is answered on loopback (and recorded) instead of
  resolving a public name; or
- `HTTPS_PROXY=<RefreshProxy>` and `NODE_EXTRA_CA_CERTS=<its CA>`, no base URL: the real
  hostnames (api.anthropic.com, platform.claude.com) are intercepted by a local mitmdump that
  forwards every request to the fake API and never connects anywhere else. Only this path
  makes Claude Code refresh an expired token (DESIGN.md facts 5, 6).

Every process a sandbox starts carries a marker variable; `close()` and timeouts kill every
process that has it (Claude Code, its hooks, the Bash tool's children), by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..support.fake_api import FakeAnthropicServer, make_usage_doc

PINNED_CLAUDE_CODE_VERSION = "2.1.330"
VERSION_ENV = "CLAUDE_CODE_VERSION"  # the same variable scripts/install-claude-code.sh reads
_VERSION = re.compile(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?")


def claude_code_version(env: Mapping[str, str] = os.environ) -> str:
    """The Claude Code version the e2e suite runs: `$CLAUDE_CODE_VERSION`, else the pinned one.

    CI runs the suite twice: on the pinned version, then on the newest release on the npm
    registry (.ci/run resolves it with `npm view`), so a change in Claude Code shows up here.
    """
    value = env.get(VERSION_ENV, "").strip() or PINNED_CLAUDE_CODE_VERSION
    if not _VERSION.fullmatch(value):
        raise ValueError(f"{VERSION_ENV}={value!r} is not a version like 2.1.330")
    return value


REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-claude-code.sh"
ADDON = Path(__file__).with_name("refresh_proxy_addon.py")
MARKER_VAR = "GPTME_SUBSCRIPTION_E2E_SANDBOX"
DEFAULT_TIMEOUT = 45.0
HOUR_MS = 3600 * 1000

# What keeps `claude -p` offline, quiet and fast (measured on 2.1.330): no autoupdater, no
# telemetry / error reporting / feature-flag fetches. Even so it still opens one HTTPS
# connection to api.anthropic.com at startup; the proxy settings below catch that.
OFFLINE_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "ENABLE_CLAUDEAI_MCP_SERVERS": "false",  # else it fetches api.anthropic.com/v1/mcp_servers
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
# Never passed on, whatever the caller's environment holds: they outrank the slot files.
CREDENTIAL_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_REFRESH_TOKEN",
)


def install_claude_code(version: str | None = None, timeout: float = 600.0) -> Path:
    """Run scripts/install-claude-code.sh (idempotent) for `version`; return `claude`."""
    version = version or claude_code_version()
    proc = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, VERSION_ENV: version},
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"installing Claude Code {version} failed (exit {proc.returncode}):\n"
            f"{proc.stderr[-4000:]}"
        )
    path = Path(lines[-1])
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"install script printed {path}, which is not an executable")
    return path


# ---------------------------------------------------------------- processes


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _descendants(pid: int) -> list[int]:
    children = _children_map()
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _marked_processes(marker: str) -> list[int]:
    """Pids whose environment carries MARKER_VAR=marker (our processes, and only ours)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def _kill(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class ClaudeRun:
    """How one `claude -p` ended."""

    argv: list[str]
    session_id: str
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    started_at: float
    duration: float
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every JSON object line of stdout (`--output-format stream-json`: one per event)."""
        docs = []
        for line in self.stdout.splitlines():
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict):
                    docs.append(doc)
        return docs

    @property
    def result(self) -> dict[str, Any]:
        """The final `result` document (`json` output, or the last `stream-json` event)."""
        events = self.events
        if not events:
            raise AssertionError(f"no JSON result on stdout:\n{self.describe()}")
        return events[-1]

    def describe(self) -> str:
        state = "timed out" if self.timed_out else f"exit {self.returncode}"
        return (
            f"claude ({state}, {self.duration:.1f} s, session {self.session_id})\n"
            f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"
        )

    def check(self) -> ClaudeRun:
        """Raise AssertionError (with its output) unless it exited 0 with a non-error result."""
        if not self.ok:
            raise AssertionError(self.describe())
        if self.result.get("is_error"):
            raise AssertionError(f"claude reported an error:\n{self.describe()}")
        return self


class ClaudeProcess(subprocess.Popen[bytes]):
    """A running `claude -p` (a Popen); `finish()` waits, bounded, and returns a ClaudeRun."""

    def __init__(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        session_id: str,
        log_stem: Path,
        marker: str,
    ) -> None:
        self.argv = argv
        self.session_id = session_id
        self.marker = marker
        self.stdout_path = log_stem.with_suffix(".out")
        self.stderr_path = log_stem.with_suffix(".err")
        self.started_at = time.time()
        self._started = time.monotonic()
        # Files, not pipes: concurrent sessions can never block on a full pipe.
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            super().__init__(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def kill_tree(self) -> None:
        """SIGKILL Claude Code and everything it started (hooks, tools), by pid."""
        tree = _descendants(self.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        _kill([self.pid, *tree])

    def finish(self, timeout: float = DEFAULT_TIMEOUT) -> ClaudeRun:
        """Wait at most `timeout` s from the start; past that kill the tree (timed_out)."""
        remaining = max(0.0, timeout - (time.monotonic() - self._started))
        timed_out = False
        try:
            self.wait(remaining)
        except subprocess.TimeoutExpired:
            timed_out = True
            self.kill_tree()
            self.wait(10)
        return ClaudeRun(
            argv=self.argv,
            session_id=self.session_id,
            returncode=None if timed_out else self.returncode,
            stdout=self.stdout_path.read_text(errors="replace"),
            stderr=self.stderr_path.read_text(errors="replace"),
            started_at=self.started_at,
            duration=time.monotonic() - self._started,
            timed_out=timed_out,
        )


# ---------------------------------------------------------------- the sandbox


class ClaudeSandbox:
    """A temp HOME for Claude Code plus helpers for slots, settings and runs."""

    def __init__(
        self,
        root: Path,
        server: FakeAnthropicServer,
        claude_bin: Path | str,
        *,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.server = server
        self.claude_bin = str(claude_bin)
        self.extra_env = dict(extra_env or {})
        self.proxy: RefreshProxy | None = None  # set by use_proxy()
        self.home = self.root / "home"
        self.claude_dir = self.home / ".claude"
        self.project = self.root / "project"
        self.tmp = self.root / "tmp"
        self.logs = self.root / "runs"
        self.marker = uuid.uuid4().hex
        self._processes: list[ClaudeProcess] = []
        self._runs = 0
        for path in (self.home, self.project, self.tmp, self.logs):
            path.mkdir(parents=True, exist_ok=True)
        self.claude_dir.mkdir(mode=0o700, exist_ok=True)
        self.claude_dir.chmod(0o700)
        self.write_claude_json({})

    # ------------------------------------------------------------ files

    @property
    def live(self) -> Path:
        """The live credential path Claude Code reads: `~/.claude/.credentials.json`."""
        return self.claude_dir / ".credentials.json"

    @property
    def claude_json(self) -> Path:
        return self.home / ".claude.json"

    @property
    def settings_path(self) -> Path:
        return self.claude_dir / "settings.json"

    def slot_path(self, name: str) -> Path:
        return self.claude_dir / f".credentials.json.{name}"

    def write_claude_json(self, extra: Mapping[str, Any]) -> None:
        """`~/.claude.json` that skips onboarding and trusts the project dir, plus `extra`."""
        doc: dict[str, Any] = {
            "hasCompletedOnboarding": True,
            "autoUpdates": False,
            "projects": {
                str(self.project): {
                    "hasTrustDialogAccepted": True,
                    "hasCompletedProjectOnboarding": True,
                    "allowedTools": [],
                }
            },
        }
        doc.update(extra)
        _write_private(self.claude_json, json.dumps(doc, indent=2) + "\n")

    def read_claude_json(self) -> dict[str, Any]:
        return dict(json.loads(self.claude_json.read_text()))

    def write_slot(
        self,
        name: str,
        access_token: str,
        refresh_token: str | None = None,
        *,
        expires_at_ms: int | None = None,
        subscription_type: str = "max",
        **extra: Any,
    ) -> Path:
        """Write `.credentials.json.<name>` (0600) holding a synthetic OAuth credential.

        `expires_at_ms` defaults to 8 h from now; put it in the past to force a refresh.
        """
        oauth: dict[str, Any] = {
            "accessToken": access_token,
            "refreshToken": refresh_token or f"{access_token}-refresh",
            "expiresAt": expires_at_ms
            if expires_at_ms is not None
            else int(time.time() * 1000) + 8 * HOUR_MS,
            "scopes": [
                "user:file_upload",
                "user:inference",
                "user:mcp_servers",
                "user:profile",
                "user:sessions:claude_code",
            ],
            "subscriptionType": subscription_type,
            "rateLimitTier": "default_claude_max_20x",
        }
        oauth.update(extra)
        path = self.slot_path(name)
        _write_private(path, json.dumps({"claudeAiOauth": oauth}, indent=2) + "\n")
        return path

    def write_account_slot(
        self, name: str, account: str | None = None, *, expires_at_ms: int | None = None
    ) -> Path:
        """Slot `name` (0600) holding the newest pair of the fake's account (`name` by default).

        `expires_at_ms` defaults to what the fake says (see FakeAnthropicServer.expire).
        """
        doc = self.server.credential_doc(account or name, expires_at_ms)
        path = self.slot_path(name)
        _write_private(path, json.dumps(doc, indent=2) + "\n")
        return path

    def login_as(self, account: str, *, expires_at_ms: int | None = None) -> None:
        """Do what Claude Code's `/login` as `account` does to the files.

        The live path becomes a regular 0600 file (a link is replaced, not written through)
        holding the account's newest pair, and `~/.claude.json` `oauthAccount` names the
        account. Nothing else ever rewrites that identity (DESIGN.md fact 5).
        """
        doc = self.server.credential_doc(account, expires_at_ms)
        _write_private(self.live, json.dumps(doc, indent=2) + "\n")
        claude_json = self.read_claude_json()
        claude_json["oauthAccount"] = self.server.account(account).oauth_account()
        _write_private(self.claude_json, json.dumps(claude_json, indent=2) + "\n")

    def link_live(self, name: str) -> None:
        """Point the live path at slot `name` atomically, then touch the slot (new mtime)."""
        target = self.slot_path(name)
        if not target.exists():
            raise FileNotFoundError(target)
        tmp = self.claude_dir / f".credentials.json.link-{uuid.uuid4().hex[:8]}"
        os.symlink(target.name, tmp)
        os.replace(tmp, self.live)
        os.utime(target)

    def live_target(self) -> str | None:
        """The slot file name the live link points at; None when it is not a symlink."""
        return os.readlink(self.live) if self.live.is_symlink() else None

    def read_credentials(self, path: Path | None = None) -> dict[str, Any]:
        """`claudeAiOauth` of a credential file (the live path by default)."""
        doc = json.loads((path or self.live).read_text())
        return dict(doc["claudeAiOauth"])

    def write_settings(self, doc: Mapping[str, Any]) -> None:
        """Replace `~/.claude/settings.json` (user scope)."""
        _write_private(self.settings_path, json.dumps(doc, indent=2) + "\n")

    def read_settings(self) -> dict[str, Any]:
        if not self.settings_path.exists():
            return {}
        return dict(json.loads(self.settings_path.read_text()))

    def add_hook(
        self,
        event: str,
        command: str,
        *,
        matcher: str | None = None,
        timeout: float = 30,
    ) -> None:
        """Append a shell `command` hook for `event` to the user settings."""
        settings = self.read_settings()
        handler = {"type": "command", "command": command, "timeout": timeout}
        group: dict[str, Any] = {"hooks": [handler]}
        if matcher is not None:
            group["matcher"] = matcher
        settings.setdefault("hooks", {}).setdefault(event, []).append(group)
        self.write_settings(settings)

    def write_script(self, name: str, body: str) -> Path:
        """An executable `#!/bin/sh` script under the sandbox root, for hooks."""
        path = self.root / "bin" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("#!/bin/sh\n" + body.lstrip())
        path.chmod(0o755)
        return path

    # ------------------------------------------------------------ running

    def use_proxy(self, proxy: RefreshProxy | None) -> None:
        """Route Claude Code through `proxy` (real hostnames, no base URL), or back."""
        self.proxy = proxy

    def env(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """The whole environment of a run: nothing is inherited but what is listed here."""
        bin_dirs = [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
        env = {
            "HOME": str(self.home),
            "USER": os.environ.get("USER", "root"),
            "PATH": os.pathsep.join(dict.fromkeys(bin_dirs)),
            "SHELL": "/bin/bash",
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "TMPDIR": str(self.tmp),
            MARKER_VAR: self.marker,
            **OFFLINE_ENV,
        }
        if self.proxy is None:
            env["ANTHROPIC_BASE_URL"] = self.server.base_url
            trap = self.server.base_url  # refuses CONNECT: stray HTTPS stays on loopback
            env.update(HTTPS_PROXY=trap, https_proxy=trap, HTTP_PROXY=trap, http_proxy=trap)
        else:
            url = self.proxy.url
            env.update(HTTPS_PROXY=url, https_proxy=url, HTTP_PROXY=url, http_proxy=url)
            env["NODE_EXTRA_CA_CERTS"] = str(self.proxy.ca_cert)
        env.update(self.extra_env)
        env.update(overrides or {})
        for name in CREDENTIAL_ENV:
            env.pop(name, None)
        return env

    def argv(
        self,
        prompt: str,
        *,
        session_id: str,
        output_format: str = "json",
        extra_args: Sequence[str] = (),
    ) -> list[str]:
        resuming = any(arg in ("--resume", "-r", "--continue", "-c") for arg in extra_args)
        return [
            self.claude_bin,
            "-p",
            prompt,
            # a resumed conversation keeps its own id (2.1.330 refuses --session-id with it)
            *([] if resuming else ["--session-id", session_id]),
            "--output-format",
            output_format,
            *(["--verbose"] if output_format == "stream-json" else []),
            *extra_args,
            "--allowedTools",
            "Bash",
        ]

    def start(
        self,
        prompt: str,
        *,
        session_id: str | None = None,
        output_format: str = "json",
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> ClaudeProcess:
        """Start `claude -p <prompt> --allowedTools Bash` in the project dir; don't wait."""
        session_id = session_id or str(uuid.uuid4())
        self._runs += 1
        proc = ClaudeProcess(
            self.argv(
                prompt, session_id=session_id, output_format=output_format, extra_args=extra_args
            ),
            env=self.env(env),
            cwd=self.project,
            session_id=session_id,
            log_stem=self.logs / f"{self._runs:02d}-{session_id[:8]}",
            marker=self.marker,
        )
        self._processes.append(proc)
        return proc

    def run(
        self,
        prompt: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        session_id: str | None = None,
        output_format: str = "json",
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> ClaudeRun:
        """Run one headless turn to the end (or kill it at `timeout` s)."""
        proc = self.start(
            prompt,
            session_id=session_id,
            output_format=output_format,
            extra_args=extra_args,
            env=env,
        )
        return proc.finish(timeout)

    def close(self) -> None:
        """Kill whatever this sandbox started and is still running (hooks and tools too)."""
        for proc in self._processes:
            if proc.poll() is None:
                proc.kill_tree()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        _kill(self.running_processes())

    def running_processes(self) -> list[int]:
        """Pids of every live process this sandbox started, however deep (by the marker)."""
        return _marked_processes(self.marker)

    def __enter__(self) -> ClaudeSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def lock_held_for(path: Path, seconds: float = 2.0) -> Iterator[list[float]]:
    """Hold Claude Code's mkdir lock `path` for `seconds` (a timer releases it); the list
    yielded gets the time of the release, to check that the guarded work came after it."""
    path.mkdir()
    released: list[float] = []

    def release() -> None:
        path.rmdir()
        released.append(time.time())

    timer = threading.Timer(seconds, release)
    timer.start()
    try:
        yield released
    finally:
        timer.cancel()


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------- the refresh proxy


def mitmdump_path() -> str | None:
    """The `mitmdump` of this venv (the `e2e` extra), else one on PATH."""
    beside = Path(sys.executable).parent / "mitmdump"
    if beside.exists():
        return str(beside)
    return shutil.which("mitmdump")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RefreshProxy:
    """A local intercepting HTTPS proxy (mitmdump) in front of the fake API.

    Claude Code, given `HTTPS_PROXY=<url>` and `NODE_EXTRA_CA_CERTS=<ca_cert>` and no
    `ANTHROPIC_BASE_URL`, talks to its real hostnames; the addon (refresh_proxy_addon.py)
    sends every request, whatever its host, to the fake API on 127.0.0.1 over plain HTTP, with
    the original host in `x-e2e-original-host`, and refuses any other upstream connection.
    So `POST platform.claude.com/v1/oauth/token`, `GET api.anthropic.com/api/oauth/profile`
    and `/v1/messages` are all answered and recorded by the FakeAnthropicServer.
    """

    def __init__(self, server: FakeAnthropicServer, workdir: Path, mitmdump: str) -> None:
        self.server = server
        self.workdir = Path(workdir)
        self.confdir = self.workdir / "mitmproxy"
        self.mitmdump = mitmdump
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "mitmdump.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca_cert(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def start(self, timeout: float = 30.0) -> RefreshProxy:
        self.confdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        argv = [
            self.mitmdump,
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            str(self.port),
            "--set",
            f"confdir={self.confdir}",
            "--set",
            "connection_strategy=lazy",
            "--set",
            "upstream_cert=false",
            "--set",
            "http2=false",
            "-s",
            str(ADDON),
            "--set",
            f"fake_api_port={self.server.port}",
            "--flow-detail",
            "1",
        ]
        env = {
            "HOME": str(self.workdir),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
        }
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mitmdump exited {self._proc.returncode}:\n{self.log()}")
            if self.ca_cert.exists() and self._accepts():
                return self
            time.sleep(0.1)
        self.close()
        raise RuntimeError(f"mitmdump did not listen within {timeout} s:\n{self.log()}")

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def __enter__(self) -> RefreshProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- the user's CLI


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll `predicate` until it holds or `timeout` s pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class Fleet:
    """A sandboxed user with several accounts, our hooks installed, Claude Code via the proxy.

    `cli()` runs `gptme-subscription` as the person does, in the sandbox's HOME (so profiles
    live in the default `~/.claude-profiles`); `start(..., profile=SLOT)` runs Claude Code
    with `CLAUDE_CONFIG_DIR=<that slot's profile>`, as a session in a profile does.
    """

    RUN_TIMEOUT = 90.0

    def __init__(self, sandbox: ClaudeSandbox, server: FakeAnthropicServer) -> None:
        self.sandbox = sandbox
        self.server = server
        self.state_dir = sandbox.root / "state"
        self.env = {
            "GPTME_SUBSCRIPTION_STATE_DIR": str(self.state_dir),
            "GPTME_SUBSCRIPTION_API_BASE": server.base_url,
            "GPTME_SUBSCRIPTION_POLL_TIMEOUT": "2",
            "GPTME_SUBSCRIPTION_POLL_INTERVAL": "1",
            "GPTME_SUBSCRIPTION_MIN_DWELL": "0",
            "XDG_CONFIG_HOME": str(sandbox.root / "xdg"),
        }

    @property
    def profiles_dir(self) -> Path:
        """Where `profile enable` puts config dirs by default: `~/.claude-profiles`."""
        return self.sandbox.home / ".claude-profiles"

    def profile_dir(self, slot: str) -> Path:
        return self.profiles_dir / slot

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Our CLI, as the person runs it in the sandbox's HOME."""
        proc = subprocess.run(
            [sys.executable, "-m", "gptme_subscription_plugin", *args],
            env={**self.sandbox.env(), **self.env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check:
            assert proc.returncode == 0, f"gptme-subscription {' '.join(args)}:\n{proc.stderr}"
        return proc

    def onboard(
        self, names: Sequence[str], expired: Iterable[str] = (), *, hooks: bool = True
    ) -> None:
        """Log in as each account in turn and `slot add` it; then install the hooks.

        The last account logged in is live and is what `oauthAccount` names. Accounts in
        `expired` logged in long ago: their access token has expired (Claude Code refreshes
        it at the first request that uses it). Each account's usage starts low.
        """
        expired = set(expired)
        for name in names:
            if name not in {a.name for a in self.server.accounts()}:
                self.server.add_account(name)
            if name in expired:
                self.server.expire(name)
            self.server.set_account_usage(
                name, make_usage_doc(time.time(), five_hour=10, seven_day=20)
            )
            self.sandbox.login_as(name)
            self.cli("slot", "add", name)
        assert self.sandbox.live_target() == f".credentials.json.{names[-1]}"
        if hooks:
            self.cli("install", "claude-code")

    def start(self, prompt: str, *, profile: str | None = None, **kw: Any) -> ClaudeProcess:
        """`claude -p` in the main dir, or in slot `profile`'s config dir."""
        env = dict(self.env)
        if profile is not None:
            env["CLAUDE_CONFIG_DIR"] = str(self.profile_dir(profile))
        return self.sandbox.start(prompt, env=env, **kw)

    def run(self, prompt: str, **kw: Any) -> ClaudeRun:
        return self.start(prompt, **kw).finish(self.RUN_TIMEOUT)

    def slot_refresh_token(self, name: str) -> str | None:
        try:
            doc = json.loads(self.sandbox.slot_path(name).read_text())
        except (OSError, ValueError):
            return None
        token = doc.get("claudeAiOauth", {}).get("refreshToken")
        return token if isinstance(token, str) else None

    def events(self, kind: str) -> list[dict[str, Any]]:
        path = self.state_dir / "events.jsonl"
        if not path.exists():
            return []
        docs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [d for d in docs if d.get("kind") == kind]
