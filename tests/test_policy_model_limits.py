"""Per-model rate limits, the untried live slot, and forward-routing on an aged-out reading."""

from __future__ import annotations

from gptme_subscription_plugin.policy import (
    DefaultPolicy,
    PolicyView,
    SlotView,
    can_serve,
    is_limited,
    model_recovery,
    rank_candidates,
    rate_limit_marks,
    recovery_time,
)
from gptme_subscription_plugin.thresholds import Thresholds

from .support.usage import NOW, H, decide
from .support.usage import slot_view as slot
from .support.usage import snapshot as usage

T = Thresholds()


def test_a_429_only_a_spent_model_window_explains_binds_that_model_alone():
    opus_spent = usage("a", five=0.3, week=0.5, models={"opus": 0.99}, five_reset_in=2 * H)
    # it lifts at the soonest reset in sight: the open 5-hour window may be what lagged
    assert model_recovery(opus_spent, T, NOW, "claude-opus-4-5") == {"opus": NOW + 2 * H}
    assert model_recovery(opus_spent, T, NOW, "claude-sonnet-4-5") == {}  # not opus: whole slot
    # a session's first request: no model in its transcript yet, the spent window is blamed
    assert model_recovery(opus_spent, T, NOW, None) == {"opus": NOW + 2 * H}
    five_spent = usage("a", five=0.95, week=0.5, models={"opus": 0.99})
    assert model_recovery(five_spent, T, NOW, "claude-opus-4-5") == {}  # 5-hour: whole slot
    nothing_spent = usage("a", five=0.3, week=0.5, models={"opus": 0.5})
    assert model_recovery(nothing_spent, T, NOW, "claude-opus-4-5") == {}
    assert model_recovery(None, T, NOW, "claude-opus-4-5") == {}


def test_a_429_marks_the_blamed_models_or_else_the_whole_slot():
    opus_spent = usage("a", five=0.3, week=0.5, models={"opus": 0.99}, five_reset_in=2 * H)
    assert rate_limit_marks(opus_spent, T, NOW, "claude-opus-4-5") == (None, {"opus": NOW + 2 * H})
    # the hook pack and the simulator share this; an anchor that keeps one limit per account
    assert rate_limit_marks(opus_spent, T, NOW, "claude-opus-4-5", per_model=False) == (
        NOW + 2 * H,
        {},
    )
    assert rate_limit_marks(opus_spent, T, NOW, "claude-sonnet-4") == (NOW + 2 * H, {})
    assert rate_limit_marks(None, T, NOW, None) == (NOW + 3600.0, {})  # no reset in sight


def test_a_model_limit_keeps_that_model_off_and_lets_the_rest_through():
    a = slot("a", limited_models={"opus": NOW + H})
    assert is_limited(a, NOW, "claude-opus-4-5") and not is_limited(a, NOW, "claude-sonnet-4")
    assert not is_limited(a, NOW)  # the next model unknown: the slot still serves
    assert not can_serve(a, T, NOW, "claude-opus-4-5") and can_serve(a, T, NOW, None)
    assert recovery_time(a, T, NOW, "claude-opus-4-5") == NOW + H
    assert recovery_time(a, T, NOW, "claude-sonnet-4") == NOW
    expired = slot("a", limited_models={"opus": NOW - 1})
    assert can_serve(expired, T, NOW, "claude-opus-4-5")


def test_with_the_model_unknown_a_model_limited_slot_ranks_after_one_serving_everything():
    limited = slot("b", limited_models={"opus": NOW + 5 * H}, week_reset_in=H * 30)
    fine = slot("c", week_reset_in=H * 50)
    view = PolicyView("a", (slot("a"), limited, fine))
    assert [s.name for s in rank_candidates(view, T, NOW, "a")] == ["c", "b"]
    opus_view = PolicyView("a", (slot("a"), limited, fine), model="claude-opus-4-5")
    assert [s.name for s in rank_candidates(opus_view, T, NOW, "a")] == ["c"]


def test_a_live_slot_that_refused_a_model_moves_to_one_that_still_serves_it():
    # b's Opus window reads past our threshold but under the hard limit: it still serves Opus
    d = decide(
        "a",
        slot("a", limited_models={"opus": NOW + 3 * H}, models={"opus": 0.99}),
        slot("b", models={"opus": 0.97}),
    )
    assert (d.action, d.target, d.mode, d.urgent) == ("switch", "b", "model-limited", True)
    assert "refuses opus" in d.reason
    # nobody serves Opus: stay where everything else is served
    d = decide(
        "a",
        slot("a", limited_models={"opus": NOW + 3 * H}, models={"opus": 0.99}),
        slot("b", limited_models={"opus": NOW + 3 * H}, models={"opus": 0.99}),
    )
    assert d.action == "stay" and d.mode == "healthy"


def test_a_live_slot_read_as_spent_that_never_refused_is_tried_before_moving_ahead():
    # a reads spent, but only a 429 proves it; b has refused and is back sooner. Moving to b
    # would flap: on b (limited), a would be the untried slot to go back to.
    a = slot("a", five=1.0, five_reset_in=45 * 60)
    b = slot("b", five=1.0, five_reset_in=27 * 60, limited_until=NOW + 27 * 60)
    d = decide("a", a, b)
    assert (d.action, d.mode, d.target, d.urgent) == ("defer", "unrefused", None, True)
    assert d.retry_at == NOW + 27 * 60
    # once a has refused too, switching ahead to b is right, and from b nothing pulls back
    a_refused = slot("a", five=1.0, five_reset_in=45 * 60, limited_until=NOW + 45 * 60)
    d = decide("a", a_refused, b)
    assert (d.action, d.mode, d.target) == ("switch", "soonest-recovery", "b")
    assert decide("b", a_refused, b).action == "defer"


def test_an_aged_out_live_reading_still_forward_routes_by_its_weekly_reset():
    old = NOW - T.usage_max_age - 1
    live = SlotView("a", usage=usage("a", week=0.4, week_reset_in=5 * 24 * H, observed_at=old))
    sooner = slot("b", week=0.3, week_reset_in=1 * 24 * H)
    d = DefaultPolicy(T).decide(PolicyView("a", (live, sooner)), NOW)
    assert (d.action, d.mode, d.target) == ("switch", "forward-route", "b")
    later = slot("b", week=0.3, week_reset_in=6 * 24 * H)
    d = DefaultPolicy(T).decide(PolicyView("a", (live, later)), NOW)
    assert (d.action, d.mode) == ("stay", "no-data")  # how much is left is unknown
