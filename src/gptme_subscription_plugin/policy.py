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
from collections.abc import Callable, Sequence
from typing import Any

from .policy_types import (
    REJECTED,
    Action,
    Decision,
    Policy,
    PolicyView,
    SlotView,
)
from .pressure import (
    blocking,
    current_utilization,
    describe_usage,
    exhaustion,
    expected_recovery,
    format_duration,
    hard_room,
    has_five_hour_headroom,
    model_recovery,
    next_reset,
    outlasts_five_hour,
    pace_gap,
    rate_limit_marks,
    slot_pressure,
    spent_models,
    spent_windows,
    weekly_remaining,
    weekly_reset,
    window_pressure,
)
from .ranking import (
    can_serve,
    forget_old_usage,
    in_probe_cooldown,
    is_limited,
    limited_models,
    may_serve,
    model_limit,
    partial_models,
    preference_rank,
    rank_candidates,
    rank_class,
    rank_last_resort,
    rank_untried,
    recovery_time,
    recovery_times,
    reset_ranks,
    soonest_recovery,
)
from .thresholds import Thresholds

# the names other modules import from here; they live in policy_types, pressure and ranking
__all__ = [
    "Action",
    "Decision",
    "DefaultPolicy",
    "Policy",
    "PolicyView",
    "REJECTED",
    "SlotView",
    "blocking",
    "can_serve",
    "describe_usage",
    "exhaustion",
    "expected_recovery",
    "forget_old_usage",
    "format_duration",
    "hard_room",
    "has_five_hour_headroom",
    "in_probe_cooldown",
    "is_limited",
    "limited_models",
    "may_serve",
    "model_limit",
    "model_recovery",
    "next_reset",
    "outlasts_five_hour",
    "pace_gap",
    "partial_models",
    "preference_rank",
    "rank_candidates",
    "rank_class",
    "rank_last_resort",
    "rank_untried",
    "rate_limit_marks",
    "recovery_time",
    "recovery_times",
    "reset_ranks",
    "slot_pressure",
    "soonest_recovery",
    "spent_models",
    "spent_windows",
    "weekly_remaining",
    "weekly_reset",
    "window_pressure",
]


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
            pct = round((current_utilization(usage.five_hour, now) or 0) * 100)
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
