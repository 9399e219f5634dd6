"""The usage ledger: every API call in Claude Code's transcripts, attributed to its account.

`<state dir>/usage.sqlite` (0600, SQLite in WAL mode, so the dashboard and the CLI read while
another process updates) holds:
- `messages`: one row per API call (`message.id`), its session, time, model, token counts and
  the slot it is attributed to;
- `turns`: the session's slot at each turn boundary, copied from the event log's `turn`
  events, and `switches`: when the live link moved where (`switch` events). Copied, because
  the event log rotates and attribution must not depend on how much of it is left;
- `files`: how far each transcript and the event log have been read, so an update reads only
  what was appended since (a file that shrank or was replaced is read again from the start).

Attribution: a switch only ever happens at a turn boundary, so the slot a session named at its
last boundary before a message served that message (a profile session names its profile's
slot, a link session the live slot). A message with no boundary before it falls back to the
live slot at its time from the switch history, else "unknown". Hooks write the events; nothing
on the hook path touches this file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fsutil import check_private, ensure_private_dir, open_private_read
from ..state import EVENTS_FILE
from .prices import PRICES_AS_OF, PriceTable
from .reader import ReadStats, new_lines
from .transcript_lines import UsageLine, merge, parse_usage_line

if TYPE_CHECKING:
    from ..config import Config

LEDGER_FILE = "usage.sqlite"
SCHEMA_VERSION = 1
UNKNOWN = "unknown"
GROUPINGS = ("account", "session", "model", "day")
BATCH = 5000
_USAGE_MARK = b'"usage"'
_EVENT_MARKS = (b'"kind":"turn"', b'"kind":"switch"')

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, size INTEGER, offset INTEGER);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, session TEXT, ts REAL, model TEXT,
    input INTEGER, output INTEGER, cache_write INTEGER, cache_write_1h INTEGER,
    cache_read INTEGER, cwd TEXT, slot TEXT, by_turn INTEGER DEFAULT 0);
-- covering the reports: a range of time is read from the index alone, never the rows
CREATE INDEX IF NOT EXISTS messages_report ON messages (
    ts, slot, model, input, output, cache_write, cache_write_1h, cache_read);
CREATE INDEX IF NOT EXISTS messages_session ON messages (session, ts);
CREATE INDEX IF NOT EXISTS messages_unattributed ON messages (id) WHERE slot IS NULL;
CREATE TABLE IF NOT EXISTS turns (
    session TEXT, ts REAL, slot TEXT, phase TEXT, PRIMARY KEY (session, ts, phase));
CREATE TABLE IF NOT EXISTS switches (ts REAL PRIMARY KEY, slot TEXT);
"""

_ATTRIBUTE = """
UPDATE messages SET
  slot = COALESCE(
    (SELECT t.slot FROM turns t WHERE t.session = messages.session AND t.ts <= messages.ts
       AND t.slot IS NOT NULL ORDER BY t.ts DESC LIMIT 1),
    (SELECT s.slot FROM switches s WHERE s.ts <= messages.ts ORDER BY s.ts DESC LIMIT 1),
    'unknown'),
  by_turn = EXISTS (SELECT 1 FROM turns t WHERE t.session = messages.session
       AND t.ts <= messages.ts AND t.slot IS NOT NULL)
"""


class LedgerError(Exception):
    """The ledger cannot be opened (one line)."""


@dataclass
class UpdateStats:
    files: int = 0  # transcripts seen
    read: int = 0  # files with new bytes (transcripts and the event log)
    usage_lines: int = 0  # lines with usage read (a message has one per content block)
    bad_lines: int = 0  # lines with "usage" that were not JSON
    long_lines: int = 0  # lines over the length cap, skipped
    events: int = 0  # turn and switch events copied

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class UsageRow:
    """Totals of one group (an account, a session, a model or a day)."""

    key: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0  # of the priced requests
    unpriced_requests: int = 0
    last_at: float | None = None
    models: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_write_tokens
            + self.cache_read_tokens
        )

    def add(self, other: UsageRow) -> None:
        self.requests += other.requests
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cost_usd += other.cost_usd
        self.unpriced_requests += other.unpriced_requests
        if other.last_at is not None:
            self.last_at = max(self.last_at or other.last_at, other.last_at)
        self.models = sorted(set(self.models) | set(other.models))

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 6),
            "unpriced_requests": self.unpriced_requests,
            "last_at": self.last_at,
            "models": self.models,
        }


@dataclass
class UsageReport:
    since: float
    until: float | None
    by: str
    rows: list[UsageRow]
    total: UsageRow
    unknown_models: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "by": self.by,
            "rows": [r.to_dict() for r in self.rows],
            "total": self.total.to_dict(),
            "unknown_models": self.unknown_models,
            "prices_as_of": PRICES_AS_OF,
        }


class UsageLedger:
    """See the module docstring. One instance per thread (each has its own connection)."""

    def __init__(self, path: Path, projects: Path, state_dir: Path, prices: PriceTable) -> None:
        self.path = path
        self.projects = projects
        self.events_path = state_dir / EVENTS_FILE
        self.prices = prices
        self.db = _connect(path)

    @classmethod
    def open(cls, config: Config) -> UsageLedger:
        return cls(
            config.state_dir / LEDGER_FILE,
            config.claude_dir / "projects",
            config.state_dir,
            PriceTable(config.prices),
        )

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ reading new data

    def update(self) -> UpdateStats:
        """Read what was appended since the last update: events first (so the new messages
        find their turn), then transcripts; then attribute what needs it."""
        stats = UpdateStats()
        with self._write():
            new_sessions, earliest_switch = self._read_events(stats)
            new_sessions |= self._read_transcripts(stats)
            self._attribute(new_sessions, earliest_switch)
        return stats

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")  # one updater at a time; readers go on (WAL)
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _transcripts(self) -> Iterator[Path]:
        try:
            yield from self.projects.rglob("*.jsonl")
        except OSError:
            return

    def _read_transcripts(self, stats: UpdateStats) -> set[str]:
        sessions: set[str] = set()
        batch: dict[str, UsageLine] = {}
        for path in self._transcripts():
            stats.files += 1
            for line in self._new_lines(path, (_USAGE_MARK,), stats):
                try:  # str, not bytes: json skips guessing the encoding
                    doc = json.loads(line.decode("utf-8", "replace"))
                except (ValueError, RecursionError):
                    stats.bad_lines += 1
                    continue
                usage = parse_usage_line(doc)
                if usage is None:
                    continue
                stats.usage_lines += 1
                old = batch.get(usage.message_id)
                batch[usage.message_id] = usage if old is None else merge(old, usage)
                if len(batch) >= BATCH:
                    sessions |= self._store(batch)
                    batch = {}
        sessions |= self._store(batch)
        return sessions

    def _new_lines(
        self, path: Path, marks: tuple[bytes, ...], stats: UpdateStats, what: str = "transcript"
    ) -> Iterator[bytes]:
        """New complete lines of `path` holding one of `marks`; the file's offset is saved.
        (A renamed file is read again from its start under its new name: the rows it gives
        are keyed, so a second read adds nothing.)"""
        try:
            fd = open_private_read(path, what)
        except OSError:
            return
        try:
            st = os.fstat(fd)
            row = self.db.execute(
                "SELECT dev, ino, size, offset FROM files WHERE path = ?", (str(path),)
            ).fetchone()
            start = 0
            if row is not None and (row[0], row[1]) == (st.st_dev, st.st_ino):
                if row[2] == st.st_size and row[3] == st.st_size:
                    return  # unchanged since the last read
                if st.st_size >= row[3]:
                    start = row[3]
            read = ReadStats()
            stats.read += 1
            yield from new_lines(fd, start, read, lambda line: any(m in line for m in marks))
            stats.long_lines += read.skipped_long
            self.db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                (str(path), st.st_dev, st.st_ino, st.st_size, read.end),
            )
        finally:
            os.close(fd)

    def _store(self, batch: dict[str, UsageLine]) -> set[str]:
        """Upsert: a message seen before keeps its earliest time and its fullest counts."""
        if not batch:
            return set()
        self.db.executemany(
            """INSERT INTO messages (id, session, ts, model, input, output, cache_write,
                   cache_write_1h, cache_read, cwd, slot)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)
               ON CONFLICT(id) DO UPDATE SET
                   ts = MIN(ts, excluded.ts),
                   input = MAX(input, excluded.input),
                   output = MAX(output, excluded.output),
                   cache_write = MAX(cache_write, excluded.cache_write),
                   cache_write_1h = MAX(cache_write_1h, excluded.cache_write_1h),
                   cache_read = MAX(cache_read, excluded.cache_read),
                   slot = NULL""",
            [
                (
                    u.message_id,
                    u.session,
                    u.at,
                    u.model,
                    u.input,
                    u.output,
                    u.cache_write,
                    u.cache_write_1h,
                    u.cache_read,
                    u.cwd,
                )
                for u in batch.values()
            ],
        )
        return {u.session for u in batch.values() if u.session}

    def _read_events(self, stats: UpdateStats) -> tuple[set[str], float | None]:
        """Copy new `turn` and `switch` events (the rotated log first, for what was left)."""
        sessions: set[str] = set()
        earliest: float | None = None
        for path in (self.events_path.with_name(EVENTS_FILE + ".1"), self.events_path):
            for line in self._new_lines(path, _EVENT_MARKS, stats, "event log"):
                try:
                    event = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if not isinstance(event, dict) or not _number(event.get("ts")):
                    continue
                ts, slot = float(event["ts"]), event.get("slot")
                slot = slot if isinstance(slot, str) else None
                if event.get("kind") == "turn" and isinstance(event.get("session"), str):
                    phase = str(event.get("phase") or "")
                    self.db.execute(
                        "INSERT OR REPLACE INTO turns VALUES (?, ?, ?, ?)",
                        (event["session"], ts, slot, phase),
                    )
                    sessions.add(event["session"])
                    stats.events += 1
                elif event.get("kind") == "switch" and slot is not None:
                    self.db.execute("INSERT OR REPLACE INTO switches VALUES (?, ?)", (ts, slot))
                    earliest = ts if earliest is None else min(earliest, ts)
                    stats.events += 1
        return sessions, earliest

    def _attribute(self, sessions: set[str], earliest_switch: float | None) -> None:
        """Attribute new messages, every message of a session with a new boundary, and what a
        new switch could change (messages with no boundary, from that switch on)."""
        self.db.execute(_ATTRIBUTE + " WHERE slot IS NULL")
        for chunk in _chunks(sorted(sessions), 500):
            marks = ",".join("?" * len(chunk))
            self.db.execute(_ATTRIBUTE + f" WHERE session IN ({marks})", chunk)
        if earliest_switch is not None:
            self.db.execute(_ATTRIBUTE + " WHERE by_turn = 0 AND ts >= ?", (earliest_switch,))

    # ------------------------------------------------------------ reports

    def report(
        self, *, since: float, until: float | None = None, by: str = "account"
    ) -> UsageReport:
        """Totals per account, session, model or (local) day over [since, until)."""
        if by not in GROUPINGS:
            raise ValueError(f"unknown grouping {by!r} (use {', '.join(GROUPINGS)})")
        key = {
            "account": "COALESCE(slot, 'unknown')",
            "session": "COALESCE(session, 'unknown')",
            "model": "model",
            "day": "date(ts, 'unixepoch', 'localtime')",
        }[by]
        query = f"""SELECT {key}, model, COUNT(*), SUM(input), SUM(output), SUM(cache_write),
                       SUM(cache_write_1h), SUM(cache_read), MAX(ts)
                    FROM messages WHERE ts >= ? AND ts < ? GROUP BY 1, 2"""
        rows: dict[str, UsageRow] = {}
        unknown: set[str] = set()
        end = until if until is not None else float("inf")
        for group, model, n, inp, out, write, write_1h, read, last in self.db.execute(
            query, (since, end)
        ):
            part = UsageRow(str(group), n, inp, out, write, read, last_at=last, models=[model])
            price = self.prices.lookup(model)
            if price is None:
                part.unpriced_requests = n
                unknown.add(model)
            else:
                part.cost_usd = price.cost(inp, out, write - write_1h, write_1h, read)
            rows.setdefault(part.key, UsageRow(part.key)).add(part)
        if by == "day":  # days in order; anything else costliest first, unknown last
            ordered = sorted(rows.values(), key=lambda r: r.key)
        else:
            ordered = sorted(rows.values(), key=lambda r: (r.key == UNKNOWN, -r.cost_usd, r.key))
        total = UsageRow("total")
        for row in ordered:
            total.add(row)
        return UsageReport(since, until, by, ordered, total, sorted(unknown))

    def session_turns(self, session_id: str, n: int = 3) -> list[dict[str, Any]]:
        """The session's last `n` turns (split at its `start` boundaries): tokens, requests,
        model and project (the last part of its working directory)."""
        starts = [
            ts
            for (ts,) in self.db.execute(
                "SELECT ts FROM turns WHERE session = ? AND phase = 'start' "
                "ORDER BY ts DESC LIMIT ?",
                (session_id, n),
            )
        ][::-1]
        lower = starts[0] if starts else 0.0
        rows = self.db.execute(
            "SELECT ts, model, input, output, cache_write, cache_read, cwd FROM messages "
            "WHERE session = ? AND ts >= ? ORDER BY ts",
            (session_id, lower),
        ).fetchall()
        if not rows:
            return []
        bounds = starts or [rows[0][0]]
        turns: list[dict[str, Any]] = []
        for i, start in enumerate(bounds):
            stop = bounds[i + 1] if i + 1 < len(bounds) else float("inf")
            part = [r for r in rows if start <= r[0] < stop]
            if not part:
                continue
            turns.append(
                {
                    "requests": len(part),
                    "input_tokens": sum(r[2] for r in part),
                    "output_tokens": sum(r[3] for r in part),
                    "cache_write_tokens": sum(r[4] for r in part),
                    "cache_read_tokens": sum(r[5] for r in part),
                    "last_at": part[-1][0],
                    "model": part[-1][1],
                    "project": os.path.basename(part[-1][6] or "") or None,
                }
            )
        return turns[-n:]


# ---------------------------------------------------------------- helpers


def _connect(path: Path) -> sqlite3.Connection:
    """The ledger's connection; the file made 0600 by us first (SQLite would use the umask),
    refused when it is a link or someone else's."""
    try:
        ensure_private_dir(path.parent, "state dir")
        check_private(path, "usage ledger", follow=False)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            os.close(fd)
        db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise LedgerError(f"{path}: written by a newer version (schema {version})")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return db
    except sqlite3.DatabaseError as exc:
        raise LedgerError(
            f"{path}: {exc} (deleting it rebuilds it from the transcripts and the event log)"
        ) from None
    except FileExistsError:
        return _connect(path)  # another process made it between our check and create


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


_SPAN = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_since(text: str, now: float) -> float:
    """`30m`, `12h`, `7d`, `2w` before `now`, or a date `2026-12-01` (local midnight) or an
    ISO time; ValueError with one line otherwise."""
    text = text.strip()
    if m := _SPAN.match(text):
        return now - int(m.group(1)) * _UNITS[m.group(2)]
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(
            f"cannot read {text[:40]!r} as a time: use 7d, 12h, 30m, 2w or a date like 2026-12-01"
        ) from None


__all__ = ["LedgerError", "UsageLedger", "UsageReport", "UsageRow", "parse_since"]
