"""The simulator's contract: hook-pack swap semantics, observability, cache cost, determinism."""

from __future__ import annotations

import json

import pytest

from gptme_subscription_plugin.policy import Decision, DefaultPolicy, PolicyView
from gptme_subscription_plugin.sim.engine import SimOptions, Simulator
from gptme_subscription_plugin.sim.fleet import FleetAccount
from gptme_subscription_plugin.sim.model import DAY, HOUR, T0, TIERS, Tier
from gptme_subscription_plugin.sim.scenarios import SCENARIOS
from gptme_subscription_plugin.sim.tournament import (
    ALL_POLICIES,
    run_tournament,
    summarize,
    to_json,
)
from gptme_subscription_plugin.sim.workload import Request, Session, Turn, Workload
from gptme_subscription_plugin.thresholds import Thresholds


def req(
    release: float, dur: float = 60.0, tool: float = 30.0, warm=100.0, cold=300.0, natural=False
):
    return Request("sonnet", warm, cold, natural, dur, tool, release)


def turn(at: float, *requests: Request, think: float = 0.0) -> Turn:
    return Turn(at, think, requests)


def account(name: str, tier: Tier = TIERS["max5"], **kw) -> FleetAccount:
    kw.setdefault("token_expires_at", T0 + 30 * DAY)
    return FleetAccount(name, tier, first_reset=T0 + 3 * DAY, initial_weekly=0.1, **kw)


def workload(*sessions: Session, days: float = 1.0) -> Workload:
    return Workload(tuple(sessions), T0, T0 + days * DAY)


class Spy:
    """Wraps a policy; keeps every (now, view, decision)."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.per_model_limits = getattr(inner, "per_model_limits", False)
        self.calls: list[tuple[float, PolicyView, Decision]] = []

    def decide(self, view: PolicyView, now: float) -> Decision:
        d = self.inner.decide(view, now)
        self.calls.append((now, view, d))
        return d


class AlwaysNext:
    """Wants the next slot at every decision: the most swap-hungry policy there is."""

    name = "always-next"

    def decide(self, view: PolicyView, now: float) -> Decision:
        names = [s.name for s in view.slots]
        target = names[(names.index(view.live) + 1) % len(names)]
        return Decision("switch", view.live, target, "next", "always")


class SwitchOnce:
    name = "switch-once"

    def __init__(self, target: str, not_before: float = T0 + 1):
        self.target, self.not_before, self.done = target, not_before, False

    def decide(self, view: PolicyView, now: float) -> Decision:
        if self.done or view.live == self.target or now < self.not_before:
            return Decision("stay", view.live, None, "stay", "done")
        self.done = True
        return Decision("switch", view.live, self.target, "once", "once")


def test_swaps_only_where_no_session_is_mid_turn_and_never_mid_request():
    # A: one long turn; B: two short turns inside it. B's Stops find A mid-turn.
    a = Session("A", (turn(T0, req(T0), req(T0 + 90), req(T0 + 180, tool=0)),))
    b = Session(
        "B",
        (
            turn(T0 + 10, req(T0 + 10, dur=20, tool=0)),
            turn(T0 + 40, req(T0 + 40, dur=20, tool=0), think=5),
        ),
        lane=1,
    )
    sim = Simulator(workload(a, b), (account("a"), account("b")), AlwaysNext(), record=True)
    result = sim.run()
    m = result.metrics
    assert m.violations == 0 and m.mid_turn_swaps == 0 and m.mid_request_swaps == 0
    flips = [t for t, *_ in result.switches]
    # A's prompt finds nobody mid-turn: a flip before its first request; after that B's
    # prompts and Stops find A mid-turn, so the next flip waits for A's Stop
    assert flips[:2] == [pytest.approx(T0), pytest.approx(T0 + 240)]
    assert {acct for sid, _, _, _, acct in result.requests if sid == "A"} == {"b"}
    # no request is in flight, and no turn open, at any flip
    turns: dict[tuple[str, int], list[float]] = {}
    for sid, t_idx, start, end, _ in result.requests:
        span = turns.setdefault((sid, t_idx), [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
        for flip in flips:
            assert not start < flip < end
    for start, end in turns.values():
        for flip in flips:
            assert not start < flip < end
    # each request is charged to the account live when it started
    live_at = {t: new for t, _, new, _ in result.switches}
    for _, _, start, _, acct in result.requests:
        before = [live_at[t] for t in sorted(live_at) if t <= start]
        assert acct == (before[-1] if before else "a")


def test_a_swap_costs_one_cold_cache_and_waiting_costs_one_too():
    one = Session(
        "S",
        (turn(T0, req(T0, natural=True, tool=0)), turn(T0 + 100, req(T0 + 100, tool=0), think=40)),
    )
    sim = Simulator(workload(one), (account("a"), account("b")), SwitchOnce("b"), record=True)
    result = sim.run()
    m = result.metrics
    assert [acct for *_, acct in result.requests] == ["a", "b"]
    assert m.cache_extra == pytest.approx(300.0 - 100.0)  # the swap: warm 100 billed cold 300
    assert m.wait_cache_extra == 0.0
    assert sim.accounts[1].week_used == pytest.approx(0.1 * 120_000 + 300.0)
    late = Session(
        "S",
        (
            turn(T0, req(T0, natural=True, tool=0)),
            turn(T0 + 1000, req(T0 + 1000, tool=0), think=940),
        ),
    )
    m2 = Simulator(workload(late), (account("a"), account("b")), Spy(DefaultPolicy())).run().metrics
    assert m2.cache_extra == 0.0 and m2.wait_cache_extra == pytest.approx(200.0)
    assert m2.served == 1.0 and m2.swaps == 0


def test_stop_failure_rate_limit_marks_the_slot_and_the_policy_moves():
    tiny = Tier("tiny", five_hour=350.0, weekly=100_000.0)  # a cold 300, then a warm 100
    reqs = [req(T0 + i * 100, dur=10, tool=90) for i in range(3)]
    reqs[-1] = req(T0 + 200, dur=10, tool=0)
    s = Session("S", (turn(T0, *reqs),), retry=60.0)
    spy = Spy(DefaultPolicy(Thresholds()))
    sim = Simulator(workload(s), (account("a", tiny), account("b")), spy, record=True)
    result = sim.run()
    assert result.metrics.rate_limited == 1 and result.metrics.stalls == 1
    now, view, decision = next(c for c in spy.calls if c[2].urgent)
    assert view.slot("a").limited_until is not None and view.slot("a").limited_until > now
    assert (decision.action, decision.target, decision.mode) == ("switch", "b", "exhausted")
    assert [acct for *_, acct in result.requests] == ["a", "a", "b"]
    assert sim.left_exhausted == {0: now}


def test_a_refusal_streak_longer_than_a_5_hour_window_waits_for_the_weekly_reset():
    s = Session("S", (turn(T0, req(T0, tool=0)),))
    sim = Simulator(workload(s, days=8), (account("a"), account("b")), Spy(DefaultPolicy()))
    sim._refresh(T0)  # a reading of each slot: a's weekly window resets at T0 + 3 days
    session = sim.sessions[0]
    sim._hook_stop_failure(session, T0, "rate_limit")
    assert sim.refusing == {0: T0} and sim.limited[0] < T0 + 2 * HOUR  # a first guess
    assert sim.live == 1
    sim._flip(0, "manual", T0 + 6 * HOUR)  # back on a, nothing served on it since
    sim._hook_stop_failure(session, T0 + 6 * HOUR, "rate_limit")
    assert sim.refusing == {0: T0} and sim.limited[0] == T0 + 3 * DAY
    sim._flip(0, "manual", T0 + 3 * DAY)
    sim._hook_stop(session, T0 + 3 * DAY + 60)  # a turn answered on a: the streak is over
    assert sim.refusing == {}


def test_the_policy_sees_each_plan_size_as_the_credential_file_declares_it():
    s = Session("S", (turn(T0, req(T0, tool=0)),))
    fleet = (
        account("a", TIERS["pro"]),
        account("b", TIERS["max20"]),
        account("c", Tier("x", 1, 9)),
    )
    spy = Spy(DefaultPolicy())
    Simulator(workload(s), fleet, spy).run()
    assert [v.capacity for v in spy.calls[0][1].slots] == [1.0, 20.0, None]


def test_a_refused_credential_is_marked_rejected_and_the_policy_moves():
    s = Session("S", tuple(turn(T0 + i * 600, req(T0 + i * 600, tool=0)) for i in range(5)))
    spy = Spy(DefaultPolicy())
    # a's token is past its expiry, so no usage poll finds the revocation first
    broken = account("a", broken_at=T0, token_expires_at=T0 - 1)
    sim = Simulator(workload(s), (broken, account("b")), spy, record=True)
    m = sim.run().metrics
    assert m.auth_errors == 1 and m.stalls == 1 and m.requests == 5  # the retry too
    assert spy.calls[0][2].action == "stay"  # the first prompt: nothing known against a
    now, view, decision = spy.calls[1]  # StopFailure(authentication_failed) evaluates
    assert (view.slot("a").usable, view.slot("a").health) == (False, "rejected")
    assert (decision.action, decision.target) == ("switch", "b")
    assert {acct for *_, acct in sim.result.requests} == {"b"}


def test_other_api_errors_are_ignored_like_the_hook_pack_does():
    s = Session("S", (turn(T0, req(T0, tool=0)),), retry=60.0)
    sim = Simulator(workload(s), (account("a"), account("b")), Spy(DefaultPolicy()))
    sim._hook_stop_failure(sim.sessions[0], T0, "overloaded")
    assert sim.limited == {} and sim.rejected == set() and sim.live == 0 and sim.m.decisions == 0


def test_the_policy_sees_observations_only_never_ground_truth():
    turns = tuple(turn(T0 + i * 300, req(T0 + i * 300, dur=30, tool=0)) for i in range(40))
    quiet = Session("S", turns, statusline=False)
    opts = SimOptions(outages=((T0 - 1, T0 + DAY),))  # the endpoint answers 429 all along
    spy = Spy(DefaultPolicy())
    sim = Simulator(workload(quiet), (account("a"), account("b")), spy, opts)
    m = sim.run().metrics
    assert m.requests == 40 and sim.accounts[0].week_used > 0.1 * 120_000
    assert all(s.usage is None for _, view, _ in spy.calls for s in view.slots)

    talkative = Session("S", turns, statusline=True)
    spy = Spy(DefaultPolicy())
    sim = Simulator(workload(talkative), (account("a"), account("b")), spy, opts)
    sim.run()
    assert spy.calls[0][0] == T0 and spy.calls[0][1].slot("a").usage is None
    spy = Spy(DefaultPolicy())
    sim = Simulator(workload(talkative), (account("a"), account("b")), spy, opts)
    sim.run()
    for now, view, _ in spy.calls[1:]:  # after the first prompt's decision, before any answer
        usage = view.slot("a").usage
        assert usage is not None and usage.source == "statusline" and usage.observed_at <= now
        assert usage.seven_day is not None
        assert usage.seven_day.utilization * 100 == pytest.approx(
            round(usage.seven_day.utilization * 100)
        )


def test_endpoint_polls_keep_the_production_interval_and_need_a_live_token():
    turns = tuple(turn(T0 + i * 60, req(T0 + i * 60, dur=20, tool=0)) for i in range(120))
    s = Session("S", turns, statusline=False)
    fleet = (account("a"), account("b"), account("c", token_expires_at=T0 + 10))
    spy = Spy(DefaultPolicy())
    sim = Simulator(workload(s), fleet, spy)
    m = sim.run().metrics
    seen: dict[str, list[float]] = {}
    for _, view, _ in spy.calls:
        for slot in view.slots:
            if slot.usage is not None and slot.usage.source == "oauth":
                times = seen.setdefault(slot.name, [])
                if not times or times[-1] != slot.usage.observed_at:
                    times.append(slot.usage.observed_at)
    for times in seen.values():
        assert all(b - a >= 180.0 for a, b in zip(times, times[1:], strict=False))
    assert seen["c"] == [T0]  # its token expired: polled once at the start, never again
    assert m.polls <= 1 + 2 * (1 + 120 * 60 // 180)


def test_the_shipped_policy_object_runs_unchanged():
    policy = DefaultPolicy(Thresholds())
    inp = SCENARIOS["under-demand"].scaled(days=3).instantiate(0)
    result = Simulator(inp.workload, inp.fleet, policy, inp.options).run()
    assert type(policy) is DefaultPolicy and policy.name == "default"
    assert result.metrics.decisions > 0 and result.metrics.violations == 0
    assert 0.0 < result.metrics.capture <= 1.0 and 0.0 < result.metrics.served <= 1.0


class FreshViewCheck(Simulator):
    """Builds the whole view from scratch at every decision too, and says where it differs."""

    checked = 0
    kept = 0  # slots whose part of the view was reused

    def view(self, now: float) -> PolicyView:
        before = list(self._slot_views)
        view = super().view(now)
        fresh = self._policy_view(tuple(self._slot_view(i, now)[0] for i in range(len(before))))
        assert view == fresh, f"kept view out of date at {now - T0:.0f}s"
        self.checked += 1
        self.kept += sum(a is b for a, b in zip(before, view.slots, strict=True))
        return view


@pytest.mark.parametrize("name", ["stale-observability", "broken-slot", "model-limits"])
def test_the_view_kept_between_changes_is_the_view_built_afresh(name):
    # stale readings and endpoint outages, a refused credential, per-model limits
    inp = SCENARIOS[name].scaled(days=5).instantiate(1)
    sim = FreshViewCheck(inp.workload, inp.fleet, DefaultPolicy(), inp.options)
    sim.run()
    assert sim.checked > 1000
    slots = sim.checked * len(inp.fleet)
    assert slots / 2 < sim.kept < slots  # mostly kept between changes, built after them


def test_same_seed_gives_byte_identical_json_whatever_the_workers():
    scenarios = [SCENARIOS["bursty-fleet"].scaled(days=3), SCENARIOS["broken-slot"].scaled(days=5)]
    first = to_json(summarize(run_tournament(scenarios, 2), scenarios), 2, ALL_POLICIES)
    again = to_json(summarize(run_tournament(scenarios, 2, workers=2), scenarios), 2, ALL_POLICIES)
    assert first == again
    doc = json.loads(first)
    other = SCENARIOS["bursty-fleet"].scaled(days=3)
    assert other.instantiate(0).workload == scenarios[0].instantiate(0).workload
    assert other.instantiate(1).workload != scenarios[0].instantiate(0).workload
    for scenario in doc["scenarios"].values():
        for metrics in scenario["policies"].values():
            assert metrics["violations"] == 0
    assert HOUR  # (imported for readers: times below are in seconds)


def test_a_429_on_a_spent_model_window_limits_that_model_for_the_shipped_policy_only():
    from gptme_subscription_plugin.sim.rivals import StickyPolicy

    opus = Request("opus", 100.0, 300.0, False, 60.0, 0.0, T0)
    s = Session("S", (turn(T0, opus),), retry=60.0)
    spent = account("a", model_caps=(("opus", 1000.0),), initial_models=(("opus", 1.0),))
    # b's Opus reads past our threshold but under the hard limit: no slot serves every
    # model by the readings, so the first prompt stays on a
    almost = account("b", model_caps=(("opus", 1000.0),), initial_models=(("opus", 0.97),))
    fleet = (spent, almost)
    spy = Spy(DefaultPolicy())
    sim = Simulator(workload(s), fleet, spy, record=True)
    m = sim.run().metrics
    assert m.rate_limited == 1 and m.requests == 1
    assert 0 not in sim.limited and set(sim.limited_models[0]) == {"opus"}  # Sonnet may go on
    urgent = next(d for _, _, d in spy.calls if d.urgent)
    assert (urgent.mode, urgent.target) == ("model-limited", "b")
    assert [acct for *_, acct in sim.result.requests] == ["b"]
    # a rival's anchor keeps one limit per account: the whole slot waits
    rival = Simulator(workload(s), fleet, StickyPolicy(), record=True)
    rival.run()
    assert 0 in rival.limited and not rival.limited_models
