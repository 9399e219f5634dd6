"""Render saved benchmark results into the marked tables of the docs, so prose cannot drift.

Usage: python benchmarks/docs_tables.py --tournament FILE.json [--doc docs/simulator.md] [--check]

The tournament's results (the JSON of `benchmarks/tournament.py --json FILE`, or of
`gptme-subscription simulate --json`) become the table between `<!-- tournament:begin -->` and
`<!-- tournament:end -->` in docs/simulator.md (link mode: the shipped policy against its
rivals), and, when the results hold profile-mode runs, the table between
`<!-- profiles:begin -->` and `<!-- profiles:end -->` (link mode against profile mode and the
launch rivals, with issue 15's goals). Nothing is simulated here: the table is a
rendering of the saved file, so the same file always gives the same bytes. `make docs-tables`
runs this (and the tournament first, when no results are saved or RERUN=1). `--check` changes
nothing and exits 1 when the doc's table differs from the file's.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DOC = REPO / "docs" / "simulator.md"
BEGIN = "<!-- tournament:begin -->"
END = "<!-- tournament:end -->"
SHIPPED = "default"
ORACLE = "oracle"
PROFILE = "profile"
PROFILE_BEGIN = "<!-- profiles:begin -->"
PROFILE_END = "<!-- profiles:end -->"
FLEET_SCENARIOS = ("bursty-fleet", "fleet-mixed")  # sim/scenarios.py: Scenario.is_fleet
HEADER = (
    "| scenario | default capture | of oracle | best rival capture | default stalls "
    "| fewest rival stalls | swaps/day | violations |"
)


class TableError(ValueError):
    """The results file or the doc is not what this script can render (one line)."""


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %"


def _best(
    policies: Mapping[str, Mapping[str, float]], rivals: Sequence[str], key: str, most: bool
) -> tuple[str, float]:
    """The rival with the most (or fewest) `key`; a tie goes to the first in the file's order."""
    best_name, best_value = rivals[0], policies[rivals[0]][key]
    for name in rivals[1:]:
        value = policies[name][key]
        if (value > best_value) if most else (value < best_value):
            best_name, best_value = name, value
    return best_name, best_value


def render_tournament(doc: Mapping[str, Any]) -> str:
    """The markdown table of one tournament results document (the shipped policy per scenario
    against the best rival on each criterion), scenarios in name order."""
    try:
        order = list(doc["policies"])
        scenarios = doc["scenarios"]
        rivals = [p for p in order if p not in (SHIPPED, ORACLE) and not _profile(p)]
        if not rivals:
            raise TableError("the results hold no rival policy to compare with")
        lines = [HEADER, "|---|---|---|---|---|---|---|---|"]
        for name in sorted(scenarios):
            policies = scenarios[name]["policies"]
            me = policies[SHIPPED]
            cap_name, cap = _best(policies, rivals, "capture", most=True)
            stall_name, stalls = _best(policies, rivals, "stalls", most=False)
            cells = [
                name,
                _pct(me["capture"]),
                _pct(me["oracle_ratio"]),
                f"{_pct(cap)} ({cap_name})",
                f"{me['stalls']:.0f}",
                f"{stalls:.0f} ({stall_name})",
                f"{me['swaps_per_day']:.1f}",
                f"{me['violations']:.0f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    except (KeyError, TypeError) as exc:
        raise TableError(f"not a tournament results document (missing {exc})") from None
    return "\n".join(lines) + "\n"


def _profile(policy: str) -> bool:
    return policy == PROFILE or policy.startswith(PROFILE + ":")


def _cell(m: Mapping[str, float]) -> str:
    return f"{m['stalls']:.0f} / {_pct(m['bound_ratio'])}"


def render_profiles(doc: Mapping[str, Any]) -> str:
    """Link mode (the shipped policy) against profile mode (ours and each launch rival) per
    scenario: stalls / capture as a share of the flow bound, ours' resumes, mid-turn account
    changes and lost chains, and the goals it misses."""
    try:
        order = list(doc["policies"])
        routers = [p for p in order if _profile(p)]
        if PROFILE not in routers:
            raise TableError("the results hold no profile-mode run")
        rivals = [p for p in routers if p != PROFILE]
        names = ["link (default)", "profile (ours)", *(p.split(":", 1)[1] for p in rivals)]
        lines = [
            "| scenario | "
            + " | ".join(names)
            + " | resumes | mid-turn, lost chains | goals missed |",
            "|---|" + "---|" * (len(names) + 3),
        ]
        for name in sorted(doc["scenarios"]):
            policies = doc["scenarios"][name]["policies"]
            me, link = policies[PROFILE], policies[SHIPPED]
            missed = []
            if name in FLEET_SCENARIOS and me["stalls"] > 0.5 * link["stalls"] + 1e-9:
                ratio = me["stalls"] / link["stalls"] if link["stalls"] else 0.0
                missed.append(f"stalls {ratio:.2f} x link's")
            if me["bound_ratio"] + 1e-9 < 0.95:
                missed.append(f"capture {_pct(me['bound_ratio'])} of bound")
            for rival in rivals:
                if me["capture"] + 1e-9 < policies[rival]["capture"]:
                    gap = (policies[rival]["capture"] - me["capture"]) * 100
                    missed.append(f"capture {gap:.1f} points under {rival.split(':', 1)[1]}")
            if me["mid_turn_swaps"] or me["lost_chains"]:
                missed.append("mid-turn changes or lost chains")
            cells = [
                name,
                _cell(link),
                _cell(me),
                *(_cell(policies[r]) for r in rivals),
                f"{me['resumes']:.0f}",
                f"{me['mid_turn_swaps']:.0f}, {me['lost_chains']:.0f}",
                "; ".join(missed) or "none",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    except (KeyError, TypeError) as exc:
        raise TableError(f"not a tournament results document (missing {exc})") from None
    return "\n".join(lines) + "\n"


def replace_block(text: str, block: str, begin: str = BEGIN, end: str = END) -> str:
    """`text` with what lies between the marker lines replaced by `block`."""
    if text.count(begin) != 1 or text.count(end) != 1:
        raise TableError(f"expected exactly one {begin} and one {end}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tournament", type=Path, required=True, help="saved results (JSON)")
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC)
    parser.add_argument("--check", action="store_true", help="exit 1 if the doc is out of date")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.tournament.read_text())
        old = args.doc.read_text()
        new = replace_block(old, render_tournament(results))
        if PROFILE in results.get("policies", ()):
            profiles = render_profiles(results)
            new = replace_block(new, profiles, PROFILE_BEGIN, PROFILE_END)
    except (OSError, ValueError) as exc:
        print(f"docs_tables: {exc}", file=sys.stderr)
        return 2
    if new == old:
        print(f"{args.doc}: tournament tables up to date")
        return 0
    if args.check:
        print(f"{args.doc}: tournament tables differ from {args.tournament}", file=sys.stderr)
        return 1
    args.doc.write_text(new)
    print(f"{args.doc}: tournament tables rewritten from {args.tournament}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
