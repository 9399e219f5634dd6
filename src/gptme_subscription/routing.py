"""0.1.0's pacing and fallback ordering, answered by our policy's `pace_gap` and ranking.

Pacing is our pace gap: utilization minus the fraction of the window gone (> 0: ahead of the
straight line to 100 % at the reset). Fallback ordering is our candidate ranking
(`rank_candidates`): 5-hour headroom, then the quota that expires soonest first, then
pressure, then the given order. 0.1.0 preferred the slot that reset most recently (most room
left); ours spends the quota that expires first, and a slot without readings ranks after those
whose expiry is known.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._dropped import module_getattr
from .observation import (
    SEVEN_DAY_S,
    SubscriptionObservation,
    epoch,
    load_sub_observations,
    observed_reset,
)

if TYPE_CHECKING:
    from gptme_subscription_plugin.policy import PolicyView
    from gptme_subscription_plugin.thresholds import Thresholds

TARGET_NOTE = (
    "target_utilization has no equivalent: our pace is the straight line to 100 % at the "
    "reset (rebalance_ahead says how far ahead of it a slot hands over)"
)


@dataclass(frozen=True)
class PacingSnapshot:
    """0.1.0's pacing view of one window: `pace_gap` > 0 means ahead of pace (overusing)."""

    utilization: float
    headroom: float
    elapsed_fraction: float
    target_utilization: float
    pace_gap: float
    status: str

    def as_dict(self) -> dict[str, float | str]:
        return dict(asdict(self))


def pacing_status(gap: float, threshold: float) -> str:
    """0.1.0's words for a pace gap: ahead of the line, behind it, or within `threshold`."""
    if gap > threshold:
        return "overusing"
    if gap < -threshold:
        return "underusing"
    return "on_track"


def compute_window_pacing_snapshot(
    utilization: float,
    resets_in_seconds: float,
    window_seconds: int,
    *,
    target_utilization: float = 1.0,
    threshold: float = 0.05,
) -> PacingSnapshot | None:
    """Our `pace_gap` of a window `resets_in_seconds` from its reset; None if not running."""
    from gptme_subscription_plugin.policy import pace_gap
    from gptme_subscription_plugin.usage.snapshot import UsageWindow, clamp_fraction

    if target_utilization != 1.0:
        raise ValueError(TARGET_NOTE)
    if window_seconds <= 0 or resets_in_seconds <= 0 or math.isnan(utilization):
        return None
    now = time.time()
    used = clamp_fraction(utilization)
    window = UsageWindow(used, now + min(resets_in_seconds, window_seconds), int(window_seconds))
    gap = pace_gap(window, now)
    elapsed = window.elapsed_fraction(now)
    if gap is None or elapsed is None:
        return None
    return PacingSnapshot(
        utilization=used,
        headroom=1.0 - used,
        elapsed_fraction=elapsed,
        target_utilization=elapsed,
        pace_gap=gap,
        status=pacing_status(gap, threshold),
    )


def compute_pacing_snapshot(
    utilization: float,
    *,
    elapsed_fraction: float,
    target_utilization: float = 1.0,
    threshold: float = 0.05,
) -> PacingSnapshot:
    """The same for a window known by the fraction of it gone (0-1, clamped)."""
    elapsed = min(1.0, max(0.0, elapsed_fraction))
    left = max(1.0 - elapsed, 1e-9) * SEVEN_DAY_S  # a window at its very end: 1 ns left
    snap = compute_window_pacing_snapshot(
        utilization,
        left,
        SEVEN_DAY_S,
        target_utilization=target_utilization,
        threshold=threshold,
    )
    assert snap is not None  # a running window always has a pace
    return snap


def combine_window_pacing_snapshots(
    windows: Sequence[tuple[float, float, int]],
    *,
    target_utilization: float = 1.0,
    threshold: float = 0.05,
) -> PacingSnapshot | None:
    """Of several (utilization, resets_in_seconds, window_seconds), the one furthest ahead."""
    snaps = [
        compute_window_pacing_snapshot(
            u, r, w, target_utilization=target_utilization, threshold=threshold
        )
        for u, r, w in windows
    ]
    running = [s for s in snaps if s is not None]
    return max(running, key=lambda s: s.pace_gap) if running else None


def compute_window_pacing(
    utilization: float,
    resets_in_seconds: float,
    window_seconds: int,
    *,
    target_utilization: float = 1.0,
    threshold: float = 0.05,
) -> tuple[float, float, str] | None:
    """(target utilization now, pace gap, status) as 0.1.0 returned it; None if not running.
    The target is the fraction of the window gone: the straight line to 100 % at the reset."""
    snap = compute_window_pacing_snapshot(
        utilization,
        resets_in_seconds,
        window_seconds,
        target_utilization=target_utilization,
        threshold=threshold,
    )
    return None if snap is None else (snap.target_utilization, snap.pace_gap, snap.status)


# ---------------------------------------------------------------- fallback ordering


def _observation_view(
    names: Sequence[str],
    observations: Mapping[str, SubscriptionObservation],
    metric_key: str,
    window_seconds: int,
) -> PolicyView:
    """A policy view of slots known only by when a window was last seen at its reset."""
    from gptme_subscription_plugin.policy import PolicyView, SlotView
    from gptme_subscription_plugin.usage.snapshot import UsageSnapshot, UsageWindow

    slots = []
    for name in dict.fromkeys(names):
        seen = observed_reset(observations.get(name), metric_key)
        usage = None
        if seen is not None and window_seconds > 0:
            # how much was used is not in the file: only when the quota expires is known
            week = UsageWindow(0.0, seen + window_seconds, int(window_seconds))
            usage = UsageSnapshot(slot=name, source="observation", observed_at=seen, seven_day=week)
        slots.append(SlotView(name=name, usage=usage))
    return PolicyView(live=None, slots=tuple(slots), preference=tuple(names))


def ranked(
    view: PolicyView,
    now: float,
    thresholds: Thresholds | None = None,
    exclude: str | None = None,
) -> list[str]:
    """Our candidate ranking of the view's slots under `thresholds` (a manager's configured
    ones; ours by default), the ones that cannot serve after them."""
    from gptme_subscription_plugin.policy import rank_candidates
    from gptme_subscription_plugin.thresholds import Thresholds

    t = Thresholds() if thresholds is None else thresholds
    best = [s.name for s in rank_candidates(view, t, now, exclude=exclude)]
    rest = [s.name for s in view.slots if s.name not in best and s.name != exclude]
    return best + rest


# 0.1.0's defaults of the ranking knobs we have no equivalent for: passing one explicitly
# asks for nothing different, any other value would be silently ignored
UNKNOWN_PRESSURE = 0.5
SOON_TO_EXPIRE_THRESHOLD = 4 * 3600
EXPIRING_CAPACITY_CREDIT = 0.15
_DEFAULTS = {
    "unknown_pressure": UNKNOWN_PRESSURE,
    "soon_to_expire_threshold": SOON_TO_EXPIRE_THRESHOLD,
    "expiring_capacity_credit": EXPIRING_CAPACITY_CREDIT,
}


def _no_equivalent(**given: Any) -> None:
    for name, value in given.items():
        if value is not None and value != _DEFAULTS[name]:
            raise ValueError(
                f"{name} has no equivalent: slots are ranked by when their quota expires, "
                "a slot without readings after those whose expiry is known"
            )


def capacity_aware_fallback_order(
    fallback_order: list[str],
    obs_dir: Path,
    now: datetime | None = None,
    unknown_pressure: float | None = UNKNOWN_PRESSURE,
    soon_to_expire_threshold: float | None = SOON_TO_EXPIRE_THRESHOLD,
    expiring_capacity_credit: float | None = EXPIRING_CAPACITY_CREDIT,
    observations: Mapping[str, SubscriptionObservation] | None = None,
) -> list[str]:
    """`fallback_order` in our ranking, from 0.1.0's observation files in `obs_dir` (or
    `observations`): the slot whose weekly quota expires soonest first, unknown ones last
    in the given order."""
    _no_equivalent(
        unknown_pressure=unknown_pressure,
        soon_to_expire_threshold=soon_to_expire_threshold,
        expiring_capacity_credit=expiring_capacity_credit,
    )
    found = load_sub_observations(obs_dir) if observations is None else observations
    view = _observation_view(fallback_order, found, "seven_day", SEVEN_DAY_S)
    return ranked(view, epoch(now))


def soonest_resetting_fallback(
    active: str,
    fallback_order: list[str],
    obs_dir: Path,
    window_seconds: int = SEVEN_DAY_S,
    metric_key: str = "seven_day",
    now: datetime | None = None,
) -> str | None:
    """The slot other than `active` whose observed window resets soonest; None when no slot
    but `active` has an observation."""
    found = load_sub_observations(obs_dir)
    known = [n for n in fallback_order if n != active and observed_reset(found.get(n), metric_key)]
    if not known:
        return None
    view = _observation_view(known, found, metric_key, window_seconds)
    order = ranked(view, epoch(now))
    return order[0] if order else None


def __getattr__(name: str) -> Any:
    module_getattr(__name__, name)


__all__ = [
    "PacingSnapshot",
    "capacity_aware_fallback_order",
    "combine_window_pacing_snapshots",
    "compute_pacing_snapshot",
    "compute_window_pacing",
    "compute_window_pacing_snapshot",
    "soonest_resetting_fallback",
]
