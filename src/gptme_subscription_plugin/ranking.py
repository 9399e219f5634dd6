"""Questions about a slot in a `PolicyView`: can it serve, when is it back, how it ranks.

Pure, built on `pressure.py`; the order candidates rank in is written down in `policy`'s
module docstring. `policy` re-exports every name here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import replace

from .policy_types import PolicyView, SlotView
from .pressure import (
    blocking,
    hard_room,
    has_five_hour_headroom,
    slot_pressure,
    spent_models,
    weekly_reset,
)
from .thresholds import Thresholds
from .usage.snapshot import model_matches


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
    """Slots that could take over, best first (the order is in `policy`'s module docstring)."""
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
