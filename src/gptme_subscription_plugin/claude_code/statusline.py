"""`gptme-subscription statusline`: record Claude Code's free rate_limits, print one line.

Claude Code pipes the statusline JSON to this command after responses. Its `rate_limits`
(5-hour and weekly use of the account that answered) is the cheapest usage source there is, so
it is recorded for the live slot; in a slot's profile (session_home.py), for that slot, and
the line shows that slot alone. The command can wrap the user's own statusline command: it
gets the same stdin and its first line is shown before ours.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..bounds import run_bounded
from ..paths import INSIDE_USAGE_SCRIPT_ENV
from .dispatch import parse_payload

if TYPE_CHECKING:
    from ..status_snapshot import StatusSnapshot
    from ..usage.snapshot import UsageSnapshot

WRAP_TIMEOUT_S = 5.0
WRAP_MAX_OUTPUT = 64 * 1024


def run_wrapped(command: str, stdin_text: str) -> str:
    """The user's statusline command, run as Claude Code would (sh -c), first line only.

    Bounded like a usage script: WRAP_TIMEOUT_S, 64 KiB of output, and its process group
    killed when it is done, so a helper holding its stdout cannot hang the statusline."""
    try:
        done = run_bounded(
            ["/bin/sh", "-c", command],
            timeout=WRAP_TIMEOUT_S,
            max_stdout=WRAP_MAX_OUTPUT,
            stdin=stdin_text.encode("utf-8", "replace"),
        )
    except OSError:
        return ""
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    return lines[0] if lines else ""


def our_line(payload: Mapping[str, Any], env: Mapping[str, str]) -> str:
    from ..hookstatus import write_hook_status
    from ..usage.statusline import parse_statusline_rate_limits
    from .hooks import open_session

    hs = open_session(env)
    m = hs.m
    if hs.slot is not None:  # the account that answered is the profile's: never the live one
        snap = parse_statusline_rate_limits(payload, hs.slot, m.clock())
        if snap is not None:
            m.record_usage(snap)
        return profile_line(hs.slot, m.check_usage(names=[hs.slot], refresh=False), m.clock())
    live = m.get_active_subscription()
    if live is not None:
        snap = parse_statusline_rate_limits(payload, live, m.clock())
        if snap is not None:
            m.record_usage(snap)
    status = m.status_snapshot(refresh=False)
    write_hook_status(m.config.state_dir, {**status.summary.to_dict(), "updated_at": status.now})
    return render_line(status)


def profile_line(slot: str, usage: Mapping[str, UsageSnapshot | None], now: float) -> str:
    """`slot bob (profile) 5h 30% 59m 7d 40% 2d23h`: the profile's own slot, nothing next."""
    return " ".join([f"slot {slot} (profile)", *_windows(usage.get(slot), now)])


def render_line(snap: StatusSnapshot) -> str:
    """`slot alice 5h 30% 59m 7d 40% 2d23h -> bob pending`: the live slot's windows and what
    comes next."""
    slot = snap.view.slot(snap.live)
    parts = [f"slot {snap.live or '?'}", *_windows(slot.usage if slot else None, snap.now)]
    if snap.pending:
        parts.append(f"-> {snap.pending_slot} pending")
    elif snap.decision.wants_switch:
        parts.append(f"-> {snap.decision.target} next")
    return " ".join(parts)


def _windows(usage: UsageSnapshot | None, now: float) -> list[str]:
    from ..policy import format_duration

    parts = []
    for label, window in (
        ("5h", usage.five_hour if usage else None),
        ("7d", usage.seven_day if usage else None),
    ):
        if window is not None:
            reset = window.resets_in(now)
            when = f" {format_duration(reset)}" if reset else ""
            parts.append(f"{label} {round(window.effective_utilization(now) * 100)}%{when}")
    return parts


def main(wrap: str | None, env: Mapping[str, str]) -> int:
    raw = sys.stdin.read()
    theirs = run_wrapped(wrap, raw) if wrap else ""
    if env.get(INSIDE_USAGE_SCRIPT_ENV):  # a usage script's `claude`: its account is not live
        print(theirs)
        return 0
    try:
        payload = parse_payload(raw)
        ours = our_line(payload, env)
    except Exception as exc:  # noqa: BLE001 - the statusline must always print something
        print(f"gptme-subscription statusline: {type(exc).__name__}: {exc}"[:300], file=sys.stderr)
        ours = "slot ?"
    print(f"{theirs} | {ours}" if theirs else ours)
    return 0
