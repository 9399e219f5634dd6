"""`gptme-subscription simulate`: the tournament from the command line."""

from __future__ import annotations

import argparse
import os
import sys

EXIT_OK, EXIT_USAGE = 0, 2


def _split(values: list[str] | None, default: list[str]) -> list[str]:
    out = [v.strip() for value in values or [] for v in value.split(",") if v.strip()]
    return out or default


def _fail(message: str) -> int:
    print(f"gptme-subscription simulate: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_simulate(args: argparse.Namespace) -> int:
    from .fleet import AccountSpec
    from .model import TIERS
    from .scenarios import Scenario, replay_scenario
    from .tournament import (
        ALL_POLICIES,
        POLICIES,
        render_table,
        run_tournament,
        scenarios_named,
        summarize,
        to_json,
    )

    if args.seeds < 1:
        return _fail("--seeds must be at least 1")
    policies = _split(args.policy, list(ALL_POLICIES))
    unknown = [p for p in policies if p not in ALL_POLICIES]
    if unknown:
        return _fail(f"unknown policy {unknown[0]!r} (known: {', '.join(ALL_POLICIES)})")
    workload = None
    if args.from_transcripts is not None:
        from .transcripts import TranscriptError, load_transcripts

        tiers = _split(args.fleet, ["max5", "max5"])
        if any(t not in TIERS for t in tiers):
            return _fail(f"--fleet takes tiers from {', '.join(TIERS)}")
        try:
            workload = load_transcripts(args.from_transcripts)
        except (OSError, TranscriptError) as exc:
            return _fail(str(exc))
        accounts = tuple(AccountSpec("abcdefgh"[i], t) for i, t in enumerate(tiers[:8]))
        scenarios: list[Scenario] = [replay_scenario(workload, accounts)]
    else:
        try:
            scenarios = scenarios_named(_split(args.scenario, ["all"]))
        except KeyError as exc:
            from .scenarios import SCENARIOS

            return _fail(f"unknown scenario {exc.args[0]!r} (known: {', '.join(SCENARIOS)}, all)")
    plot_policy = next((p for p in policies if p in POLICIES), "default")  # link mode only
    if args.plot is not None:
        from .plot import PlotUnavailable, require_matplotlib

        try:
            require_matplotlib()
        except PlotUnavailable as exc:
            return _fail(str(exc))
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    results = run_tournament(scenarios, args.seeds, workers=workers, workload=workload)
    summaries = summarize(results, scenarios)
    if args.json:
        print(to_json(summaries, args.seeds, policies))
    else:
        print(render_table(summaries, policies), end="")
    if args.plot is not None:
        from .engine import Simulator
        from .plot import plot_run

        scenario = scenarios[0]
        inp = scenario.instantiate(0, workload)
        sim = Simulator(inp.workload, inp.fleet, POLICIES[plot_policy](), inp.options, sample=True)
        result = sim.run()
        title = f"{scenario.name}, seed 0, policy {plot_policy}"
        path = plot_run(result, inp.workload.start, [a.name for a in inp.fleet], title, args.plot)
        print(f"plot: {path} ({title})", file=sys.stderr)
    return EXIT_OK
