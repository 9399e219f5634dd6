"""The policy tournament: every scenario x seeds x every policy, the table, and the criteria.

Usage: python benchmarks/tournament.py [--seeds 8] [--workers 2] [--json FILE] [--check]

Runs `gptme_subscription_plugin.sim` (offline, seeded: the same seeds print the same table)
over all scenarios, prints the table `gptme-subscription simulate` prints, then how the shipped
policy (`default`) fares against the issue's done-criteria (capture >= every rival's in every
scenario, >= 97% of the oracle's, stalls <= every rival's, zero swap violations), then profile
mode (`profile`: sessions bound to the slot launch.py picks) against issue 15's goals in every
scenario (fleet scenarios: stalls <= 0.5 x link mode's; capture >= 0.95 of the flow bound and
>= every launch rival's; zero mid-turn account changes; zero lost chains), each goal met or
missed, and the wall time, also as a multiple of a fixed pure-Python loop timed in the same
run (the same machine runs twice as slow on some days; the ratio stays put). `--check` exits 1
when a criterion of the shipped policy is missed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from gptme_subscription_plugin.sim.scenarios import SCENARIOS
from gptme_subscription_plugin.sim.tournament import (
    ALL_POLICIES,
    PROFILE,
    check_criteria,
    profile_goals,
    render_table,
    run_tournament,
    summarize,
    to_json,
)


def reference_loop() -> float:
    """Seconds a fixed pure-Python loop takes here and now: the unit of the time ratio."""
    started = time.perf_counter()
    total = 0
    for i in range(5_000_000):
        total += i % 7
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--json", type=Path, help="also write the JSON summary here")
    parser.add_argument("--check", action="store_true", help="exit 1 if a criterion is missed")
    args = parser.parse_args(argv)

    scenarios = list(SCENARIOS.values())
    before = reference_loop()
    started = time.perf_counter()
    done = 0

    def progress(_result: object) -> None:
        nonlocal done
        done += 1
        print(f"\r{done}/{len(scenarios) * args.seeds} scenario-seeds", end="", file=sys.stderr)

    results = run_tournament(scenarios, args.seeds, workers=args.workers, progress=progress)
    elapsed = time.perf_counter() - started
    unit = (before + reference_loop()) / 2  # before and after: the machine's speed drifts
    print(file=sys.stderr)
    summaries = summarize(results, scenarios)
    print(render_table(summaries, ALL_POLICIES))
    if args.json is not None:
        args.json.write_text(to_json(summaries, args.seeds, ALL_POLICIES) + "\n")
    misses = check_criteria(summaries)
    if misses:
        print("default misses:")
        for line in misses:
            print(f"  {line}")
    else:
        print("default meets every criterion in every scenario")
    print(f"\n{PROFILE} (profile mode, launch.py) against issue 15's goals:")
    for summary, scenario in zip(summaries, scenarios, strict=True):
        for line, met in profile_goals(summary, scenario.is_fleet):
            print(f"  {summary.name}: {'met ' if met else 'MISS'} {line}")
    runs = len(results) * len(ALL_POLICIES)  # each policy once, plus the clairvoyant run
    print(
        f"{len(scenarios)} scenarios x {args.seeds} seeds x {len(ALL_POLICIES)} policies "
        f"({runs} simulated runs) in {elapsed:.1f} s with {args.workers} worker(s), "
        f"{elapsed / unit:.0f} x a reference loop ({unit:.2f} s here)"
    )
    return 1 if args.check and misses else 0


if __name__ == "__main__":
    sys.exit(main())
