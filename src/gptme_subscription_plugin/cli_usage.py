"""`usage`: requests, tokens and list-price cost per account, session, model or day, from
Claude Code's transcripts through the usage ledger (accounting/ledger.py)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING

from .accounting.ledger import LedgerError, UsageLedger, UsageReport, parse_since
from .accounting.prices import PRICES_AS_OF
from .cli_parser import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE

if TYPE_CHECKING:
    from .manager import SubscriptionManager


def cmd_usage(m: SubscriptionManager, args: argparse.Namespace) -> int:
    now = m.clock()
    try:
        since = parse_since(args.since, now)
        until = parse_since(args.until, now) if args.until else None
    except ValueError as exc:
        print(f"usage: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        ledger = UsageLedger.open(m.config)
    except LedgerError as exc:
        print(f"usage: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    try:
        stats = ledger.update()
        report = ledger.report(since=since, until=until, by=args.by)
    finally:
        ledger.close()
    if args.json:
        print(json.dumps({**report.to_dict(), "read": stats.to_dict()}, indent=2))
        return EXIT_OK
    print(render(report))
    if stats.bad_lines or stats.long_lines:
        print(
            f"note: skipped {stats.bad_lines} unreadable and {stats.long_lines} over-long "
            "transcript line(s)"
        )
    return EXIT_OK


def render(report: UsageReport) -> str:
    head = report.by
    rows = [
        (
            r.key,
            str(r.requests),
            _tokens(r.input_tokens),
            _tokens(r.output_tokens),
            _tokens(r.cache_write_tokens),
            _tokens(r.cache_read_tokens),
            _cost(r.cost_usd, r.unpriced_requests),
        )
        for r in [*report.rows, report.total]
    ]
    header = (head, "requests", "input", "output", "cache write", "cache read", "cost (list)")
    widths = [max(len(c) for c in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for i, row in enumerate([header, *rows]):
        if i == len(rows):  # before the total
            lines.append("  ".join("-" * w for w in widths))
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    since = datetime.fromtimestamp(report.since).strftime("%Y-%m-%d %H:%M")
    lines.append(
        f"since {since}; list prices as of {PRICES_AS_OF} (a subscription pays a flat fee)"
    )
    if report.unknown_models:
        lines.append(
            f"unpriced: {report.total.unpriced_requests} request(s) of model(s) with no price: "
            f"{', '.join(report.unknown_models)} (add them under [prices] in config.toml)"
        )
    return "\n".join(lines)


def _tokens(n: int) -> str:
    return f"{n:,}"


def _cost(usd: float, unpriced: int) -> str:
    return f"${usd:,.2f}" + ("+?" if unpriced else "")
