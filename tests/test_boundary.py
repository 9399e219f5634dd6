"""The boundary controller's rules, on views built in memory (no files, no clock but NOW)."""

from __future__ import annotations

from typing import Any

from gptme_subscription_plugin.boundary import (
    BoundaryController,
    Defer,
    DropPending,
    EndRefusal,
    MarkLimited,
    Moment,
    Reject,
    StartRefusal,
    Switch,
)
from gptme_subscription_plugin.policy import REJECTED, DefaultPolicy, PolicyView
from gptme_subscription_plugin.rotation_state import RotationState
from gptme_subscription_plugin.thresholds import Thresholds

from .support.usage import DAY, NOW, H, slot_view

CONTROLLER = BoundaryController.for_policy(DefaultPolicy(Thresholds()), Thresholds())


def moment(
    *,
    alice: dict[str, Any] | None = None,
    blockers: tuple[str, ...] = (),
    rotation: RotationState | None = None,
) -> Moment:
    """alice live; bob and carol with room. `alice`: her reading (fractions)."""
    reading = {"five": 0.1, "week": 0.3, **(alice or {})}
    slots = (
        slot_view("alice", now=NOW, **reading),
        slot_view("bob", now=NOW, five=0.1, week=0.2),
        slot_view("carol", now=NOW, five=0.1, week=0.25),
    )
    return Moment(NOW, PolicyView("alice", slots), rotation or RotationState(), blockers)


def pending(slot: str, mode: str) -> RotationState:
    rot = RotationState()
    rot.set_pending(slot, "decided earlier", mode, NOW - 600)
    return rot


def test_nothing_is_decided_while_another_session_is_mid_turn_at_prompt_submit() -> None:
    plan = CONTROLLER.on_prompt_submit(
        moment(alice={"week": 0.999}, blockers=("other",), rotation=pending("bob", "manual"))
    )
    assert plan.changes == () and plan.moves == () and plan.decision is None


def test_prompt_submit_alone_lands_the_pending_switch_first_and_decides_as_fallback() -> None:
    plan = CONTROLLER.on_prompt_submit(
        moment(alice={"week": 0.999}, rotation=pending("carol", "manual"))
    )
    assert plan.moves[0] == Switch("carol", "decided earlier", "manual")
    assert plan.decision is not None and plan.decision.wants_switch
    assert len(plan.moves) == 2 and isinstance(plan.moves[1], Switch)


def test_a_pending_policy_switch_is_dropped_once_its_target_cannot_serve() -> None:
    rot = pending("bob", "exhausted")
    rot.mark_limited("bob", NOW + H)
    view = moment(rotation=rot).view
    limited = tuple(
        rot.slot_view(
            s.name, usable=True, health="valid", rejected=False, usage=s.usage, capacity=None
        )
        for s in view.slots
    )
    plan = CONTROLLER.on_stop(Moment(NOW, rot.policy_view("alice", limited), rot, ()))
    assert plan.changes == (DropPending("bob", "exhausted"),)
    assert not any(m.slot == "bob" for m in plan.moves)
    # a person's choice lands whatever the readings say
    manual = pending("bob", "manual")
    manual.mark_limited("bob", NOW + H)
    plan = CONTROLLER.on_stop(Moment(NOW, manual.policy_view("alice", limited), manual, ()))
    assert plan.moves[0] == Switch("bob", "decided earlier", "manual")


def test_stop_ends_the_refusal_streak_only_for_a_turn_answered_on_the_live_slot() -> None:
    rot = RotationState()
    rot.start_refusal("alice", NOW - 600)
    assert EndRefusal("alice") in CONTROLLER.on_stop(moment(rotation=rot)).changes
    gptme_turn = CONTROLLER.on_stop(moment(rotation=rot), answered_on_live=False)
    assert not any(isinstance(c, EndRefusal) for c in gptme_turn.changes)


def test_stop_defers_while_others_are_mid_turn_and_says_so_when_urgent() -> None:
    plan = CONTROLLER.on_stop(moment(alice={"week": 0.999}, blockers=("b", "c")))
    (move,) = plan.moves
    assert isinstance(move, Defer) and move.blockers == ("b", "c")
    assert plan.decision is not None and plan.decision.urgent and plan.urgent_wait
    calm = CONTROLLER.on_stop(moment(blockers=("b",)))
    assert calm.moves == () and not calm.urgent_wait


def test_a_rate_limit_marks_the_live_slot_and_the_decision_sees_the_mark() -> None:
    """Readings that look fine: only the 429 says alice is done, so the move off her comes
    from the mark the plan itself makes."""
    plan = CONTROLLER.on_stop_failure(moment(), "rate_limit", "sonnet")
    assert plan.changes[0] == StartRefusal("alice", NOW)
    (mark,) = [c for c in plan.changes if isinstance(c, MarkLimited)]
    assert mark.slot == "alice" and mark.model is None and NOW < mark.until <= NOW + DAY
    (move,) = plan.moves
    assert isinstance(move, Switch) and move.slot != "alice"


def test_a_refused_credential_is_rejected_and_left_at_once() -> None:
    plan = CONTROLLER.on_stop_failure(moment(), "authentication_failed", None)
    assert plan.changes == (Reject("alice", "StopFailure authentication_failed"),)
    (move,) = plan.moves
    assert isinstance(move, Switch) and move.slot != "alice"
    assert plan.decision is not None and plan.decision.pressure  # decided on the new view
    alice_after = RotationState().slot_view(
        "alice", usable=True, health="valid", rejected=True, usage=None, capacity=None
    )
    assert alice_after.health == REJECTED and not alice_after.usable


def test_other_api_errors_change_nothing() -> None:
    for error in ("overloaded", "server_error", None, 42):
        plan = CONTROLLER.on_stop_failure(moment(alice={"week": 0.999}), error, "sonnet")
        assert plan.changes == () and plan.moves == () and plan.decision is None


def test_a_slot_in_its_profile_is_marked_like_the_live_slot_and_never_moved() -> None:
    """bob's own session, in bob's profile: the marks a live slot would get, on bob; no move
    and no decision, whoever is mid-turn and however spent the live slot is."""
    spent = moment(alice={"week": 0.999}, blockers=("l1",))
    plan = CONTROLLER.on_profile_stop_failure(spent, "bob", "rate_limit", None)
    assert plan.changes[0] == StartRefusal("bob", NOW)
    (mark,) = [c for c in plan.changes if isinstance(c, MarkLimited)]
    assert mark.slot == "bob" and NOW < mark.until <= NOW + DAY
    assert plan.moves == () and plan.decision is None
    rejected = CONTROLLER.on_profile_stop_failure(spent, "bob", "authentication_failed", None)
    assert rejected.changes == (Reject("bob", "StopFailure authentication_failed"),)
    assert rejected.moves == ()
    for error in ("overloaded", None):
        assert CONTROLLER.on_profile_stop_failure(spent, "bob", error, None).changes == ()
    refusing = RotationState(refusing={"bob": NOW - H})
    answered = CONTROLLER.on_profile_stop(moment(rotation=refusing), "bob")
    assert answered.changes == (EndRefusal("bob"),) and answered.moves == ()
    assert CONTROLLER.on_profile_stop(spent, "bob").changes == ()
