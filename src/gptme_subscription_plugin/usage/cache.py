"""One usage cache per slot, shared by every process, and the poll budget that protects it.

The usage endpoint answers about 30 requests per hour per account and then 429s for up to an
hour, and every hook, statusline and tool call of every session wants fresh numbers. So all of
them read this cache, feed it whatever free data they have (statusline), and go through `poll`,
which allows at most one request per slot per `poll_interval`, one in flight across processes,
and backs off exponentially after failures, never earlier than a Retry-After.

Layout: `<state_dir>/usage/<slot>.json` (0600) plus `<slot>.lock` (short writes) and
`<slot>.poll.lock` (held for the whole request). Decisions use only the `now` passed in.

The rules (merge, staleness, poll budget, backoff) are pure: `SlotRecord` and `UsageRules`
hold them without files, so the simulator runs these very rules in memory.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..fsutil import atomic_write_text, check_private, private_subdir, read_private_bytes
from ..names import is_valid_name, validate_slot_name
from .history import record_sample
from .oauth import SourceBusy, UsageFetchError, UsageParseError
from .snapshot import FIVE_HOUR, SEVEN_DAY, UsageSnapshot, UsageWindow

DOC_VERSION = 1
USAGE_DIR = "usage"
SOURCE_LOCK_NAME = ".source.lock"  # no slot name starts with a dot
# A Retry-After longer than this is treated as this long: a broken header must not mute a slot
# for weeks, and the endpoint's real values are 0 or about an hour.
MAX_RETRY_AFTER = 24 * 3600.0
# per-model windows kept per slot: models come and go, a cache must not grow with them
MAX_MODEL_WINDOWS = 16
# a reset may be reported a little past the window's length (clock skew, rounding), not more
RESET_SLACK = 1.25
# a slot's cache is a few KB; a bigger one is read as empty and rewritten at the next poll
MAX_CACHE_BYTES = 256 * 1024
MIN_BACKOFF = 1.0
_MODEL_PREFIX = "model:"


def fresh_until(observed_at: float, poll_interval: float) -> float:
    """The last moment a reading counts as fresh: older than two poll intervals, it is stale
    (a poll should have replaced it by then)."""
    return observed_at + poll_interval * 2


def _check_slot(slot: str) -> str:
    """Slot names become file names here: plain identifiers only."""
    return validate_slot_name(slot)


def _opt_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@dataclass
class PollState:
    """Budget bookkeeping for one slot; `hard_until` is a rate-limit wait even force obeys."""

    last_attempt: float | None = None
    last_success: float | None = None
    next_allowed: float | None = None
    hard_until: float | None = None
    backoff_count: int = 0
    last_error: str | None = None
    last_error_kind: str | None = None
    last_error_at: float | None = None
    note: str | None = None  # what the last good answer said that we could not believe

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Any) -> PollState:
        if not isinstance(data, dict):
            return cls()
        count = data.get("backoff_count")
        error, kind, note = data.get("last_error"), data.get("last_error_kind"), data.get("note")
        return cls(
            last_attempt=_opt_float(data.get("last_attempt")),
            last_success=_opt_float(data.get("last_success")),
            next_allowed=_opt_float(data.get("next_allowed")),
            hard_until=_opt_float(data.get("hard_until")),
            backoff_count=count if isinstance(count, int) and count >= 0 else 0,
            last_error=error if isinstance(error, str) else None,
            last_error_kind=kind if isinstance(kind, str) else None,
            last_error_at=_opt_float(data.get("last_error_at")),
            note=note if isinstance(note, str) else None,
        )

    def succeeded(self, now: float) -> None:
        self.last_attempt = self.last_success = now
        self.next_allowed = self.hard_until = None
        self.backoff_count = 0
        self.last_error = self.last_error_kind = self.note = None
        self.last_error_at = None

    def failed(self, now: float, kind: str, message: str, wait: float, hard: bool) -> None:
        self.last_attempt = self.last_error_at = now
        self.backoff_count += 1
        self.next_allowed = now + wait
        self.hard_until = now + wait if hard else None
        self.last_error, self.last_error_kind = message, kind


@dataclass
class _Observed:
    """One window as last observed, with when and from which source."""

    window: UsageWindow
    observed_at: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window.to_dict(),
            "observed_at": self.observed_at,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Any) -> _Observed | None:
        if not isinstance(data, dict):
            return None
        window = UsageWindow.from_dict(data.get("window"))
        observed = _opt_float(data.get("observed_at"))
        source = data.get("source")
        if window is None or observed is None or not isinstance(source, str):
            return None
        return cls(window, observed, source)


@dataclass
class SlotRecord:
    """The on-disk document of one slot: windows keyed "five_hour", "seven_day", "model:<name>"."""

    slot: str
    windows: dict[str, _Observed] = field(default_factory=dict)
    poll: PollState = field(default_factory=PollState)

    def merge(self, snapshot: UsageSnapshot, at: float | None = None) -> list[str]:
        """Per window, the newer observation wins (ties go to the incoming one). `at`: when
        the reading was taken, if not `snapshot.observed_at` (the simulator re-dates one
        memoised parse to every reading with the same content).

        Returns the windows whose reset time was not believed (kept as unknown).
        """
        observed_at = snapshot.observed_at if at is None else at
        ignored = []
        incoming: dict[str, UsageWindow | None] = {
            FIVE_HOUR: snapshot.five_hour,
            SEVEN_DAY: snapshot.seven_day,
        }
        for name, model_window in snapshot.models.items():
            incoming[_MODEL_PREFIX + name] = model_window
        for key, window in incoming.items():
            plausible = _plausible_reset(window, observed_at)
            if plausible is not window:
                ignored.append(key)
            window = plausible
            old = self.windows.get(key)
            if window is not None and (old is None or old.observed_at <= observed_at):
                self.windows[key] = _Observed(window, observed_at, snapshot.source)
        models = sorted(
            (k for k in self.windows if k.startswith(_MODEL_PREFIX)),
            key=lambda k: self.windows[k].observed_at,
        )
        for stale in models[: max(0, len(models) - MAX_MODEL_WINDOWS)]:
            del self.windows[stale]  # the models seen longest ago go first
        return ignored

    def snapshot(self, stale: Callable[[float], bool] | None = None) -> UsageSnapshot | None:
        """All windows as one snapshot, dated by (and credited to) the newest observation;
        `stale` says from that date whether it is stale."""
        if not self.windows:
            return None
        newest = max(self.windows.values(), key=lambda o: o.observed_at)
        models = {
            key[len(_MODEL_PREFIX) :]: obs.window
            for key, obs in self.windows.items()
            if key.startswith(_MODEL_PREFIX)
        }
        five, seven = self.windows.get(FIVE_HOUR), self.windows.get(SEVEN_DAY)
        return UsageSnapshot(
            slot=self.slot,
            source=newest.source,
            observed_at=newest.observed_at,
            five_hour=five.window if five else None,
            seven_day=seven.window if seven else None,
            models=models,
            stale=stale is not None and stale(newest.observed_at),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": DOC_VERSION,
            "slot": self.slot,
            "windows": {key: obs.to_dict() for key, obs in sorted(self.windows.items())},
            "poll": self.poll.to_dict(),
        }

    @classmethod
    def from_dict(cls, slot: str, data: Any) -> SlotRecord:
        """Whatever is unreadable is dropped: a corrupt cache costs one poll, never a crash."""
        record = cls(slot)
        if not isinstance(data, dict) or data.get("version") != DOC_VERSION:
            return record
        windows = data.get("windows")
        if isinstance(windows, dict):
            for key, raw in windows.items():
                obs = _Observed.from_dict(raw)
                if isinstance(key, str) and obs is not None:
                    record.windows[key] = obs
        record.poll = PollState.from_dict(data.get("poll"))
        return record


def _plausible_reset(window: UsageWindow | None, observed_at: float) -> UsageWindow | None:
    """A reset further ahead than the window is long is no reset time at all: unknown.

    A 5-hour window cannot reset years from now; believing it would park a slot for years.
    """
    if window is None or window.resets_at is None:
        return window
    if window.resets_at > observed_at + window.window_seconds * RESET_SLACK:
        return replace(window, resets_at=None)
    return window


class UsageRules:
    """The cache's pure rules, on a poll interval and a maximum backoff: when a reading is
    stale, whether a poll may go out now, how long to wait after a failure."""

    def __init__(self, poll_interval: float, max_backoff: float = 3600.0) -> None:
        self.poll_interval = max(0.0, float(poll_interval))
        self.max_backoff = max(float(max_backoff), MIN_BACKOFF)

    def is_stale(self, record: SlotRecord, observed_at: float, now: float) -> bool:
        """Old data, or a poll failed and nothing newer has arrived since."""
        if now > fresh_until(observed_at, self.poll_interval):
            return True
        failed_at = record.poll.last_error_at
        return (
            record.poll.last_error is not None
            and failed_at is not None
            and failed_at >= observed_at
        )

    def view(self, record: SlotRecord, now: float) -> UsageSnapshot | None:
        """The record's merged snapshot, stale-marked (None when nothing is known)."""
        return record.snapshot(lambda observed_at: self.is_stale(record, observed_at, now))

    def max_wait(self) -> float:
        return max(self.max_backoff, MAX_RETRY_AFTER)

    def waiting(self, until: float | None, now: float) -> bool:
        """A wait is in force; one further away than any we set means the clock jumped back."""
        return until is not None and now < until <= now + self.max_wait()

    def gate(self, poll: PollState, now: float, force: bool = False) -> str | None:
        """Why not to poll now, or None to go ahead."""
        if self.waiting(poll.hard_until, now):
            return "backoff"
        if not force and self.waiting(poll.next_allowed, now):
            return "backoff"
        last = poll.last_attempt
        if not force and last is not None and abs(now - last) < self.poll_interval:
            return "fresh" if poll.last_error is None else "budget"
        if force and poll.last_success is not None and poll.last_success >= now:
            return "fresh"  # another process polled at this very moment
        return None

    def backoff(self, count: int) -> float:
        """poll_interval, doubling per consecutive failure, capped at max_backoff."""
        base = max(self.poll_interval, MIN_BACKOFF)
        return min(self.max_backoff, base * 2.0 ** min(max(count - 1, 0), 60))

    def fail(
        self, poll: PollState, now: float, kind: str, message: str, retry_after: float | None
    ) -> None:
        """Record a failed poll: back off, never earlier than a Retry-After (capped); only a
        429's wait is one that force cannot break."""
        wait = max(self.backoff(poll.backoff_count + 1), min(retry_after or 0.0, MAX_RETRY_AFTER))
        poll.failed(now, kind, message, wait, hard=kind == "rate_limited")


@dataclass(frozen=True)
class PollResult:
    """What `poll` did: the snapshot to use now, whether it asked the source, and why."""

    snapshot: UsageSnapshot | None
    polled: bool
    reason: str  # "fresh", "budget", "backoff", "in-flight elsewhere", "polled", "error: ..."
    error_kind: str | None = None


class UsageCache:
    """Per-slot usage cache under `<state_dir>/usage/`, safe to share between processes."""

    def __init__(
        self,
        state_dir: Path,
        poll_interval: float,
        max_backoff: float = 3600.0,
        lock_timeout: float = 2.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.dir = self.state_dir / USAGE_DIR
        check_private(self.dir, "directory", follow=False)  # never a planted link
        self.rules = UsageRules(poll_interval, max_backoff)
        self.poll_interval = self.rules.poll_interval
        self.lock_timeout = lock_timeout

    # ------------------------------------------------------------ files and locks

    def path(self, slot: str) -> Path:
        return self.dir / f"{_check_slot(slot)}.json"

    def slots(self) -> list[str]:
        """Slots that have a cache file, sorted."""
        try:
            names = [p.name[: -len(".json")] for p in self.dir.glob("*.json")]
        except OSError:
            return []
        return sorted(n for n in names if is_valid_name(n))

    def _read(self, slot: str) -> SlotRecord:
        path = self.path(slot)  # a bad slot name raises here, before the lenient read
        try:  # a symlink or someone else's file raises ForeignPathError: never read
            raw = read_private_bytes(path, "usage cache", limit=MAX_CACHE_BYTES)
            data = json.loads(raw) if raw is not None else None
        except (OSError, ValueError, RecursionError):
            data = None
        return SlotRecord.from_dict(slot, data)

    def _write(self, record: SlotRecord) -> None:
        private_subdir(self.state_dir, USAGE_DIR)
        text = json.dumps(record.to_dict(), sort_keys=True, indent=1)
        atomic_write_text(self.path(record.slot), text + "\n")

    def source_lock(self) -> FileLock:
        """Held while a source that takes one caller at a time (a usage script) is asked."""
        private_subdir(self.state_dir, USAGE_DIR)
        return FileLock(self.dir / SOURCE_LOCK_NAME, mode=0o600)

    def _lock(self, slot: str, suffix: str) -> FileLock:
        private_subdir(self.state_dir, USAGE_DIR)
        return FileLock(self.dir / f"{_check_slot(slot)}{suffix}", mode=0o600)

    @contextlib.contextmanager
    def _data_lock(self, slot: str) -> Iterator[bool]:
        """Hold `<slot>.lock` for a read-modify-write; yields False (no lock) after the timeout."""
        lock = self._lock(slot, ".lock")
        try:
            lock.acquire(timeout=self.lock_timeout)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def _update(self, slot: str, change: Callable[[SlotRecord], None]) -> SlotRecord | None:
        """Locked read-change-write; None when the lock was busy and the write was skipped."""
        with self._data_lock(slot) as locked:
            if not locked:
                return None
            record = self._read(slot)
            change(record)
            self._write(record)
            return record

    # ------------------------------------------------------------ reading

    def _view(self, record: SlotRecord, now: float) -> UsageSnapshot | None:
        return self.rules.view(record, now)

    def get(self, slot: str, now: float) -> UsageSnapshot | None:
        """The merged cached snapshot of `slot` (None when nothing is known), stale-marked."""
        return self._view(self._read(slot), now)

    def record(self, snapshot: UsageSnapshot) -> bool:
        """Merge a snapshot from any source; False when the slot lock stayed busy (not written)."""
        _check_slot(snapshot.slot)
        if snapshot.five_hour is None and snapshot.seven_day is None and not snapshot.models:
            return True

        def change(record: SlotRecord) -> None:
            record.merge(snapshot)

        stored = self._update(snapshot.slot, change) is not None
        if stored:
            record_sample(self.dir, snapshot, snapshot.observed_at)
        return stored

    # ------------------------------------------------------------ polling

    def _cached(self, record: SlotRecord, now: float, reason: str) -> PollResult:
        return PollResult(self._view(record, now), False, reason)

    def _store_failure(
        self, slot: str, now: float, kind: str, message: str, retry_after: float | None
    ) -> PollResult:
        def change(record: SlotRecord) -> None:
            self.rules.fail(record.poll, now, kind, message, retry_after)

        record = self._update(slot, change) or self._read(slot)
        view = self._view(record, now)
        return PollResult(view.marked_stale() if view else None, True, f"error: {message}", kind)

    def _fetch_and_store(
        self, slot: str, fetch: Callable[[], UsageSnapshot], now: float
    ) -> PollResult:
        try:
            fetched = fetch()
        except SourceBusy:
            return self._cached(self._read(slot), now, "in-flight elsewhere")
        except UsageFetchError as exc:
            return self._store_failure(slot, now, exc.kind, exc.message, exc.retry_after)
        except UsageParseError as exc:
            return self._store_failure(slot, now, "garbage", str(exc), None)
        except Exception as exc:  # a broken source must not break a hook; keep the type only
            message = f"usage source failed ({type(exc).__name__})"
            return self._store_failure(slot, now, "internal", message, None)
        fetched = replace(fetched, slot=slot, stale=False)

        def change(record: SlotRecord) -> None:
            ignored = record.merge(fetched)
            record.poll.succeeded(now)
            if ignored:
                record.poll.note = (
                    f"reset of {', '.join(ignored)} ignored: further ahead than the window is long"
                )

        record = self._update(slot, change)
        if record is not None:
            record_sample(self.dir, fetched, now)
        view = self._view(record, now) if record is not None else fetched
        return PollResult(view, True, "polled")

    def poll(
        self, slot: str, fetch: Callable[[], UsageSnapshot], now: float, force: bool = False
    ) -> PollResult:
        """Fetch through `fetch` only if the budget allows; otherwise return the cached snapshot.

        `force` skips the poll_interval budget and error backoff, never a rate-limit wait.
        """
        record = self._read(slot)
        reason = self.rules.gate(record.poll, now, force)
        if reason:
            return self._cached(record, now, reason)
        poll_lock = self._lock(slot, ".poll.lock")
        try:
            poll_lock.acquire(blocking=False)
        except Timeout:
            return self._cached(self._read(slot), now, "in-flight elsewhere")
        try:
            record = self._read(slot)  # another process may have polled meanwhile
            reason = self.rules.gate(record.poll, now, force)
            if reason:
                return self._cached(record, now, reason)
            return self._fetch_and_store(slot, fetch, now)
        finally:
            poll_lock.release()

    # ------------------------------------------------------------ display

    def status(self, slot: str, now: float) -> dict[str, Any]:
        """Budget state for people: when it last polled, when it may poll again, what failed."""
        record = self._read(slot)
        poll = record.poll
        next_poll = now
        last = poll.last_attempt
        if last is not None and abs(now - last) < self.poll_interval:
            next_poll = max(next_poll, last + self.poll_interval)
        if self.rules.waiting(poll.next_allowed, now) and poll.next_allowed is not None:
            next_poll = max(next_poll, poll.next_allowed)
        view = self._view(record, now)
        return {
            "slot": slot,
            "last_poll_at": poll.last_attempt,
            "last_success_at": poll.last_success,
            "next_poll_at": next_poll,
            "next_poll_in": max(0.0, next_poll - now),
            "backoff_count": poll.backoff_count,
            "rate_limited_until": poll.hard_until
            if self.rules.waiting(poll.hard_until, now)
            else None,
            "last_error": poll.last_error,
            "last_error_kind": poll.last_error_kind,
            "note": poll.note,
            "observed_at": view.observed_at if view else None,
            "source": view.source if view else None,
            "stale": view.stale if view else None,
        }
