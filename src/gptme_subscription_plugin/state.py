"""The tool's state directory: small locked JSON documents and an append-only event log.

Documents are read without a lock (every write is an atomic rename, so a reader sees the old
or the new file, never half of one) and changed only under a per-document `filelock`, so
processes that update the same document never lose each other's changes.
The event log is one JSON object per line, appended with a single O_APPEND write so lines from
concurrent processes never interleave. This module is not on the PreToolUse hot path (see
turns.py for that), so it may use filelock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import filelock

from .crashpoints import crash_point
from .fsutil import (
    FILE_MODE,
    atomic_write_text,
    check_private,
    ensure_private_dir,
    open_private_append,
    open_private_read,
    read_private_bytes,
)
from .names import check_name
from .redact import REDACTED, has_token

log = logging.getLogger(__name__)

EVENTS_FILE = "events.jsonl"
MAX_EVENT_LINE = 4096
MAX_EVENTS_BYTES = 5 * 1024 * 1024
_STRING_LIMITS = (1024, 256, 64, 16)
_TAIL_CHUNK = 64 * 1024
_RECORD_START = b'{"ts":'
_MAX_RECOVERY_TRIES = 16


class StateBusy(Exception):
    """Another process held a state document's lock for longer than we wait."""


class StateUnwritable(OSError):
    """The state dir cannot take a write (read-only, full, permission denied)."""


def validate_name(name: str) -> str:
    """Document names become file names: letters, digits, `_` and `-` only, so no path tricks."""
    return check_name(name, "state document name")


class StateStore:
    """JSON documents `<state_dir>/<name>.json`, read lock-free and updated under a file lock."""

    def __init__(
        self, state_dir: Path, lock_timeout: float = 10.0, events: EventLog | None = None
    ) -> None:
        self.state_dir = ensure_private_dir(Path(state_dir), "state dir")
        self.lock_timeout = lock_timeout
        self.events = events if events is not None else EventLog(self.state_dir)

    def path(self, name: str) -> Path:
        return self.state_dir / f"{validate_name(name)}.json"

    def ensure_writable(self) -> None:
        """Fail before acting, not halfway: an action whose record cannot be kept is refused."""
        probe = self.state_dir / f".probe-{os.getpid()}"
        try:
            ensure_private_dir(self.state_dir, "state dir")
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(probe, flags, FILE_MODE)
            try:
                os.write(fd, b"probe\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StateUnwritable(
                exc.errno, f"state dir {self.state_dir} is not writable ({exc.strerror})"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    def read(self, name: str) -> dict[str, Any]:
        """The document, or {} when missing; a corrupt one is moved aside (under the lock)."""
        path = self.path(name)
        doc = _load(path)
        if doc is not None:
            return doc
        # Corrupt: re-check under the lock so we never move aside a good file a writer just put.
        try:
            with self._lock(name):
                return self._read_locked(name, path)
        except StateBusy:
            return {}

    def update(
        self, name: str, fn: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any]:
        """Read-modify-write under the document lock; `fn` mutates the dict or returns a new one."""
        path = self.path(name)
        with self._lock(name):
            current = self._read_locked(name, path)
            before = json.dumps(current, sort_keys=True)
            result = fn(current)
            doc = current if result is None else result
            if not isinstance(doc, dict):
                raise TypeError(f"update of {name!r} must produce a dict, got {type(doc).__name__}")
            if json.dumps(doc, sort_keys=True) != before or not path.exists():
                crash_point("state:locked")
                atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
            return doc

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        lock_path = self.state_dir / f"{name}.json.lock"
        lock = filelock.FileLock(str(lock_path), timeout=self.lock_timeout, mode=FILE_MODE)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise StateBusy(
                f"state document {name!r} is busy: another gptme-subscription process held "
                f"{lock_path} for more than {self.lock_timeout:g} s; retry shortly"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def _read_locked(self, name: str, path: Path) -> dict[str, Any]:
        doc = _load(path)
        if doc is None:
            self._move_aside(name, path)
            return {}
        return doc

    def _move_aside(self, name: str, path: Path) -> None:
        now = time.time()
        target = _free_name(path, f".corrupt-{int(now)}")
        try:
            os.replace(path, target)
        except OSError as exc:
            log.warning("could not move corrupt %s aside: %s", path, exc.strerror)
            return
        log.warning("moved corrupt state document %s to %s", path, target.name)
        with contextlib.suppress(OSError):
            self.events.append("state_corrupt", now, name=name, moved_to=target.name)


def _load(path: Path) -> dict[str, Any] | None:
    """Parsed document; {} if missing; None if it is not a JSON object (corrupt).

    A document that is a symlink or not ours alone raises ForeignPathError: never read.
    """
    raw = read_private_bytes(path, "state document")
    if raw is None:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _free_name(path: Path, suffix: str) -> Path:
    candidate = path.with_name(path.name + suffix)
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}{suffix}-{n}")
        n += 1
    return candidate


class EventLog:
    """Append-only `<state_dir>/events.jsonl` (0600), one JSON object a line, rotated at ~5 MiB.

    A log that is a symlink or not ours is refused when the log is opened (ForeignPathError),
    so a surface stops before it acts, not after; appends use O_NOFOLLOW all the same.
    """

    def __init__(self, state_dir: Path, max_bytes: int = MAX_EVENTS_BYTES) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / EVENTS_FILE
        self.max_bytes = max_bytes
        check_private(self.path, "event log", follow=False)

    @property
    def rotated_path(self) -> Path:
        return self.path.with_name(EVENTS_FILE + ".1")

    def append(self, kind: str, now: float, **fields: Any) -> dict[str, Any]:
        """Write one event line atomically (one O_APPEND write); returns the record as written."""
        for reserved in ("ts", "kind"):
            if reserved in fields:
                raise ValueError(f"event field {reserved!r} is reserved")
        record = _redact({"ts": now, "kind": str(kind)[:64], **fields})
        line, record = _encode_line(record)
        ensure_private_dir(self.state_dir, "state dir")
        fd = open_private_append(self.path, "event log")
        try:
            os.write(fd, line)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > self.max_bytes:
            self._rotate()
        return record

    def tail(self, n: int = 20, kinds: set[str] | None = None) -> list[dict[str, Any]]:
        """The last `n` events (oldest first), optionally only these kinds; bad lines skipped."""
        if n <= 0:
            return []
        found: list[dict[str, Any]] = []
        for path in (self.path, self.rotated_path):
            for record in _records_backwards(path):
                if kinds is None or record.get("kind") in kinds:
                    found.append(record)
                    if len(found) >= n:
                        return found[::-1]
        return found[::-1]

    def _rotate(self) -> None:
        """Rename to events.jsonl.1 once, even when several processes notice at the same time."""
        lock = filelock.FileLock(str(self.path) + ".lock", timeout=0, mode=FILE_MODE)
        try:
            lock.acquire()
        except filelock.Timeout:
            return  # someone else is rotating; a later append retries if needed
        try:
            with contextlib.suppress(FileNotFoundError):
                if self.path.stat().st_size > self.max_bytes:
                    os.replace(self.path, self.rotated_path)
        finally:
            lock.release()


def _redact(value: Any) -> Any:
    """Defence in depth: no string that looks like a Claude token reaches the log."""
    if isinstance(value, str):
        return REDACTED if has_token(value) else value
    if isinstance(value, dict):
        return {_redact(str(k)): _redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    return value


def _shorten(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + "...[truncated]"
    if isinstance(value, dict):
        return {k: _shorten(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten(v, limit) for v in value]
    return value


def _encode_line(record: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """One line under 4 KiB: shorten long strings step by step; as a last resort drop fields."""
    try:
        line = _dumps(record)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"event fields must be JSON-serializable: {exc}") from None
    for limit in _STRING_LIMITS:
        if len(line) < MAX_EVENT_LINE:
            return line, record
        record = _shorten(record, limit)
        line = _dumps(record)
    if len(line) >= MAX_EVENT_LINE:
        record = {"ts": record["ts"], "kind": record["kind"], "truncated": True}
        line = _dumps(record)
    return line, record


def _dumps(record: dict[str, Any]) -> bytes:
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text + "\n").encode("utf-8")


def _records_backwards(path: Path) -> Iterator[dict[str, Any]]:
    """Parsed lines from the end of the file towards its start; unparseable lines skipped."""
    for raw in _lines_backwards(path):
        record = _parse_line(raw)
        if record is not None:
            yield record


def _parse_line(raw: bytes) -> dict[str, Any] | None:
    """One event; a line glued to a crashed writer's partial line is recovered from its start.

    Our lines always begin with `{"ts":` and that byte sequence cannot occur inside an encoded
    string, so the first suffix starting there that parses is the appended event.
    """
    start = 0
    for _ in range(_MAX_RECOVERY_TRIES):
        try:
            record = json.loads(raw[start:])
        except ValueError:
            start = raw.find(_RECORD_START, start + 1)
            if start < 0:
                return None
            continue
        return record if isinstance(record, dict) else None
    return None


def _lines_backwards(path: Path) -> Iterator[bytes]:
    try:
        f = os.fdopen(open_private_read(path, "event log"), "rb")
    except FileNotFoundError:
        return
    with f:
        pos = f.seek(0, os.SEEK_END)
        rest = b""
        while pos > 0:
            step = min(_TAIL_CHUNK, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step) + rest
            lines = chunk.split(b"\n")
            rest = lines[0]
            for line in reversed(lines[1:]):
                if line.strip():
                    yield line
        if rest.strip():
            yield rest
