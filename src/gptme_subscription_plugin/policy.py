"""The rotation policy: pure, deterministic, clock injected.

`DefaultPolicy.decide(view, now)` looks only at its arguments, so the same view and clock give
the same Decision in production, in tests and in the simulator. The rules, in order:

1. The live slot is broken, rate-limited or exhausted: switch now to the best candidate, or
   use the last of the quota, or defer until the soonest reset (urgent, ignores holds and
   dwell; see `_urgent_move` for the tiers). With the next model unknown, a live slot that
   refused one model (a per-model 429) moves to a slot that still serves that model.
2. A person switched by hand: hold that choice until the manual hold runs out.
3. Right after a switch, dwell: no optional switch for `min_dwell` seconds (no flapping).
4. Keep 5-hour headroom: leave a live slot whose 5-hour window is nearly spent for one with room
   that expires about as soon (the rest of the soonest-expiring window is quota that may expire).
5. Forward-route: spend the quota that expires soonest first (a candidate whose weekly window
   resets well before the live one's, with quota left, takes over). Only this rule runs when
   the live slot's reading is too old to say how much is left: when it expires is still known.
6. Rebalance: the live slot is ahead of its weekly pace while a slot expiring about as soon is
   behind its pace: move the load.
7. Otherwise stay.

An urgent move prefers a bigger plan (SlotView.capacity) expiring within `burst_window` of the
best candidate: the live slot just ran dry, so a burst is under way (`_burst_target`).

Candidates are slots with a usable credential, not rate-limited, not exhausted, not left on
exhaustion within the probe cooldown (unless newer data shows them recovered); they are ranked
by 5-hour headroom first, then (model unknown) whether they serve every model, then soonest
weekly reset, then lower pressure, then preference order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from .thresholds import Thresholds
from .usage.snapshot import FIVE_HOUR_S, UsageSnapshot, UsageWindow, model_matches

Action = Literal["stay", "switch", "hold", "defer"]

REJECTED = "rejected"  # SlotView.health of a credential Anthropic refused


@dataclass(frozen=True)
class SlotView:
    """What the policy may know about one slot: credential health and observed usage."""

    name: str
    usable: bool = True  # credential valid or refreshable
    health: str = "valid"
    usage: UsageSnapshot | None = None
    limited_until: float | None = None  # a 429 / StopFailure said: nothing until then
    # a 429 on a model whose own weekly window is spent: that model waits, the others serve
    limited_models: Mapping[str, float] = field(default_factory=dict)
    left_exhausted_at: float | None = None  # when we last left it because it ran out
    capacity: float | None = None  # size of its plan's windows, Pro = 1 (None: not known)


@dataclass(frozen=True)
class PolicyView:
    """The whole input of a decision, apart from the clock."""

    live: str | None
    slots: tuple[SlotView, ...]
    model: str | None = None  # the model about to be used, when known
    last_switch_at: float | None = None
    manual_hold_slot: str | None = None
    manual_hold_until: float | None = None
    preference: tuple[str, ...] = ()  # tie-break order (fallback_order)

    def slot(self, name: str | None) -> SlotView | None:
        for s in self.slots:
            if s.name == name:
                return s
        return None


@dataclass(frozen=True)
class Decision:
    """What to do now, why (one human line), and the numbers behind it."""

    action: Action
    live: str | None
    target: str | None
    mode: str
    reason: str
    urgent: bool = False
    retry_at: float | None = None  # for defer: when it is worth looking again
    pressure: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def wants_switch(self) -> bool:
        return self.action == "switch" and self.target is not None and self.target != self.live

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "live": self.live,
            "target": self.target,
            "mode": self.mode,
            "reason": self.reason,
            "urgent": self.urgent,
            "retry_at": self.retry_at,
            "pressure": dict(self.pressure),
        }


class Policy(Protocol):
    """Anything the manager and the simulator can run: a name and a pure decide()."""

    name: str

    def decide(self, view: PolicyView, now: float) -> Decision: ...


# ---------------------------------------------------------------- pure helpers


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


def _current(window: UsageWindow | None, now: float) -> float | None:
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
    five = _current(usage.five_hour, now) if usage else None
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
    week = _current(usage.seven_day, now) if usage else None
    return None if week is None else 1.0 - week


def model_limit(slot: SlotView, now: float, model: str) -> float | None:
    """Until when a per-model 429 keeps `model` off this slot, or None."""
    ends = [
        until
        for key, until in slot.limited_models.items()
        if until > now and model_matches(key, model)
    ]
    return max(ends) if ends else None


def limited_models(slot: SlotView, now: float) -> list[str]:
    """Models a per-model 429 keeps off this slot for now."""
    return sorted(key for key, until in slot.limited_models.items() if until > now)


def is_limited(slot: SlotView, now: float, model: str | None = None) -> bool:
    """A 429 said the whole slot waits, or (with `model` known) that this model does."""
    if slot.limited_until is not None and slot.limited_until > now:
        return True
    return model is not None and model_limit(slot, now, model) is not None


def partial_models(slot: SlotView, thresholds: Thresholds, now: float) -> list[str]:
    """Models this slot will not serve although it serves the others: a spent per-model
    window, or a per-model 429."""
    return sorted({*spent_models(slot.usage, thresholds, now), *limited_models(slot, now)})


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


def can_serve(slot: SlotView, thresholds: Thresholds, now: float, model: str | None) -> bool:
    """Usable credential, not rate-limited, no spent window that binds `model`."""
    return (
        slot.usable
        and not is_limited(slot, now, model)
        and blocking(slot.usage, thresholds, now, model) is None
    )


def may_serve(slot: SlotView, now: float, model: str | None) -> bool:
    """Usable, not rate-limited and under the hard limit: past our thresholds, but not out."""
    if not slot.usable or is_limited(slot, now, model):
        return False
    room = hard_room(slot.usage, now, model)
    return room is None or room > 0


def in_probe_cooldown(slot: SlotView, thresholds: Thresholds, now: float) -> bool:
    """Recently left because it ran out, and no newer observation says it recovered."""
    left = slot.left_exhausted_at
    if left is None or now - left >= thresholds.probe_cooldown:
        return False
    return slot.usage is None or slot.usage.observed_at <= left


def reset_ranks(
    slots: Sequence[SlotView],
    reset: Callable[[SlotView], float],
    part: Callable[[SlotView], Hashable] = lambda s: None,
    *,
    resolution: float,
) -> dict[str, int]:
    """Each slot's reset time as a rank (0 soonest) among the slots of its `part` (those an
    earlier sort key does not tell apart). A run of resets within `resolution` seconds
    (`Thresholds.reset_resolution`) of its first one shares a rank; unknown (inf) ranks last."""
    parts: dict[Hashable, list[SlotView]] = {}
    for s in slots:
        parts.setdefault(part(s), []).append(s)
    ranks: dict[str, int] = {}
    for members in parts.values():
        rank, start = -1, -math.inf
        for s in sorted(members, key=lambda s: (reset(s), s.name)):
            t = reset(s)
            if rank < 0 or t > start + resolution:
                rank, start = rank + 1, t
            ranks[s.name] = rank
    return ranks


def preference_rank(view: PolicyView) -> Callable[[SlotView], int]:
    """Position in the user's fallback_order; slots it does not name come after."""
    order = {name: i for i, name in enumerate(view.preference)}
    return lambda s: order.get(s.name, len(order))


def rank_candidates(
    view: PolicyView, thresholds: Thresholds, now: float, exclude: str | None = None
) -> list[SlotView]:
    """Slots that could take over, best first (see module docstring for the order)."""
    preferred = preference_rank(view)
    eligible = [
        s
        for s in view.slots
        if s.name != exclude
        and can_serve(s, thresholds, now, view.model)
        and not in_probe_cooldown(s, thresholds, now)
    ]
    classes = {s.name: rank_class(s, view, thresholds, now) for s in eligible}
    expiry = reset_ranks(
        eligible,
        lambda s: weekly_reset(s.usage, now),
        lambda s: classes[s.name],
        resolution=thresholds.reset_resolution,
    )

    def key(s: SlotView) -> tuple[int, int, int, float, int, str]:
        pressure = slot_pressure(s.usage, thresholds, now, view.model)
        return (
            *classes[s.name],
            expiry[s.name],
            thresholds.neutral_pressure if pressure is None else pressure,
            preferred(s),
            s.name,
        )

    return sorted(eligible, key=key)


def rank_class(
    slot: SlotView, view: PolicyView, thresholds: Thresholds, now: float
) -> tuple[int, int]:
    """The part of a candidate's rank that comes before expiry: 5-hour headroom, then (next
    model unknown) whether it serves every model. 0 is better."""
    return (
        0 if has_five_hour_headroom(slot.usage, thresholds, now) else 1,
        0 if view.model or not partial_models(slot, thresholds, now) else 1,
    )


def rank_last_resort(
    view: PolicyView, thresholds: Thresholds, now: float, exclude: str | None = None
) -> list[SlotView]:
    """Slots past our thresholds but under the hard limit, most room first, then expiry, then
    the user's preference. A slot with no reading counts as `neutral_pressure` used."""
    eligible = [s for s in view.slots if s.name != exclude and may_serve(s, now, view.model)]
    preferred = preference_rank(view)
    rooms = {s.name: hard_room(s.usage, now, view.model) for s in eligible}
    unknown = 1.0 - thresholds.neutral_pressure
    room = {n: -(unknown if r is None else r) for n, r in rooms.items()}
    expiry = reset_ranks(
        eligible,
        lambda s: weekly_reset(s.usage, now),
        lambda s: room[s.name],
        resolution=thresholds.reset_resolution,
    )
    return sorted(eligible, key=lambda s: (room[s.name], expiry[s.name], preferred(s), s.name))


def rank_untried(
    view: PolicyView,
    thresholds: Thresholds,
    now: float,
    exclude: str | None = None,
    backs: Mapping[str, float] | None = None,
) -> list[SlotView]:
    """Usable slots that read as spent but have not answered 429: readings lag (rounded
    statusline percentages, hours-old polls, a reset not seen yet), a refusal does not.
    Soonest expected recovery first, then the user's preference (`backs`: `recovery_times`,
    when already at hand)."""
    backs = backs if backs is not None else recovery_times(view, thresholds, now)
    preferred = preference_rank(view)
    eligible = [
        s
        for s in view.slots
        if s.name != exclude and s.usable and not is_limited(s, now, view.model)
    ]
    soonest = reset_ranks(eligible, lambda s: backs[s.name], resolution=thresholds.reset_resolution)
    return sorted(eligible, key=lambda s: (soonest[s.name], preferred(s), s.name))


def recovery_times(view: PolicyView, thresholds: Thresholds, now: float) -> dict[str, float]:
    """Every slot's `recovery_time` for the view's model, by name."""
    return {s.name: recovery_time(s, thresholds, now, view.model) for s in view.slots}


def recovery_time(slot: SlotView, thresholds: Thresholds, now: float, model: str | None) -> float:
    """When `slot` is expected to serve `model` again (now if it can; inf if never known)."""
    if not slot.usable:
        return math.inf
    blocked = blocking(slot.usage, thresholds, now, model)
    t = now if blocked is None else (blocked[1] if blocked[1] is not None else math.inf)
    if slot.limited_until is not None and slot.limited_until > now:
        t = max(t, slot.limited_until)
    until = model_limit(slot, now, model) if model else None
    return t if until is None else max(t, until)


def forget_old_usage(view: PolicyView, thresholds: Thresholds, now: float) -> PolicyView:
    """The live slot's usage older than `usage_max_age` says nothing about now: unknown.

    The live slot is being spent, so an old reading of it is wrong by an unknown amount. An idle
    slot's last reading stands: nothing here has used it since, its windows count as empty once
    past their reset, and its weekly reset time is what ranking by expiry needs. (Idle slots go
    unobserved for good reasons: their access tokens expire and this tool never refreshes a
    token to look at usage.)
    """
    live = view.slot(view.live)
    if live is None or live.usage is None or live.usage.age(now) <= thresholds.usage_max_age:
        return view
    slots = tuple(replace(s, usage=None) if s.name == view.live else s for s in view.slots)
    return replace(view, slots=slots)


def soonest_recovery(
    view: PolicyView, thresholds: Thresholds, now: float, backs: Mapping[str, float] | None = None
) -> float | None:
    """Earliest moment some usable slot is expected to serve again."""
    times = (backs if backs is not None else recovery_times(view, thresholds, now)).values()
    finite = [t for t in times if t != math.inf]
    return min(finite) if finite else None


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


# ---------------------------------------------------------------- the policy


class DefaultPolicy:
    """The shipped policy. Stateless: all memory comes in through the PolicyView."""

    name = "default"
    per_model_limits = True  # reads SlotView.limited_models (the simulator asks)

    def __init__(self, thresholds: Thresholds | None = None):
        self.thresholds = thresholds or Thresholds()

    def decide(self, view: PolicyView, now: float) -> Decision:
        t = self.thresholds
        # a weekly window keeps its phase: an aged-out reading still says when the live
        # slot's quota expires (all forward-routing needs), not how much of it is left
        reading = view.slot(view.live)
        live_reset = weekly_reset(reading.usage if reading is not None else None, now)
        view = forget_old_usage(view, t, now)
        pressures = {s.name: slot_pressure(s.usage, t, now, view.model) for s in view.slots}
        live = view.slot(view.live)

        def make(action: Action, mode: str, reason: str, **kw: Any) -> Decision:
            return Decision(
                action, view.live, kw.pop("target", None), mode, reason, pressure=pressures, **kw
            )

        # every slot but the live one that could take over, best first (exclude=None when
        # nothing is live: then every slot is a candidate)
        candidates = rank_candidates(view, t, now, exclude=view.live)
        urgent = self._urgent_problem(live, candidates, view, now)
        if urgent is not None:
            return self._urgent_move(urgent, live, candidates, view, now, make)
        assert live is not None  # _urgent_problem covers a missing live slot
        refused = self._refused_model_move(live, candidates, view, now)
        if refused is not None:
            model, target = refused
            return make(
                "switch",
                "model-limited",
                f"{live.name} refuses {model} until "
                f"{format_duration((model_limit(live, now, model) or now) - now)}; "
                f"{target.name} still serves it ({describe_usage(target.usage, now)})",
                target=target.name,
                urgent=True,
            )

        if (
            view.manual_hold_slot == live.name
            and view.manual_hold_until is not None
            and view.manual_hold_until > now
        ):
            left = format_duration(view.manual_hold_until - now)
            return make("hold", "manual-hold", f"{live.name} chosen by hand; holding for {left}")

        optional = self._optional_switch(live, candidates, live_reset, now)
        if optional is None and live.usage is None:
            return make("stay", "no-data", f"no usage data for {live.name}; staying")
        if optional is not None:
            mode, target, reason = optional
            if view.last_switch_at is not None and now - view.last_switch_at < t.min_dwell:
                wait = format_duration(t.min_dwell - (now - view.last_switch_at))
                return make(
                    "hold",
                    "dwell",
                    f"would {mode} to {target.name} ({reason}), but last switch was "
                    f"recent; dwell {wait} more",
                    target=target.name,
                )
            return make("switch", mode, f"{reason}; switching to {target.name}", target=target.name)
        return make("stay", "healthy", f"{live.name} healthy: {describe_usage(live.usage, now)}")

    def _refused_model_move(
        self, live: SlotView, candidates: Sequence[SlotView], view: PolicyView, now: float
    ) -> tuple[str, SlotView] | None:
        """With the next model unknown: a model the live slot refused (a per-model 429) that
        another slot still serves, as (model, slot). That slot serves the other models too,
        so moving loses nothing and unblocks the sessions waiting on that model."""
        if view.model:
            return None
        for model in limited_models(live, now):
            for cand in candidates:
                if may_serve(cand, now, model):
                    return model, cand
        return None

    def _urgent_problem(
        self, live: SlotView | None, candidates: Sequence[SlotView], view: PolicyView, now: float
    ) -> str | None:
        """Why the live slot cannot go on at all, or None."""
        t = self.thresholds
        if view.live is None:
            return "no live slot"
        if live is None:
            return f"live slot {view.live} is not a configured slot"
        if not live.usable:
            return f"{live.name} credential is {live.health}"
        if is_limited(live, now, view.model):
            until = recovery_time(live, t, now, view.model)
            return f"{live.name} rate-limited for {format_duration(until - now)}"
        spent = blocking(live.usage, t, now, view.model)
        if spent is None and not view.model:
            # the next turn's model is unknown: a spent per-model window is urgent only when
            # some other slot serves every model
            models = partial_models(live, t, now)
            if models and candidates and not partial_models(candidates[0], t, now):
                spent = exhaustion(live.usage, t, now) or (f"{models[0]} rate limit", None)
        if spent is not None:
            label, reset = spent
            when = f", resets in {format_duration(reset - now)}" if reset is not None else ""
            return f"{live.name} {label} quota exhausted{when}"
        return None

    def _urgent_move(
        self,
        urgent: str,
        live: SlotView | None,
        candidates: Sequence[SlotView],
        view: PolicyView,
        now: float,
        make: Callable[..., Decision],
    ) -> Decision:
        """The live slot cannot go on: the best slot under its thresholds; else the last of
        the quota (the live slot's own first: a move costs a cold cache); else, while the
        live slot has not refused, stay and let a request settle it; else a slot that has not
        refused either; else whichever slot recovers soonest; else defer."""
        t = self.thresholds
        if candidates:
            best = self._burst_target(candidates, view, now)
            return make(
                "switch",
                "exhausted",
                f"{urgent}; switching to {best.name} ({describe_usage(best.usage, now)})",
                target=best.name,
                urgent=True,
            )
        if live is not None and may_serve(live, now, view.model):
            return make(
                "stay",
                "last-quota",
                f"{urgent}; no other slot is under its thresholds: using the last of "
                f"{live.name} ({describe_usage(live.usage, now)})",
                urgent=True,
            )
        last = rank_last_resort(view, t, now, exclude=view.live)
        if last:
            best = last[0]
            return make(
                "switch",
                "last-resort",
                f"{urgent}; every slot is past its thresholds, {best.name} has the most left "
                f"({describe_usage(best.usage, now)})",
                target=best.name,
                urgent=True,
            )
        backs = recovery_times(view, t, now)
        retry = soonest_recovery(view, t, now, backs)
        if live is not None and live.usable and not is_limited(live, now, view.model):
            # the live slot reads as spent but has not refused: it is the untried slot, and
            # the next request settles it. Moving first would flap: on the slot switched to,
            # which has refused, this slot would be the untried one to go back to.
            return make(
                "defer",
                "unrefused",
                f"{urgent}; no slot can serve by its readings and {live.name} has not "
                f"refused a request: staying until it does",
                urgent=True,
                retry_at=retry,
            )
        untried = rank_untried(view, t, now, exclude=view.live, backs=backs)
        if untried:
            best = untried[0]
            return make(
                "switch",
                "untried",
                f"{urgent}; every slot reads as spent, but {best.name} has not refused a "
                f"request: trying it ({describe_usage(best.usage, now)})",
                target=best.name,
                urgent=True,
            )
        live_back = math.inf if live is None else backs[live.name]
        others = [s for s in view.slots if s.name != view.live]
        soonest = reset_ranks(others, lambda s: backs[s.name], resolution=t.reset_resolution)
        preferred = preference_rank(view)
        others.sort(key=lambda s: (soonest[s.name], preferred(s), s.name))
        back = backs[others[0].name] if others else math.inf
        if back != math.inf and back + t.recovery_margin < live_back:
            name = others[0].name
            return make(
                "switch",
                "soonest-recovery",
                f"{urgent}; no slot can serve now, {name} is back soonest (in "
                f"{format_duration(back - now)}): switching ahead",
                target=name,
                urgent=True,
                retry_at=back,
            )
        wait = f"; soonest recovery in {format_duration(retry - now)}" if retry else ""
        return make(
            "defer",
            "all-exhausted",
            f"{urgent}; no other slot can serve{wait}",
            urgent=True,
            retry_at=retry,
        )

    def _burst_target(
        self, candidates: Sequence[SlotView], view: PolicyView, now: float
    ) -> SlotView:
        """Where an urgent move goes: the best candidate, unless a bigger plan of the same
        `rank_class` (as much 5-hour headroom, serving every model when the best does) whose
        weekly quota expires within `burst_window` of the best's can take the load instead.

        The live slot just ran dry, so a burst is usually under way: a Pro's 5-hour window
        lasts minutes of what a Max 20x absorbs for hours, and every window that runs dry
        under working sessions refuses some of their requests before a flip can land.
        Forward-routing spends the smaller plan's expiring quota at a quieter moment; beyond
        two days that is no longer safe, and the soonest expiry comes first again. Plans of
        one size, or unknown sizes, keep the ranking as it is.
        """
        best = candidates[0]
        if best.capacity is None or len(candidates) == 1:
            return best
        t = self.thresholds
        best_class = rank_class(best, view, t, now)
        latest = weekly_reset(best.usage, now) + t.burst_window
        bigger = [
            c
            for c in candidates[1:]
            if c.capacity is not None
            and c.capacity > best.capacity
            and weekly_reset(c.usage, now) <= latest
            and rank_class(c, view, t, now) == best_class
        ]
        return max(bigger, key=lambda c: c.capacity or 0.0) if bigger else best

    def _optional_switch(
        self, live: SlotView, candidates: Sequence[SlotView], live_reset: float, now: float
    ) -> tuple[str, SlotView, str] | None:
        """A worthwhile (not urgent) move as (mode, target, reason), or None.

        With the live slot's usage unknown only forward-routing applies: it needs no more
        than when the live slot's weekly quota expires.
        """
        t = self.thresholds
        if not candidates:
            return None
        usage = live.usage
        best = candidates[0]

        best_reset = weekly_reset(best.usage, now)
        # the room left in a 5-hour window of the quota that expires first is worth more than
        # room in one that lasts longer: leave it only for a slot expiring about as soon
        if (
            usage is not None
            and not has_five_hour_headroom(usage, t, now)
            and has_five_hour_headroom(best.usage, t, now)
            and not live_reset + t.forward_route_margin < best_reset
        ):
            pct = round((_current(usage.five_hour, now) or 0) * 100)
            return "five-hour-headroom", best, f"{live.name} 5-hour window at {pct}%"

        remaining = weekly_remaining(best.usage, now)
        if (
            has_five_hour_headroom(best.usage, t, now)
            and live_reset != math.inf
            and best_reset + t.forward_route_margin < live_reset
            and remaining is not None
            and remaining >= t.forward_route_min_remaining
        ):
            return (
                "forward-route",
                best,
                f"{best.name} has {round(remaining * 100)}% weekly left expiring in "
                f"{format_duration(best_reset - now)}, before {live.name}'s",
            )

        live_gap = pace_gap(usage.seven_day, now) if usage is not None else None
        if live_gap is not None and live_gap >= t.rebalance_ahead:
            for cand in candidates:
                gap = pace_gap(cand.usage.seven_day if cand.usage else None, now)
                cand_reset = weekly_reset(cand.usage, now)
                if (
                    gap is not None
                    and gap < 0
                    and has_five_hour_headroom(cand.usage, t, now)
                    and abs(cand_reset - live_reset) <= t.rebalance_window
                ):
                    return (
                        "rebalance",
                        cand,
                        f"{live.name} {round(live_gap * 100)} points ahead of weekly pace, "
                        f"{cand.name} {round(-gap * 100)} behind",
                    )
        return None
