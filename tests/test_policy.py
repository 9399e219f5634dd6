"""The pure policy: each rule on a hand-built view, then properties over random views."""

from __future__ import annotations

import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from gptme_subscription_plugin.policy import (
    DefaultPolicy,
    PolicyView,
    SlotView,
    can_serve,
    exhaustion,
    expected_recovery,
    forget_old_usage,
    format_duration,
    is_limited,
    may_serve,
    pace_gap,
    rank_candidates,
    rate_limit_marks,
    slot_pressure,
    window_pressure,
)
from gptme_subscription_plugin.thresholds import Thresholds
from gptme_subscription_plugin.usage.snapshot import (
    FIVE_HOUR_S,
    SEVEN_DAY_S,
    UsageSnapshot,
    UsageWindow,
)

from .support.usage import NOW, H, decide
from .support.usage import slot_view as slot
from .support.usage import snapshot as usage

T = Thresholds()


def test_healthy_live_slot_stays():
    d = decide("a", slot("a", week=0.5, week_reset_in=2 * 24 * H), slot("b", week=0.1))
    assert d.action == "stay" and d.mode == "healthy" and d.target is None
    assert "a healthy" in d.reason


def test_exhausted_weekly_switches_to_best_candidate():
    d = decide(
        "a",
        slot("a", week=0.985),
        slot("b", week=0.5, week_reset_in=5 * 24 * H),
        slot("c", week=0.2, week_reset_in=2 * 24 * H),
    )
    assert (d.action, d.target, d.mode, d.urgent) == ("switch", "c", "exhausted", True)
    assert "weekly quota exhausted" in d.reason


def test_an_urgent_move_hands_the_burst_to_a_bigger_plan_expiring_soon_after():
    spent = slot("a", five=0.95, capacity=5.0)
    pro = slot("p", five=0.0, week_reset_in=1 * 24 * H, capacity=1.0)

    def target(*others: SlotView) -> str | None:
        d = decide("a", spent, pro, *others)
        assert d.urgent and d.action == "switch"
        return d.target

    # a Max 20x expiring a day after the Pro takes the burst the Pro would drop in minutes
    assert target(slot("m", five=0.5, week_reset_in=2 * 24 * H, capacity=20.0)) == "m"
    # the biggest of several bigger plans in reach, not the first
    assert (
        target(
            slot("x", five=0.0, week_reset_in=1.5 * 24 * H, capacity=5.0),
            slot("m", five=0.0, week_reset_in=2.5 * 24 * H, capacity=20.0),
        )
        == "m"
    )
    # expiring more than two days later: the Pro's quota would be lost, it goes first
    assert target(slot("m", five=0.0, week_reset_in=3.5 * 24 * H, capacity=20.0)) == "p"
    # a bigger plan short of 5-hour headroom does not outrank one that has it
    assert target(slot("m", five=0.85, week_reset_in=2 * 24 * H, capacity=20.0)) == "p"
    # nor, with the next model unknown, one that no longer serves Opus
    opus_spent = slot("m", five=0.0, week_reset_in=2 * 24 * H, models={"opus": 0.97})
    assert target(replace(opus_spent, capacity=20.0)) == "p"
    # plans of one size, or of sizes not known, keep the soonest expiry first
    assert target(slot("m", five=0.0, week_reset_in=2 * 24 * H, capacity=1.0)) == "p"
    assert target(slot("m", five=0.0, week_reset_in=2 * 24 * H)) == "p"


def test_soonest_expiring_candidate_first_but_five_hour_headroom_wins():
    d = decide(
        "a",
        slot("a", week=0.99),
        slot("b", five=0.85, week_reset_in=1 * 24 * H),
        slot("c", five=0.2, week_reset_in=5 * 24 * H),
    )
    assert d.target == "c"  # b expires sooner but has no 5-hour headroom


def test_all_exhausted_defers_until_soonest_recovery():
    # a is rate-limited for 5 h, b's 5-hour window is spent for 6 h: nothing to try
    d = decide(
        "a",
        slot("a", week=0.99, week_reset_in=5 * H, limited_until=NOW + 5 * H),
        slot("b", five=1.0, five_reset_in=6 * H, limited_until=NOW + 6 * H),
    )
    assert d.action == "defer" and d.mode == "all-exhausted" and d.target is None
    assert d.retry_at == NOW + 5 * H


def test_past_its_thresholds_the_live_slot_serves_its_last_quota_before_anything_moves():
    d = decide("a", slot("a", week=0.985), slot("b", five=0.95), slot("c", week=0.99))
    assert (d.action, d.mode, d.target, d.urgent) == ("stay", "last-quota", None, True)


def test_a_refusing_live_slot_moves_to_the_slot_with_the_most_left_under_the_hard_limit():
    d = decide(
        "a",
        slot("a", week=0.97, limited_until=NOW + H),
        slot("b", week=0.99),
        slot("c", five=0.93, week=0.4),
    )
    assert (d.action, d.mode, d.target) == ("switch", "last-resort", "c")


def test_when_every_reading_says_spent_a_slot_that_never_refused_is_tried():
    # b reads 100 % (a rounded statusline percentage, hours old) but has not answered 429
    d = decide(
        "a",
        slot("a", week=1.0, limited_until=NOW + 3 * H),
        slot("b", week=1.0, week_reset_in=8 * H, observed_at=NOW - 14 * H),
        slot("c", five=1.0, limited_until=NOW + 4 * H),
    )
    assert (d.action, d.mode, d.target) == ("switch", "untried", "b")


def test_when_nothing_serves_switch_ahead_to_the_slot_back_soonest():
    d = decide(
        "a",
        slot("a", five=1.0, limited_until=NOW + 4 * H),
        slot("b", five=1.0, five_reset_in=0.5 * H, limited_until=NOW + 0.5 * H),
    )
    assert (d.action, d.mode, d.target, d.retry_at) == (
        "switch",
        "soonest-recovery",
        "b",
        NOW + 0.5 * H,
    )


def test_with_the_model_unknown_a_spent_model_window_ranks_a_slot_last_but_keeps_it():
    opus_spent = slot("b", models={"opus": 0.97}, week_reset_in=H * 30)
    fine = slot("c", week_reset_in=H * 50)
    ranked = rank_candidates(PolicyView("a", (slot("a"), opus_spent, fine)), T, NOW, "a")
    assert [s.name for s in ranked] == ["c", "b"]
    alone = rank_candidates(PolicyView("a", (slot("a"), opus_spent)), T, NOW, "a")
    assert [s.name for s in alone] == ["b"]  # it still serves Sonnet
    # the live slot's spent Opus window is urgent only when another slot serves every model
    d = decide("a", slot("a", models={"opus": 0.97}), fine)
    assert (d.action, d.target, d.urgent) == ("switch", "c", True) and "opus" in d.reason
    d = decide("a", slot("a", models={"opus": 0.97}), slot("b", models={"opus": 0.99}))
    assert d.action == "stay"


def test_a_rate_limit_is_expected_to_lift_at_the_soonest_reset_in_sight():
    weekly_spent = usage("a", five=0.5, week=0.99, week_reset_in=3 * 24 * H, five_reset_in=2 * H)
    assert expected_recovery(weekly_spent, T, NOW) == NOW + 2 * H  # the 5-hour window first
    no_window = UsageSnapshot("a", "t", NOW, seven_day=UsageWindow(0.99, NOW + 30 * H, SEVEN_DAY_S))
    assert expected_recovery(no_window, T, NOW) == NOW + 30 * H
    assert expected_recovery(None, T, NOW, default=600) == NOW + 600


def test_a_rate_limit_after_the_5_hour_window_seen_has_reset_waits_a_whole_window():
    # the 5-hour window read last reset an hour ago: the window that refused opened since
    # then, so it resets no sooner than five hours after that reset
    rolled = usage("a", five=0.4, week=0.5, five_reset_in=-H, observed_at=NOW - 3 * H)
    assert expected_recovery(rolled, T, NOW) == NOW + 4 * H
    # a reset seen more than a window ago bounds nothing: look again after the default wait
    ancient = usage("a", five=0.4, week=0.5, five_reset_in=-6 * H, observed_at=NOW - 8 * H)
    assert expected_recovery(ancient, T, NOW, default=600) == NOW + 600
    # a spent window that resets sooner still wins
    weekly = usage("a", five=0.4, week=0.99, five_reset_in=-H, week_reset_in=2 * H)
    assert expected_recovery(weekly, T, NOW) == NOW + 2 * H


def test_a_slot_refusing_for_longer_than_a_5_hour_window_waits_for_its_weekly_reset():
    # the readings are a day old: the 5-hour window seen has long reset, the weekly one has not
    old = usage("a", five=0.6, week=0.9, five_reset_in=-20 * H, week_reset_in=2 * 24 * H)
    guess = NOW + 3600.0  # no reset in sight: look again in an hour
    assert rate_limit_marks(old, T, NOW, None) == (guess, {})
    assert rate_limit_marks(old, T, NOW, None, refusing_since=NOW) == (guess, {})
    # refusing for 4 hours: the 5-hour window that refused first may not have reset yet
    assert rate_limit_marks(old, T, NOW, None, refusing_since=NOW - 4 * H) == (guess, {})
    # refusing for 5 hours with nothing served: that window has reset and no new one filled
    marks = rate_limit_marks(old, T, NOW, None, refusing_since=NOW - 5 * H)
    assert marks == (NOW + 2 * 24 * H, {})
    # a weekly reading from before its reset still tells the phase: the next reset
    last_week = usage("a", five=0.6, week=0.9, five_reset_in=-20 * H, week_reset_in=-H)
    marks = rate_limit_marks(last_week, T, NOW, None, refusing_since=NOW - 6 * H)
    assert marks == (NOW - H + SEVEN_DAY_S, {})
    # a model with its own weekly window: that window may be the spent one, the others serve
    opus = usage("a", week=0.5, five_reset_in=-20 * H, models={"opus": 0.8})
    marks = rate_limit_marks(opus, T, NOW, "claude-opus-4-5", refusing_since=NOW - 6 * H)
    assert marks == (None, {"opus": NOW + 3 * 24 * H})
    # without per-model limits the hook pack cannot tell which weekly window ran out
    marks = rate_limit_marks(old, T, NOW, None, per_model=False, refusing_since=NOW - 6 * H)
    assert marks == (guess, {})
    # no weekly reading: nothing to wait for but the usual guess
    blind = usage("a", five=0.6, week=None, five_reset_in=-20 * H)
    assert rate_limit_marks(blind, T, NOW, None, refusing_since=NOW - 6 * H) == (guess, {})


def test_broken_live_credential_switches_even_during_manual_hold():
    d = decide(
        "a", slot("a", usable=False), slot("b"), manual_hold_slot="a", manual_hold_until=NOW + 5 * H
    )
    assert (d.action, d.target, d.urgent) == ("switch", "b", True)


def test_rate_limited_live_slot_switches():
    d = decide("a", slot("a", limited_until=NOW + 600), slot("b"))
    assert (d.action, d.target) == ("switch", "b")
    assert "rate-limited" in d.reason


def test_never_switches_to_broken_limited_or_exhausted_slots():
    d = decide(
        "a",
        slot("a", week=1.0, week_reset_in=2 * H),
        slot("b", usable=False),
        slot("c", limited_until=NOW + 4 * H),
        slot("d", week=1.0, limited_until=NOW + 5 * H),
    )
    assert d.action == "defer" and d.target is None


def test_manual_hold_is_honoured():
    d = decide(
        "a",
        slot("a", five=0.85, week_reset_in=6 * 24 * H),
        slot("b", week_reset_in=24 * H),
        manual_hold_slot="a",
        manual_hold_until=NOW + H,
    )
    assert (d.action, d.mode) == ("hold", "manual-hold")


def test_forward_route_to_quota_that_expires_sooner():
    d = decide(
        "a",
        slot("a", week=0.3, week_reset_in=6 * 24 * H),
        slot("b", week=0.4, week_reset_in=20 * H),
    )
    assert (d.action, d.target, d.mode) == ("switch", "b", "forward-route")


def test_forward_route_needs_a_margin_and_a_slot_under_its_thresholds():
    close = decide("a", slot("a", week_reset_in=30 * H), slot("b", week_reset_in=29 * H))
    assert close.action == "stay"  # 1 h sooner: inside forward_route_margin (2 h)
    nearly_spent = decide(
        "a", slot("a", week_reset_in=6 * 24 * H), slot("b", week=0.985, week_reset_in=20 * H)
    )
    assert nearly_spent.action == "stay"


def test_five_hour_headroom_moves_off_a_nearly_spent_window():
    d = decide(
        "a",
        slot("a", five=0.85, week_reset_in=3 * 24 * H),
        slot("b", five=0.1, week_reset_in=3 * 24 * H + H),  # expires about as soon
    )
    assert (d.action, d.target, d.mode) == ("switch", "b", "five-hour-headroom")


def test_five_hour_headroom_keeps_the_soonest_expiring_quota_in_use():
    # what is left of a's 5-hour window is quota that expires first: leaving it for a slot
    # whose quota lasts longer may let it expire; at 90 % the urgent rule still moves
    d = decide(
        "a",
        slot("a", five=0.85, week_reset_in=20 * H),
        slot("b", five=0.1, week_reset_in=5 * 24 * H),
    )
    assert (d.action, d.mode) == ("stay", "healthy")
    d = decide(
        "a",
        slot("a", five=0.92, week_reset_in=20 * H),
        slot("b", five=0.1, week_reset_in=5 * 24 * H),
    )
    assert (d.action, d.target, d.mode, d.urgent) == ("switch", "b", "exhausted", True)


def test_rebalance_when_ahead_of_pace():
    # a: 3.5 days left of 7 -> elapsed 0.5, used 0.75 -> 25 points ahead; b similar reset, behind
    d = decide(
        "a",
        slot("a", week=0.75, week_reset_in=3.5 * 24 * H),
        slot("b", week=0.2, week_reset_in=3.45 * 24 * H),
    )
    assert (d.action, d.target, d.mode) == ("switch", "b", "rebalance")
    assert "ahead of weekly pace" in d.reason
    far = decide(
        "a",
        slot("a", week=0.75, week_reset_in=3.5 * 24 * H),
        slot("b", week=0.2, week_reset_in=4.5 * 24 * H),  # expires a day later: not alike
    )
    assert far.action == "stay"


def test_dwell_holds_optional_switches_but_not_urgent_ones():
    optional = decide(
        "a",
        slot("a", week_reset_in=6 * 24 * H),
        slot("b", week_reset_in=20 * H),
        last_switch_at=NOW - 60,
    )
    assert (optional.action, optional.mode, optional.target) == ("hold", "dwell", "b")
    urgent = decide("a", slot("a", week=0.99), slot("b"), last_switch_at=NOW - 60)
    assert urgent.action == "switch"


def test_probe_cooldown_skips_a_recently_left_slot_until_new_data():
    left = NOW - 600
    stale = SlotView("b", usage=usage("b", observed_at=left - 1), left_exhausted_at=left)
    d = decide("a", slot("a", week=0.99), stale)
    assert d.target is None and d.mode == "last-quota"
    fresh = SlotView("b", usage=usage("b", observed_at=NOW), left_exhausted_at=left)
    assert decide("a", slot("a", week=0.99), fresh).target == "b"


def test_model_window_binds_only_for_that_model():
    a = slot("a", models={"sonnet": 0.97})
    b = slot("b", week_reset_in=3.1 * 24 * H)
    assert decide("a", a, b, model="claude-opus-4").action == "stay"
    d = decide("a", a, b, model="claude-sonnet-4-5")
    assert (d.action, d.target) == ("switch", "b") and "sonnet weekly" in d.reason


def test_no_live_slot_links_the_best_candidate():
    d = decide(None, slot("a", week_reset_in=5 * 24 * H), slot("b", week_reset_in=24 * H))
    assert (d.action, d.target) == ("switch", "b")


def test_unknown_usage_stays_without_guessing():
    d = DefaultPolicy(T).decide(PolicyView("a", (SlotView("a"), SlotView("b"))), NOW)
    assert (d.action, d.mode) == ("stay", "no-data")


def test_window_past_reset_counts_as_empty():
    snap = UsageSnapshot("a", "t", NOW - 6 * H, five_hour=UsageWindow(0.99, NOW - H, FIVE_HOUR_S))
    assert exhaustion(snap, T, NOW) is None
    assert slot_pressure(snap, T, NOW) == 0.0


def test_pace_gap_and_helpers():
    w = UsageWindow(0.6, NOW + 3.5 * 24 * H, SEVEN_DAY_S)
    assert math.isclose(pace_gap(w, NOW), 0.1)
    assert window_pressure(0.45, 0.9) == 0.5 and window_pressure(0.95, 0.9) == 1.0
    assert format_duration(59) == "59s" and format_duration(3 * H + 300) == "3h05m"
    assert format_duration(2 * 24 * H + 4 * H) == "2d04h" and format_duration(None) == "?"


# ---------------------------------------------------------------- properties

fractions = st.floats(min_value=0.0, max_value=1.2, allow_nan=False)


@st.composite
def slot_views(draw, name: str) -> SlotView:
    has_usage = draw(st.booleans())
    snap = None
    if has_usage:
        snap = UsageSnapshot(
            slot=name,
            source="prop",
            observed_at=NOW - draw(st.floats(0, 10 * H)),
            five_hour=draw(
                st.none()
                | st.builds(
                    UsageWindow,
                    fractions.map(lambda f: min(f, 1.0)),
                    st.floats(NOW - H, NOW + 5 * H),
                    st.just(FIVE_HOUR_S),
                )
            ),
            seven_day=draw(
                st.none()
                | st.builds(
                    UsageWindow,
                    fractions.map(lambda f: min(f, 1.0)),
                    st.floats(NOW - H, NOW + 7 * 24 * H),
                    st.just(SEVEN_DAY_S),
                )
            ),
            models=draw(
                st.dictionaries(
                    st.sampled_from(["sonnet", "opus"]),
                    st.builds(
                        UsageWindow,
                        fractions.map(lambda f: min(f, 1.0)),
                        st.floats(NOW, NOW + 7 * 24 * H),
                        st.just(SEVEN_DAY_S),
                    ),
                    max_size=2,
                )
            ),
        )
    return SlotView(
        name=name,
        usable=draw(st.booleans()) or draw(st.booleans()),
        usage=snap,
        limited_until=draw(st.none() | st.floats(NOW - H, NOW + H)),
        limited_models=draw(
            st.dictionaries(
                st.sampled_from(["sonnet", "opus"]), st.floats(NOW - H, NOW + H), max_size=2
            )
        ),
        left_exhausted_at=draw(st.none() | st.floats(NOW - 2 * H, NOW)),
    )


@st.composite
def views(draw) -> PolicyView:
    names = ["a", "b", "c", "d"][: draw(st.integers(1, 4))]
    slots = tuple(draw(slot_views(n)) for n in names)
    return PolicyView(
        live=draw(st.none() | st.sampled_from(names)),
        slots=slots,
        model=draw(st.none() | st.sampled_from(["sonnet", "claude-opus-4"])),
        last_switch_at=draw(st.none() | st.floats(NOW - 3 * H, NOW)),
        manual_hold_slot=draw(st.none() | st.sampled_from(names)),
        manual_hold_until=draw(st.none() | st.floats(NOW - H, NOW + H)),
    )


@settings(max_examples=300, deadline=None)
@given(views())
def test_decisions_are_deterministic(view):
    assert DefaultPolicy(T).decide(view, NOW) == DefaultPolicy(T).decide(view, NOW)


@settings(max_examples=300, deadline=None)
@given(views())
def test_never_switches_to_a_slot_that_cannot_serve(view):
    d = DefaultPolicy(T).decide(view, NOW)
    view = forget_old_usage(view, T, NOW)  # what the policy knows: aged-out usage is unknown
    if d.action == "switch":
        target = view.slot(d.target)
        assert target is not None and target.name != view.live and target.usable
        others = [s for s in view.slots if s.name != view.live]
        better = rank_candidates(view, T, NOW, exclude=view.live)
        if d.mode == "last-resort":  # past our thresholds, under the hard limit
            assert may_serve(target, NOW, view.model) and not better
        elif d.mode == "untried":  # every reading says spent; never to a refusing slot
            assert not is_limited(target, NOW, view.model) and not better
            assert not any(may_serve(s, NOW, view.model) for s in others)
        elif d.mode == "soonest-recovery":
            assert not any(s.usable and not is_limited(s, NOW, view.model) for s in others)
        else:
            assert can_serve(target, T, NOW, view.model)
    assert d.reason and "\n" not in d.reason


@settings(max_examples=200, deadline=None)
@given(views())
def test_switch_targets_are_the_top_ranked_candidate_when_urgent(view):
    d = DefaultPolicy(T).decide(view, NOW)
    view = forget_old_usage(view, T, NOW)
    if d.urgent and d.action == "switch" and d.mode == "exhausted":
        assert d.target == rank_candidates(view, T, NOW, exclude=view.live)[0].name


@settings(max_examples=300, deadline=None)
@given(fractions, fractions, fractions, st.floats(0, 0.5))
def test_pressure_is_monotonic_in_utilization(five, week, sonnet, bump):
    def snap(f: float, w: float, s: float) -> UsageSnapshot:
        return UsageSnapshot(
            "a",
            "p",
            NOW,
            five_hour=UsageWindow(f, NOW + H, FIVE_HOUR_S),
            seven_day=UsageWindow(w, NOW + 24 * H, SEVEN_DAY_S),
            models={"sonnet": UsageWindow(s, NOW + 24 * H, SEVEN_DAY_S)},
        )

    base = slot_pressure(snap(five, week, sonnet), T, NOW)
    assert base is not None and 0.0 <= base <= 1.0
    for bumped in (
        snap(five + bump, week, sonnet),
        snap(five, week + bump, sonnet),
        snap(five, week, sonnet + bump),
    ):
        assert slot_pressure(bumped, T, NOW) >= base


def test_usage_older_than_max_age_is_treated_as_unknown():
    old = SlotView("a", usage=usage("a", week=0.99, observed_at=NOW - T.usage_max_age - 1))
    d = DefaultPolicy(T).decide(PolicyView("a", (old, slot("b"))), NOW)
    assert (d.action, d.mode) == ("stay", "no-data")
