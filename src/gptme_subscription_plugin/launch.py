"""Which slot a new session starts on: the routing rule for sessions bound to one slot.

A session launched in a slot's own config dir keeps that account for its whole life, so the
choice at launch is the only one. It is pure (the view, the load and the clock come in) so the
launcher, the gptme tool and the simulator make it alike:

- only slots that can serve now (usable, not limited, no spent window: `rank_candidates`);
  none at all means no launch, not a session that starts on a spent slot;
- a resumed session stays on its slot (its prompt cache is warm there) while that slot serves;
- each slot carries at most `launch_session_cap` sessions at an empty 5-hour window, fewer as
  the window fills toward `five_hour_headroom` (never fewer than one), scaled by its plan's
  size (`SlotView.capacity`, Max 5x = 1: a Max 20x carries four times as many, a Pro a fifth);
  a slot at its cap takes no launch while another has room;
- the load of a slot is its live sessions plus its launches in the last `launch_window`
  seconds (a launch shows up as a session only once it ran its first hook): twenty launches in
  one second see each other and spread;
- among slots with room, the best ranked (perishable quota first, 5-hour headroom kept) takes
  the launch unless it already carries more than one session beyond the least loaded one,
  load counted per plan size (sessions over `SlotView.capacity` in Max 5x units) and the one
  session beyond counted in the slot's own sessions (equal plans: one session more).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .policy_types import PolicyView, SlotView
from .pressure import current_utilization
from .ranking import can_serve, rank_candidates
from .thresholds import Thresholds


@dataclass(frozen=True)
class SlotLoad:
    """What already runs on a slot: live sessions, and when recent launches happened."""

    sessions: int = 0
    launches: Sequence[float] = ()

    def at(self, now: float, window: float) -> int:
        """Sessions plus the launches of the last `window` seconds."""
        return self.sessions + sum(1 for t in self.launches if now - window <= t <= now)


@dataclass(frozen=True)
class LaunchChoice:
    """The slot for a new session (None: nothing can serve now), why, and what was weighed."""

    slot: str | None
    reason: str
    load: Mapping[str, int] = field(default_factory=dict)  # by slot, candidates only
    cap: Mapping[str, int] = field(default_factory=dict)


PLAN_UNIT = 5.0  # `SlotView.capacity` of a Max 5x plan: the size the session cap is set for


def plan_size(slot: SlotView) -> float:
    """The slot's plan in Max 5x units (1 when unknown): its windows are that much bigger."""
    return slot.capacity / PLAN_UNIT if slot.capacity else 1.0


def session_cap(slot: SlotView, thresholds: Thresholds, now: float) -> int:
    """Sessions `slot` may carry: the full cap (times its plan size) at an empty 5-hour
    window, down to one as the window fills to `five_hour_headroom` (an unread window counts
    as empty)."""
    used = current_utilization(slot.usage.five_hour, now) if slot.usage is not None else None
    share = 1.0 - min(1.0, (used or 0.0) / max(thresholds.five_hour_headroom, 1e-9))
    return max(1, math.floor(thresholds.launch_session_cap * share * plan_size(slot)))


def choose_launch_slot(
    view: PolicyView,
    loads: Mapping[str, SlotLoad],
    thresholds: Thresholds,
    now: float,
    *,
    resume: str | None = None,
) -> LaunchChoice:
    """The slot a new session (or `resume`d one) should start on; see the module docstring."""
    if resume is not None:
        slot = view.slot(resume)
        if slot is not None and can_serve(slot, thresholds, now, view.model):
            return LaunchChoice(resume, f"a resumed session stays on {resume} (warm cache)")
    ranked = rank_candidates(view, thresholds, now)
    if not ranked:
        return LaunchChoice(None, "no slot can serve now")
    empty = SlotLoad()
    load = {s.name: loads.get(s.name, empty).at(now, thresholds.launch_window) for s in ranked}
    cap = {s.name: session_cap(s, thresholds, now) for s in ranked}
    open_ = [s for s in ranked if load[s.name] < cap[s.name]]
    pool = open_ or ranked
    # load per plan size; a slot may carry one session of its own beyond the least loaded
    # slot's level (equal plans: one session more than the least loaded one)
    per_size = {s.name: load[s.name] / plan_size(s) for s in pool}
    least = min(per_size.values())
    chosen = next(s for s in pool if (load[s.name] - 1) / plan_size(s) <= least)
    best = ranked[0].name
    if not open_:
        why = f"every slot is at its session cap; {chosen.name} carries the fewest"
    elif chosen.name == best:
        why = f"{best} ranks first ({load[best]} of {cap[best]} sessions)"
    else:
        why = (
            f"{chosen.name}: {best} ranks first but carries {load[best]} sessions "
            f"(cap {cap[best]}) against {least:.3g} (per plan size) on the least loaded slot"
        )
    return LaunchChoice(chosen.name, why, load, cap)


__all__ = ["LaunchChoice", "SlotLoad", "choose_launch_slot", "plan_size", "session_cap"]
