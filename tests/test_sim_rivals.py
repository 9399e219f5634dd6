"""Each rival reproduces its anchor's documented behaviour on small hand-checked cases."""

from __future__ import annotations

import pytest

from gptme_subscription_plugin.policy import PolicyView, SlotView
from gptme_subscription_plugin.sim.engine import Simulator
from gptme_subscription_plugin.sim.fleet import FleetAccount
from gptme_subscription_plugin.sim.model import DAY, T0, Tier
from gptme_subscription_plugin.sim.rivals import (
    PacePolicy,
    RoundRobinPolicy,
    SoonestResetPolicy,
    StickyPolicy,
    ThresholdPolicy,
    UpstreamPolicy,
    pace_score,
)
from gptme_subscription_plugin.sim.workload import Request, Session, Turn, Workload

from .support.usage import NOW, H, snapshot


def slot(
    name: str,
    five: float | None = 0.1,
    week: float | None = 0.3,
    week_reset_in: float | None = 3 * 24 * H,
    five_reset_in: float = 2 * H,
    limited: float | None = None,
    sonnet: float | None = None,
    observed_at: float = NOW,
) -> SlotView:
    usage = snapshot(
        name,
        five,
        week,
        observed_at=observed_at,
        five_reset_in=five_reset_in,
        week_reset_in=week_reset_in,
        models=None if sonnet is None else {"sonnet": sonnet},
    )
    return SlotView(name, usage=usage, limited_until=None if limited is None else NOW + limited)


def view(live: str | None, *slots: SlotView, last_switch_at: float | None = None) -> PolicyView:
    return PolicyView(live=live, slots=slots, last_switch_at=last_switch_at)


# ---------------------------------------------------------------- sticky-until-429


def test_sticky_stays_at_99_percent_and_moves_on_a_429_to_the_next_in_order():
    p = StickyPolicy()
    assert p.decide(view("a", slot("a", five=0.99, week=0.99), slot("b")), NOW).action == "stay"
    d = p.decide(view("b", slot("a"), slot("b", limited=600), slot("c")), NOW)
    assert (d.action, d.target) == ("switch", "c")
    d = p.decide(view("c", slot("a"), slot("b"), slot("c", limited=600)), NOW)
    assert d.target == "a"  # wraps around
    d = p.decide(view("a", slot("a", limited=60), slot("b", limited=60)), NOW)
    assert d.action == "defer"


def test_sticky_on_a_trace_uses_a_slot_to_its_hard_limit_then_the_next():
    tiny = Tier("tiny", five_hour=1_000.0, weekly=100_000.0)
    reqs = tuple(Request("sonnet", 100.0, 100.0, True, 10.0, 0.0, T0 + i * 60) for i in range(15))
    sessions = tuple(
        Session(f"s{i}", (Turn(r.release, 0.0, (r,)),), lane=i) for i, r in enumerate(reqs)
    )
    fleet = tuple(
        FleetAccount(n, tiny, T0 + 3 * DAY, 0.0, token_expires_at=T0 + DAY) for n in "abc"
    )
    sim = Simulator(Workload(sessions, T0, T0 + DAY), fleet, StickyPolicy(), record=True)
    result = sim.run()
    used = [acct for *_, acct in result.requests]
    assert used[:10] == ["a"] * 10  # a to 100 %: the statusline says 90 % and it stays
    assert result.metrics.rate_limited == 1 and used[10:] == ["b"] * 5  # the refused one too
    assert [(old, new) for _, old, new, _ in result.switches] == [("a", "b")]


# ---------------------------------------------------------------- round-robin


def test_round_robin_takes_the_next_usable_slot_every_time():
    p = RoundRobinPolicy()
    order = []
    live = "a"
    slots = (slot("a"), slot("b", limited=60), slot("c"))
    for _ in range(3):
        d = p.decide(view(live, *slots), NOW)
        order.append(d.target)
        live = d.target
    assert order == ["c", "a", "c"]  # b is skipped while rate-limited


# ---------------------------------------------------------------- cswap threshold 90 %


def test_threshold_switches_at_90_to_most_headroom_with_hysteresis_and_cooldown():
    p = ThresholdPolicy()
    calm = view("a", slot("a", five=0.89, week=0.5), slot("b", five=0.0, week=0.1))
    assert p.decide(calm, NOW).action == "stay"  # binding window 89 % < 90 %
    hot = view("a", slot("a", five=0.91, week=0.5), slot("b", week=0.85), slot("c", week=0.6))
    d = p.decide(hot, NOW)
    assert (d.action, d.target, d.mode) == ("switch", "c", "proactive")  # most headroom
    near = view("a", slot("a", five=0.91, week=0.5), slot("b", five=0.0, week=0.82))
    assert p.decide(near, NOW).action == "stay"  # 82 % is not 10 points better than 91 %
    recent = view("a", slot("a", five=0.95), slot("b", week=0.1), last_switch_at=NOW - 120)
    assert p.decide(recent, NOW).mode == "cooldown"
    hard = view("a", slot("a", five=1.0), slot("b", week=0.82), last_switch_at=NOW - 120)
    d = p.decide(hard, NOW)
    assert (d.action, d.target, d.urgent) == ("switch", "b", True)  # at the limit: no cooldown


# ---------------------------------------------------------------- TeamClaude upstream


def test_soonest_reset_is_sticky_until_98_then_perishable_first():
    p = SoonestResetPolicy()
    stay = view(
        "a", slot("a", five=0.97, week_reset_in=5 * DAY), slot("b", five=0.5, week_reset_in=DAY)
    )
    assert p.decide(stay, NOW).action == "stay"  # b's 5h window is in use: no rollover move
    near = view(
        "a",
        slot("a", five=0.98),
        slot("b", week_reset_in=2 * DAY),
        slot("c", week_reset_in=DAY),
        slot("d", week=None),
    )
    d = p.decide(near, NOW)
    assert (d.action, d.target) == ("switch", "d")  # unknown weekly reset first, to learn it
    near = view(
        "a", slot("a", week=0.99), slot("b", week_reset_in=2 * DAY), slot("c", week_reset_in=DAY)
    )
    assert p.decide(near, NOW).target == "c"  # then the soonest weekly reset


def test_soonest_reset_moves_when_a_sooner_expiring_account_has_a_fresh_5h_window():
    p = SoonestResetPolicy()
    fresh = view(
        "a",
        slot("a", five=0.3, week_reset_in=5 * DAY),
        slot("b", five=0.0, week_reset_in=2 * DAY),
        slot("c", five=0.0, week_reset_in=DAY),
        slot("d", five=0.0, week_reset_in=6 * DAY),
    )
    d = p.decide(fresh, NOW)
    assert (d.action, d.target, d.mode) == ("switch", "c", "session-reset")
    # a 5h window past its reset counts as fresh too
    rolled = view(
        "a",
        slot("a", week_reset_in=5 * DAY),
        slot("b", five=0.9, five_reset_in=-60, week_reset_in=DAY),
    )
    assert p.decide(rolled, NOW).target == "b"


# ---------------------------------------------------------------- TeamClaude D1DX


def test_pace_ramp_matches_the_d1dx_test_case():
    # 20 % unused 6 h before reset: boost 0.20 x 100 = 20 beats a raw gap of +0.286
    ramp = slot("r", week=0.8, week_reset_in=6 * H).usage
    behind = slot("g", week=0.0, week_reset_in=5 * DAY).usage
    gap, score = pace_score(behind, NOW)
    assert gap == pytest.approx(2 / 7) and score == pytest.approx(2 / 7)
    gap, score = pace_score(ramp, NOW)
    assert score == pytest.approx(gap + 20.0)
    assert pace_score(slot("u", week=None).usage, NOW) == (0.0, 0.0)  # unknown: line 0, gap 0


def test_pace_keeps_a_warm_binding_until_railed_or_far_over_its_line():
    p = PacePolicy()
    warm = view("a", slot("a", five=0.85, week=0.5, week_reset_in=3.5 * DAY), slot("b", week=0.0))
    assert p.decide(warm, NOW).action == "stay"  # 0 points off its line, under the rail
    railed = view(
        "a",
        slot("a", five=0.91, week=0.5, week_reset_in=3.5 * DAY),
        slot("b", five=0.95, week=0.0, week_reset_in=3 * DAY),
        slot("c", five=0.2, week=0.3, week_reset_in=3 * DAY),
    )
    d = p.decide(railed, NOW)
    assert (d.action, d.target) == ("switch", "c")  # b is behind pace but railed at 95 %
    over = view(
        "a",
        slot("a", week=0.65, week_reset_in=3.5 * DAY),
        slot("b", week=0.2, week_reset_in=3.5 * DAY),
    )
    assert p.decide(over, NOW).target == "b"  # 15 points over the line
    capped = view("a", slot("a", week=0.985), slot("b", five=0.99), slot("c", limited=60))
    assert p.decide(capped, NOW).action == "defer"


# ---------------------------------------------------------------- upstream gptme-subscription


def test_upstream_primary_exhausts_at_85_weekly_and_5h_90_with_long_reset():
    early = 6 * DAY  # 1/7 of the week gone: no pacing or forward-routing move yet
    p = UpstreamPolicy()
    calm = view("a", slot("a", week=0.2, week_reset_in=early), slot("b"), slot("c"))
    assert p.decide(calm, NOW).mode == "healthy"
    spent = view("a", slot("a", week=0.85, week_reset_in=early), slot("b"), slot("c"))
    d = UpstreamPolicy().decide(spent, NOW)
    assert (d.action, d.mode) == ("switch", "exhausted")
    short = slot("a", five=0.95, five_reset_in=H, week=0.1, week_reset_in=early)
    assert UpstreamPolicy().decide(view("a", short, slot("b")), NOW).mode == "healthy"
    long = slot("a", five=0.95, five_reset_in=3 * H, week=0.1, week_reset_in=early)
    assert UpstreamPolicy().decide(view("a", long, slot("b")), NOW).mode == "exhausted"
    limited = slot("a", limited=600, week=0.1, week_reset_in=early)
    assert UpstreamPolicy().decide(view("a", limited, slot("b")), NOW).mode == "exhausted"


def test_upstream_rebalances_when_ahead_of_pace_and_forward_routes_later_in_the_week():
    # 3.5 days left -> elapsed 0.5; 0.62 used -> 12 points ahead: rebalance with a hold
    p = UpstreamPolicy()
    d = p.decide(view("a", slot("a", week=0.62, week_reset_in=3.5 * DAY), slot("b")), NOW)
    assert (d.action, d.target, d.mode) == ("switch", "b", "rebalance")
    # hold = overage x week / 0.90 target, within 6-48 h: 0.12 x 604800 / 0.9 = 22.4 h
    assert p.proposed is not None and p.proposed[2] == pytest.approx(NOW + 80_640)
    # on pace, past 25 % of the week, never switched to b: forward routing
    p = UpstreamPolicy()
    d = p.decide(view("a", slot("a", week=0.5, week_reset_in=3.5 * DAY), slot("b")), NOW)
    assert (d.action, d.mode) == ("switch", "forward-routing")
    p.observe_switch("a", "b", "forward-routing", NOW)
    assert p.hold == ("b", "forward-routing", NOW + 8 * H)
    # on the fallback under its hold: stays, even though the primary would be better
    d = p.decide(view("b", slot("a"), slot("b", week=0.2)), NOW + H)
    assert (d.action, d.mode) == ("stay", "forward-routing-hold")


def test_upstream_goes_home_to_the_primary_but_not_within_30_minutes_of_leaving():
    p = UpstreamPolicy()
    p.decide(view("a", slot("a", week=0.9), slot("b")), NOW)  # exhausted: leaves the primary
    p.observe_switch("a", "b", "exhausted", NOW)
    early = p.decide(
        view("b", slot("a", week=0.3), slot("b", week=0.3, week_reset_in=6.9 * DAY)), NOW + 600
    )
    assert early.mode == "probe-cooldown"
    later = p.decide(
        view("b", slot("a", week=0.3), slot("b", week=0.3, week_reset_in=6.9 * DAY)), NOW + 3600
    )
    assert (later.action, later.target, later.mode) == ("switch", "a", "probe-primary")
    # a primary that reads blocked would be reverted right after: the switch is not made
    blocked = p.decide(
        view("b", slot("a", week=0.96), slot("b", week=0.3, week_reset_in=6.9 * DAY)), NOW + 3600
    )
    assert blocked.mode == "reverted"


def test_upstream_soon_to_expire_fallback_burns_its_quota():
    p = UpstreamPolicy()
    d = p.decide(view("b", slot("a"), slot("b", week=0.4, week_reset_in=10 * H)), NOW)
    assert (d.action, d.mode) == ("stay", "soon-to-expire")


def test_upstream_ignores_other_slots_until_it_has_seen_them_live():
    # the capacity-aware order only knows slots observed while active: unknown pressure 0.5
    p = UpstreamPolicy()
    p.decide(view("c", slot("a"), slot("b"), slot("c", week=0.1, week_reset_in=6.5 * DAY)), NOW)
    d = p.decide(view("a", slot("a", week=0.9), slot("b", week=0.0), slot("c")), NOW + 60)
    assert d.target == "c"  # c was seen at pressure 0.1 < b's unknown 0.5, despite b's 0 %
