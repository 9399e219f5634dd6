"""Bounds on what a hook may spend: its time budget, and reads of files and processes that
come from outside.

A hook runs inside the user's Claude Code session, and Claude Code kills a hook that outlives
the `timeout` of its settings entry. So every hook has a budget below that timeout
(`GPTME_SUBSCRIPTION_HOOK_BUDGET`), and everything it starts (poll threads, usage scripts,
HTTP requests) ends by the budget's deadline. Paths named by others (`transcript_path`, a
project's settings, ...) are read only when they are regular files, and only up to a size cap:
a FIFO without a writer or `/dev/zero` must neither block a hook nor fill its memory.

Stdlib only: the PreToolUse fast path imports it.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import stat
import time
from collections.abc import Mapping, Sequence

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs the hook ~5 ms
if TYPE_CHECKING:
    import subprocess

BUDGET_ENV = "GPTME_SUBSCRIPTION_HOOK_BUDGET"
DEFAULT_BUDGET_S = 25.0
# Claude Code kills a hook at the `timeout` of its settings entry (the installer writes 30 s
# for the turn-boundary hooks, 10 s for PreToolUse, 5 s for SessionEnd). A hook's budget ends
# at least this long before that, so its own clean exit always comes first.
TIMEOUT_MARGIN_S = 3.0
MIN_BUDGET_S = 0.5
# Part of the budget kept back from polls and scripts for deciding, writing state and answering.
MAX_RESERVE_S = 5.0
RESERVE_SHARE = 0.25
# After a script exits, how long its pipes may stay open (held by a helper it left behind).
EXIT_GRACE_S = 0.5
MAX_STDERR_BYTES = 64 * 1024

_deadline: float | None = None  # time.monotonic() when the current hook's time is up
_reserve: float = 0.0


class RefusedFile(ValueError):
    """A path from outside that is not a regular file, or larger than we read (one line)."""


# ---------------------------------------------------------------- the budget


def hook_budget(env: Mapping[str, str], ceiling: float) -> tuple[float, str | None]:
    """The hook budget in seconds, at most `ceiling`, and a one-line note when the setting
    was unusable (not a positive finite number: the default applies) or was lowered."""
    raw = env.get(BUDGET_ENV)
    budget = DEFAULT_BUDGET_S
    note = None
    if raw is not None and raw.strip():
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value > 0:
            budget = value
        else:
            note = (
                f"{BUDGET_ENV}={raw[:20]!r} is not a positive number of seconds; "
                f"using {min(DEFAULT_BUDGET_S, ceiling):g}"
            )
    if budget > ceiling:
        if note is None and raw is not None and raw.strip():
            note = (
                f"{BUDGET_ENV}={raw[:20]!r} is above what Claude Code waits for this hook; "
                f"using {ceiling:g}"
            )
        budget = ceiling
    return max(budget, MIN_BUDGET_S), note


def budget_ceiling(claude_timeout: float) -> float:
    """The largest budget for a hook that Claude Code kills after `claude_timeout` seconds."""
    return max(MIN_BUDGET_S, claude_timeout - TIMEOUT_MARGIN_S)


def start_budget(seconds: float) -> None:
    """Start the current hook's clock: everything it starts must end within `seconds`."""
    global _deadline, _reserve
    _deadline = time.monotonic() + seconds
    _reserve = min(MAX_RESERVE_S, max(0.0, seconds * RESERVE_SHARE))


def clear_budget() -> None:
    global _deadline, _reserve
    _deadline, _reserve = None, 0.0


def work_deadline() -> float | None:
    """When polls and scripts must have ended (a `time.monotonic()` value), or None outside
    a hook: the hook's deadline less a reserve for deciding, writing state and answering."""
    return None if _deadline is None else _deadline - _reserve


def join_deadline() -> float | None:
    """How long a hook waits for its polls: half the reserve past the work deadline, time
    for a finished fetch to store its answer."""
    return None if _deadline is None else _deadline - _reserve / 2


def time_left(deadline: float | None, cap: float) -> float:
    """Seconds until `deadline` (a monotonic time), at most `cap`; `cap` when no deadline."""
    if deadline is None:
        return cap
    return max(0.0, min(cap, deadline - time.monotonic()))


# ---------------------------------------------------------------- files from outside


def open_regular(path: str | os.PathLike[str]) -> int:
    """A read-only descriptor of `path` if it is a regular file; RefusedFile otherwise.

    Opened non-blocking, so a FIFO without a writer (or a device) is refused at once instead
    of hanging the hook; the check is on the opened file (fstat), so a swap in between is
    caught too. OSError when it cannot be opened at all.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise RefusedFile(f"{path} is not a regular file")
    return fd


def read_fd(fd: int, limit: int) -> bytes:
    """Up to `limit` bytes from `fd`'s current position."""
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The whole of a regular file of at most `limit` bytes.

    RefusedFile for anything else (not a regular file, or larger); OSError when unreadable.
    """
    fd = open_regular(path)
    try:
        data = read_fd(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise RefusedFile(f"{path} is larger than {limit} bytes")
    return data


def read_tail(path: str | os.PathLike[str], tail: int) -> tuple[bytes, bool]:
    """The last `tail` bytes of a regular file, and whether the file is longer than that."""
    fd = open_regular(path)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        start = max(0, size - tail)
        os.lseek(fd, start, os.SEEK_SET)
        return read_fd(fd, tail), start > 0
    finally:
        os.close(fd)


# ---------------------------------------------------------------- processes


class Finished:
    """What `run_bounded` saw: exit status (None when it had to be killed) and the output."""

    __slots__ = ("returncode", "stdout", "stderr", "timed_out", "overflow")

    def __init__(
        self,
        returncode: int | None,
        stdout: bytes,
        stderr: bytes,
        timed_out: bool,
        overflow: bool,
    ) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out
        self.overflow = overflow


def run_bounded(
    argv: Sequence[str],
    *,
    timeout: float,
    max_stdout: int,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Finished:
    """Run `argv` in a process group of its own and collect its output, within `timeout`
    seconds and `max_stdout` bytes; OSError when it cannot start.

    When the time is up, the output is too large, or the program has exited (after a short
    grace for its pipes), the whole process group is killed: helpers it started end with it,
    even one that holds our pipes open. The group is killed before the leader is reaped, so
    its id cannot have been reused.
    """
    import subprocess  # not on the fast path's import list: only scripts need it

    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    deadline = time.monotonic() + max(0.0, timeout)
    out = bytearray()
    err = bytearray()
    timed_out = overflow = False
    try:
        timed_out, overflow = _pump(proc, stdin, deadline, out, err, max_stdout)
    finally:
        _kill_group(proc.pid)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2.0)  # SIGKILLed: only an uninterruptible sleep takes longer
    code = None if timed_out or overflow else proc.returncode
    return Finished(code, bytes(out), bytes(err), timed_out, overflow)


def _pump(
    proc: subprocess.Popen[bytes],
    stdin: bytes | None,
    deadline: float,
    out: bytearray,
    err: bytearray,
    max_stdout: int,
) -> tuple[bool, bool]:
    """Feed stdin, drain stdout/stderr until both close or a bound is hit: (timed_out, overflow)."""
    import selectors

    assert proc.stdout is not None and proc.stderr is not None
    pending = memoryview(stdin or b"")
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        if proc.stdin is not None and pending:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE, None)
        elif proc.stdin is not None:
            proc.stdin.close()
        exited_at: float | None = None
        while any(key.data is not None for key in sel.get_map().values()):
            now = time.monotonic()
            if exited_at is None and _has_exited(proc):
                exited_at = now
                deadline = min(deadline, now + EXIT_GRACE_S)
            if now >= deadline:
                return exited_at is None, False
            # until the leader exits, look at it every 0.1 s; after that only the pipes matter
            wait = deadline - now if exited_at is not None else min(deadline - now, 0.1)
            for key, _ in sel.select(wait):
                if key.data is None:
                    pending = _feed(key.fd, pending)
                    if not pending:
                        sel.unregister(key.fileobj)
                        with contextlib.suppress(OSError):
                            proc.stdin.close()  # type: ignore[union-attr]
                    continue
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf: bytearray = key.data
                limit = max_stdout if buf is out else MAX_STDERR_BYTES
                buf += chunk[: max(0, limit + 1 - len(buf))]
                if buf is out and len(buf) > max_stdout:
                    return False, True
    return False, False


def _feed(fd: int, pending: memoryview) -> memoryview:
    """Write what the pipe takes now; what is left (nothing once the reader has gone)."""
    try:
        return pending[os.write(fd, pending[: 1 << 16]) :]
    except BlockingIOError:
        return pending
    except BrokenPipeError:
        return pending[:0]


def _has_exited(proc: subprocess.Popen[bytes]) -> bool:
    """Has the leader exited? Checked without reaping it (its pid names the group)."""
    waitid = getattr(os, "waitid", None)
    if waitid is None:  # pragma: no cover - Linux and macOS have waitid
        return False
    try:
        return waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


__all__ = [
    "BUDGET_ENV",
    "DEFAULT_BUDGET_S",
    "Finished",
    "RefusedFile",
    "budget_ceiling",
    "clear_budget",
    "hook_budget",
    "join_deadline",
    "open_regular",
    "read_bounded",
    "read_tail",
    "run_bounded",
    "start_budget",
    "time_left",
    "work_deadline",
]
