"""Usage builders: the usage endpoint's JSON answer, `UsageSnapshot`s for the pure parts, and
the clock the tests set by hand.

One place for what the tests used to write each for themselves: a `/api/oauth/usage` document
(percentages 0-100, ISO resets) and a snapshot (fractions 0-1, Unix resets) with the windows
a test names and plausible defaults for the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from gptme_subscription_plugin.policy import Decision, DefaultPolicy, PolicyView, SlotView
from gptme_subscription_plugin.thresholds import Thresholds
from gptme_subscription_plugin.usage.snapshot import (
    FIVE_HOUR_S,
    SEVEN_DAY_S,
    UsageSnapshot,
    UsageWindow,
)

NOW = 1_800_000_000.0  # the fixed clock of the pure tests
H = 3600.0
DAY = 24 * H


class Clock:
    """A clock that moves only when the test sets `now`."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def iso(ts: float) -> str:
    """Unix seconds as the ISO-8601 the usage endpoint sends."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def make_usage_doc(
    now: float,
    five_hour: float | None = 10.0,
    seven_day: float | None = 40.0,
    five_hour_resets_in: float | None = 3 * H,
    seven_day_resets_in: float = 3 * DAY,
    sonnet: float | None = None,
    scoped: Mapping[str, float] | None = None,
    opus: float | None = None,
) -> dict[str, Any]:
    """A realistic `/api/oauth/usage` answer (percentages 0-100); a window given as None is
    null, and a 5-hour reset given as None is unknown (`resets_at: null`)."""

    def at(resets_in: float | None) -> str | None:
        return None if resets_in is None else iso(now + resets_in)

    def window(pct: float | None, resets_in: float | None) -> dict[str, Any] | None:
        return None if pct is None else {"utilization": pct, "resets_at": at(resets_in)}

    limits = [
        {
            "kind": "weekly_scoped",
            "group": "weekly",
            "percent": pct,
            "severity": "normal",
            "resets_at": iso(now + seven_day_resets_in),
            "scope": {"model": {"id": None, "display_name": name}, "surface": None},
            "is_active": False,
        }
        for name, pct in (scoped or {}).items()
    ]
    return {
        "five_hour": window(five_hour, five_hour_resets_in),
        "seven_day": window(seven_day, seven_day_resets_in),
        "seven_day_opus": window(opus, seven_day_resets_in),
        "seven_day_sonnet": window(sonnet, seven_day_resets_in),
        "seven_day_oauth_apps": None,
        "extra_usage": None,
        "limits": limits,
    }


def snapshot(
    slot: str,
    five: float | None = 0.1,
    week: float | None = 0.3,
    *,
    now: float = NOW,
    observed_at: float | None = None,
    source: str = "test",
    five_reset_in: float = 2 * H,
    week_reset_in: float | None = 3 * DAY,
    models: Mapping[str, float] | None = None,
    stale: bool = False,
) -> UsageSnapshot:
    """A reading of `slot` (fractions 0-1): resets count from `now`, and so does the reading
    unless `observed_at` says otherwise; per-model windows reset with the weekly one; a
    window given as None is absent, a weekly reset given as None unknown."""
    week_reset = None if week_reset_in is None else now + week_reset_in
    return UsageSnapshot(
        slot=slot,
        source=source,
        observed_at=now if observed_at is None else observed_at,
        five_hour=None if five is None else UsageWindow(five, now + five_reset_in, FIVE_HOUR_S),
        seven_day=None if week is None else UsageWindow(week, week_reset, SEVEN_DAY_S),
        models={k: UsageWindow(v, week_reset, SEVEN_DAY_S) for k, v in (models or {}).items()},
        stale=stale,
    )


def slot_view(
    name: str,
    *,
    usable: bool = True,
    health: str | None = None,
    limited_until: float | None = None,
    limited_models: Mapping[str, float] | None = None,
    left_exhausted_at: float | None = None,
    capacity: float | None = None,
    **reading: Any,
) -> SlotView:
    """What the policy sees of `name`: a usable credential (unless told otherwise) and a
    reading built by `snapshot(name, **reading)`."""
    return SlotView(
        name,
        usable=usable,
        health=health or ("valid" if usable else "malformed"),
        usage=snapshot(name, **reading),
        limited_until=limited_until,
        limited_models=dict(limited_models or {}),
        left_exhausted_at=left_exhausted_at,
        capacity=capacity,
    )


def decide(live: str | None, *slots: SlotView, **view: Any) -> Decision:
    """The default policy's decision at NOW, default thresholds, on a view of `slots`."""
    return DefaultPolicy(Thresholds()).decide(
        PolicyView(live=live, slots=tuple(slots), **view), NOW
    )
