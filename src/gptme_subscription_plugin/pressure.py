"""Window math on one slot's usage: pressure, spent windows, resets, what a 429 marks.

Pure functions of a `UsageSnapshot`, the `Thresholds` and the clock; they know nothing of
slots or views. `policy` re-exports them, the ranking and the rules are built on them.
"""

from __future__ import annotations

import math

from .thresholds import Thresholds
from .usage.snapshot import FIVE_HOUR_S, UsageSnapshot, UsageWindow


def format_duration(seconds: float | None) -> str:
    """Compact human duration: 45s, 12m, 3h05m, 2d04h."""
    if seconds is None or math.isnan(seconds):
        return "?"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def window_pressure(utilization: float, exhausted_at: float) -> float:
    """Utilization scaled so that the exhaustion threshold reads 1.0 (monotonic, capped)."""
    if exhausted_at <= 0:
        return 1.0
    return min(1.0, max(0.0, utilization) / exhausted_at)


def current_utilization(window: UsageWindow | None, now: float) -> float | None:
    """A window's utilization now (0 once past its reset), or None when there is no window."""
    return None if window is None else window.effective_utilization(now)


def _model_windows(usage: UsageSnapshot, model: str | None) -> list[tuple[str, UsageWindow]]:
    """Per-model windows that bind: the requested model's, or every model's when unknown."""
    if model:
        entry = usage.model_entry(model)
        return [entry] if entry is not None else []
    return sorted(usage.models.items())


def slot_pressure(
    usage: UsageSnapshot | None, thresholds: Thresholds, now: float, model: str | None = None
) -> float | None:
    """0-1 pressure of a slot: the tightest window relative to its exhaustion threshold."""
    if usage is None:
        return None
    parts = [
        window_pressure(window.effective_utilization(now), limit)
        for window, limit in (
            (usage.five_hour, thresholds.five_hour_exhausted),
            (usage.seven_day, thresholds.weekly_exhausted),
        )
        if window is not None
    ]
    if usage.models:
        parts += [
            window_pressure(window.effective_utilization(now), thresholds.model_weekly_exhausted)
            for _, window in _model_windows(usage, model)
        ]
    return max(parts) if parts else None


def exhaustion(
    usage: UsageSnapshot | None, thresholds: Thresholds, now: float, model: str | None = None
) -> tuple[str, float | None] | None:
    """The first spent window as (label, reset time), or None while nothing is spent.

    With `model` unknown every per-model window counts: this says what is spent, for people
    and for recovery times. Whether the slot can still serve is `blocking`'s question.
    """
    spent = spent_windows(usage, thresholds, now, model, every_model=True)
    return spent[0] if spent else None


def blocking(
    usage: UsageSnapshot | None, thresholds: Thresholds, now: float, model: str | None = None
) -> tuple[str, float | None] | None:
    """The spent window that stops this slot serving `model`, or None.

    The 5-hour and weekly windows bind every request; a per-model weekly window binds only
    requests for that model. With the model unknown (a Stop hook does not know which model the
    next turn uses), a spent Opus window leaves the slot serving everything else.
    """
    spent = spent_windows(usage, thresholds, now, model, every_model=False)
    return spent[0] if spent else None


def spent_windows(
    usage: UsageSnapshot | None,
    thresholds: Thresholds,
    now: float,
    model: str | None,
    every_model: bool,
) -> list[tuple[str, float | None]]:
    """Every window at or past its exhaustion threshold, as (label, reset time), in order:
    weekly, 5-hour, then per-model windows (the given model's, or all when `every_model`)."""
    if usage is None:
        return []
    checks: list[tuple[str, UsageWindow | None, float]] = [
        ("weekly", usage.seven_day, thresholds.weekly_exhausted),
        ("5-hour", usage.five_hour, thresholds.five_hour_exhausted),
    ]
    if model or every_model:
        checks += [
            (f"{name} weekly", window, thresholds.model_weekly_exhausted)
            for name, window in _model_windows(usage, model)
        ]
    return [
        (label, window.resets_at)
        for label, window, limit in checks
        if window is not None and window.effective_utilization(now) >= limit
    ]


def spent_models(usage: UsageSnapshot | None, thresholds: Thresholds, now: float) -> list[str]:
    """Models whose own weekly window is spent (the slot still serves the others)."""
    if usage is None:
        return []
    return [
        name
        for name, window in sorted(usage.models.items())
        if window.effective_utilization(now) >= thresholds.model_weekly_exhausted
    ]


def hard_room(usage: UsageSnapshot | None, now: float, model: str | None = None) -> float | None:
    """What is left before the hard limit (100 %) of the tightest window that binds `model`.

    Past our thresholds a slot still serves until Anthropic's own limit; when nothing is left
    under the thresholds anywhere, this is where the last of the quota is.
    """
    if usage is None:
        return None
    windows = [usage.five_hour, usage.seven_day]
    entry = usage.model_entry(model) if model else None
    if entry is not None:
        windows.append(entry[1])
    used = [w.effective_utilization(now) for w in windows if w is not None]
    return None if not used else 1.0 - max(used)


def expected_recovery(
    usage: UsageSnapshot | None,
    thresholds: Thresholds,
    now: float,
    default: float | None = None,
) -> float:
    """When a slot that just answered 429 should serve again: the soonest reset among its
    spent windows and its 5-hour window; else `default` seconds from now
    (`thresholds.unknown_reset_wait` unless given).

    A 5-hour window read before its reset still bounds the answer: the window that refused
    opened at the first request after that reset, so it resets a whole window later at the
    soonest. (Without this, a slot unobserved since its last window rolled over came back
    after an hour, was switched to, and refused again.)

    The soonest, not the first in some order: a wrong early guess costs one refused request
    (and the slot is marked again), a wrong late one leaves quota idle for days. The 5-hour
    window counts even when it reads below its threshold: it moves fastest, so it is the
    reading most likely to be behind when a 429 arrives.
    """
    resets = [
        reset
        for _, reset in spent_windows(usage, thresholds, now, None, every_model=True)
        if reset is not None and reset > now
    ]
    five = usage.five_hour if usage is not None else None
    if five is not None and five.resets_at is not None:
        if five.resets_at > now:
            resets.append(five.resets_at)
        elif five.resets_at + five.window_seconds > now:  # rolled over since it was read
            resets.append(five.resets_at + five.window_seconds)
    if resets:
        return min(resets)
    return now + (thresholds.unknown_reset_wait if default is None else default)


def pace_gap(window: UsageWindow | None, now: float) -> float | None:
    """Utilization minus the fraction of the window elapsed: > 0 means ahead of pace."""
    if window is None:
        return None
    elapsed = window.elapsed_fraction(now)
    if elapsed is None:
        return None
    return window.effective_utilization(now) - elapsed


def has_five_hour_headroom(usage: UsageSnapshot | None, thresholds: Thresholds, now: float) -> bool:
    five = current_utilization(usage.five_hour, now) if usage else None
    return five is None or five < thresholds.five_hour_headroom


def weekly_reset(usage: UsageSnapshot | None, now: float) -> float:
    """Weekly reset time for ranking; unknown sorts last.

    A weekly window keeps its phase: past its reset, the next one closes a whole number of
    weeks after the last reset seen, so a slot idle since then still ranks by when its fresh
    quota expires.
    """
    return next_reset(usage.seven_day if usage is not None else None, now)


def next_reset(window: UsageWindow | None, now: float) -> float:
    """When a fixed-phase window (weekly, per-model weekly) next resets; inf when unknown."""
    if window is None or window.resets_at is None:
        return math.inf
    if window.is_current(now):
        return window.resets_at
    period = float(window.window_seconds)
    return window.resets_at + period * (math.floor((now - window.resets_at) / period) + 1)


def weekly_remaining(usage: UsageSnapshot | None, now: float) -> float | None:
    week = current_utilization(usage.seven_day, now) if usage else None
    return None if week is None else 1.0 - week


def model_recovery(
    usage: UsageSnapshot | None, thresholds: Thresholds, now: float, model: str | None
) -> dict[str, float]:
    """A 429 that only per-model weekly windows explain, as {model key: when it lifts}.

    When the readings show such a window spent and the 5-hour and weekly windows not, the
    limit binds that model alone and the slot keeps serving the others. With `model` known
    only its own window can explain the 429; unknown (a session's first request: nothing in
    its transcript yet), every spent per-model window is blamed. Empty means the whole slot
    waits (a spent 5-hour or weekly window, or nothing per-model spent). A limit lifts at the
    soonest reset in sight, the open 5-hour window's included: a fast-moving 5-hour reading
    may be what lagged (see `expected_recovery`).
    """
    if usage is None or not usage.models or blocking(usage, thresholds, now, None) is not None:
        return {}
    if model:
        entry = usage.model_entry(model)
        entries = [entry] if entry is not None else []
    else:
        entries = sorted(usage.models.items())
    five = usage.five_hour
    five_reset = five.resets_at if five is not None else None
    limits = {}
    for key, window in entries:
        if window.effective_utilization(now) < thresholds.model_weekly_exhausted:
            continue
        resets = [r for r in (window.resets_at, five_reset) if r is not None and r > now]
        limits[key] = min(resets) if resets else now + thresholds.unknown_reset_wait
    return limits


def rate_limit_marks(
    usage: UsageSnapshot | None,
    thresholds: Thresholds,
    now: float,
    model: str | None,
    per_model: bool = True,
    refusing_since: float | None = None,
) -> tuple[float | None, dict[str, float]]:
    """What a 429 on a slot with this cached `usage` marks, as (when the whole slot is back,
    or None; {model key: when it is back}): the models `model_recovery` blames, else the
    whole slot until `expected_recovery`. `per_model=False` always limits the whole slot.

    `refusing_since`: when the slot began refusing with nothing served on it since (the
    hook pack's refusal streak). A streak longer than a 5-hour window is one the 5-hour
    window cannot explain (`outlasts_five_hour`), so a weekly window is spent: the model's
    own weekly window when it has one (the slot may still serve the others), else the
    slot's. It waits for that window's reset instead of coming back every hour to be
    refused again while its readings stay old (an idle slot's token expires, so nothing
    polls it). Only a hook pack that records per-model limits can tell the two apart.
    """
    models = model_recovery(usage, thresholds, now, model) if per_model else {}
    if models:
        return None, models
    until = expected_recovery(usage, thresholds, now)
    if per_model and usage is not None and outlasts_five_hour(usage, now, refusing_since):
        entry = usage.model_entry(model)
        model_reset = next_reset(entry[1], now) if entry is not None else math.inf
        if entry is not None and model_reset != math.inf:
            return None, {entry[0]: model_reset}
        week = weekly_reset(usage, now)
        if week != math.inf:
            until = max(until, week)
    return until, {}


def outlasts_five_hour(usage: UsageSnapshot, now: float, refusing_since: float | None) -> bool:
    """The slot has refused for longer than a 5-hour window with nothing served between: the
    window that refused first has reset since (it cannot outlive its start by more than its
    length), and a fresh one cannot have filled without a request served."""
    if refusing_since is None:
        return False
    five = usage.five_hour
    span = five.window_seconds if five is not None else FIVE_HOUR_S
    return now - refusing_since >= span


def describe_usage(usage: UsageSnapshot | None, now: float) -> str:
    """'5h 40% (resets 2h10m), 7d 55% (resets 3d04h)' for one-line reasons."""
    if usage is None:
        return "no usage data"
    parts = []
    for label, window in (("5h", usage.five_hour), ("7d", usage.seven_day)):
        if window is None:
            continue
        pct = round(window.effective_utilization(now) * 100)
        if not window.is_current(now):
            parts.append(f"{label} {pct}% (window reset)")
        elif window.resets_at is None:
            parts.append(f"{label} {pct}%")
        else:
            parts.append(f"{label} {pct}% (resets {format_duration(window.resets_in(now))})")
    for name, window in sorted(usage.models.items()):
        pct = round(window.effective_utilization(now) * 100)
        if pct:
            parts.append(f"{name} {pct}%")
    text = ", ".join(parts) or "no windows"
    return text + (" [stale]" if usage.stale else "")
