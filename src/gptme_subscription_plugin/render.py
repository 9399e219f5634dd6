"""Plain-text rendering for people: bars, countdowns, the status table, the capacity verdict."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .policy import (
    Decision,
    PolicyView,
    can_serve,
    forget_old_usage,
    format_duration,
    has_five_hour_headroom,
    soonest_recovery,
    weekly_remaining,
    weekly_reset,
)
from .thresholds import Thresholds
from .usage.snapshot import UsageWindow

if TYPE_CHECKING:
    from .manager import SlotReport

BAR_WIDTH = 10


def bar(fraction: float | None, width: int = BAR_WIDTH) -> str:
    """`[######----] 60%`, or `[    ?     ]` when unknown."""
    if fraction is None:
        return "[" + "?".center(width) + "]    "
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {round(fraction * 100):3d}%"


def window_cell(window: UsageWindow | None, now: float) -> str:
    if window is None:
        return bar(None) + "        "
    reset = window.resets_in(now)
    countdown = f" {format_duration(reset):>6}" if reset is not None else "       "
    return bar(window.effective_utilization(now)) + countdown


def status_table(
    reports: Sequence[SlotReport],
    now: float,
    pending: dict[str, Any] | None,
    busy: Sequence[str],
) -> str:
    """The `status` table: one row per slot plus per-model rows, then pending and turns."""
    lines = [
        f"{'':2}{'slot':<12} {'5h (resets)':<24} {'7d (resets)':<24} {'pressure':>8}  credential"
    ]
    for r in reports:
        usage = r.usage
        marker = "* " if r.live else "  "
        pressure = "?" if r.pressure is None else f"{round(r.pressure * 100)}%"
        cred = r.credential.health.value
        if r.rejected is not None:
            cred = f"REJECTED ({r.rejected['source']}): reauth"
        if r.limited_until and r.limited_until > now:
            cred += f", limited {format_duration(r.limited_until - now)}"
        for model, until in sorted(r.limited_models.items()):
            cred += f", {model} limited {format_duration(until - now)}"
        if r.home == "profile":
            cred += ", in its profile"
        elif r.home == "ambiguous":
            cred += ", TWO HOMES (main file and profile): keep one"
        if usage is not None and usage.stale:
            cred += ", usage stale"
        if usage is None:
            cred += ", no usage data"
        five = window_cell(usage.five_hour if usage else None, now)
        week = window_cell(usage.seven_day if usage else None, now)
        lines.append(f"{marker}{r.name:<12} {five:<24} {week:<24} {pressure:>8}  {cred}")
        for model, window in sorted((usage.models if usage else {}).items()):
            lines.append(f"{'':2}{'  ' + model:<12} {'':<24} {window_cell(window, now):<24}")
    lines.append("")
    if pending:
        since = format_duration(now - float(pending.get("since", now)))
        lines.append(
            f"pending switch: -> {pending.get('slot')} ({pending.get('mode')}, "
            f"{since} ago): {pending.get('reason')}"
        )
    else:
        lines.append("pending switch: none")
    lines.append(f"sessions mid-turn: {len(busy)}" + (f" ({', '.join(busy[:5])})" if busy else ""))
    return "\n".join(lines)


def decision_line(decision: Decision) -> str:
    target = f" -> {decision.target}" if decision.target else ""
    return f"{decision.action}{target} [{decision.mode}]: {decision.reason}"


@dataclass(frozen=True)
class Capacity:
    verdict: str  # green | yellow | red
    serving: list[str]
    with_headroom: list[str]
    headroom: float  # sum of weekly fraction left over slots that can serve
    soonest_reset: float | None
    reason: str

    @property
    def exit_code(self) -> int:
        return {"green": 0, "yellow": 10, "red": 20}[self.verdict]

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "serving": self.serving,
            "with_five_hour_headroom": self.with_headroom,
            "weekly_headroom": round(self.headroom, 4),
            "soonest_reset": self.soonest_reset,
            "soonest_reset_in_s": None
            if self.soonest_reset is None
            else max(0.0, self.soonest_reset - now),
            "reason": self.reason,
        }


def capacity(view: PolicyView, thresholds: Thresholds, now: float) -> Capacity:
    """Pool verdict for launchers: red none can serve, yellow thin, green comfortable."""
    view = forget_old_usage(view, thresholds, now)
    serving = [s for s in view.slots if can_serve(s, thresholds, now, view.model)]
    roomy = [s for s in serving if has_five_hour_headroom(s.usage, thresholds, now)]
    headroom = sum(weekly_remaining(s.usage, now) or 0.0 for s in serving)
    if not serving:
        soonest = soonest_recovery(view, thresholds, now)
        wait = f"; soonest recovery in {format_duration(soonest - now)}" if soonest else ""
        return Capacity("red", [], [], 0.0, soonest, "no slot can serve" + wait)
    resets = [weekly_reset(s.usage, now) for s in serving]
    known = [r for r in resets if r != float("inf")]
    soonest = min(known) if known else None
    names = [s.name for s in serving]
    roomy_names = [s.name for s in roomy]
    if not roomy:
        return Capacity(
            "yellow", names, [], headroom, soonest, "every serving slot is near its 5-hour limit"
        )
    if len(serving) < 2 or headroom < 0.25:
        return Capacity(
            "yellow",
            names,
            roomy_names,
            headroom,
            soonest,
            f"{len(serving)} slot(s) can serve, {round(headroom * 100)}% weekly left",
        )
    return Capacity(
        "green",
        names,
        roomy_names,
        headroom,
        soonest,
        f"{len(serving)} slots can serve, {len(roomy)} with 5-hour headroom",
    )
