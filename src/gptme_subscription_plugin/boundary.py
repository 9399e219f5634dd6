"""The one turn-boundary controller: what rotation does when a turn starts or ends.

Every surface that sees turn boundaries (the Claude Code hooks, the gptme hooks) and the
simulator call this controller, so the tournament measures the code that ships. It is pure:
each `on_*` takes a `Moment` (the rotation state, the policy's view, the other sessions that
are mid-turn, the clock) and returns a `Plan`: edits to the rotation state, at most one move
(switch now, or defer until everyone is between turns) with a fallback, and the policy's
decision. The caller carries the plan out: `boundary_runner.py` on the real files (locks,
links, events), `sim/engine.py` in memory.

The rules it holds:
- a flip happens only where no other session is mid-turn; otherwise the switch waits as
  pending and lands at the next boundary where everyone else is idle;
- a pending switch the policy chose is dropped once its target can no longer serve; one made
  by hand lands whatever the readings say (the executor still refuses an unusable slot);
- SessionStart decides nothing (it polls and tells); UserPromptSubmit lands a pending switch
  and, with nobody else mid-turn, decides on cached data; Stop ends the live slot's refusal
  streak when the turn was answered on it, lands a pending switch and decides on refreshed
  data; StopFailure marks the live slot (rate limit: limited until its expected recovery, or
  only the blamed model; refused credential: rejected) and decides at once.
- a session in a slot's profile never changes account: its boundaries (`on_profile_*`) mark
  and clear its own slot as the live slot's would be, and never move anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from .policy import REJECTED, Decision, Policy, PolicyView, SlotView, can_serve
from .policy import rate_limit_marks as _rate_limit_marks
from .rotation_state import RotationState
from .thresholds import Thresholds

RATE_LIMIT = "rate_limit"
# StopFailure errors that mean Anthropic refused the live slot's credential itself
REJECTED_ERRORS = ("authentication_failed", "oauth_org_not_allowed")


# ---------------------------------------------------------------- what the controller sees


class Moment:
    """One turn boundary as the caller read it: the clock, rotation.json, `blockers` (the
    other sessions mid-turn, and agent locks) and the policy's view after the refresh the
    event asks for (`refreshes`). The view may be given as a function: it is read once, and
    only if the controller looks (nobody reads the slots at a boundary that cannot switch)."""

    __slots__ = ("now", "rotation", "blockers", "_view", "_read_view")

    def __init__(
        self,
        now: float,
        view: PolicyView | Callable[[], PolicyView],
        rotation: RotationState,
        blockers: tuple[str, ...] = (),
    ) -> None:
        self.now = now
        self.rotation = rotation
        self.blockers = blockers
        self._view = view if isinstance(view, PolicyView) else None
        self._read_view = None if isinstance(view, PolicyView) else view

    @property
    def view(self) -> PolicyView:
        if self._view is None:
            assert self._read_view is not None
            self._view = self._read_view()
        return self._view


def refreshes(event: str) -> bool:
    """Whether the caller polls usage (within the budget) before building the view."""
    return event in ("session-start", "stop")


def matters(error: object) -> bool:
    """Whether a StopFailure error says anything about the live slot (others change nothing)."""
    return error == RATE_LIMIT or error in REJECTED_ERRORS


# ---------------------------------------------------------------- what it asks for


@dataclass(frozen=True)
class EndRefusal:
    """The turn was answered on `slot`: its refusal streak is over."""

    slot: str


@dataclass(frozen=True)
class StartRefusal:
    """A 429 on `slot`: its refusal streak starts at `at` unless one runs."""

    slot: str
    at: float


@dataclass(frozen=True)
class MarkLimited:
    """`slot` serves nothing (with `model`: not that model) before `until`."""

    slot: str
    until: float
    model: str | None = None


@dataclass(frozen=True)
class Reject:
    """Anthropic refused the credential `slot` holds now."""

    slot: str
    source: str


@dataclass(frozen=True)
class DropPending:
    """The pending switch to `slot` is dropped: its target can no longer serve."""

    slot: str
    mode: str


Change = EndRefusal | StartRefusal | MarkLimited | Reject | DropPending


@dataclass(frozen=True)
class Switch:
    """Flip to `slot` now (the executor re-checks that nobody went mid-turn meanwhile)."""

    slot: str
    reason: str
    mode: str


@dataclass(frozen=True)
class Defer:
    """A switch to `slot` that waits as pending: `blockers` are mid-turn (the executor looks
    again, and flips if they are not any more)."""

    slot: str
    reason: str
    mode: str
    blockers: tuple[str, ...]


Move = Switch | Defer


@dataclass(frozen=True)
class Plan:
    """What to carry out, in order: `changes`, then `moves` until one of them switches (a
    pending switch first, the policy's own move as its fallback)."""

    changes: tuple[Change, ...] = ()
    moves: tuple[Move, ...] = ()
    decision: Decision | None = None

    @property
    def urgent_wait(self) -> bool:
        """An urgent switch waits on other sessions: worth telling the person."""
        return (
            self.decision is not None
            and self.decision.urgent
            and any(isinstance(m, Defer) for m in self.moves)
        )


# ---------------------------------------------------------------- the controller


class BoundaryController:
    """The policy and the thresholds every boundary is decided with.

    `per_model_limits`: whether a 429 blamed on one model limits only that model (policies
    that read `SlotView.limited_models`); otherwise the whole slot waits.
    """

    def __init__(
        self, policy: Policy, thresholds: Thresholds, *, per_model_limits: bool = True
    ) -> None:
        self.policy = policy
        self.thresholds = thresholds
        self.per_model_limits = per_model_limits

    @classmethod
    def for_policy(cls, policy: Policy, thresholds: Thresholds) -> BoundaryController:
        """Per-model limits for a policy that reads them (it says so: `per_model_limits`);
        the rivals keep one limit per account, so they get the whole-slot limit."""
        return cls(
            policy, thresholds, per_model_limits=bool(getattr(policy, "per_model_limits", False))
        )

    def on_session_start(self) -> Plan:
        """A session opens: nothing to decide (the caller polls and publishes the summary)."""
        return Plan()

    def on_prompt_submit(self, moment: Moment) -> Plan:
        """The last safe point before the turn's first request. With nobody else mid-turn,
        a pending switch lands and the policy decides on cached data: the first prompt after
        a quiet spell is often the only moment a busy fleet leaves for a flip."""
        if moment.blockers:
            return Plan()
        changes, pending = self._pending(moment)
        decision = self.policy.decide(moment.view, moment.now)
        return Plan(changes, (*pending, *self._move(decision, moment)), decision)

    def on_stop(self, moment: Moment, *, answered_on_live: bool = True) -> Plan:
        """The turn ended. `answered_on_live`: the turn was served on the live slot (a Claude
        Code turn; not a gptme turn, whose own model calls do not use the slot)."""
        live = moment.view.live
        changes: tuple[Change, ...] = ()
        if answered_on_live and live is not None and live in moment.rotation.refusing:
            changes = (EndRefusal(live),)
        dropped, pending = self._pending(moment)
        decision = self.policy.decide(moment.view, moment.now)
        return Plan((*changes, *dropped), (*pending, *self._move(decision, moment)), decision)

    def on_stop_failure(self, moment: Moment, error: object, model: str | None) -> Plan:
        """The turn ended on an API error; `model` is the session's, when known."""
        if not matters(error):
            return Plan()  # decided without reading the view
        live = moment.view.live
        changes = self._failure_marks(moment, live, error, model) if live is not None else ()
        view = _with_changes(moment.view, moment.rotation, changes)
        decision = self.policy.decide(view, moment.now)
        return Plan(changes, self._move(decision, moment), decision)

    def on_profile_stop(self, moment: Moment, slot: str) -> Plan:
        """A turn in `slot`'s profile ended on an answer: its refusal streak is over. No
        move and no decision: a session in a profile never changes account."""
        if slot in moment.rotation.refusing:
            return Plan((EndRefusal(slot),))
        return Plan()

    def on_profile_stop_failure(
        self, moment: Moment, slot: str, error: object, model: str | None
    ) -> Plan:
        """A turn in `slot`'s profile ended on an API error: `slot` gets the marks the live
        slot would (`on_stop_failure`), read from the moment's view of it; no move."""
        if not matters(error):
            return Plan()
        return Plan(self._failure_marks(moment, slot, error, model))

    # ------------------------------------------------------------ the steps

    def _failure_marks(
        self, moment: Moment, slot: str, error: object, model: str | None
    ) -> tuple[Change, ...]:
        """A rate limit: the refusal streak and the limits; a refused credential: rejected."""
        if error == RATE_LIMIT:
            return self._rate_limited(moment, slot, model)
        return (Reject(slot, f"StopFailure {error}"),)

    def _pending(self, moment: Moment) -> tuple[tuple[Change, ...], tuple[Move, ...]]:
        """The pending switch, where nobody else is mid-turn: land it, or drop it when a
        policy switch's target can no longer serve (checked on the moment's data)."""
        pending = moment.rotation.pending
        if pending is None or moment.blockers:
            return (), ()
        if pending.mode != "manual":
            target = moment.view.slot(pending.slot)
            if target is None or not can_serve(target, self.thresholds, moment.now, None):
                return (DropPending(pending.slot, pending.mode),), ()
        return (), (Switch(pending.slot, pending.reason, pending.mode),)

    def _move(self, decision: Decision, moment: Moment) -> tuple[Move, ...]:
        if not decision.wants_switch or decision.target is None:
            return ()
        if moment.blockers:
            return (Defer(decision.target, decision.reason, decision.mode, moment.blockers),)
        return (Switch(decision.target, decision.reason, decision.mode),)

    def _rate_limited(self, moment: Moment, live: str, model: str | None) -> tuple[Change, ...]:
        """A 429 on the live slot: the refusal streak (it starts now unless one runs), then
        the marks `policy.rate_limit_marks` gives for the slot's cached usage."""
        since = moment.rotation.refusing.get(live, moment.now)
        slot = moment.view.slot(live)
        whole, per_model = _rate_limit_marks(
            slot.usage if slot is not None else None,
            self.thresholds,
            moment.now,
            model,
            self.per_model_limits,
            since,
        )
        marks: list[Change] = [StartRefusal(live, moment.now)]
        marks += [MarkLimited(live, until, key) for key, until in per_model.items()]
        if whole is not None:
            marks.append(MarkLimited(live, whole))
        return tuple(marks)


def _with_changes(
    view: PolicyView, rotation: RotationState, changes: tuple[Change, ...]
) -> PolicyView:
    """The view as it reads once `changes` are made (the decision must see its own marks)."""
    if not changes:
        return view
    state = RotationState(
        limited=dict(rotation.limited),
        limited_models={s: dict(m) for s, m in rotation.limited_models.items()},
    )
    rejected: set[str] = set()
    for change in changes:
        if isinstance(change, MarkLimited):
            state.mark_limited(change.slot, change.until, change.model)
        elif isinstance(change, Reject):
            rejected.add(change.slot)
    touched = {c.slot for c in changes}
    slots = tuple(
        _slot_with(s, state, s.name in rejected) if s.name in touched else s for s in view.slots
    )
    return replace(view, slots=slots)


def _slot_with(slot: SlotView, state: RotationState, rejected: bool) -> SlotView:
    return replace(
        slot,
        limited_until=state.limited.get(slot.name),
        limited_models=state.model_limits(slot.name),
        usable=slot.usable and not rejected,
        health=REJECTED if rejected else slot.health,
    )


__all__ = [
    "REJECTED_ERRORS",
    "BoundaryController",
    "Change",
    "Defer",
    "DropPending",
    "EndRefusal",
    "MarkLimited",
    "Moment",
    "Move",
    "Plan",
    "Reject",
    "StartRefusal",
    "Switch",
    "matters",
    "refreshes",
]
