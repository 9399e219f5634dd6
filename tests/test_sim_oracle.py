"""The oracle is an upper bound: the flow bound by proof (hand-checked), the oracle by design."""

from __future__ import annotations

import pytest

from gptme_subscription_plugin.sim.engine import Simulator
from gptme_subscription_plugin.sim.fleet import FleetAccount
from gptme_subscription_plugin.sim.model import DAY, T0, TIERS
from gptme_subscription_plugin.sim.oracle import ClairvoyantPolicy, flow_bound
from gptme_subscription_plugin.sim.scenarios import SCENARIOS
from gptme_subscription_plugin.sim.tournament import ORACLE, POLICIES, run_seed
from gptme_subscription_plugin.sim.workload import Request, Session, Turn, Workload

MAX5 = TIERS["max5"]  # 120 000 units a week


def demand(at: float, units: float, n: int = 10, model: str = "sonnet") -> Session:
    per = units / n
    reqs = tuple(Request(model, per, per, True, 10.0, 0.0, at + i) for i in range(n))
    return Session(f"s{at}-{model}", (Turn(at, 0.0, reqs),))


def test_flow_bound_matches_a_hand_computed_case():
    # a: half used, closes at day 1; b: empty, closes at day 3; the run ends at day 5.
    fleet = (
        FleetAccount("a", MAX5, first_reset=T0 + DAY, initial_weekly=0.5),
        FleetAccount("b", MAX5, first_reset=T0 + 3 * DAY, initial_weekly=0.0),
    )
    sessions = (demand(T0, 100_000), demand(T0 + 2 * DAY, 50_000), demand(T0 + 4 * DAY, 30_000))
    wl = Workload(sessions, T0, T0 + 5 * DAY)
    bound = flow_bound(wl, fleet)
    # closed windows: a's first (60 000 left, until day 1) and b's first (120 000, until day 3).
    # day-0 demand fills a (60 000) and 40 000 of b; day-2 demand only fits b (50 000);
    # day-4 demand reaches no window that closes in the run.
    assert bound.capture == pytest.approx((60_000 + 60_000 + 90_000) / 240_000)
    assert bound.served == pytest.approx(1.0)  # later windows take the rest before the end

    broken = (fleet[0], FleetAccount("b", MAX5, T0 + 3 * DAY, 0.0, broken_at=T0 + 2 * DAY))
    assert flow_bound(wl, broken).capture == pytest.approx((60_000 + 60_000 + 40_000) / 240_000)


def test_flow_bound_respects_per_model_buckets():
    fleet = (
        FleetAccount(
            "a",
            MAX5,
            T0 + DAY,
            0.0,
            model_caps=(("opus", 30_000.0),),
            initial_models=(("opus", 0.0),),
        ),
    )
    wl = Workload((demand(T0, 100_000, model="opus"), demand(T0 + 1, 10_000)), T0, T0 + 2 * DAY)
    bound = flow_bound(wl, fleet)
    per_request = 10_000  # one admitted request may overshoot a bucket
    assert bound.capture == pytest.approx((30_000 + per_request + 10_000) / 120_000)


@pytest.mark.parametrize("name,days", [("over-demand", 9), ("mixed-tiers", 8), ("broken-slot", 9)])
def test_no_policy_beats_the_oracle_or_the_bound(name, days):
    scenario = SCENARIOS[name].scaled(days=days)
    for seed in range(2):
        result = run_seed(scenario, seed)
        oracle = result.metrics[ORACLE]
        assert oracle.capture <= result.bound_capture + 1e-9
        for policy in POLICIES:
            m = result.metrics[policy]
            assert m.capture <= oracle.capture + 1e-12, policy
            assert m.capture <= result.bound_capture + 1e-9, policy
            assert m.served <= result.bound_served + 1e-9, policy
            assert m.violations == 0, policy


def test_clairvoyant_reads_ground_truth_and_goes_where_quota_expires_first():
    fleet = (
        FleetAccount("a", MAX5, T0 + 5 * DAY, 0.2, token_expires_at=T0 + 9 * DAY),
        FleetAccount("b", MAX5, T0 + 2 * DAY, 0.2, token_expires_at=T0 + 9 * DAY),
        FleetAccount("c", MAX5, T0 + DAY, 0.2, token_expires_at=T0 + 9 * DAY, broken_at=T0),
    )
    turns = tuple(
        Turn(T0 + i * 600, 0.0, (Request("sonnet", 100.0, 100.0, True, 10.0, 0.0, T0 + i * 600),))
        for i in range(4)
    )
    wl = Workload((Session("s", turns, statusline=False),), T0, T0 + 3 * DAY)
    result = Simulator(wl, fleet, ClairvoyantPolicy(), record=True).run()
    # the first prompt already moves (nobody is mid-turn); never to the broken c
    assert [acct for *_, acct in result.requests] == ["b", "b", "b", "b"]
