"""Time each Claude Code hook as a whole process against a bare `python -c pass`.

Usage: python benchmarks/hooks.py [--runs N]

Every hook runs the way Claude Code runs it (the installed console script, stdin JSON, a
sandboxed HOME with three slots) and usage is already cached (no network), so the numbers
are the hooks' own cost. Prints medians and ratios measured in this one run; targets:
PreToolUse within 3x the bare interpreter, SessionStart and Stop within 15x.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gptme_subscription_plugin import fsutil
from gptme_subscription_plugin.usage.cache import UsageCache
from gptme_subscription_plugin.usage.snapshot import (
    FIVE_HOUR_S,
    SEVEN_DAY_S,
    UsageSnapshot,
    UsageWindow,
)

TARGETS = {"pre-tool-use": 3.0, "session-start": 15.0, "stop": 15.0}


def sandbox(root: Path) -> dict[str, str]:
    home = root / "home"
    claude = fsutil.ensure_private_dir(home / ".claude")
    state = root / "state"
    now = time.time()
    cache = UsageCache(state, poll_interval=3600)
    for i, name in enumerate(("alice", "bob", "carol")):
        cred = {
            "claudeAiOauth": {
                "accessToken": f"bench-access-{name}",
                "refreshToken": f"bench-refresh-{name}",
                "expiresAt": int((now + 86400) * 1000),
            }
        }
        fsutil.atomic_write_text(claude / f".credentials.json.{name}", json.dumps(cred))
        snap = UsageSnapshot(
            name,
            "oauth",
            now,
            five_hour=UsageWindow(0.1 * i, now + 3600, FIVE_HOUR_S),
            seven_day=UsageWindow(0.2 + 0.1 * i, now + (2 + i) * 86400, SEVEN_DAY_S),
        )
        cache.poll(name, lambda s=snap: s, now)  # counts as a fresh poll: hooks will not poll
    fsutil.atomic_symlink(".credentials.json.alice", claude / ".credentials.json")
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(root / "cfg"),
        "GPTME_SUBSCRIPTION_STATE_DIR": str(state),
        "GPTME_SUBSCRIPTION_API_BASE": "http://127.0.0.1:9",
        "GPTME_SUBSCRIPTION_POLL_INTERVAL": "3600",
    }


def timed(cmd: list[str], env: dict[str, str], stdin: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    script = shutil.which("gptme-subscription", path=str(Path(sys.executable).parent))
    if script is None:
        print("gptme-subscription is not installed next to this python", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="gsp-bench-"))
    try:
        env = sandbox(root)
        bare = timed([sys.executable, "-c", "pass"], env, "", args.runs)
        print(f"bare python -c pass: {bare * 1000:.1f} ms (median of {args.runs})")
        print(f"{'hook':<20} {'median ms':>10} {'x bare':>8} {'target':>8}")
        worst_ok = True
        for event in ("pre-tool-use", "session-start", "user-prompt-submit", "stop", "session-end"):
            stdin = json.dumps({"session_id": "bench", "hook_event_name": event, "cwd": str(root)})
            median = timed([script, "hook", event], env, stdin, args.runs)
            ratio = median / bare
            target = TARGETS.get(event)
            mark = "" if target is None else ("ok" if ratio <= target else "MISSED")
            worst_ok = worst_ok and mark != "MISSED"
            shown = f"{target:.0f}x" if target else "-"
            print(f"{event:<20} {median * 1000:>10.1f} {ratio:>8.1f} {shown:>8} {mark}")
        return 0 if worst_ok else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
