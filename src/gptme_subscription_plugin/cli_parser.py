"""The `gptme-subscription` command line's grammar: its flags and commands, its exit codes, and
how the configuration flags become a `Config`. Only argparse here; `cli.py` runs the commands.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config

EXIT_CODES = """\
exit codes:
  0   success (capacity: green)
  1   refused or a problem found (switch refused, unhealthy credential, drift, failed probe,
      a state dir, claude dir or state file that another user owns or can write)
  2   bad usage or configuration (one line on stderr names the key)
  3   Claude Code's credential lock or our state lock stayed busy
  10  capacity: yellow (pool is thin)
  20  capacity: red (no slot can serve)
  identity: 0 clean, 1 a slot changed account, is unreadable or shares one, 2 no baseline
"""

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 3


def _count(text: str) -> int:
    """A count of 0 or more (argparse says "invalid _count value" on anything else)."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gptme-subscription",
        description="Quota-aware rotation of Claude subscription credentials (slots).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = parser.add_argument_group("configuration (overrides env and config.toml)")
    g.add_argument(
        "--claude-dir",
        type=Path,
        help="Claude config dir (default $CLAUDE_CONFIG_DIR or ~/.claude)",
    )
    g.add_argument(
        "--state-dir", type=Path, help="state dir (default $XDG_STATE_HOME/gptme-subscription)"
    )
    g.add_argument("--slots", help="comma-separated slot names (default: every slot file)")
    g.add_argument("--fallback-order", help="comma-separated tie-break preference")
    g.add_argument(
        "--usage-script", type=Path, help="usage script (`<script> --json`) instead of the endpoint"
    )
    g.add_argument("--api-base", help="usage endpoint base URL (default https://api.anthropic.com)")
    g.add_argument("--poll-interval", type=float, help="minimum seconds between polls per slot")
    g.add_argument(
        "--lock-glob", help="agent lock files (a live PID inside) that count as mid-turn"
    )
    # 0.1.0's rate-limit file (an ISO time until which the live slot is limited): honoured by
    # `evaluate`, deleted after a switch; hidden, the hook pack learns rate limits by itself
    g.add_argument("--rate-limit-file", type=Path, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str, json_flag: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    p = add("status", "slots, live marker, usage bars, pending switch, sessions mid-turn")
    p.add_argument("--refresh", action="store_true", help="poll usage (within the poll budget)")
    p = add(
        "check-auth",
        "credential health of every slot (offline; --probe asks each slot's usage source)",
    )
    p.add_argument(
        "--probe",
        action="store_true",
        help="also ask the usage script (--no-cache) or the usage endpoint, once per slot "
        "(no inference)",
    )
    p = add("switch", "make SLOT live (pending while another session is mid-turn)")
    p.add_argument("slot")
    p.add_argument("--force", action="store_true", help="flip now even if sessions are mid-turn")
    p.add_argument("--dry-run", action="store_true", help="say what it would do, change nothing")
    p = add("evaluate", "decide whether to switch (and with --execute, do it)")
    p.add_argument("--execute", action="store_true", help="apply the decision")
    p.add_argument("--no-refresh", action="store_true", help="use cached usage only")
    p.add_argument("--model", help="model about to be used (per-model weekly limits)")
    p = add("heal", "repair drift: copy the live credential into its owner slot and relink")
    p.add_argument("--dry-run", action="store_true", help="say if there is drift, change nothing")
    add(
        "reauth", "step-by-step re-login for one slot, never touching another", json_flag=False
    ).add_argument("slot")
    p = add("identity", "record or check which account each slot belongs to")
    p.add_argument("action", choices=["baseline", "check"])
    p.add_argument("slot", nargs="?", help="slot to baseline (default: every slot)")
    p = add("capacity", "pool verdict green/yellow/red (exit 0/10/20) for launchers")
    p.add_argument("--model", help="model about to be used")
    p = add("slot", "add, remove or list slots")
    slot_sub = p.add_subparsers(dest="slot_command", metavar="ACTION", required=True)
    sa = slot_sub.add_parser("add", help="capture the live credential (or --from FILE) as NAME")
    sa.add_argument("name")
    sa.add_argument("--from", dest="source", type=Path, help="import this credential file instead")
    sa.add_argument(
        "--force", action="store_true", help="replace an existing slot (kept in backups)"
    )
    sa.add_argument("--json", action="store_true")
    sr = slot_sub.add_parser("remove", help="delete a slot (its content stays in the backup ring)")
    sr.add_argument("name")
    sr.add_argument("--json", action="store_true")
    sl = slot_sub.add_parser("list", help="list slots with credential health")
    sl.add_argument("--json", action="store_true")
    p = add("profile", "move slots into their own Claude Code config dirs (profiles) and back")
    profile_sub = p.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    for action, help_text in (
        (
            "enable",
            "move SLOT's credential into <profiles dir>/SLOT (default: every slot not live)",
        ),
        ("disable", "move SLOT's credential back to its slot file (default: every profile)"),
    ):
        pa = profile_sub.add_parser(action, help=help_text, description=help_text)
        pa.add_argument("names", nargs="*", metavar="SLOT")
        pa.add_argument(
            "--dry-run", action="store_true", help="say what it would do, change nothing"
        )
        pa.add_argument("--json", action="store_true", help="machine-readable output")
    p = add("usage", "requests, tokens and list-price cost per account (or session, model, day)")
    p.add_argument("--since", default="7d", help="7d, 12h, 30m, 2w or a date (default 7d)")
    p.add_argument("--until", help="same forms as --since (default: now)")
    p.add_argument(
        "--by", choices=("account", "session", "model", "day"), default="account", help="grouping"
    )
    p = add(
        "dashboard",
        "serve the fleet dashboard (accounts, sessions, events, usage) on a local web page",
        json_flag=False,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    p.add_argument("--open", action="store_true", help="open the page in a browser")
    p.add_argument(
        "--allow-actions",
        action="store_true",
        help="add switch and heal buttons (POST, guarded by a per-run token shown here)",
    )
    p.add_argument("--token", help="require this secret on every request (needed off loopback)")
    p.add_argument(
        "--notify", action="store_true", help="desktop notifications (notify-send) for alerts"
    )
    p = add(
        "run",
        "start Claude Code in the profile of the slot routing picks (or --slot): "
        "gptme-subscription run [--slot S] -- claude ARGS...",
        json_flag=False,
    )
    p.add_argument("--slot", help="this slot, not the routed one (it must be in its profile)")
    p.add_argument(
        "--retry-on-limit",
        type=_count,
        default=0,
        metavar="N",
        help="a headless `claude -p` that ends on a rate limit or a refused login resumes on "
        "another slot, N times",
    )
    p.add_argument("--dry-run", action="store_true", help="say which slot and why, start nothing")
    p.add_argument(
        "--json", action="store_true", help="the launch as JSON (on stderr; stdout with --dry-run)"
    )
    p.add_argument("claude_argv", nargs=argparse.REMAINDER, metavar="-- claude ARGS")
    p = add("env", "print the exports that start Claude Code in the routed slot's profile")
    p.add_argument("--slot", help="this slot, not the routed one (it must be in its profile)")
    p.add_argument("--dry-run", action="store_true", help="reserve nothing (a preview)")
    p = add(
        "install",
        "claude-code: the hooks (and statusline) into a settings.json; "
        "gptme: the subscription plugin into a workspace's gptme.toml",
    )
    p.add_argument("target", choices=["claude-code", "gptme"])
    p.add_argument(
        "--scope",
        choices=["user", "project", "local"],
        default="user",
        help="claude-code: user: <claude dir>/settings.json; project: .claude/settings.json; "
        "local: .claude/settings.local.json",
    )
    p.add_argument("--project-dir", type=Path, default=None, help="project root (default: cwd)")
    p.add_argument(
        "--workspace", type=Path, default=None, help="gptme: the workspace (default: cwd)"
    )
    p.add_argument("--dry-run", action="store_true", help="show the result, write nothing")
    p = add("uninstall", "remove our hooks (claude-code) or the plugin (gptme) again")
    p.add_argument("target", choices=["claude-code", "gptme"])
    p.add_argument("--scope", choices=["user", "project", "local"], default="user")
    p.add_argument("--project-dir", type=Path, default=None)
    p.add_argument("--workspace", type=Path, default=None)
    p.add_argument("--dry-run", action="store_true")
    p = add("doctor", "check installation, slots, locks and env overrides; say what to fix")
    p.add_argument("--project-dir", type=Path, default=None)
    p = add(
        "statusline", "Claude Code statusline: record rate_limits, print one line", json_flag=False
    )
    p.add_argument("--wrap", help="your own statusline command, shown before ours")
    sub.add_parser(
        "hook",
        help="Claude Code hook entry point: hook <event> (reads stdin JSON)",
        description="Events: session-start, user-prompt-submit, pre-tool-use, stop, "
        "stop-failure, session-end. Always exits 0.",
    )
    p = add("demo", "run the core in a throwaway sandbox through a scripted day")
    p.add_argument("--keep", action="store_true", help="keep the sandbox directory")
    p = add("simulate", "routing simulator: policies x scenarios x seeds (offline, seeded)")
    p.add_argument("--scenario", action="append", help="scenario(s), comma-separated (all)")
    p.add_argument("--seeds", type=int, default=8, help="seeds per scenario (default 8)")
    p.add_argument("--policy", action="append", help="policies to show, comma-separated (all)")
    p.add_argument("--from-transcripts", type=Path, metavar="DIR", help="replay *.jsonl in DIR")
    p.add_argument("--fleet", action="append", help="tiers for the replay (default max5,max5)")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="plot slot use (needs [plot])")
    p.add_argument("--workers", type=int, help="worker processes (default: CPU count)")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    from .config import load_config

    def split(value: str | None) -> list[str] | None:
        return None if value is None else [v.strip() for v in value.split(",") if v.strip()]

    return load_config(
        {
            "claude_dir": args.claude_dir,
            "state_dir": args.state_dir,
            "slots": split(args.slots),
            "fallback_order": split(args.fallback_order),
            "usage_script": args.usage_script,
            "api_base": args.api_base,
            "poll_interval": args.poll_interval,
            "lock_glob": args.lock_glob,
        }
    )
