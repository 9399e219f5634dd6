"""A week of each slot's utilization, sampled as the usage cache learns it, for the dashboard.

The cache keeps only the newest reading of each window; the dashboard's chart wants how the
weekly window filled over the past days. So whenever the cache stores a reading, at most one
sample per `SAMPLE_EVERY` is appended to `<state_dir>/usage/<slot>.history.jsonl` (0600):
`[observed_at, five_hour, seven_day]` as fractions (null when unknown). Whether one is due is a
`stat` of the file (its mtime), so the hooks that record usage pay one system call, and the
file is cut back to `KEEP` seconds of samples when it grows past `MAX_BYTES`.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from ..fsutil import atomic_write_text, open_private_append, read_private_bytes
from ..names import validate_slot_name
from .snapshot import UsageSnapshot, clamp_fraction

SAMPLE_EVERY = 600.0
KEEP = 8 * 86400.0
MAX_BYTES = 64 * 1024
_SUFFIX = ".history.jsonl"

Sample = tuple[float, float | None, float | None]


def history_path(usage_dir: Path, slot: str) -> Path:
    return usage_dir / f"{validate_slot_name(slot)}{_SUFFIX}"


def record_sample(usage_dir: Path, snapshot: UsageSnapshot, now: float) -> bool:
    """Append one sample of `snapshot` when the last is older than SAMPLE_EVERY; True if so.

    Never raises for a file problem: a missing chart point must not fail a hook.
    """
    five = snapshot.five_hour.utilization if snapshot.five_hour else None
    week = snapshot.seven_day.utilization if snapshot.seven_day else None
    if five is None and week is None:
        return False
    path = history_path(usage_dir, snapshot.slot)
    try:
        with contextlib.suppress(FileNotFoundError):
            if 0 <= now - os.stat(path, follow_symlinks=False).st_mtime < SAMPLE_EVERY:
                return False
        line = json.dumps([round(snapshot.observed_at, 1), five, week]) + "\n"
        fd = open_private_append(path, "usage history")
        try:
            os.write(fd, line.encode("ascii"))
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > MAX_BYTES:
            _trim(path, now)
        return True
    except (OSError, ValueError):
        return False


def read_samples(usage_dir: Path, slot: str, since: float) -> list[Sample]:
    """The slot's samples taken at or after `since`, oldest first; bad lines skipped."""
    try:
        raw = read_private_bytes(history_path(usage_dir, slot), "usage history", MAX_BYTES * 2)
    except (OSError, ValueError):
        return []
    samples = [s for s in _parse(raw or b"") if s[0] >= since]
    return sorted(samples)


def _parse(raw: bytes) -> list[Sample]:
    found: list[Sample] = []
    for line in raw.splitlines():
        try:
            at, five, week = json.loads(line)
        except (ValueError, TypeError):
            continue
        if _number(at) and all(v is None or _number(v) for v in (five, week)):
            found.append((float(at), _fraction(five), _fraction(week)))
    return found


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fraction(value: object) -> float | None:
    return clamp_fraction(float(value)) if _number(value) else None  # type: ignore[arg-type]


def _trim(path: Path, now: float) -> None:
    """Keep the last KEEP seconds (rewritten atomically; a lost race only drops a sample)."""
    raw = read_private_bytes(path, "usage history", MAX_BYTES * 4) or b""
    kept = [s for s in _parse(raw) if s[0] >= now - KEEP]
    atomic_write_text(path, "".join(json.dumps(list(s)) + "\n" for s in kept))
