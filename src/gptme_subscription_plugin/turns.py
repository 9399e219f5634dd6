"""Cross-session registry of turns in progress, so a flip waits until no session is mid-turn.

This runs inside Claude Code's PreToolUse hook, on every tool call: it imports only the stdlib
and fsutil and takes no cross-process lock. Each session owns one small file,
`<state_dir>/sessions/<key>.json`, that only its own hooks write (atomic renames), so there is
nothing to lock. An entry that stops being refreshed expires after `ttl`: a session that died
mid-turn never blocks flips for good. The clock is always an argument.

A session in a slot's profile (its own config dir, `session_home.py`) names that slot in its
entry: it never uses the live link, so it never blocks a flip of the link, and the launcher
counts live sessions per slot from these entries (`sessions_by_slot`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .fsutil import (
    atomic_write_text,
    check_private,
    private_subdir,
    read_private_bytes,
    sweep_temp_files,
)

BUSY = "busy"
IDLE = "idle"
SESSIONS_DIR = "sessions"
REFRESH_MIN_S = 2.0
_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_MAX_ID = 64
_HASH_PREFIX = "h-"
_HASH_CHARS = 32


class SessionTurn:
    """One session's entry: `since` is when it entered `state`, `last_seen` its last hook,
    `slot` the slot whose profile it runs in (None: the main dir, on the live link).

    A plain class, not a dataclass: importing dataclasses would add ~9 ms to every tool call.
    """

    __slots__ = ("session_id", "state", "since", "last_seen", "pid", "slot")

    def __init__(
        self,
        session_id: str,
        state: str,
        since: float,
        last_seen: float,
        pid: int | None = None,
        slot: str | None = None,
    ) -> None:
        self.session_id = session_id
        self.state = state
        self.since = since
        self.last_seen = last_seen
        self.pid = pid
        self.slot = slot

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SessionTurn) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.session_id, self.state, self.since, self.last_seen, self.pid, self.slot))

    def __repr__(self) -> str:
        return f"SessionTurn({self.to_dict()!r})"

    def to_dict(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "state": self.state,
            "since": self.since,
            "last_seen": self.last_seen,
            "pid": self.pid,
            "slot": self.slot,
        }

    @property
    def busy(self) -> bool:
        return self.state == BUSY

    @property
    def on_link(self) -> bool:
        """Whether the session runs on the live link (not in a profile)."""
        return self.slot is None

    def live(self, now: float, ttl: float) -> bool:
        return now - self.last_seen <= ttl


def session_key(session_id: str) -> str:
    """A safe file stem: the id itself when it is plain, else a sha256 prefix of it."""
    if 0 < len(session_id) <= _MAX_ID and _SAFE_CHARS.issuperset(session_id):
        return session_id
    import hashlib  # only for unusual ids: keeps the PreToolUse path light

    digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()
    return _HASH_PREFIX + digest[:_HASH_CHARS]


class TurnRegistry:
    """Per-session files under `<state_dir>/sessions/`; see the module docstring."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.dir = self.state_dir / SESSIONS_DIR
        # a planted link would have us write, and sweep, inside someone else's dir
        check_private(self.dir, "directory", follow=False)

    def path_for(self, session_id: str) -> Path:
        return self.dir / f"{session_key(session_id)}.json"

    def get(self, session_id: str) -> SessionTurn | None:
        return _load(self.path_for(session_id))

    def mark_busy(
        self, session_id: str, now: float, pid: int | None = None, slot: str | None = None
    ) -> SessionTurn:
        """Turn in progress; cheap when repeated (no rewrite within REFRESH_MIN_S). `slot`:
        the session's profile slot (None keeps what the entry says)."""
        old = self.get(session_id)
        slot = _pick_slot(slot, old)
        if old is not None and old.busy:
            fresh = 0 <= now - old.last_seen < REFRESH_MIN_S
            if fresh and (pid is None or pid == old.pid) and slot == old.slot:
                return old
            entry = SessionTurn(session_id, BUSY, old.since, now, _pick_pid(pid, old), slot)
        else:
            entry = SessionTurn(session_id, BUSY, now, now, _pick_pid(pid, old), slot)
        self._write(entry)
        return entry

    def mark_idle(self, session_id: str, now: float, slot: str | None = None) -> SessionTurn:
        """Turn over (Stop / StopFailure); the session stays registered until it goes silent."""
        old = self.get(session_id)
        since = old.since if old is not None and not old.busy else now
        entry = SessionTurn(session_id, IDLE, since, now, _pid_of(old), _pick_slot(slot, old))
        self._write(entry)
        return entry

    def unregister(self, session_id: str) -> None:
        """SessionEnd: forget the session."""
        try:  # noqa: SIM105 - contextlib would cost import time on the hook path
            self.path_for(session_id).unlink()
        except FileNotFoundError:
            pass

    def sessions(self, now: float, ttl: float) -> list[SessionTurn]:
        """All entries seen within `ttl`, busy or idle; unreadable files are ignored."""
        entries = (_load(path) for path in self._files())
        live = [e for e in entries if e is not None and e.live(now, ttl)]
        return sorted(live, key=lambda e: (e.since, e.session_id))

    def busy_sessions(
        self, now: float, ttl: float, exclude: str | None = None, *, everywhere: bool = False
    ) -> list[SessionTurn]:
        """Sessions mid-turn on the live link (busy and seen within `ttl`), other than
        `exclude`: the ones a flip of the link must wait for. `everywhere`: those in a
        profile too."""
        skip = session_key(exclude) if exclude is not None else None
        return [
            entry
            for entry in self.sessions(now, ttl)
            if entry.busy
            and (everywhere or entry.on_link)
            and session_key(entry.session_id) != skip
        ]

    def sessions_by_slot(self, now: float, ttl: float) -> dict[str, int]:
        """Live sessions (busy or idle, seen within `ttl`) per profile slot; sessions on the
        live link are not counted."""
        counts: dict[str, int] = {}
        for entry in self.sessions(now, ttl):
            if entry.slot is not None:
                counts[entry.slot] = counts.get(entry.slot, 0) + 1
        return counts

    def sweep(self, now: float, ttl: float) -> int:
        """Remove entries silent for longer than `ttl` (idle ones too); returns how many."""
        removed = 0
        for path in self._files():
            entry = _load(path)
            if entry is None:
                if _remove_if_old(path, now, ttl):
                    removed += 1
            elif not entry.live(now, ttl) and _remove_if_unchanged(path, entry):
                removed += 1
        sweep_temp_files(self.dir, "", ttl, now)
        return removed

    def _write(self, entry: SessionTurn) -> None:
        private_subdir(self.state_dir, SESSIONS_DIR)
        text = json.dumps(entry.to_dict(), sort_keys=True)
        atomic_write_text(self.path_for(entry.session_id), text + "\n")

    def _files(self) -> list[Path]:
        """Entry files only: temp files and anything else in the directory are skipped."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        return [self.dir / name for name in names if name.endswith(".json")]


def _pid_of(entry: SessionTurn | None) -> int | None:
    return entry.pid if entry is not None else None


def _pick_pid(pid: int | None, old: SessionTurn | None) -> int | None:
    return pid if pid is not None else _pid_of(old)


def _pick_slot(slot: str | None, old: SessionTurn | None) -> str | None:
    if slot is not None:
        return slot
    return old.slot if old is not None else None


def _load(path: Path) -> SessionTurn | None:
    """The entry in `path`, or None when missing, unreadable or not shaped like an entry.

    An entry that is a symlink or not ours alone raises ForeignPathError.
    """
    try:
        raw = read_private_bytes(path, "turn registry entry")
        data = json.loads(raw) if raw is not None else None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return _parse(data)


def _parse(data: dict[str, object]) -> SessionTurn | None:
    sid, state, pid = data.get("session_id"), data.get("state"), data.get("pid")
    slot = data.get("slot")
    since, last_seen = _number(data.get("since")), _number(data.get("last_seen"))
    if not isinstance(sid, str) or state not in (BUSY, IDLE):
        return None
    if since is None or last_seen is None:
        return None
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
        return None
    if slot is not None and not _slot_name(slot):
        return None
    return SessionTurn(sid, str(state), since, last_seen, pid, slot if slot is None else str(slot))


def _slot_name(value: object) -> bool:
    """names.py's slot-name rule, inline: this module imports no more of the package."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_ID
        and _SAFE_CHARS.issuperset(value)
        and value[0] not in "-_"
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _remove_if_unchanged(path: Path, entry: SessionTurn) -> bool:
    """Unlink an expired entry unless its session rewrote it since we read it."""
    current = _load(path)
    if current is None or current.last_seen != entry.last_seen:
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _remove_if_old(path: Path, now: float, ttl: float) -> bool:
    """A corrupt entry goes once its file is older than `ttl` (its session may still fix it)."""
    try:
        if now - path.stat().st_mtime <= ttl:
            return False
        path.unlink()
    except OSError:
        return False
    return True
