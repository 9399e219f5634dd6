"""Policy changes the tournament showed were needed, one test each (see README, Simulator).

An idle slot's last usage reading stands past `usage_max_age`; only the live slot's goes
unknown. Production stops polling a slot once its access token expires (it never refreshes a
token to look at usage), so after a few idle hours every idle slot used to read as unknown and
the policy could no longer tell whose quota expires first: in the tournament the shipped
policy then captured 4-5 points less than soonest-weekly-reset-first in `staggered-resets`.
"""

from __future__ import annotations

from gptme_subscription_plugin.policy import DefaultPolicy, PolicyView, SlotView, forget_old_usage
from gptme_subscription_plugin.thresholds import Thresholds
from gptme_subscription_plugin.usage.snapshot import (
    SEVEN_DAY_S,
)

from .support.usage import NOW, H, snapshot

T = Thresholds()


def reading(name: str, week: float, week_reset_in: float, observed_ago: float, five=0.1):
    """A poll `observed_ago` s old (stale past 6 minutes): its 5-hour reset counts from it."""
    return snapshot(
        name,
        five,
        week,
        observed_at=NOW - observed_ago,
        source="oauth",
        five_reset_in=2 * H - observed_ago,
        week_reset_in=week_reset_in,
        stale=observed_ago > 360,
    )


def test_an_idle_slots_old_reading_stands_and_the_live_slots_does_not():
    live = SlotView("a", usage=reading("a", 0.3, 5 * 24 * H, observed_ago=10 * H))
    idle = SlotView("b", usage=reading("b", 0.2, 20 * H, observed_ago=10 * H))
    view = forget_old_usage(PolicyView("a", (live, idle)), T, NOW)
    assert view.slot("a").usage is None
    assert view.slot("b").usage == idle.usage
    fresh = PolicyView("a", (SlotView("a", usage=reading("a", 0.3, 5 * 24 * H, 60)), idle))
    assert forget_old_usage(fresh, T, NOW) is fresh


def test_expiry_first_routing_uses_an_idle_slots_old_reading():
    # b has been idle for 10 h (its token expired, nobody can poll it): 80 % of its week is
    # left and it resets in 20 h, well before a. Before, b read as unknown and a stayed.
    live = SlotView("a", usage=reading("a", 0.3, 5 * 24 * H, observed_ago=60))
    idle = SlotView("b", health="stale", usage=reading("b", 0.2, 20 * H, observed_ago=10 * H))
    d = DefaultPolicy(T).decide(PolicyView("a", (live, idle)), NOW)
    assert (d.action, d.target, d.mode) == ("switch", "b", "forward-route")


def test_an_idle_slot_read_as_spent_stays_spent_until_its_reset():
    live = SlotView("a", usage=reading("a", 0.99, 3 * 24 * H, observed_ago=60))
    spent = SlotView("b", usage=reading("b", 0.985, 20 * H, observed_ago=30 * H))
    d = DefaultPolicy(T).decide(PolicyView("a", (live, spent)), NOW)
    assert (d.action, d.target) == ("stay", None)  # the last of a, not b
    # once its weekly window has reset, the same old reading counts as empty
    reset = SlotView("b", usage=reading("b", 0.985, -H, observed_ago=30 * H))
    d = DefaultPolicy(T).decide(PolicyView("a", (live, reset)), NOW)
    assert (d.action, d.target) == ("switch", "b")


def test_a_weekly_window_keeps_its_phase_past_a_reset():
    # b's last reading is from before its weekly reset 10 h ago: its fresh week ends in 7 d - 10 h,
    # which is still before a's reset, so b takes over instead of ranking as unknown (last)
    from gptme_subscription_plugin.policy import weekly_reset

    idle = reading("b", 0.9, -10 * H, observed_ago=30 * H)
    assert weekly_reset(idle, NOW) == NOW - 10 * H + SEVEN_DAY_S
    live = SlotView("a", usage=reading("a", 0.3, 6.9 * 24 * H, observed_ago=60))
    d = DefaultPolicy(T).decide(PolicyView("a", (live, SlotView("b", usage=idle))), NOW)
    assert (d.action, d.target, d.mode) == ("switch", "b", "forward-route")
    two_weeks_ago = reading("c", 0.2, -(SEVEN_DAY_S + H), observed_ago=9 * 24 * H)
    assert weekly_reset(two_weeks_ago, NOW) == NOW + SEVEN_DAY_S - H
