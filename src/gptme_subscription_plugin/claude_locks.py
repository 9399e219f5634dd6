"""Claude Code's own credential locks, so a flip or heal never interleaves with its refresh.

Claude Code (2.1.218+, re-checked by peers up to 2.1.294) guards an OAuth refresh with two
npm `proper-lockfile` locks, taken in this order:

1. the primary `<claude_dir>/.oauth_refresh.lock`,
2. the legacy `<realpath(claude_dir)>.lock` (`~/.claude.lock` for the default dir).

A lock is a *directory*: `mkdir` is the atomic test-and-set. The holder touches its mtime
every 5 s; a lock whose mtime is older than 60 s belongs to a dead holder and may be removed
and re-taken, never a younger one. If the legacy lock is contended Claude Code releases the
primary and retries; if the legacy lock cannot be made at all (parent not writable) it goes
on without it. We mirror all of that, so neither side can deadlock the other.

Owner record: a holding Claude Code writes `<claude_dir>/.oauth_refresh.lock.owner` (JSON with
its `pid`) and lets a waiter take a lock over *before* it is stale when that record proves the
holder dead. Like claude-swap and the other careful peers we never write that record (our
locks then expire only by the safe 60 s rule, and we keep them fresh). After taking the primary
we remove a record left by an earlier holder, because one naming a dead pid could let Claude
Code take our live lock over early. `lock_status` reads the record for `doctor`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .crashpoints import crash_point
from .fsutil import ensure_private_dir

STALE_S = 60.0
REFRESH_S = 5.0
DEFAULT_WAIT_S = 9.0
PRIMARY_NAME = ".oauth_refresh.lock"
OWNER_NAME = ".oauth_refresh.lock.owner"
_LOCK_DIR_MODE = 0o700
_SLEEP_MIN_S = 0.05
_SLEEP_MAX_S = 0.25

log = logging.getLogger(__name__)


class ClaudeLockError(Exception):
    """A Claude Code lock could not be taken for a reason other than contention."""


class ClaudeLockBusy(ClaudeLockError):
    """Claude Code (or another tool) held its lock for longer than we were willing to wait."""


@dataclass(frozen=True)
class LockInfo:
    """One lock as `doctor` shows it; `age_s` is the time since its holder last touched it."""

    path: Path
    exists: bool
    age_s: float | None
    stale: bool
    owner_pid: int | None = None


def primary_lock_path(claude_dir: Path) -> Path:
    return Path(claude_dir) / PRIMARY_NAME


def legacy_lock_path(claude_dir: Path) -> Path:
    """`<realpath(claude_dir)>.lock`: proper-lockfile resolves links, so Claude Code does too."""
    return Path(os.path.realpath(claude_dir) + ".lock")


def owner_record_path(claude_dir: Path) -> Path:
    return Path(claude_dir) / OWNER_NAME


def lock_status(claude_dir: Path, now: float, stale_s: float = STALE_S) -> list[LockInfo]:
    """Primary then legacy lock, with age and staleness at `now` (wall clock, like mtimes)."""
    owner_pid = _read_owner_pid(owner_record_path(claude_dir))
    infos = []
    for path in (primary_lock_path(claude_dir), legacy_lock_path(claude_dir)):
        mtime = _mtime(path)
        if mtime is None:
            infos.append(LockInfo(path, False, None, False))
            continue
        age = max(0.0, now - mtime)
        pid = owner_pid if path.name == PRIMARY_NAME else None
        infos.append(LockInfo(path, True, age, age > stale_s, pid))
    return infos


@contextmanager
def claude_credential_lock(
    claude_dir: Path,
    wait_s: float = DEFAULT_WAIT_S,
    stale_s: float = STALE_S,
    refresh_s: float = REFRESH_S,
) -> Iterator[None]:
    """Hold Claude Code's refresh locks (primary, then legacy) while touching the live login.

    Waits at most `wait_s` in total for both; raises `ClaudeLockBusy` after that. While held, a
    daemon thread touches each lock every `refresh_s` so nobody thinks we died. Both locks are
    released in reverse order on exit, exceptions included. If the legacy lock cannot be
    created (its parent is not writable) only the primary is held, as Claude Code itself does:
    current builds take the primary first, so it alone still excludes their refresh.
    """
    claude_dir = Path(claude_dir)
    if not claude_dir.is_dir():
        ensure_private_dir(claude_dir)
    reclaim_dead_locks(claude_dir)
    held = _acquire_pair(claude_dir, wait_s, stale_s)
    record = _OwnRecord(claude_dir, held)
    refresher = _Refresher(held, refresh_s, record)
    try:
        record.write()
        refresher.start()
        crash_point("lock:held")
        yield
    finally:
        refresher.stop()
        for lock in reversed(held):
            lock.release()
        record.remove()


OWN_RECORD_GLOB = ".gsp-lock-*.json"


class _OwnRecord:
    """Our own note of the locks this process holds: `<claude_dir>/.gsp-lock-<pid>.json`.

    Not Claude Code's owner record (we never write that one, see the module doc) and never a
    file inside a lock directory (proper-lockfile releases with rmdir). If we are killed while
    holding, the next run of ours finds the note, sees the pid is dead and the lock's mtime is
    still exactly our last heartbeat, and removes it at once instead of blocking Claude Code's
    refresh for the 60 s stale period (2.1.330 gives up a refresh after ~8 s).
    """

    def __init__(self, claude_dir: Path, held: list[_HeldLock]) -> None:
        self.path = claude_dir / f".gsp-lock-{os.getpid()}.json"
        self.held = held

    def write(self) -> None:
        doc = {
            "pid": os.getpid(),
            "locks": [{"path": str(h.path), "mtime_ns": h.mtime_ns} for h in self.held],
        }
        # A plain temp+rename, deliberately without crash points: the note must follow the
        # mkdir as closely as possible (a kill in between leaves a lock the 60 s rule frees).
        tmp = self.path.with_name(self.path.name + ".tmp")
        with contextlib.suppress(OSError):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, json.dumps(doc).encode())
            finally:
                os.close(fd)
            os.replace(tmp, self.path)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def reclaim_dead_locks(claude_dir: Path) -> list[Path]:
    """Remove locks left by a process of ours that died holding them; returns what it removed."""
    removed: list[Path] = []
    for note in sorted(Path(claude_dir).glob(OWN_RECORD_GLOB)):
        try:
            doc = json.loads(note.read_text(encoding="utf-8"))
            pid = int(doc["pid"])
            locks = [(Path(e["path"]), int(e["mtime_ns"])) for e in doc["locks"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _pid_alive(pid):
            continue
        for path, mtime_ns in locks:
            if _remove_stale(path, mtime_ns):
                removed.append(path)
        with contextlib.suppress(OSError):
            note.unlink()
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _HeldLock:
    """A lock directory we created; remembers the mtime we last gave it, to notice theft."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.compromised = False
        self.mtime_ns = _mtime_ns(path)

    def touch(self) -> None:
        """Heartbeat; a lock that vanished or that someone else touched is no longer ours."""
        if self.compromised or not self._still_ours():
            return
        try:
            os.utime(self.path)
            self.mtime_ns = os.stat(self.path).st_mtime_ns
        except OSError:
            self._mark_compromised("vanished")

    def release(self) -> None:
        """Remove the directory, unless it was taken over (then it is someone else's now)."""
        if self.compromised or not self._still_ours():
            return
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            self._mark_compromised("vanished")
        except OSError as exc:
            log.warning("could not release Claude Code lock %s: %s", self.path, exc.strerror)

    def _still_ours(self) -> bool:
        current = _mtime_ns(self.path)
        if current is None:
            self._mark_compromised("vanished")
            return False
        if current != self.mtime_ns:
            self._mark_compromised("was touched by another process")
            return False
        return True

    def _mark_compromised(self, why: str) -> None:
        self.compromised = True
        log.warning(
            "Claude Code lock %s %s while we held it (taken over as stale?)", self.path, why
        )


class _Refresher:
    """Daemon thread that keeps held locks fresh (proper-lockfile's `update` option)."""

    def __init__(self, held: list[_HeldLock], interval_s: float, record: _OwnRecord) -> None:
        self._held = held
        self._record = record
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="claude-lock-refresh", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval_s + 1.0)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            for lock in self._held:
                lock.touch()
            self._record.write()


_TAKEN, _BUSY, _UNAVAILABLE = "taken", "busy", "unavailable"
_CANNOT_CREATE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR}


def _acquire_pair(claude_dir: Path, wait_s: float, stale_s: float) -> list[_HeldLock]:
    """Claude Code's order: primary, then legacy; a contended legacy lock releases the primary."""
    primary, legacy = primary_lock_path(claude_dir), legacy_lock_path(claude_dir)
    started = time.monotonic()
    deadline = started + wait_s
    while True:
        busy, held = _attempt_pair(claude_dir, primary, legacy, stale_s)
        if busy is None:
            return held
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _busy_error(claude_dir, busy, time.monotonic() - started)
        time.sleep(min(remaining, random.uniform(_SLEEP_MIN_S, _SLEEP_MAX_S)))


def _attempt_pair(
    claude_dir: Path, primary: Path, legacy: Path, stale_s: float
) -> tuple[Path | None, list[_HeldLock]]:
    """One try at both locks: (None, held) on success, else (the busy lock, [])."""
    outcome = _try_take(primary, stale_s)
    if outcome == _UNAVAILABLE:
        raise ClaudeLockError(
            f"cannot create Claude Code lock {primary}: check that you own {claude_dir}"
        )
    if outcome == _BUSY:
        return primary, []
    first = _HeldLock(primary)
    try:
        _remove_leftover_owner_record(claude_dir)
        outcome = _try_take(legacy, stale_s)
    except BaseException:
        first.release()
        raise
    if outcome == _TAKEN:
        return None, [first, _HeldLock(legacy)]
    if outcome == _UNAVAILABLE:
        log.info("legacy Claude Code lock %s cannot be created; holding the primary only", legacy)
        return None, [first]
    first.release()
    return legacy, []


def _try_take(path: Path, stale_s: float) -> str:
    """mkdir the lock; take over one whose heartbeat is older than `stale_s`, never younger."""
    for _ in range(3):
        try:
            os.mkdir(path, _LOCK_DIR_MODE)
            return _TAKEN
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno in _CANNOT_CREATE:
                return _UNAVAILABLE
            raise
        observed = _mtime_ns(path)
        if observed is None:
            continue  # released between our mkdir and stat: try again now
        if time.time() - observed / 1e9 <= stale_s:
            return _BUSY
        if not _remove_stale(path, observed):
            return _BUSY
    return _BUSY


def _remove_stale(path: Path, observed_mtime_ns: int) -> bool:
    """rmdir a dead holder's lock, only if it is still the one we judged stale."""
    if _mtime_ns(path) != observed_mtime_ns:
        return False
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    log.warning("removed stale Claude Code lock %s", path)
    return True


def _remove_leftover_owner_record(claude_dir: Path) -> None:
    """We hold the primary, so any owner record is a past holder's; drop it (see module doc)."""
    record = owner_record_path(claude_dir)
    with contextlib.suppress(OSError):
        if record.is_file() and not record.is_symlink():
            record.unlink()
            log.info("removed leftover Claude Code owner record %s", record)


def _busy_error(claude_dir: Path, busy: Path, waited_s: float) -> ClaudeLockBusy:
    held_s = waited_s
    if busy.name == PRIMARY_NAME:
        birth_ms = _read_owner_field(owner_record_path(claude_dir), "lockBirthtimeMs")
        if birth_ms is not None:
            held_s = max(held_s, time.time() - birth_ms / 1000.0)
    mtime_ns = _mtime_ns(busy)
    touched = ""
    if mtime_ns is not None:
        touched = f" (its holder touched it {max(0.0, time.time() - mtime_ns / 1e9):.0f} s ago)"
    return ClaudeLockBusy(
        f"Claude Code lock {busy} is busy, held for at least {held_s:.1f} s{touched}: "
        "Claude Code is refreshing its token; retry in a minute, "
        f"or remove {busy} if no claude process is running"
    )


def _mtime(path: Path) -> float | None:
    ns = _mtime_ns(path)
    return None if ns is None else ns / 1e9


def _mtime_ns(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _read_owner_field(record: Path, field: str) -> float | None:
    """A numeric field of Claude Code's owner record; anything unreadable is 'unknown'."""
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get(field) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _read_owner_pid(record: Path) -> int | None:
    pid = _read_owner_field(record, "pid")
    return int(pid) if pid is not None and pid > 0 else None
