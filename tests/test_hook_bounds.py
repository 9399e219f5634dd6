"""Every hook is bounded in time: what it starts (poll threads, usage scripts, HTTP requests)
ends by its budget, and the budget stays below the timeout Claude Code gives the hook."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gptme_subscription_plugin import bounds
from gptme_subscription_plugin.claude_code import dispatch
from gptme_subscription_plugin.claude_code.installer import HOOK_SPECS
from gptme_subscription_plugin.usage.oauth import UsageFetchError, fetch_oauth_usage

from .support.sandbox import Sandbox, run_ours

REPO = Path(__file__).resolve().parent.parent
TOKEN = "sk-ant-oat01-test-bounds-access-token"
# the interpreter's start-up and imports come before the budget's clock starts
STARTUP_SLACK_S = 1.5


class TricklingServer:
    """HTTP on 127.0.0.1 that sends its answer one byte every 0.2 s, forever.

    `phase="headers"` trickles from the status line on; `phase="body"` sends the headers at
    once and trickles a body that never ends. Records when the client dropped each connection.
    """

    def __init__(self, phase: str) -> None:
        self.phase = phase
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.accepted = 0
        self.dropped: list[float] = []
        self._lock = threading.Lock()
        self._dropped = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)  # the request (small, arrives in one piece on loopback)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            if self.phase == "body":
                conn.sendall(head + b"Content-Length: 1000000\r\n\r\n")
                head = b""
            stream = iter(head + b"X-Slow: " + b"a" * 1_000_000)
            while not self.stop.is_set():
                # a byte every 0.2 s, until the client hangs up (EOF or a reset)
                readable, _, _ = select.select([conn], [], [], 0.2)
                try:
                    if readable and not conn.recv(1):
                        break
                    if not readable:
                        conn.sendall(bytes([next(stream)]))
                except OSError:
                    break
            with self._dropped:
                self.dropped.append(time.monotonic())
                self._dropped.notify_all()

    def wait_dropped(self, count: int, timeout: float) -> list[float]:
        """When the first `count` connections were dropped by the client (waits for them)."""
        with self._dropped:
            self._dropped.wait_for(lambda: len(self.dropped) >= count, timeout)
            return list(self.dropped)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture(params=["headers", "body"])
def trickle(request: pytest.FixtureRequest) -> Iterator[TricklingServer]:
    server = TricklingServer(request.param)
    yield server
    server.close()


def _in_thread(fn, limit: float):  # type: ignore[no-untyped-def]
    """Run `fn` in a daemon thread; (finished, result or exception, seconds taken)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["value"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    return not thread.is_alive(), box.get("value"), time.monotonic() - started


# ---------------------------------------------------------------- endpoint reads


def test_a_trickling_endpoint_is_cut_off_at_the_total_deadline(trickle: TricklingServer) -> None:
    finished, value, took = _in_thread(
        lambda: fetch_oauth_usage(trickle.base_url, TOKEN, "a", 1.0, time.time()), 10.0
    )
    assert finished, "the fetch was still reading a trickle after 10 s"
    assert isinstance(value, UsageFetchError) and value.kind == "timeout"
    assert took < 2.0
    assert TOKEN not in str(value)


def _sandbox(tmp_path: Path, api_base: str, **env: str) -> dict[str, str]:
    """The env of our hooks over slots alice (live) and bob; the budget, not the poll
    timeout, must bound them."""
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", ""), **env}
    return Sandbox(tmp_path, api_base=api_base, poll_timeout="60", env=env).env


def _hook(event: str, env: dict[str, str], limit: float = 30.0) -> tuple[float, str]:
    payload = json.dumps({"session_id": "s1", "hook_event_name": event, "cwd": "/tmp"})
    started = time.monotonic()
    try:
        proc = run_ours(["hook", event], env, stdin=payload, timeout=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hook {event} still running after {limit} s")
    took = time.monotonic() - started
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return took, proc.stderr


def test_stop_hook_returns_within_budget_against_a_trickling_endpoint(
    tmp_path: Path, trickle: TricklingServer
) -> None:
    env = _sandbox(tmp_path, trickle.base_url, GPTME_SUBSCRIPTION_HOOK_BUDGET="3")
    took, stderr = _hook("stop", env)
    assert took < 3.0 + STARTUP_SLACK_S
    assert "time budget" not in stderr  # it finished by itself, not by the watchdog
    assert trickle.accepted == 2  # both slots were asked
    status = json.loads((tmp_path / "state" / "usage" / "alice.json").read_text())
    assert status["poll"]["last_error_kind"] == "timeout"


def test_polls_end_by_the_budget_and_no_poll_thread_outlives_it(
    tmp_path: Path, trickle: TricklingServer
) -> None:
    manager = Sandbox(tmp_path, api_base=trickle.base_url).manager(poll_timeout=60.0)
    bounds.start_budget(2.0)
    started = time.monotonic()
    try:
        finished, value, took = _in_thread(lambda: manager.check_usage(refresh=True), 15.0)
    finally:
        bounds.clear_budget()
    assert finished, "check_usage still waiting on a trickling endpoint after 15 s"
    assert not isinstance(value, BaseException), value
    assert took < 2.0
    assert not [t for t in threading.enumerate() if t.name.startswith("poll-") and t.is_alive()]
    dropped = trickle.wait_dropped(2, timeout=5.0)
    assert len(dropped) == 2 and all(at - started < 2.0 for at in dropped)  # we hung up in time


# ---------------------------------------------------------------- usage scripts

GRANDCHILD = """
import os, subprocess, sys, time
child = subprocess.Popen(["sleep", "60"])  # inherits our stdout and holds it open
with open(os.environ["GSP_TEST_REPORT"], "a") as fh:
    fh.write(f"{child.pid}\\n")
if sys.argv[0] and os.environ.get("GSP_TEST_SCRIPT_HANGS"):
    time.sleep(60)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("script_hangs", [False, True], ids=["script-exits", "script-hangs"])
def test_a_script_whose_grandchild_holds_stdout_is_killed_by_the_budget(
    tmp_path: Path, script_hangs: bool
) -> None:
    script = tmp_path / "check-usage.py"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(GRANDCHILD))
    script.chmod(0o700)
    report = tmp_path / "pids"
    env = _sandbox(
        tmp_path,
        "http://127.0.0.1:9",
        GPTME_SUBSCRIPTION_USAGE_SCRIPT=str(script),
        GPTME_SUBSCRIPTION_HOOK_BUDGET="3",
        GSP_TEST_REPORT=str(report),
        **({"GSP_TEST_SCRIPT_HANGS": "1"} if script_hangs else {}),
    )
    took, _ = _hook("stop", env)
    assert took < 3.0 + STARTUP_SLACK_S
    pids = [int(line) for line in report.read_text().split()]
    # one script per slot, one at a time: a hanging one keeps the other slot's from starting
    assert len(pids) == (1 if script_hangs else 2)
    assert all(_gone(pid) for pid in pids), "a grandchild outlived the hook"


# ---------------------------------------------------------------- the budget itself


@pytest.mark.parametrize("value", ["inf", "nan", "-5", "0", "soon", "1e999"])
def test_an_unusable_budget_falls_back_to_the_default_with_a_note(
    tmp_path: Path, value: str
) -> None:
    env = _sandbox(tmp_path, "http://127.0.0.1:9", GPTME_SUBSCRIPTION_HOOK_BUDGET=value)
    _, stderr = _hook("session-end", env)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "GPTME_SUBSCRIPTION_HOOK_BUDGET" in lines[0], stderr
    assert "using 2" in lines[0]  # SessionEnd's own ceiling: 5 s timeout - 3 s margin
    assert dispatch.event_budget("stop", {bounds.BUDGET_ENV: value}) == bounds.DEFAULT_BUDGET_S


def test_a_budget_above_claude_codes_timeout_is_lowered() -> None:
    assert dispatch.event_budget("stop", {bounds.BUDGET_ENV: "600"}) == 27.0
    assert dispatch.event_budget("stop", {bounds.BUDGET_ENV: "4.5"}) == 4.5
    assert dispatch.event_budget("pre-tool-use", {}) == 7.0


def test_every_installed_hook_timeout_leaves_room_above_its_budget() -> None:
    """The budget ends before Claude Code's own timeout for every hook we install."""
    plugin = json.loads((REPO / "hooks" / "hooks.json").read_text())["hooks"]
    for event, _matcher, name, timeout in HOOK_SPECS:
        assert dispatch.CLAUDE_TIMEOUTS[name] == timeout
        (entry,) = plugin[event]
        assert entry["hooks"][0]["timeout"] == timeout
        for env in ({}, {bounds.BUDGET_ENV: "1e9"}):
            budget = dispatch.event_budget(name, env)
            assert budget + bounds.TIMEOUT_MARGIN_S <= timeout, (name, budget, timeout)


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_paths_from_outside_that_are_not_regular_files_are_refused_without_blocking(
    tmp_path: Path, kind: str
) -> None:
    """`transcript_path` and a project's `.claude/settings.json` come from outside the hook."""
    import subprocess
    import sys

    project = tmp_path / "project"
    (project / ".claude").mkdir(parents=True)
    if kind == "fifo":
        target = tmp_path / "pipe"
        os.mkfifo(target)  # no writer: a blocking open would wait forever
        os.mkfifo(project / ".claude" / "settings.json")
    else:
        target = Path("/dev/zero")  # endless: an unbounded read would eat memory
        os.symlink("/dev/zero", project / ".claude" / "settings.json")
    code = (
        "import sys; from pathlib import Path\n"
        "from gptme_subscription_plugin.claude_code.transcript import last_model\n"
        "from gptme_subscription_plugin.overrides import override_warnings\n"
        f"assert last_model({str(target)!r}) is None\n"
        f"print(override_warnings({{}}, {{'cwd': {str(project)!r}}}, Path({str(tmp_path)!r})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
