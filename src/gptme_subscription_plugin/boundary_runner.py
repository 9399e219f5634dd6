"""The boundary controller's plans carried out on the real files.

Both surfaces that see turn boundaries (the Claude Code hooks, the gptme hooks) call a
`BoundaryRunner` after they have marked their own session idle or before they mark it busy
(the turn registry is theirs). The runner heals drift, reads the moment (rotation.json, the
policy's view after the refresh the event asks for, who else is mid-turn), asks the
controller, and carries the plan out through the manager: rotation edits under
rotation.json's lock, switches through `switch_to` (which re-checks that nobody went mid-turn
meanwhile), every decision in the events log, and the pressure summary for the fast path.
"""

from __future__ import annotations

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
from .policy import Decision, PolicyView
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
        m = self.m
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

    def _move(self, move: Move, session_id: str | None) -> SwitchOutcome:
        """A switch and a deferral alike go through `switch_to`: it refuses an unusable or
        rejected target, looks at who is mid-turn again, and defers or flips."""
        return self.m.switch_to(move.slot, move.reason, mode=move.mode, session_id=session_id)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


__all__ = ["BoundaryResult", "BoundaryRunner", "publish_summary"]
