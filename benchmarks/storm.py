"""Hook time under a storm: 16 sessions x 4 concurrent hook processes, p50/p99 per hook.

Usage: python benchmarks/storm.py [--sessions 16] [--concurrency 4] [--turns 3]

Runs the same storm as tests/test_storm.py (real hook processes, one claude dir, one state
dir, Claude Code's refresh interleaved, usage on a loopback fake endpoint) and prints hook
times measured in this run. Numbers, not assertions: they depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.fake_api import FakeAnthropicServer  # noqa: E402
from tests.support.storm import Storm  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gsp-storm-"))
    try:
        with FakeAnthropicServer() as server:
            storm = Storm(root, server, args.sessions, args.concurrency, args.turns, seconds=300)
            result = storm.run()
            events = [
                json.loads(line) for line in (storm.state / "events.jsonl").read_text().splitlines()
            ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    switches = sum(1 for e in events if e.get("kind") == "switch")
    pending = sum(1 for e in events if e.get("kind") == "pending")
    heals = sum(1 for e in events if e.get("kind") == "heal")
    print(
        f"{args.sessions} sessions x {args.concurrency} concurrent hooks, {args.turns} turns: "
        f"{result.hooks_run} hook processes in {result.elapsed:.1f} s; "
        f"{result.refreshes} token refreshes, {heals} heals, {switches} switches, "
        f"{pending} pending; failures: {len(result.failures)}"
    )
    print(f"{'hook':<20} {'runs':>5} {'p50 ms':>8} {'p99 ms':>8}")
    for event in (
        "session-start",
        "user-prompt-submit",
        "pre-tool-use",
        "stop",
        "session-end",
        None,
    ):
        runs = sum(len(v) for e, v in result.durations.items() if event in (None, e))
        print(
            f"{event or 'all':<20} {runs:>5} {result.median(event) * 1000:>8.0f} "
            f"{result.percentile(event, 0.99) * 1000:>8.0f}"
        )
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
