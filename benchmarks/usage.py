"""`usage` over many transcripts, cold and incremental, against `ccusage` on the same files.

    .venv/bin/python benchmarks/usage.py [--files 1000] [--messages 2000] [--ccusage PATH]

Writes `--files` synthetic transcripts of `--messages` API calls each (two lines per call, as
Claude Code writes one line per content block) into a temporary Claude config dir, then times,
in one run and on the same files:
- `gptme-subscription usage --json` with an empty ledger (cold: every line read),
- the same after appending one turn to ten transcripts (incremental: only new bytes read),
- `ccusage claude daily --json --offline` (it has no ledger: every run reads everything), when
  `--ccusage` names its binary or `npm` can install it into a temporary dir (loopback-free
  runs skip it with a note).
Each is run `--repeat` times; the medians and their ratios are printed. The totals of both
tools are printed too, so a reader can see they counted the same requests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

CCUSAGE_VERSION = "20.0.24"  # the newest with a native linux-x64 build on npm (2026-12-04)
MODELS = ("claude-sonnet-4-5-20250929", "claude-opus-4-5-20251101", "claude-haiku-4-5-20251001")


def write_transcripts(root: Path, files: int, messages: int, seed: int = 1) -> int:
    """Synthetic transcripts over the past 30 days; returns the bytes written."""
    rng = random.Random(seed)
    now = time.time()
    total = 0
    for f in range(files):
        project = root / "projects" / f"-work-project-{f % 20}"
        project.mkdir(parents=True, exist_ok=True)
        session = f"{f:08d}-0000-4000-8000-{rng.getrandbits(48):012x}"
        at = now - rng.uniform(0, 30 * 86400)
        lines = []
        for m in range(messages):
            at += rng.uniform(2, 20)
            stamp = datetime.fromtimestamp(min(at, now), timezone.utc).isoformat(
                timespec="milliseconds"
            )
            usage = {
                "input_tokens": rng.randint(1, 50),
                "cache_creation_input_tokens": rng.randint(0, 8000),
                "cache_read_input_tokens": rng.randint(1000, 90_000),
                "output_tokens": rng.randint(20, 2000),
            }
            message = {
                "id": f"msg_{f:05d}_{m:06d}",
                "type": "message",
                "role": "assistant",
                "model": MODELS[rng.randrange(3)],
                "usage": usage,
            }
            for block in ("text", "tool_use"):
                doc = {
                    "type": "assistant",
                    "sessionId": session,
                    "cwd": f"/work/project-{f % 20}",
                    "version": "2.1.330",
                    "requestId": f"req_{f:05d}_{m:06d}",
                    "timestamp": stamp.replace("+00:00", "Z"),
                    "message": {**message, "content": [{"type": block, "text": "x" * 40}]},
                }
                lines.append(json.dumps(doc, separators=(",", ":")))
        data = ("\n".join(lines) + "\n").encode()
        (project / f"{session}.jsonl").write_bytes(data)
        total += len(data)
    return total


def append_turns(root: Path, count: int) -> None:
    for path in sorted((root / "projects").rglob("*.jsonl"))[:count]:
        doc = json.loads(path.read_text().splitlines()[-1])
        doc["message"]["id"] += "_more"
        doc["timestamp"] = (
            datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
        with path.open("a") as fh:
            fh.write(json.dumps(doc, separators=(",", ":")) + "\n")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()[:300]}")
    return elapsed, proc.stdout


def find_ccusage(given: str | None, scratch: Path) -> str | None:
    if given:
        return given
    if shutil.which("ccusage"):
        return shutil.which("ccusage")
    npm = shutil.which("npm")
    if npm is None:
        return None
    target = scratch / "ccusage"
    proc = subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(target),
            "--no-audit",
            "--no-fund",
            f"ccusage@{CCUSAGE_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    binary = target / "node_modules" / ".bin" / "ccusage"
    return str(binary) if proc.returncode == 0 and binary.exists() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ccusage", help="the ccusage binary (default: install it with npm)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="gsp-usage-bench-"))
    os.chmod(scratch, 0o700)
    try:
        claude = scratch / "claude"
        claude.mkdir(mode=0o700)
        size = write_transcripts(claude, args.files, args.messages)
        print(f"{args.files} transcripts x {args.messages} calls: {size / 1e6:.0f} MB")
        base = {"PATH": os.environ.get("PATH", ""), "HOME": str(scratch)}
        ours = [sys.executable, "-m", "gptme_subscription_plugin", "--claude-dir", str(claude)]

        cold, warm = [], []
        for n in range(args.repeat):
            state = scratch / f"state-{n}"
            env = {**base, "GPTME_SUBSCRIPTION_STATE_DIR": str(state)}
            seconds, out = timed([*ours, "usage", "--json", "--since", "60d"], env)
            cold.append(seconds)
            append_turns(claude, 10)
            seconds, out = timed([*ours, "usage", "--json", "--since", "60d"], env)
            warm.append(seconds)
        ours_total = json.loads(out)["total"]["requests"]
        print(
            f"ours     cold        median {statistics.median(cold):8.2f} s  ({ours_total} requests)"
        )
        print(f"ours     incremental median {statistics.median(warm):8.2f} s")

        binary = find_ccusage(args.ccusage, scratch)
        if binary is None:
            print("ccusage: not found and npm could not install it; no comparison")
            return 0
        env = {**base, "CLAUDE_CONFIG_DIR": str(claude)}
        theirs = []
        for _ in range(args.repeat):
            seconds, out = timed([binary, "claude", "daily", "--json", "--offline"], env)
            theirs.append(seconds)
        doc = json.loads(out)
        days = len(doc.get("daily", [])) if isinstance(doc, dict) else 0
        cc, ours_cold, ours_warm = (statistics.median(x) for x in (theirs, cold, warm))
        print(f"ccusage  every run   median {cc:8.2f} s  (ccusage {CCUSAGE_VERSION}, {days} days)")
        print(f"ratio ccusage / ours cold:        {cc / ours_cold:6.2f}")
        print(f"ratio ccusage / ours incremental: {cc / ours_warm:6.2f}")
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
