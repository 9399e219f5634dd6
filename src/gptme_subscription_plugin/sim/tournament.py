"""Run policies through scenarios and seeds; aggregate, render, serialise.

Every (scenario, seed) runs every registered policy (the oracle needs all their schedules) and
the clairvoyant switcher in link mode, every launch router in profile mode (profile_mode.py:
`profile` is ours, `launch.choose_launch_slot`; the others are rivals), and computes the flow
bound. The oracle is link mode's: the best schedule under the same swap rules. Tasks are
independent, so they can run in worker processes; results are sorted before aggregation, so
the output is byte-identical whatever the number of workers.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..policy import DefaultPolicy, Policy
from ..thresholds import Thresholds
from .engine import RunMetrics, Simulator
from .oracle import ClairvoyantPolicy, flow_bound
from .profile_mode import ROUTERS, ProfileSimulator
from .rivals import (
    PacePolicy,
    RoundRobinPolicy,
    SoonestResetPolicy,
    StickyPolicy,
    ThresholdPolicy,
    UpstreamPolicy,
)
from .scenarios import SCENARIOS, Scenario
from .workload import Workload

ORACLE = "oracle"
POLICIES: dict[str, Callable[[], Policy]] = {
    "default": lambda: DefaultPolicy(Thresholds()),
    "sticky": StickyPolicy,
    "round-robin": RoundRobinPolicy,
    "threshold-90": ThresholdPolicy,
    "soonest-reset": SoonestResetPolicy,
    "pace": PacePolicy,
    "gptme-subscription": UpstreamPolicy,
}
PROFILE = "profile"  # ours in profile mode: every session on the slot launch.py picks
PROFILE_ROUTERS: tuple[str, ...] = tuple(ROUTERS)
ALL_POLICIES: tuple[str, ...] = (*POLICIES, ORACLE, *PROFILE_ROUTERS)

# metrics reported per scenario and policy (means over seeds)
REPORTED = (
    "capture",
    "oracle_ratio",
    "bound_ratio",
    "served",
    "stalls",
    "stall_hours",
    "rate_limited",
    "auth_errors",
    "swaps_per_day",
    "mid_turn_swaps",
    "mid_request_swaps",
    "violations",
    "resumes",
    "lost_chains",
    "cache_extra",
    "cache_extra_pct",
    "wait_cache_extra",
)


@dataclass
class SeedResult:
    scenario: str
    seed: int
    metrics: dict[str, RunMetrics]
    oracle_source: str
    bound_capture: float
    bound_served: float


def run_seed(scenario: Scenario, seed: int, workload: Workload | None = None) -> SeedResult:
    """Every policy, the clairvoyant switcher and the bound on one drawn (scenario, seed)."""
    inp = scenario.instantiate(seed, workload)
    metrics: dict[str, RunMetrics] = {}
    for name, factory in POLICIES.items():
        sim = Simulator(inp.workload, inp.fleet, factory(), inp.options)
        metrics[name] = sim.run().metrics
    clairvoyant = Simulator(inp.workload, inp.fleet, ClairvoyantPolicy(), inp.options).run()
    candidates = [*metrics.items(), ("clairvoyant", clairvoyant.metrics)]
    source, best = max(candidates, key=lambda kv: (kv[1].capture, kv[1].served, -kv[1].stalls))
    metrics[ORACLE] = replace(best)
    for name, router in ROUTERS.items():
        sim = ProfileSimulator(inp.workload, inp.fleet, router(), inp.options)
        metrics[name] = sim.run().metrics
    bound = flow_bound(inp.workload, inp.fleet)
    return SeedResult(scenario.name, seed, metrics, source, bound.capture, bound.served)


def _task(args: tuple[Scenario, int, Workload | None]) -> SeedResult:
    return run_seed(*args)


def run_tournament(
    scenarios: Sequence[Scenario],
    seeds: int,
    workers: int = 1,
    workload: Workload | None = None,
    progress: Callable[[SeedResult], None] | None = None,
) -> list[SeedResult]:
    """All (scenario, seed) tasks, in worker processes when `workers` > 1; sorted results."""
    tasks = [(sc, seed, workload) for sc in scenarios for seed in range(seeds)]
    results: list[SeedResult] = []
    if workers > 1 and len(tasks) > 1:
        import multiprocessing
        import threading

        # "fork" only from a single-threaded caller (the benchmark, the CLI): a worker forked
        # while another thread holds a lock (a test run's server threads) can wait on it
        # forever. Else the fork server, which forks from a clean single-threaded process with
        # the simulator loaded (about a fifth slower here), or spawn.
        methods = multiprocessing.get_all_start_methods()
        if "fork" in methods and threading.active_count() == 1:
            method = "fork"
        else:
            method = "forkserver" if "forkserver" in methods else "spawn"
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload([__name__])
        with ctx.Pool(min(workers, len(tasks))) as pool:
            for res in pool.imap_unordered(_task, tasks):
                results.append(res)
                if progress:
                    progress(res)
    else:
        for task in tasks:
            res = _task(task)
            results.append(res)
            if progress:
                progress(res)
    order = {sc.name: i for i, sc in enumerate(scenarios)}
    return sorted(results, key=lambda r: (order[r.scenario], r.seed))


# ---------------------------------------------------------------- aggregation


@dataclass
class ScenarioSummary:
    name: str
    description: str
    seeds: int
    bound_capture: float
    bound_served: float
    oracle_sources: dict[str, int]
    policies: dict[str, dict[str, float]] = field(default_factory=dict)


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return statistics.fmean(vals) if vals else 0.0


def summarize(
    results: Sequence[SeedResult], scenarios: Sequence[Scenario]
) -> list[ScenarioSummary]:
    out = []
    for sc in scenarios:
        rows = [r for r in results if r.scenario == sc.name]
        if not rows:
            continue
        sources: dict[str, int] = {}
        for r in rows:
            sources[r.oracle_source] = sources.get(r.oracle_source, 0) + 1
        oracle_capture = _mean(r.metrics[ORACLE].capture for r in rows)
        summary = ScenarioSummary(
            sc.name,
            sc.description,
            len(rows),
            _mean(r.bound_capture for r in rows),
            _mean(r.bound_served for r in rows),
            dict(sorted(sources.items())),
        )
        for name in ALL_POLICIES:
            ms = [r.metrics[name] for r in rows]
            agg = {
                key: _mean(float(getattr(m, key)) for m in ms)
                for key in REPORTED
                if key not in ("oracle_ratio", "bound_ratio")
            }
            agg["capture_sd"] = statistics.pstdev([m.capture for m in ms]) if len(ms) > 1 else 0.0
            agg["oracle_ratio"] = agg["capture"] / oracle_capture if oracle_capture else 1.0
            bound = summary.bound_capture
            agg["bound_ratio"] = agg["capture"] / bound if bound else 1.0
            summary.policies[name] = agg
        out.append(summary)
    return out


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value


def to_json(summaries: Sequence[ScenarioSummary], seeds: int, policies: Sequence[str]) -> str:
    """Stable JSON (sorted keys, rounded floats): the same inputs give the same bytes."""
    doc = {
        "seeds": seeds,
        "policies": list(policies),
        "scenarios": {
            s.name: {
                "description": s.description,
                "seeds": s.seeds,
                "bound": {"capture": s.bound_capture, "served": s.bound_served},
                "oracle_sources": s.oracle_sources,
                "policies": {p: s.policies[p] for p in policies if p in s.policies},
            }
            for s in summaries
        },
    }
    return json.dumps(_round(doc), indent=2, sort_keys=True)


def render_table(summaries: Sequence[ScenarioSummary], policies: Sequence[str]) -> str:
    """One block per scenario: the tournament table people read."""
    lines = []
    header = (
        f"{'policy':<20} {'capture':>8} {'vs oracle':>9} {'served':>7} {'stalls':>7} "
        f"{'429s':>6} {'swaps/d':>7} {'viol':>5} {'cache+':>7}"
    )
    for s in summaries:
        lines.append(
            f"{s.name}: {s.description} ({s.seeds} seeds; bound: capture "
            f"{s.bound_capture:.1%}, served {s.bound_served:.1%})"
        )
        lines.append(header)
        for p in policies:
            m = s.policies.get(p)
            if m is None:
                continue
            lines.append(
                f"{p:<20} {m['capture']:>8.1%} {m['oracle_ratio']:>9.1%} {m['served']:>7.1%} "
                f"{m['stalls']:>7.1f} {m['rate_limited']:>6.0f} {m['swaps_per_day']:>7.1f} "
                f"{m['violations']:>5.0f} {m['cache_extra_pct']:>7.2%}"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def check_criteria(summaries: Sequence[ScenarioSummary], policy: str = "default") -> list[str]:
    """The issue's done-criteria for `policy`; one line per miss (empty: all met)."""
    misses = []
    rivals = [p for p in POLICIES if p != policy]
    for s in summaries:
        me = s.policies[policy]
        for r in rivals:
            other = s.policies[r]
            if me["capture"] + 1e-9 < other["capture"]:
                misses.append(f"{s.name}: capture {me['capture']:.2%} < {r} {other['capture']:.2%}")
            if me["stalls"] > other["stalls"] + 1e-9:
                misses.append(f"{s.name}: stalls {me['stalls']:.1f} > {r} {other['stalls']:.1f}")
        if me["oracle_ratio"] < 0.97:
            misses.append(f"{s.name}: capture {me['oracle_ratio']:.1%} of the oracle's (< 97%)")
        if me["violations"] > 0:
            misses.append(f"{s.name}: {me['violations']:.1f} swap violations per run")
    return misses


FLEET_STALL_RATIO = 0.5  # profile mode's stalls in a fleet scenario, at most this x link's
BOUND_RATIO = 0.95  # profile mode's capture, at least this share of the flow bound


def profile_goals(summary: ScenarioSummary, fleet: bool) -> list[tuple[str, bool]]:
    """Issue 15's goals for profile mode (ours) in one scenario, as (line, met): in a fleet
    scenario stalls at most half of link mode's; capture at least 0.95 of the flow bound and
    at least every profile rival's; no mid-turn account change; no lost chain."""
    me, link = summary.policies[PROFILE], summary.policies["default"]
    goals = []
    if fleet:
        limit = FLEET_STALL_RATIO * link["stalls"]
        goals.append(
            (
                f"stalls {me['stalls']:.1f} <= {FLEET_STALL_RATIO} x link's {link['stalls']:.1f}"
                f" ({me['stalls'] / link['stalls'] if link['stalls'] else 0.0:.2f} x)",
                me["stalls"] <= limit + 1e-9,
            )
        )
    goals.append(
        (
            f"capture {me['bound_ratio']:.1%} of the flow bound >= {BOUND_RATIO:.0%}",
            me["bound_ratio"] + 1e-9 >= BOUND_RATIO,
        )
    )
    for rival in PROFILE_ROUTERS:
        if rival == PROFILE:
            continue
        other = summary.policies[rival]
        goals.append(
            (
                f"capture {me['capture']:.2%} >= {rival} {other['capture']:.2%}",
                me["capture"] + 1e-9 >= other["capture"],
            )
        )
    goals.append(
        (f"{me['mid_turn_swaps']:.0f} mid-turn account changes", me["mid_turn_swaps"] == 0)
    )
    goals.append((f"{me['lost_chains']:.0f} lost chains", me["lost_chains"] == 0))
    return goals


def check_profile_goals(
    summaries: Sequence[ScenarioSummary], scenarios: Sequence[Scenario]
) -> list[str]:
    """Every goal profile mode misses, one line each (empty: all met)."""
    fleet = {sc.name: sc.is_fleet for sc in scenarios}
    return [
        f"{s.name}: {line}"
        for s in summaries
        for line, met in profile_goals(s, fleet.get(s.name, False))
        if not met
    ]


def scenarios_named(names: Iterable[str]) -> list[Scenario]:
    """Scenarios by name ("all" for every one), in order, each once; KeyError if unknown."""
    picked: dict[str, Scenario] = {}
    for name in names:
        if name == "all":
            picked.update((s.name, s) for s in SCENARIOS.values() if s.name not in picked)
        elif name in SCENARIOS:
            picked.setdefault(name, SCENARIOS[name])
        else:
            raise KeyError(name)
    return list(picked.values())
