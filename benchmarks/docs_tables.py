"""Render saved benchmark results into the marked tables of the docs, so prose cannot drift.

Usage: python benchmarks/docs_tables.py --tournament FILE.json [--doc docs/simulator.md] [--check]

The tournament's results (the JSON of `benchmarks/tournament.py --json FILE`, or of
`gptme-subscription simulate --json`) become the table between `<!-- tournament:begin -->` and
`<!-- tournament:end -->` in docs/simulator.md. Nothing is simulated here: the table is a
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
        rivals = [p for p in order if p not in (SHIPPED, ORACLE)]
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
    except (OSError, ValueError) as exc:
        print(f"docs_tables: {exc}", file=sys.stderr)
        return 2
    if new == old:
        print(f"{args.doc}: tournament table up to date")
        return 0
    if args.check:
        print(f"{args.doc}: tournament table differs from {args.tournament}", file=sys.stderr)
        return 1
    args.doc.write_text(new)
    print(f"{args.doc}: tournament table rewritten from {args.tournament}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
