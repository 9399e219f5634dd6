"""Compact pressure summaries for agents, and the hook status file the fast path reads.

Surfaces (Claude Code hooks, the gptme tool) show the same few facts: the live slot, its 5-hour
and weekly use with reset countdowns, the next slot, one line of advice. The slow hooks also
store the pressure level (hookstatus.py), so the PreToolUse fast path can warn on a pressure
crossing without importing pydantic or computing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .policy import Decision, PolicyView, format_duration, rank_candidates, slot_pressure
from .thresholds import Thresholds
from .usage.snapshot import UsageWindow


def warn_levels(thresholds: Thresholds) -> list[float]:
    """Pressure crossings worth one warning each: warn_pressure, then halfway to 1, then
    warn_pressure_final."""
    first = thresholds.warn_pressure
    last = round(thresholds.warn_pressure_final, 4)
    return sorted({round(first, 4), round((first + 1.0) / 2, 4), last} - {1.0})


def pressure_level(pressure: float | None, levels: list[float]) -> int:
    if pressure is None:
        return 0
    return sum(1 for level in levels if pressure >= level)


def _window(label: str, window: UsageWindow | None, now: float) -> str | None:
    if window is None:
        return None
    pct = round(window.effective_utilization(now) * 100)
    if not window.is_current(now) or window.resets_at is None:
        return f"{label} {pct}%"
    return f"{label} {pct}% (resets in {format_duration(window.resets_in(now))})"


@dataclass(frozen=True)
class Summary:
    live: str | None
    pressure: float | None
    level: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "pressure": self.pressure,
            "level": self.level,
            "text": self.text,
        }


def summarize(
    view: PolicyView,
    decision: Decision,
    thresholds: Thresholds,
    now: float,
    pending: str | None = None,
) -> Summary:
    """One compact paragraph an agent can act on (no secrets, stable wording)."""
    live = view.slot(view.live)
    parts = []
    pressure = None
    if live is None:
        parts.append("no live slot")
    else:
        usage = live.usage
        pressure = slot_pressure(usage, thresholds, now, view.model)
        bits = [
            b
            for b in (
                _window("5h", usage.five_hour if usage else None, now),
                _window("weekly", usage.seven_day if usage else None, now),
            )
            if b
        ]
        for name, window in sorted((usage.models if usage else {}).items()):
            pct = round(window.effective_utilization(now) * 100)
            if pct:
                bits.append(f"{name} weekly {pct}%")
        used = ", ".join(bits) if bits else "usage unknown"
        stale = " [stale data]" if usage is not None and usage.stale else ""
        p = "" if pressure is None else f", pressure {round(pressure * 100)}%"
        parts.append(f"live slot {live.name}: {used}{p}{stale}")
    nxt = rank_candidates(view, thresholds, now, exclude=view.live)
    if nxt:
        week = nxt[0].usage.seven_day if nxt[0].usage else None
        extra = f" (weekly {round(week.effective_utilization(now) * 100)}%)" if week else ""
        parts.append(f"next: {nxt[0].name}{extra}")
    else:
        parts.append("next: none available")
    if pending:
        parts.append(f"switch to {pending} pending until every session is between turns")
    parts.append(f"advice: {advice(decision)}")
    level = pressure_level(pressure, warn_levels(thresholds))
    return Summary(view.live, pressure, level, "[subscription] " + "; ".join(parts))


def advice(decision: Decision) -> str:
    """One line of what it means for the agent."""
    if decision.action == "defer":
        return f"every slot is spent or limited ({decision.reason}); expect rate limits"
    if decision.mode == "last-quota":
        return f"no other slot has room ({decision.reason}); expect rate limits soon"
    if decision.action == "switch":
        return f"will switch to {decision.target} at the next turn boundary ({decision.mode})"
    if decision.mode == "no-data":
        return "no usage data yet; carry on"
    if decision.action == "hold":
        return f"staying put ({decision.mode})"
    return "plenty of room; carry on"
