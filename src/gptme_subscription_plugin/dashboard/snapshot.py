"""Everything the dashboard shows, read once from the core into `schema.Snapshot`.

The status snapshot (`take_snapshot`, the one `status` renders) gives the accounts, the
decision and the pending switch; the turn registry the live sessions; the event log what the
rotation did; the usage history the chart; the usage ledger requests, tokens and cost. Usage
is read from the cache only (`refresh=False`): the server's own poller feeds the cache through
the shared poll budget, so a page load never waits on the network.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..credentials import Health
from ..outcomes import SlotReport
from ..pressure import format_duration
from ..redact import clean_external
from ..render import capacity
from ..usage.history import Sample, read_samples
from ..usage.snapshot import UsageSnapshot, UsageWindow
from .schema import Account, Event, Pending, Session, Snapshot, TokenTotals, Window

if TYPE_CHECKING:
    from ..manager import SubscriptionManager
    from ..status_snapshot import StatusSnapshot

WEEK = 7 * 86400.0
EXPIRING_WITHIN = 600.0  # Claude Code refreshes a few minutes before expiry
EVENT_KINDS = frozenset(
    {
        "switch",
        "pending",
        "pending-dropped",
        "heal",
        "rate-limited",
        "refusal",
        "credential-rejected",
        "credential-accepted",
        "usage-error",
        "slot-add",
        "slot-remove",
        "launch",
        "alert",
    }
)
EVENTS_SHOWN = 40
# the slot-file writes of ours that an event names (anything else was Claude Code refreshing);
# `profile enable|disable` move the file (its mtime stays) and `reauth` logs no event
_WRITERS = {"slot-add": "slot add"}
_WRITE_MATCH_S = 5.0


class Ledger(Protocol):
    """What the dashboard asks of the usage ledger (accounting/ledger.py)."""

    def report(self, *, since: float, until: float | None = None, by: str = "account") -> Any: ...

    def session_turns(self, session_id: str, n: int = 3) -> list[dict[str, Any]]: ...


def build_snapshot(
    m: SubscriptionManager,
    *,
    ledger: Ledger | None = None,
    usage_note: str | None = None,
    actions: bool = False,
) -> Snapshot:
    snap = m.status_snapshot(refresh=False)
    now = snap.now
    events = m.events.tail(EVENTS_SHOWN * 4, kinds=set(EVENT_KINDS | set(_WRITERS)))
    sessions = _sessions(m, snap, ledger)
    per_slot: dict[str | None, int] = {}
    for s in sessions:
        per_slot[s.slot] = per_slot.get(s.slot, 0) + 1
    today, week = _totals(ledger, _day_start(now), now), _totals(ledger, now - WEEK, now)
    accounts = [
        _account(m, snap, r, events, today.get(r.name), week.get(r.name), per_slot.get(r.name, 0))
        for r in snap.reports
    ]
    verdict = capacity(m.view(_usage(snap.reports), home=None), m.config.thresholds, now)
    return Snapshot(
        now=now,
        live=snap.live,
        verdict=verdict.verdict,
        verdict_reason=verdict.reason,
        pending=_pending(snap.pending),
        drift=snap.drift.detail if snap.drift is not None else None,
        accounts=accounts,
        sessions=sessions,
        events=[_event(e) for e in reversed(events) if e.get("kind") in EVENT_KINDS][:EVENTS_SHOWN],
        notes=[clean_external(n, 240) for n in snap.notes],
        usage_note=usage_note,
        actions=actions,
    )


# ---------------------------------------------------------------- accounts


def _usage(reports: Iterable[SlotReport]) -> dict[str, UsageSnapshot | None]:
    return {r.name: r.usage for r in reports}


def _account(
    m: SubscriptionManager,
    snap: StatusSnapshot,
    r: SlotReport,
    events: Sequence[dict[str, Any]],
    today: TokenTotals | None,
    week: TokenTotals | None,
    sessions: int,
) -> Account:
    now = snap.now
    cred = r.credential
    health, fix = _health(r, now)
    history = read_samples(m.usage.dir, r.name, now - WEEK)
    written_at = _mtime(cred.path)
    plan = plan_name(cred.subscription_type, cred.rate_limit_tier)
    return Account(
        name=r.name,
        live=r.live,
        home=r.home,
        plan=plan,
        health=health,
        fix=fix,
        fingerprint=cred.refresh_fingerprint,
        written_at=written_at,
        written_by=_written_by(r.name, written_at, events),
        expires_at=cred.expires_at_ms / 1000 if cred.expires_at_ms else None,
        pressure=r.pressure,
        limited_until=r.limited_until if r.limited_until and r.limited_until > now else None,
        windows=_windows(r.usage, history, now),
        usage_observed_at=r.usage.observed_at if r.usage else None,
        usage_stale=bool(r.usage and r.usage.stale),
        today=today or TokenTotals(),
        week=week or TokenTotals(),
        sessions=sessions,
        history=history,
    )


def plan_name(subscription: str | None, tier: str | None) -> str | None:
    """`Max 20x`, `Max 5x`, `Pro` from the credential's subscription type and tier."""
    if tier and (match := re.search(r"max_(\d+)x", tier)):
        return f"Max {match.group(1)}x"
    if subscription:
        return clean_external(subscription, 24).capitalize()
    return clean_external(tier, 40) if tier else None


def _health(r: SlotReport, now: float) -> tuple[str, str | None]:
    """The one word a person needs, with the command that fixes it."""
    cred = r.credential
    reauth = f"gptme-subscription reauth {r.name}"
    if r.home == "ambiguous":
        return "two homes", "gptme-subscription doctor (the slot has a file in both homes)"
    if r.rejected is not None:
        return "rejected", f"Anthropic refused this login: {reauth}"
    if cred.needs_reauth or not cred.health.usable:
        return "needs login", f"{cred.detail}: {reauth}"
    if cred.health is Health.STALE:
        return "stale", "none: Claude Code refreshes it at its next request"
    expires = cred.expires_at_ms / 1000 if cred.expires_at_ms else None
    if expires is not None and expires - now < EXPIRING_WITHIN:
        return "expiring", None
    return "valid", None


def _windows(usage: UsageSnapshot | None, history: list[Sample], now: float) -> list[Window]:
    if usage is None:
        return []
    found: list[tuple[str, UsageWindow, int | None]] = []
    if usage.five_hour is not None:
        found.append(("five_hour", usage.five_hour, 1))
    if usage.seven_day is not None:
        found.append(("seven_day", usage.seven_day, 2))
    for name, window in sorted(usage.models.items()):
        found.append((f"model:{name}", window, None))
    return [
        Window(
            name=name,
            utilization=window.effective_utilization(now),
            resets_at=window.resets_at if window.is_current(now) else None,
            pace=window.elapsed_fraction(now) if window.is_current(now) else None,
            burn_per_hour=_burn(history, column) if column is not None else None,
        )
        for name, window, column in found
    ]


def _burn(history: list[Sample], column: int, span: float = 3600.0) -> float | None:
    """Utilization gained per hour between the newest sample and one about `span` before it;
    None across a reset (the value fell) or with too little history."""
    points = [(s[0], s[column]) for s in history if s[column] is not None]
    if len(points) < 2:
        return None
    end_at, end = points[-1]
    earlier = [p for p in points[:-1] if end_at - p[0] <= 2 * span]
    if not earlier:
        return None
    start_at, start = earlier[0]
    if end is None or start is None or end < start or end_at <= start_at:
        return None
    return (end - start) * 3600.0 / (end_at - start_at)


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _written_by(
    slot: str, written_at: float | None, events: Sequence[dict[str, Any]]
) -> str | None:
    if written_at is None:
        return None
    for e in reversed(events):
        kind = e.get("kind")
        ts = e.get("ts")
        ours = kind in _WRITERS and e.get("slot") == slot and isinstance(ts, (int, float))
        if ours and abs(float(ts) - written_at) <= _WRITE_MATCH_S:
            return _WRITERS[str(kind)]
    return "Claude Code (login or token refresh)"


# ---------------------------------------------------------------- sessions, events, usage


def _sessions(m: SubscriptionManager, snap: StatusSnapshot, ledger: Ledger | None) -> list[Session]:
    found = []
    for entry in m.turns.sessions(snap.now, m.config.session_ttl):
        turns = ledger.session_turns(entry.session_id, 3) if ledger is not None else []
        last = turns[-1] if turns else {}
        found.append(
            Session(
                session_id=entry.session_id,
                slot=entry.slot or snap.live,
                home="profile" if entry.slot else "link",
                state="mid-turn" if entry.busy else "idle",
                since=entry.since,
                last_seen=entry.last_seen,
                project=_text(last.get("project")),
                model=_text(last.get("model")),
                last_turns=[_token_totals(t) for t in turns],
            )
        )
    return sorted(found, key=lambda s: (s.state != "mid-turn", -s.last_seen))


def _text(value: object) -> str | None:
    return clean_external(value, 80) if isinstance(value, str) and value else None


def _totals(ledger: Ledger | None, since: float, until: float) -> dict[str, TokenTotals]:
    if ledger is None:
        return {}
    report = ledger.report(since=since, until=until, by="account")
    return {str(row.key): _token_totals(row) for row in report.rows}


def _token_totals(row: Any) -> TokenTotals:
    """A ledger row (object or dict) as the API's totals."""

    def get(name: str) -> Any:
        return row.get(name) if isinstance(row, dict) else getattr(row, name, None)

    return TokenTotals(
        requests=int(get("requests") or 0),
        input_tokens=int(get("input_tokens") or 0),
        output_tokens=int(get("output_tokens") or 0),
        cache_write_tokens=int(get("cache_write_tokens") or 0),
        cache_read_tokens=int(get("cache_read_tokens") or 0),
        cost_usd=float(get("cost_usd") or 0.0),
        unpriced_requests=int(get("unpriced_requests") or 0),
        last_at=get("last_at"),
    )


def _day_start(now: float) -> float:
    return (
        datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    )


def _pending(doc: dict[str, Any] | None) -> Pending | None:
    if not doc or not isinstance(doc.get("slot"), str):
        return None
    since = doc.get("since", doc.get("at"))
    reason = doc.get("reason")
    return Pending(
        slot=doc["slot"],
        reason=clean_external(reason, 160) if isinstance(reason, str) else None,
        since=float(since) if isinstance(since, (int, float)) else None,
    )


def _event(e: dict[str, Any]) -> Event:
    slot = e.get("slot")
    return Event(
        ts=float(e.get("ts") or 0.0),
        kind=str(e.get("kind")),
        slot=slot if isinstance(slot, str) else None,
        text=clean_external(_describe(e), 240),
    )


def _describe(e: dict[str, Any]) -> str:
    """One line a person reads; unknown kinds show their fields."""
    kind, slot = e.get("kind"), e.get("slot")
    if kind == "switch":
        previous = e.get("previous") or "none"
        return f"switched to {slot} from {previous}: {e.get('reason')} ({e.get('mode')})"
    if kind == "pending":
        waiting = len(e.get("blockers") or [])
        return f"switch to {slot} pending: {e.get('reason')}; waits for {waiting} session(s)"
    if kind == "rate-limited":
        until = e.get("until")
        left = format_duration(until - float(e["ts"])) if isinstance(until, (int, float)) else "?"
        model = f" ({e['model']})" if e.get("model") else ""
        return f"{slot}{model} rate-limited for {left}"
    if kind == "credential-rejected":
        return f"{slot}: Anthropic refused the credential ({e.get('source')})"
    if kind == "heal":
        return f"healed the live link: {e.get('detail')}"
    if kind == "refusal":
        return f"{e.get('action')} refused: {e.get('reason')}"
    fields = {k: v for k, v in e.items() if k not in ("ts", "kind")}
    return f"{kind}: " + ", ".join(f"{k}={v}" for k, v in fields.items())
