"""What `demo --keep` leaves behind so `dashboard` shows the demo's fleet as a live picture.

The demo's fake usage endpoint stops with the demo, so the kept sandbox gets a usage script
(the upstream contract, `usage/script.py`) that answers each synthetic account's quota as the
day left it, with reset times that keep counting down. The sandbox's Claude config dir gets
the transcripts its sessions would have written (`demo_transcripts.py`), so requests, tokens
and cost have something to show. The caller prints the command that points the dashboard at it.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from . import fsutil
from .config import Config

KEPT_DAY_ENDS_AGO = 10 * 60.0  # the scripted day's last step, this long before `demo` ends
FIVE_HOURS = 5 * 3600.0

# Runs as `<script> --json [--no-cache]` with CLAUDE_USAGE_CREDS_FILE naming the slot's
# credential; the account's name is in its synthetic token. Prints 0-1 fractions and
# seconds-from-now, the contract's scale.
_SCRIPT = """\
import json, os, sys, time
with open(os.environ["CLAUDE_USAGE_CREDS_FILE"]) as fh:
    token = json.load(fh)["claudeAiOauth"]["accessToken"]
name = token.split("-demo-", 1)[1].rsplit("-access-", 1)[0]
with open(TABLE) as fh:
    windows = json.load(fh).get(name)
if windows is None:
    print("not a demo account", file=sys.stderr)
    sys.exit(1)
now = time.time()
print(json.dumps({
    key: {"utilization": used if resets_at > now else 0.0,
          "resets_in_seconds": resets_at - now if resets_at > now else None}
    for key, (used, resets_at) in windows.items()
}))
"""


class DemoAccount(Protocol):
    name: str
    five_hour: float
    five_hour_reset: float | None
    seven_day: float
    weekly_reset: float
    sonnet: float


def leave_for_dashboard(root: Path, config: Config, accounts: Iterable[DemoAccount]) -> str:
    """Write the usage script and its table into `root`; the dashboard command line."""
    table_path = root / "usage-table.json"
    fsutil.atomic_write_text(table_path, json.dumps(usage_table(accounts, time.time()), indent=1))
    script = root / "usage-script"
    body = f"#!{sys.executable}\nTABLE = {json.dumps(str(table_path))}\n{_SCRIPT}"
    fsutil.atomic_write_text(script, body, mode=0o700)
    words = [
        "gptme-subscription",
        "--claude-dir",
        str(config.claude_dir),
        "--state-dir",
        str(config.state_dir),
        "--usage-script",
        str(script),
        "dashboard",
    ]
    return shlex.join(words)


def usage_table(accounts: Iterable[DemoAccount], now: float) -> dict[str, Any]:
    """Each account's windows as the day left them: [fraction used, reset time]; a five-hour
    window that reset and has not started again is empty with a full window ahead."""
    return {
        a.name: {
            "five_hour": [a.five_hour, a.five_hour_reset or now + FIVE_HOURS],
            "seven_day": [a.seven_day, a.weekly_reset],
            "seven_day_sonnet": [a.sonnet, a.weekly_reset],
        }
        for a in accounts
    }
