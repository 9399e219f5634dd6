"""Profile mode in the simulator: every session bound to one slot's config dir for its life.

The engine (engine.py) runs link mode: one live credential serves every session. Here each
session starts in the profile of the slot a launch router picks for it (`launch.py`'s
`choose_launch_slot` for ours, a rival's rule otherwise) and every request it sends goes to
that slot's account, so sessions on different slots run in parallel and nothing ever flips.
What is shared with link mode is everything else: the ground truth, the workload, the
statusline readings (each profile session reports its own slot's usage), the endpoint polls,
the cache rules, and the StopFailure marks, which production's boundary controller computes
(a 429 marks the slot limited until its expected recovery; a refused credential rejects it).

A refused request ends the run. A supervisor (`gptme-subscription run --retry-on-limit`) then
resumes the same session: on the slot the router picks with resume semantics (its own slot
while that one can serve, else another), after `RESUME_DELAY`; when no slot can serve, it
waits for the soonest recovery the view knows (a poll interval when it knows none, at most
`MAX_WAIT`: readings lag, a slot may be back before the view says so) and asks again. Waiting
counts as stall time. A session's account changes only there, between runs; a change while it
is mid-turn would be counted in `mid_turn_swaps` (a check: none happens by construction), and
so would a refresh of a credential outside its one home (`lost_chains`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from .. import launch
from ..boundary import BoundaryController, Moment, Plan, matters, refreshes
from ..launch import SlotLoad
from ..policy import Decision, PolicyView, SlotView
from ..ranking import may_serve, soonest_recovery
from ..thresholds import Thresholds
from .engine import _TURN, SimOptions, Simulator, _SessionState
from .fleet import FleetAccount
from .metrics import RunResult
from .rivals import pace_score
from .workload import Workload

RESUME_DELAY = 10.0  # a supervisor starts `claude -p --resume` again on the new slot
MIN_WAIT = 60.0  # a supervisor with nowhere to go looks again no sooner than this
MAX_WAIT = 1800.0  # and no later than this (Claude Code's own retry cap, engine.py)
LAUNCH_MEMORY = 600.0  # how long launch times are kept for the routers (seconds)
RESUME_ERRORS = ("rate_limit", "authentication_failed")  # the slot cannot serve: move


class Router(Protocol):
    """Where a new (or resumed) session starts: a slot name, or None when none should."""

    name: str

    def choose(
        self,
        view: PolicyView,
        loads: Mapping[str, SlotLoad],
        thresholds: Thresholds,
        now: float,
        resume: str | None,
    ) -> str | None: ...


class ShippedRouter:
    """Ours: `launch.choose_launch_slot`, the rule `gptme-subscription run` ships."""

    name = "profile"

    def choose(
        self,
        view: PolicyView,
        loads: Mapping[str, SlotLoad],
        thresholds: Thresholds,
        now: float,
        resume: str | None,
    ) -> str | None:
        return launch.choose_launch_slot(view, loads, thresholds, now, resume=resume).slot


def _stays(view: PolicyView, resume: str | None, now: float) -> bool:
    """A rival keeps a resumed session on its slot while that slot still serves."""
    slot = view.slot(resume)
    return slot is not None and may_serve(slot, now, view.model)


def _load(loads: Mapping[str, SlotLoad], name: str, now: float, window: float) -> int:
    return loads.get(name, SlotLoad()).at(now, window)


class LeastLoadedRouter:
    """The serving slot with the fewest sessions (recent launches included), first in order
    on a tie."""

    name = "profile:least-loaded"

    def choose(
        self,
        view: PolicyView,
        loads: Mapping[str, SlotLoad],
        thresholds: Thresholds,
        now: float,
        resume: str | None,
    ) -> str | None:
        if _stays(view, resume, now):
            return resume
        serving = [s for s in view.slots if may_serve(s, now, view.model)]
        if not serving:
            return None
        window = thresholds.launch_window
        return min(serving, key=lambda s: _load(loads, s.name, now, window)).name


class RoundRobinRouter:
    """The next serving slot after the one that took the last launch."""

    name = "profile:round-robin"

    def __init__(self) -> None:
        self.last: str | None = None

    def choose(
        self,
        view: PolicyView,
        loads: Mapping[str, SlotLoad],
        thresholds: Thresholds,
        now: float,
        resume: str | None,
    ) -> str | None:
        if _stays(view, resume, now):
            return resume
        names = [s.name for s in view.slots]
        start = names.index(self.last) + 1 if self.last in names else 0
        for k in range(len(names)):
            slot = view.slots[(start + k) % len(names)]
            if may_serve(slot, now, view.model):
                self.last = slot.name
                return slot.name
        return None


@dataclass
class PaceRouter:
    """TeamClaude D1DX (reference/routing.md 1a) as a launch router: usable under the hard
    limit (0.98), 5-hour rail (0.90), session cap (4), each layer falling back to the one
    before when empty; the highest pace score (gap to the weekly line plus end-of-cycle ramp)
    wins, and inside its tie band (0.10) the slot with the fewest sessions and launches in the
    last `anti_dogpile` seconds (the anti-dogpile layer)."""

    hard: float = 0.98
    rail: float = 0.90
    session_cap: int = 4
    tie_band: float = 0.10
    anti_dogpile: float = 60.0
    name: str = "profile:pace"

    def _usable(self, slot: SlotView, now: float, model: str | None) -> bool:
        if not may_serve(slot, now, model):
            return False
        u = slot.usage
        if u is None:
            return True
        return all(
            w is None or w.effective_utilization(now) < self.hard
            for w in (u.five_hour, u.seven_day)
        )

    def _railed(self, slot: SlotView, now: float) -> bool:
        five = slot.usage.five_hour if slot.usage else None
        return five is not None and five.effective_utilization(now) >= self.rail

    def choose(
        self,
        view: PolicyView,
        loads: Mapping[str, SlotLoad],
        thresholds: Thresholds,
        now: float,
        resume: str | None,
    ) -> str | None:
        if _stays(view, resume, now):
            return resume
        usable = [s for s in view.slots if self._usable(s, now, view.model)]
        if not usable:
            return None
        eligible = [s for s in usable if not self._railed(s, now)] or usable
        sessions = {s.name: loads.get(s.name, SlotLoad()).sessions for s in eligible}
        eligible = [s for s in eligible if sessions[s.name] < self.session_cap] or eligible
        order = {s.name: i for i, s in enumerate(view.slots)}
        scored = [(pace_score(s.usage, now)[1], s) for s in eligible]
        best = max(score for score, _ in scored)
        band = [(score, s) for score, s in scored if score >= best - self.tie_band]
        window = self.anti_dogpile
        _, pick = min(
            band, key=lambda c: (_load(loads, c[1].name, now, window), -c[0], order[c[1].name])
        )
        return pick.name


ROUTERS: dict[str, type[Router]] = {
    r.name: r for r in (ShippedRouter, PaceRouter, LeastLoadedRouter, RoundRobinRouter)
}


class _KeepSlot:
    """A session in a profile never changes slot at a boundary: the controller's decisions
    are moot, its marks (limited, rejected, refusal streaks) are what the routers read."""

    name = "profile"
    per_model_limits = True

    def decide(self, view: PolicyView, now: float) -> Decision:
        return Decision("stay", view.live, None, "profile", "a profile session keeps its slot")


class ProfileSimulator(Simulator):
    """One profile-mode run: `ProfileSimulator(workload, fleet, router).run()` -> RunResult."""

    def __init__(
        self,
        workload: Workload,
        fleet: tuple[FleetAccount, ...],
        router: Router,
        options: SimOptions | None = None,
        thresholds: Thresholds | None = None,
        sample: bool = False,
        record: bool = False,
    ):
        super().__init__(workload, fleet, _KeepSlot(), options, thresholds, sample, record)
        self.router = router
        self.controller = BoundaryController(_KeepSlot(), self.thresholds, per_model_limits=True)
        self.live = None  # no live link: every slot lives in its own profile
        n = len(self.names)
        self.slot_of = [-1] * len(self.sessions)  # the profile each session runs in
        self.waiting = [False] * len(self.sessions)  # its supervisor waits for a slot
        self.on_slot: list[set[int]] = [set() for _ in range(n)]
        self.launched: list[list[float]] = [[] for _ in range(n)]
        self.home = list(range(n))  # each credential's one home: its own profile
        self.refusals: list[tuple[str, float]] = []  # with record=True: (session, when)

    # ------------------------------------------------------------ where requests go

    def _account_for(self, s: _SessionState) -> int | None:
        return self.slot_of[s.index]

    def _request(self, s: _SessionState, t: float) -> None:
        slot = self.slot_of[s.index]
        if self.home[slot] != slot:  # a profile refreshes only the credential it holds
            self.m.lost_chains += 1
        super()._request(s, t)

    # ------------------------------------------------------------ launches and the supervisor

    def _turn_start(self, s: _SessionState, t: float) -> None:
        unbound = self.slot_of[s.index] < 0 or self.waiting[s.index]
        if unbound and not self._launch(s, t):
            return
        super()._turn_start(s, t)

    def _launch(self, s: _SessionState, t: float) -> bool:
        """Start (or resume) `s` where the router says; without a slot, wait and ask again."""
        si = s.index
        current = self.slot_of[si]
        resume = None if current < 0 else self.names[current]
        req = s.session.turns[s.turn].requests[s.req]
        view = self._launch_view(t, None if current < 0 else req.model)
        chosen = self.router.choose(view, self._loads(t), self.thresholds, t, resume)
        if chosen is None:
            if current >= 0:
                self.on_slot[current].discard(si)  # its run ended; nothing runs it now
            self.waiting[si] = True
            if s.fail_since is None:
                s.fail_since = t
            back = soonest_recovery(view, self.thresholds, t)
            wake = t + self.opt.poll_interval if back is None else back
            self._push(min(max(wake, t + MIN_WAIT), t + MAX_WAIT), _TURN, si)
            return False
        slot = self.index[chosen]
        if slot != current or self.waiting[si]:
            self._bind(s, slot, t)
        self.waiting[si] = False
        return True

    def _retry(self, s: _SessionState, t: float, error: str) -> None:
        """The supervisor: a run that ended because its slot cannot serve resumes elsewhere."""
        if error not in RESUME_ERRORS:
            super()._retry(s, t, error)
            return
        current = self.slot_of[s.index]
        if self._launch(s, t):
            if self.slot_of[s.index] != current:
                self.m.resumes += 1
                self._push(t + RESUME_DELAY, _TURN, s.index)
            else:  # the view says its slot still serves: Claude Code's own retry
                super()._retry(s, t, error)

    def _bind(self, s: _SessionState, slot: int, t: float) -> None:
        """Run `s` in `slot`'s profile from now on: a launch there."""
        si = s.index
        previous = self.slot_of[si]
        if previous >= 0:
            if previous != slot and (s.in_turn or s.req_end > t):
                self.m.mid_turn_swaps += 1  # never: a session moves only between runs
            self.on_slot[previous].discard(si)
        self.slot_of[si] = slot
        self.on_slot[slot].add(si)
        recent = self.launched[slot]
        recent.append(t)
        while recent and recent[0] < t - LAUNCH_MEMORY:
            recent.pop(0)

    def _loads(self, t: float) -> dict[str, SlotLoad]:
        """Live sessions per slot (the turn registry's, silent ones expired) and launches."""
        ttl = self.opt.session_ttl
        registry = self.registry
        loads = {}
        for i, name in enumerate(self.names):
            sessions = sum(
                1 for si in self.on_slot[i] if si in registry and t - registry[si][1] <= ttl
            )
            launches = tuple(x for x in self.launched[i] if x >= t - LAUNCH_MEMORY)
            loads[name] = SlotLoad(sessions, launches)
        return loads

    def _launch_view(self, t: float, model: str | None) -> PolicyView:
        """What `run` reads before it picks: usage polled within the budget, no live slot;
        a supervisor resuming knows the session's model from its transcript."""
        self._flush_observations(t)
        self._refresh(t)
        view = self.view(t)
        return view if model is None else replace(view, model=model)

    # ------------------------------------------------------------ the hooks in a profile

    def _hook_user_prompt_submit(self, s: _SessionState, t: float) -> None:
        self.registry[s.index] = [True, t]  # nothing to decide: only the turn registry
        self.busy.add(s.index)

    def _moment(self, si: int, now: float, event: str) -> Moment:
        """The session's own slot is 'live' for its hooks; no other session blocks anything."""
        name = self.names[self.slot_of[si]]

        def read_view() -> PolicyView:
            self._flush_observations(now)
            if refreshes(event):
                self._refresh(now)
            return replace(self.view(now), live=name)

        return Moment(now, read_view, self.rotation, ())

    def _carry_out(self, plan: Plan, si: int, now: float) -> None:
        for change in plan.changes:
            self._change(change, now)
        assert not plan.moves, "a profile session never switches at a boundary"

    def _hook_stop_failure(self, s: _SessionState, t: float, error: str) -> None:
        if self.record:
            self.refusals.append((s.session.sid, t))
        self._mark_idle(s.index, t)
        if not matters(error):
            return
        # the hook reads the session's model from its transcript: known once it had an answer
        model = s.session.turns[s.turn].requests[s.req].model if s.cache_acct >= 0 else None
        moment = self._moment(s.index, t, "stop-failure")
        self._carry_out(self.controller.on_stop_failure(moment, error, model), s.index, t)

    def _turn_end(self, s: _SessionState, t: float) -> None:
        super()._turn_end(s, t)
        if s.turn >= len(s.session.turns):  # SessionEnd: the profile's session is gone
            self.on_slot[self.slot_of[s.index]].discard(s.index)


def run_profiles(
    workload: Workload,
    fleet: tuple[FleetAccount, ...],
    routers: Sequence[str] = tuple(ROUTERS),
    options: SimOptions | None = None,
) -> dict[str, RunResult]:
    """Each named router through one (workload, fleet)."""
    return {
        name: ProfileSimulator(workload, fleet, ROUTERS[name](), options).run() for name in routers
    }
