"""The boundary controller's plans carried out on the real files.

Both surfaces that see turn boundaries (the Claude Code hooks, the gptme hooks) call a
`BoundaryRunner` after they have marked their own session idle or before they mark it busy
(the turn registry is theirs). The runner heals drift, reads the moment (rotation.json, the
policy's view after the refresh the event asks for, who else is mid-turn), asks the
controller, and carries the plan out through the manager: rotation edits under
rotation.json's lock, switches through `switch_to` (which re-checks that nobody went mid-turn
meanwhile), every decision in the events log, and the pressure summary for the fast path.

A session in a slot's profile gets a `ProfileRunner` instead: it never heals, switches or
defers the live link and publishes no summary for it; it polls, marks and clears only its own
slot, and says when that slot is spent and how to continue on another one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .boundary import (
    BoundaryController,
    Change,
    DropPending,
    EndRefusal,
    MarkLimited,
    Moment,
    Move,
    Plan,
    Reject,
    StartRefusal,
    matters,
    refreshes,
)
from .hookstatus import write_hook_status
from .manager import SubscriptionManager, SwitchOutcome
from .notify import check_boundary
from .policy import Decision, PolicyView, format_duration, may_serve, recovery_time
from .pressure import describe_usage
from .status_snapshot import agent_summary
from .summary import Summary


@dataclass(frozen=True)
class BoundaryResult:
    """What a boundary did: the outcome of the last move tried, the plan, a line about drift
    for the person (healed, or could not be), and the summary published (when one was)."""

    plan: Plan
    outcome: SwitchOutcome | None = None
    heal: str | None = None
    summary: Summary | None = None

    @property
    def switched(self) -> bool:
        return self.outcome is not None and self.outcome.status == "switched"

    def switched_line(self) -> str | None:
        """One line for the person when the live slot changed."""
        o = self.outcome
        if o is None or not self.switched:
            return None
        return f"subscription: switched {o.previous or '?'} -> {o.slot} ({o.detail})"

    def stop_line(self, lands: str = "") -> str | None:
        """The line a turn's end tells the person: the switch, or an urgent switch left
        pending on other sessions (`lands`: the surface's words for when it lands)."""
        o = self.outcome
        if self.plan.urgent_wait and o is not None and o.status == "pending":
            return f"subscription: {o.detail}{lands}"
        return self.switched_line()


def publish_summary(
    m: SubscriptionManager,
    decision: Decision | None = None,
    *,
    view: PolicyView | None = None,
    refresh: bool = False,
) -> Summary:
    """The pressure summary on cached usage (polled within the budget with `refresh`),
    written to the hook status file the PreToolUse fast path reads."""
    now = m.clock()
    if view is None:
        view = m.view(m.check_usage(refresh=refresh))
    decision = decision or m.policy.decide(view, now)
    pending = m.rotation().pending
    summary = agent_summary(m, view, decision, now, pending.slot if pending else None)
    write_hook_status(m.config.state_dir, {**summary.to_dict(), "updated_at": now})
    check_boundary(m, view, now)
    return summary


class BoundaryRunner:
    """One boundary of one session, on the manager's files."""

    def __init__(self, m: SubscriptionManager) -> None:
        self.m = m
        self.controller = BoundaryController.for_policy(m.policy, m.config.thresholds)

    # ------------------------------------------------------------ the events

    def session_start(self) -> BoundaryResult:
        """Heal, poll within the budget, publish the summary. Nothing is decided, so the
        view is only what the summary needs (no identity lookups, no clamps)."""
        heal = self.heal()
        plan = self.controller.on_session_start()
        summary = publish_summary(self.m, refresh=refreshes("session-start"))
        return BoundaryResult(plan, heal=heal, summary=summary)

    def prompt_submit(self, session_id: str | None) -> BoundaryResult:
        """Before the session's turn starts (the caller marks it busy afterwards); a summary
        only when the live slot changed."""
        heal = self.heal()
        plan = self.controller.on_prompt_submit(self.moment("prompt-submit", session_id))
        outcome = self.carry_out(plan, session_id)
        result = BoundaryResult(plan, outcome, heal)
        if result.switched:
            result = BoundaryResult(plan, outcome, heal, publish_summary(self.m))
        return result

    def stop(self, session_id: str | None, *, answered_on_live: bool = True) -> BoundaryResult:
        """After the session's turn ended (the caller marked it idle)."""
        heal = self.heal()
        moment = self.moment("stop", session_id)
        plan = self.controller.on_stop(moment, answered_on_live=answered_on_live)
        return self._finish(plan, session_id, heal, moment.view)  # Stop always reads it

    def stop_failure(
        self, session_id: str | None, error: object, model: str | None
    ) -> BoundaryResult | None:
        """After a turn ended on an API error; None when the error says nothing of the slot."""
        if not matters(error):
            return None
        heal = self.heal()  # the slot, not a drifted live file, is what gets marked
        moment = self.moment("stop-failure", session_id)
        plan = self.controller.on_stop_failure(moment, error, model)
        return self._finish(plan, session_id, heal, None)

    # ------------------------------------------------------------ the steps

    def heal(self) -> str | None:
        """Heal drift, else note the healthy live link for a later heal; a line for the
        person when something was healed or could not be (the boundary goes on)."""
        try:
            result = self.m.heal_if_drifted()
        except Exception as exc:  # lock busy, unattributable live file: say so, go on
            return f"subscription: drift not healed: {_one_line(exc)}"
        return f"subscription: {result.detail}" if result is not None else None

    def moment(self, event: str, session_id: str | None) -> Moment:
        """Who is busy first; the view (and the refresh before it) only when looked at."""
        m = self.m
        blockers = tuple(m.busy_sessions(exclude=session_id))
        refresh = refreshes(event)
        return Moment(m.clock(), lambda: m.current_view(refresh=refresh), m.rotation(), blockers)

    def carry_out(self, plan: Plan, session_id: str | None) -> SwitchOutcome | None:
        """The changes, the decision into the log, then the moves until one switches; the
        outcome of the last move tried."""
        for change in plan.changes:
            self._change(change)
        if plan.decision is not None:
            self.m.log_decision(plan.decision)
        outcome = None
        for move in plan.moves:
            outcome = self._move(move, session_id)
            if outcome.status == "switched":
                break
        return outcome

    def _finish(
        self, plan: Plan, session_id: str | None, heal: str | None, view: PolicyView | None
    ) -> BoundaryResult:
        outcome = self.carry_out(plan, session_id)
        if outcome is None and not plan.changes:
            summary = publish_summary(self.m, plan.decision, view=view)
        else:  # the live slot or its marks changed: summarise what holds now
            summary = publish_summary(self.m)
        return BoundaryResult(plan, outcome, heal, summary)

    def _change(self, change: Change) -> None:
        apply_change(self.m, change)

    def _move(self, move: Move, session_id: str | None) -> SwitchOutcome:
        """A switch and a deferral alike go through `switch_to`: it refuses an unusable or
        rejected target, looks at who is mid-turn again, and defers or flips."""
        return self.m.switch_to(move.slot, move.reason, mode=move.mode, session_id=session_id)


@dataclass(frozen=True)
class ProfileResult:
    """What a boundary of a session in `slot`'s profile found: the plan carried out, the
    slot's view after it, and `until`, when the slot serves again if it cannot now."""

    slot: str
    plan: Plan
    view: PolicyView
    now: float
    until: float | None = None

    @property
    def spent(self) -> bool:
        return self.until is not None

    def usage_text(self) -> str:
        """For the agent at SessionStart: whose account this session runs on, and its use."""
        slot = self.view.slot(self.slot)
        used = describe_usage(slot.usage if slot else None, self.now)
        return (
            f"[subscription] this session runs in slot {self.slot}'s profile: {self.slot}'s "
            f"account for the whole session, never switched; {used}"
        )

    @property
    def rejected(self) -> bool:
        """This boundary marked the slot's credential refused (a StopFailure said so)."""
        return any(isinstance(c, Reject) for c in self.plan.changes)

    def spent_line(self, session_id: str | None) -> str | None:
        """For the agent and the person when the slot cannot serve: until when (or that its
        credential was refused), and the command that continues this session elsewhere."""
        resume = f" --resume {session_id}" if session_id else ""
        elsewhere = f"To continue on another slot: gptme-subscription run -- claude{resume}"
        if self.rejected:
            return (
                f"subscription: Anthropic refused slot {self.slot}'s credential (this "
                f"session's profile); log it in again with `gptme-subscription reauth "
                f"{self.slot}`. {elsewhere}"
            )
        if self.until is None:
            return None
        if self.until == float("inf"):
            when = "until its limit resets (when is not known)"
        else:
            at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.until))
            when = f"until {at} (in {format_duration(self.until - self.now)})"
        return (
            f"subscription: slot {self.slot} (this session's profile) is spent {when}; this "
            f"session stays on {self.slot}. {elsewhere}"
        )


class ProfileRunner:
    """One boundary of a session in `slot`'s profile, on the manager's files: only the slot's
    own marks in rotation.json and its usage cache change; the live link is never touched."""

    def __init__(self, m: SubscriptionManager, slot: str) -> None:
        self.m = m
        self.slot = slot
        self.controller = BoundaryController.for_policy(m.policy, m.config.thresholds)

    def view(self, *, refresh: bool) -> PolicyView:
        """The slot alone, as the live slot of its own view (polled within the budget with
        `refresh`); no other slot is asked."""
        m = self.m
        usage = m.check_usage(names=[self.slot], refresh=refresh)
        return m.view(usage, home="profile", names=[self.slot]).only(self.slot)

    def session_start(self) -> ProfileResult:
        self.m.slots.observe_profile(self.slot)
        return self._result(Plan(), self.view(refresh=refreshes("session-start")))

    def prompt_submit(self) -> ProfileResult:
        """Cached data only: the turn's first request is about to go out."""
        return self._result(Plan(), self.view(refresh=refreshes("prompt-submit")))

    def stop(self) -> ProfileResult:
        """The turn was answered on the slot: its refusal streak ends; usage is refreshed;
        a refresh the turn made is noted in the slot's lineage and backup ring."""
        self.m.slots.observe_profile(self.slot)
        view = self.view(refresh=refreshes("stop"))
        plan = self.controller.on_profile_stop(self._moment(view), self.slot)
        self._carry_out(plan)
        return self._result(plan, self.view(refresh=False) if plan.changes else view)

    def stop_failure(self, error: object, model: str | None) -> ProfileResult | None:
        """A rate limit or a refused credential marks the slot (as the live slot's would be
        marked); None when the error says nothing of the slot."""
        if not matters(error):
            return None
        view = self.view(refresh=False)
        plan = self.controller.on_profile_stop_failure(self._moment(view), self.slot, error, model)
        self._carry_out(plan)
        return self._result(plan, self.view(refresh=False), model)

    def _moment(self, view: PolicyView) -> Moment:
        return Moment(self.m.clock(), view, self.m.rotation())

    def _carry_out(self, plan: Plan) -> None:
        for change in plan.changes:
            apply_change(self.m, change)

    def _result(self, plan: Plan, view: PolicyView, model: str | None = None) -> ProfileResult:
        now = self.m.clock()
        own = view.slot(self.slot)
        until = None
        if own is not None and not may_serve(own, now, model):
            until = recovery_time(own, self.m.config.thresholds, now, model)
        return ProfileResult(self.slot, plan, view, now, until)


def apply_change(m: SubscriptionManager, change: Change) -> None:
    """One edit of a plan, through the manager (rotation.json under its lock, the events)."""
    if isinstance(change, EndRefusal):
        m.record_served(change.slot)
    elif isinstance(change, StartRefusal):
        m.record_refusal(change.slot, change.at)
    elif isinstance(change, MarkLimited):
        m.record_rate_limit(change.slot, change.until, model=change.model)
    elif isinstance(change, Reject):
        m.record_rejection(change.slot, change.source)
    elif isinstance(change, DropPending):
        m.drop_pending(change.slot, change.mode, "target can no longer serve")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


__all__ = ["BoundaryResult", "BoundaryRunner", "ProfileResult", "ProfileRunner", "publish_summary"]
