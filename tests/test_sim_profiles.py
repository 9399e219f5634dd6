"""Profile mode in the simulator (sim/profile_mode.py): each session on one slot for its life,
the supervisor's resume after a refusal, launch spreading, and the shipped launch rule."""

from __future__ import annotations

from collections import Counter

import pytest

from gptme_subscription_plugin import launch
from gptme_subscription_plugin.sim.engine import _TURN
from gptme_subscription_plugin.sim.fleet import FleetAccount
from gptme_subscription_plugin.sim.model import DAY, HOUR, T0, TIERS, Tier
from gptme_subscription_plugin.sim.profile_mode import (
    MAX_WAIT,
    ROUTERS,
    PaceRouter,
    ProfileSimulator,
    ShippedRouter,
)
from gptme_subscription_plugin.sim.scenarios import SCENARIOS
from gptme_subscription_plugin.sim.workload import Request, Session, Turn, Workload
from gptme_subscription_plugin.thresholds import Thresholds


def req(release: float, dur: float = 30.0, tool: float = 10.0, warm: float = 100.0) -> Request:
    return Request("sonnet", warm, 3 * warm, False, dur, tool, release)


def agent(sid: str, at: float, lane: int, turns: int = 3, calls: int = 3) -> Session:
    """An agent's session: `turns` turns of `calls` requests, back to back."""
    made, t = [], at
    for _ in range(turns):
        requests = []
        for _ in range(calls):
            requests.append(req(t))
            t += 40.0
        made.append(Turn(requests[0].release, 5.0, tuple(requests)))
        t += 5.0
    return Session(sid, tuple(made), retry=60.0, lane=lane)


def account(name: str, tier: Tier = TIERS["max5"]) -> FleetAccount:
    # an expired token: nothing polls it, so the router knows only what sessions report
    return FleetAccount(name, tier, first_reset=T0 + 3 * DAY, initial_weekly=0.1)


def fleet_input() -> tuple[Workload, tuple[FleetAccount, ...]]:
    """A short fleet run with many 429s: 16-24 agents at a time on four mixed plans."""
    inp = SCENARIOS["fleet-mixed"].scaled(days=2).instantiate(0)
    return inp.workload, inp.fleet


def account_changes_outside_runs(sim: ProfileSimulator) -> list[tuple[str, int]]:
    """(session, turn) where two requests of one run went to different accounts: a session's
    account may change only across a refusal (the run ended; the supervisor resumed it)."""
    refused: dict[str, list[float]] = {}
    for sid, t in sim.refusals:
        refused.setdefault(sid, []).append(t)
    bad = []
    by_session: dict[str, list[tuple[int, float, float, str]]] = {}
    for sid, turn, start, end, acct in sim.result.requests:
        by_session.setdefault(sid, []).append((turn, start, end, acct))
    for sid, reqs in by_session.items():
        reqs.sort(key=lambda r: r[1])
        for (_, _, end, acct), (turn2, start2, _, acct2) in zip(reqs, reqs[1:], strict=False):
            moved = acct != acct2
            if moved and not any(end <= t <= start2 for t in refused.get(sid, [])):
                bad.append((sid, turn2))
    return bad


def test_a_profile_session_changes_account_only_when_resumed_after_a_refusal() -> None:
    workload, fleet = fleet_input()
    sim = ProfileSimulator(workload, fleet, ShippedRouter(), record=True)
    m = sim.run().metrics

    assert m.resumes > 0 and m.rate_limited > 0  # sessions did move, after 429s
    assert account_changes_outside_runs(sim) == []
    assert m.mid_turn_swaps == 0 and m.lost_chains == 0 and m.swaps == 0


def test_the_check_catches_a_simulator_that_rebinds_sessions_mid_turn() -> None:
    """The check above fails on a profile mode that moves sessions between requests."""

    class Rebinding(ProfileSimulator):
        def _request(self, s, t):  # type: ignore[no-untyped-def]
            if s.req == 1:
                self._bind(s, (self.slot_of[s.index] + 1) % len(self.names), t)
            super()._request(s, t)

    fleet = (account("a"), account("b"), account("c"))
    sim = Rebinding(burst(6), fleet, ShippedRouter(), record=True)
    m = sim.run().metrics

    assert account_changes_outside_runs(sim) != []
    assert m.mid_turn_swaps > 0


def test_the_supervisor_resumes_a_rate_limited_session_on_another_slot() -> None:
    workload = Workload((agent("s1", T0 + 60, 0, turns=4),), T0, T0 + DAY)
    sim = ProfileSimulator(workload, (account("a"), account("b")), ShippedRouter(), record=True)
    sim.spend("a", T0, TIERS["max5"].five_hour)  # a's 5-hour window is spent; nobody knows

    m = sim.run().metrics

    served = [acct for *_, acct in sim.result.requests]
    assert served == ["b"] * 12  # the first request was refused on a, then all of it on b
    assert [sid for sid, _ in sim.refusals] == ["s1"]
    assert m.resumes == 1 and m.rate_limited == 1 and m.stalls == 1
    assert sim.limited.get(0, 0) > T0 + 60  # the 429 marked a limited, as the hooks do
    assert m.served == pytest.approx(1.0)


def test_with_every_slot_spent_the_supervisor_waits_for_the_soonest_recovery() -> None:
    workload = Workload((agent("s1", T0 + 60, 0, turns=1),), T0, T0 + DAY)
    sim = ProfileSimulator(workload, (account("a"), account("b")), ShippedRouter(), record=True)
    for name in ("a", "b"):
        sim.spend(name, T0, TIERS["max5"].five_hour)  # both 5-hour windows close at T0 + 5 h

    m = sim.run().metrics

    first = min(start for _, _, start, _, _ in sim.result.requests)
    assert T0 + 5 * HOUR <= first < T0 + 6 * HOUR  # served once a window reset
    assert m.stall_hours == pytest.approx((first - T0 - 60) / HOUR, rel=0.02)
    assert m.resumes <= 1 and m.mid_turn_swaps == 0


def burst(n: int, gap: float = 0.0) -> Workload:
    """n agents launched `gap` seconds apart (the same second by default), each in its own
    lane."""
    sessions = tuple(agent(f"s{i:02d}", T0 + 60 + i * gap, i) for i in range(n))
    return Workload(sessions, T0, T0 + DAY)


def first_slots(sim: ProfileSimulator) -> Counter[str]:
    first: dict[str, str] = {}
    for sid, _, _, _, acct in sim.result.requests:
        first.setdefault(sid, acct)
    return Counter(first.values())


@pytest.mark.parametrize("router", [ShippedRouter, PaceRouter])
def test_twenty_launches_in_one_second_spread_over_the_slots(router: type) -> None:
    fleet = (account("a"), account("b"), account("c"))
    sim = ProfileSimulator(burst(20), fleet, router(), record=True)
    sim.run()

    spread = first_slots(sim)
    assert set(spread) == {"a", "b", "c"}, spread
    assert max(spread.values()) - min(spread.values()) <= 2, spread


def test_the_simulator_routes_new_sessions_with_launch_choose_launch_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str | None] = []
    shipped = launch.choose_launch_slot

    def last_slot_only(view, loads, thresholds, now, *, resume=None):  # type: ignore[no-untyped-def]
        calls.append(resume)
        choice = shipped(view, loads, thresholds, now, resume=resume)
        return launch.LaunchChoice("c", "pinned", choice.load, choice.cap)

    monkeypatch.setattr(launch, "choose_launch_slot", last_slot_only)
    fleet = (account("a"), account("b"), account("c"))
    sim = ProfileSimulator(burst(20), fleet, ShippedRouter(), record=True)
    sim.run()

    assert first_slots(sim) == Counter({"c": 20})
    assert calls.count(None) == 20  # one call per launch (and more for resumes)


def test_the_launch_rule_reads_the_simulator_thresholds() -> None:
    """Launches 5 s apart: with the default `launch_window` a launch counts as load on top of
    its session for a minute and the next one goes elsewhere; with a 1-second window only the
    session counts, and the best ranked slot takes one more."""
    fleet = (account("a"), account("b"), account("c"))
    default = ProfileSimulator(burst(4, gap=5.0), fleet, ShippedRouter(), record=True)
    default.run()
    short = Thresholds(launch_window=1.0)
    brief = ProfileSimulator(
        burst(4, gap=5.0), fleet, ShippedRouter(), thresholds=short, record=True
    )
    brief.run()

    assert first_slots(default) == Counter({"a": 2, "b": 1, "c": 1})
    assert first_slots(brief) == Counter({"a": 2, "b": 2})


def test_profile_runs_are_deterministic() -> None:
    workload, fleet = fleet_input()
    for name, router in ROUTERS.items():
        first = ProfileSimulator(workload, fleet, router(), record=True).run()
        again = ProfileSimulator(workload, fleet, router(), record=True).run()
        assert first.metrics.to_dict() == again.metrics.to_dict(), name
        assert first.requests == again.requests, name


def test_a_waiting_supervisor_looks_again_at_most_every_max_wait() -> None:
    """Nothing serves for five hours: the supervisor wakes about every MAX_WAIT (readings
    lag), not in a tight loop, and the session is served once a window reset."""
    workload = Workload((agent("s1", T0 + 60, 0, turns=1),), T0, T0 + DAY)
    sim = ProfileSimulator(workload, (account("a"),), ShippedRouter(), record=True)
    sim.spend("a", T0, TIERS["max5"].five_hour)
    pushed: list[int] = []
    original = sim._push

    def count(t: float, kind: int, si: int) -> None:
        if kind == _TURN:
            pushed.append(si)
        original(t, kind, si)

    sim._push = count  # type: ignore[method-assign]
    sim.run()

    assert len(pushed) <= 5 * HOUR / MAX_WAIT + 3
    assert len(sim.result.requests) == 3
