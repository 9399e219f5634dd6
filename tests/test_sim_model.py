"""Simulator arithmetic: weekly and 5-hour windows, quota units, the prompt-cache price."""

from __future__ import annotations

import math

import pytest

from gptme_subscription_plugin.sim.accounts import Account
from gptme_subscription_plugin.sim.fleet import FleetAccount
from gptme_subscription_plugin.sim.model import (
    COSTS,
    DAY,
    FIVE_HOURS,
    HOUR,
    T0,
    TIERS,
    WEEK,
    elapsed_fraction,
    five_hour_reset,
    model_family,
    next_weekly_reset,
    weekly_windows,
)


def test_next_weekly_reset_is_strictly_after_and_periodic():
    anchor = T0 + 2 * DAY
    assert next_weekly_reset(anchor, T0) == anchor
    assert next_weekly_reset(anchor, anchor) == anchor + WEEK  # at the reset: the next one
    assert next_weekly_reset(anchor, anchor - 1) == anchor
    assert next_weekly_reset(anchor, anchor + 3 * WEEK + 5) == anchor + 4 * WEEK
    assert next_weekly_reset(anchor, anchor - 10 * WEEK + 1) == anchor - 9 * WEEK


def test_weekly_windows_cover_the_run_in_order():
    anchor = T0 + 2 * DAY
    windows = weekly_windows(anchor, T0, T0 + 14 * DAY)
    assert windows == [
        (anchor - WEEK, anchor),
        (anchor, anchor + WEEK),
        (anchor + WEEK, anchor + 2 * WEEK),
    ]
    assert all(b - a == WEEK for a, b in windows)


def test_five_hour_window_is_anchored_at_first_use():
    assert five_hour_reset(None, T0) is None
    assert five_hour_reset(T0, T0 + HOUR) == T0 + FIVE_HOURS
    assert five_hour_reset(T0, T0 + FIVE_HOURS) is None  # closed exactly five hours later
    assert elapsed_fraction(T0 + WEEK, WEEK, T0 + WEEK / 4) == pytest.approx(0.25)
    assert elapsed_fraction(T0 + WEEK, WEEK, T0 - 1) == 0.0


def test_cold_cache_rebills_the_cached_prefix_as_a_write():
    warm = COSTS.warm("claude-sonnet-4-5", 100, 50_000, 2_000, 1_000)
    cold = COSTS.cold("claude-sonnet-4-5", 100, 50_000, 2_000, 1_000)
    assert warm == pytest.approx((100 + 0.1 * 50_000 + 1.25 * 2_000 + 5 * 1_000) / 1000)
    assert cold - warm == pytest.approx((1.25 - 0.1) * 50_000 / 1000)
    opus = COSTS.cold("claude-opus-4-1", 100, 50_000, 2_000, 1_000)
    assert opus == pytest.approx(cold * 5 / 3)
    assert model_family("claude-opus-4-1-20250805") == "opus"
    assert model_family("claude-3-5-haiku") == "haiku"


def _account(**kw) -> Account:
    spec = FleetAccount(
        name="a",
        tier=TIERS["max5"],
        first_reset=kw.pop("first_reset", T0 + DAY),
        initial_weekly=kw.pop("initial_weekly", 0.5),
        model_caps=kw.pop("model_caps", ()),
        **kw,
    )
    return Account(spec)


def test_ground_truth_windows_open_close_and_count_before_the_reset():
    a = _account()
    horizon = T0 + 14 * DAY
    assert a.fractions() == (0.0, None, 0.5, T0 + DAY)
    a.charge(T0 + HOUR, 1200.0, 1000.0, "sonnet")  # opens the 5-hour window
    assert a.fractions() == (0.1, T0 + HOUR + FIVE_HOURS, pytest.approx(0.51), T0 + DAY)
    a.roll(T0 + HOUR + FIVE_HOURS - 1, horizon)
    assert a.five_until is not None
    a.roll(T0 + HOUR + FIVE_HOURS, horizon)
    assert a.five_until is None and a.five_used == 0.0
    a.roll(T0 + DAY, horizon)  # the weekly window closes: counted with what it held
    assert a.closed == [(T0 + DAY, 60_000.0 + 1000.0, 60_000.0 + 1200.0, 120_000.0)]
    assert a.week_used == 0.0 and a.week_end == T0 + DAY + WEEK


def test_admission_while_under_the_limit_and_model_buckets_bind():
    a = _account(model_caps=(("opus", 12_000.0),), initial_models=(("opus", 0.9),))
    assert a.admits("opus") is None
    a.charge(T0, 1_300.0, 1_300.0, "opus")  # admitted under the limit, may end above it
    assert a.admits("opus") == "seven_day_opus"
    assert a.admits("sonnet") is None  # other models still run
    a.five_used = a.c5
    assert a.admits("sonnet") == "five_hour"
    full = _account(initial_weekly=1.0)
    assert full.admits("sonnet") == "seven_day"


def test_capture_is_capped_at_the_window_and_broken_accounts_refuse():
    a = _account(broken_at=T0 + HOUR)
    assert not a.broken(T0) and a.broken(T0 + HOUR)
    assert math.isclose(a.c7 / a.c5, 10.0)
