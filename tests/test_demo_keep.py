"""`demo --keep` leaves a sandbox the dashboard shows live: its day ends just before the demo
does, and a usage script answers each synthetic account's quota after the fake endpoint is gone.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time

from tests.support.sandbox import run_ours


def test_the_kept_sandbox_answers_usage_after_the_demo(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    started = time.time()
    proc = run_ours(["demo", "--keep", "--json"], env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    root = doc["sandbox"]
    try:
        words = shlex.split(doc["summary"]["dashboard"])
        assert words[0] == "gptme-subscription" and words[-1] == "dashboard"
        flags = words[1:-1]
        status = run_ours([*flags, "status", "--refresh", "--json"], env, timeout=60)
        assert status.returncode == 0, status.stderr
        slots = {s["name"]: s for s in json.loads(status.stdout)["slots"]}
        alice = slots["alice"]["usage"]
        # fresh from the script, not the demo's cache: observed after the demo started
        assert alice["source"] == "script" and alice["observed_at"] >= started
        assert alice["seven_day"]["utilization"] == 0.99
        # the day ended minutes ago: alice's weekly window resets in about 11 hours
        assert 10 * 3600 < alice["seven_day"]["resets_at"] - time.time() < 12 * 3600
        assert "sk-ant" not in status.stdout + status.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)
