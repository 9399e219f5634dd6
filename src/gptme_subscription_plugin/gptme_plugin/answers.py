"""What the `subscription` tool answers: parsing a call, running an action, rendering for agents.

No gptme import: `tool.py` adapts this to gptme's ToolSpec. Every answer is a short, stable,
plain-text summary (the first line always starts `subscription <action>:`) followed by one
compact JSON block with the same facts as numbers. Nothing secret is ever in it: tokens never
leave credentials.py, and `render` scrubs anything shaped like one as a last line of defence.
The call's parsing and the `Answer` shape are in `command.py`, `check` and `explain` in
`diagnose.py`; this module runs the other actions, routes a call (`run`) and re-exports them.

Actions:
  status                       every slot: live marker, 5h / weekly / per-model use with resets,
                               pressure, credential health; pending switch; sessions mid-turn
  recommend [model=M] [work=W] which slot to use now (optionally for a model and an expected
                               share of a 5-hour window), one-line reason, pending switch
  switch SLOT                  SubscriptionManager.switch_to(mode="manual"), exactly as the CLI:
                               pending (and says so) while another session is mid-turn
  check                        credential health, live link, overriding credentials: what to do
  explain [N]                  the last decisions, switches and refusals with their reasons
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..launcher import Launch, Launcher, LaunchError
from ..manager import SubscriptionManager
from ..policy import (
    PolicyView,
    SlotView,
    can_serve,
    describe_usage,
    forget_old_usage,
    format_duration,
    rank_candidates,
    slot_pressure,
)
from ..status_snapshot import StatusSnapshot
from ..thresholds import Thresholds
from ..usage.snapshot import UsageSnapshot, UsageWindow
from .command import (
    ACTIONS,
    MAX_EXPLAIN,
    USAGE,
    WORK_SIZES,
    Answer,
    Command,
    CommandError,
    decision_data,
    error_answer,
    parse_command,
    parse_work,
    pending_line,
    scrub,
)
from .diagnose import DEFAULT_EXPLAIN, EXPLAIN_KINDS, check, explain, override_problem

SWITCH_REASON = "switched by a gptme agent (subscription tool)"


# ---------------------------------------------------------------- facts shared by answers


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{round(value * 100)}%"


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _window(window: UsageWindow | None, now: float) -> dict[str, Any] | None:
    if window is None:
        return None
    left = window.resets_in(now)
    return {
        "used": _round(window.effective_utilization(now)),
        "resets_at": window.resets_at,
        "resets_in_s": None if left is None else int(left),
    }


def _usage(usage: UsageSnapshot | None, now: float) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {
        "source": usage.source,
        "age_s": int(usage.age(now)),
        "stale": usage.stale,
        "five_hour": _window(usage.five_hour, now),
        "weekly": _window(usage.seven_day, now),
        "models": {name: _window(w, now) for name, w in sorted(usage.models.items())},
    }


def five_hour_left(slot: SlotView, thresholds: Thresholds, now: float) -> float | None:
    """Share of the 5-hour window left before the exhaustion threshold (None: unknown)."""
    usage = slot.usage
    if usage is None or usage.five_hour is None:
        return None
    used = usage.five_hour.effective_utilization(now)
    return max(0.0, thresholds.five_hour_exhausted - used)


def _fits(left: float | None, work: float) -> bool:
    """Unknown room counts as fitting: no data is no reason to move."""
    return left is None or left >= work


# ---------------------------------------------------------------- actions


def status(m: SubscriptionManager, session_id: str | None = None) -> Answer:
    """Every slot, the pending switch and who is mid-turn; our own session is not counted."""
    return render_status(m.status_snapshot(refresh=True, exclude=session_id))


def render_status(snap: StatusSnapshot) -> Answer:
    now, pending = snap.now, snap.pending
    reports = snap.reports
    head = (
        f"subscription status: live {snap.live or 'none'}; {len(reports)} slot(s); "
        f"{'pending switch to ' + str(snap.pending_slot) if pending else 'no pending switch'}; "
        f"{len(snap.busy)} other session(s) mid-turn"
    )
    lines = [head, snap.summary.text]
    slots = []
    for r in reports:
        verdict = snap.verdict(r.name)
        health = verdict.health if verdict is not None else r.credential.health.value
        usable = verdict.usable if verdict is not None else r.credential.health.usable
        until = r.limited_until if r.limited_until is not None and r.limited_until > now else None
        limited = until is not None
        extra = f", rate-limited for {format_duration(until - now)}" if until is not None else ""
        for model, model_until in sorted(r.limited_models.items()):
            extra += f", {model} rate-limited for {format_duration(model_until - now)}"
        lines.append(
            f"{'*' if r.live else ' '} {r.name}: {describe_usage(r.usage, now)}; "
            f"pressure {_pct(r.pressure)}; credential {health}{extra}"
        )
        slots.append(
            {
                "name": r.name,
                "live": r.live,
                "health": health,
                "usable": usable,
                "detail": r.credential.detail,
                "pressure": _round(r.pressure),
                "limited_until": r.limited_until if limited else None,
                "limited_models": dict(r.limited_models),
                "usage": _usage(r.usage, now),
            }
        )
    if not reports:
        lines.append(
            f"no slots in {snap.claude_dir}: a person adds one with "
            "`gptme-subscription slot add NAME`"
        )
    drift = snap.drift
    if drift is not None:
        lines.append(f"drift: {drift.detail}; it is healed at the next turn boundary")
    lines += [f"note: {note}" for note in snap.notes]
    lines.append(pending_line(pending, now))
    return Answer(
        "status",
        True,
        "\n".join(lines),
        {
            "live": snap.live,
            "slots": slots,
            "pending": pending,
            "sessions_mid_turn": list(snap.busy),
            "drift": None if drift is None else {"kind": drift.kind, "detail": drift.detail},
            "decision": decision_data(snap.decision),
            "summary": snap.summary.text,
            "notes": list(snap.notes),
            "now": now,
        },
    )


def recommend(
    m: SubscriptionManager, now: float, model: str | None = None, work: float | None = None
) -> Answer:
    """Which slot to use now; read-only (decides on fresh-enough usage, flips nothing)."""
    decision = m.evaluate(refresh=True, model=model, log=False)
    t = m.config.thresholds
    view: PolicyView = forget_old_usage(m.view(model=model), t, now)
    live = view.live
    if decision.action == "defer":
        pick: str | None = None
    elif decision.wants_switch:
        pick = decision.target
    else:
        pick = live
    reason = decision.reason
    fits: bool | None = None
    if work is not None and pick is not None:
        chosen = view.slot(pick)
        left = five_hour_left(chosen, t, now) if chosen else None
        fits = _fits(left, work)
        if not fits:
            better = next(
                (
                    s
                    for s in rank_candidates(view, t, now)
                    if _fits(five_hour_left(s, t, now), work)
                ),
                None,
            )
            need = f"this work needs about {_pct(work)} of a 5-hour window"
            if better is not None and better.name != pick:
                reason = (
                    f"{pick} has {_pct(left)} of its 5-hour window left and {need}; "
                    f"{better.name} has {_pct(five_hour_left(better, t, now))}"
                )
                pick, fits = better.name, True
            else:
                reason += f"; no slot has room for all of it ({need}): expect a switch mid-work"
    pending = m.pending()
    lines = []
    if pick is None:
        lines.append(f"subscription recommend: no slot can serve now: {reason}")
    elif pick == live:
        lines.append(f"subscription recommend: stay on {pick}: {reason}")
    else:
        lines.append(f"subscription recommend: use {pick} (live: {live or 'none'}): {reason}")
    lines.append(pending_line(pending, now))
    switch_needed = pick is not None and pick != live
    if switch_needed and pending and pending.get("slot") == pick:
        lines.append(f"a switch to {pick} is already pending; nothing to do")
    elif switch_needed:
        auto = (
            " (the next turn boundary would also switch on its own)"
            if decision.wants_switch and decision.target == pick
            else ""
        )
        lines.append(f"to move now: switch {pick}{auto}")
    left_by_slot = {s.name: _round(five_hour_left(s, t, now)) for s in view.slots}
    return Answer(
        "recommend",
        pick is not None,
        "\n".join(lines),
        {
            "recommended": pick,
            "live": live,
            "switch_needed": switch_needed,
            "reason": reason,
            "model": model,
            "work": work,
            "fits_work": fits,
            "five_hour_left": left_by_slot,
            "pressure": {s.name: _round(slot_pressure(s.usage, t, now, model)) for s in view.slots},
            "serving": [s.name for s in view.slots if can_serve(s, t, now, model)],
            "decision": decision_data(decision),
            "pending": pending,
        },
    )


def switch(m: SubscriptionManager, slot: str, session_id: str | None = None) -> Answer:
    """Exactly the CLI's guarded switch (manual mode); our own session never blocks it."""
    outcome = m.switch_to(slot, reason=SWITCH_REASON, mode="manual", session_id=session_id)
    data = outcome.to_dict()
    if outcome.status == "switched":
        text = (
            f"subscription switch: switched to {outcome.slot} (was {outcome.previous or 'none'}); "
            "Claude Code processes use it from their next request; the choice is held "
            f"for {format_duration(m.config.manual_hold)}"
        )
        if outcome.heal is not None and outcome.heal.healed:
            text += f"\nhealed first: {outcome.heal.detail}"
    elif outcome.status == "pending":
        shown = ", ".join(outcome.blockers[:5])
        text = (
            f"subscription switch: NOT switched yet: {outcome.detail} ({shown}). "
            f"The switch to {outcome.slot} is recorded as pending and lands at the next turn "
            f"boundary where every session is idle; {outcome.previous or 'the live slot'} "
            "stays live until then. Flipping now would change the credential under a turn "
            f"in progress; a person can force it: gptme-subscription switch {outcome.slot} "
            "--force"
        )
    elif outcome.status == "unchanged":
        text = f"subscription switch: {outcome.detail}; nothing to do"
    else:
        text = f"subscription switch: refused: {outcome.detail}"
    return Answer("switch", outcome.status != "refused", text, data)


def assign(m: SubscriptionManager, count: int) -> Answer:
    """K workers spread over the slots in their profiles, each with the line that starts it;
    the launches are reserved (launcher.py) so another agent asking now spreads too."""
    try:
        launches = Launcher(m).plan(count=count)
    except LaunchError as exc:
        return Answer("assign", False, f"subscription assign: {exc}", {"error": str(exc)})
    spread = Counter(launch.slot for launch in launches)
    shown = ", ".join(f"{slot} x{n}" for slot, n in sorted(spread.items()))
    lines = [
        f"subscription assign: {count} worker(s) over {len(spread)} slot(s): {shown}. "
        "Start each worker with its line (or set its env); each keeps its slot for its life:"
    ]
    for i, launch in enumerate(launches, start=1):
        lines.append(f"  {i}. gptme-subscription run --slot {launch.slot} -- claude -p TASK")
    lines.append(
        f"Reserved for {format_duration(m.config.launch_window)}: other askers spread around "
        "them. The env form: " + ", ".join(sorted({_env_line(x) for x in launches}))
    )
    data = {"workers": [launch.to_dict() for launch in launches], "spread": dict(spread)}
    return Answer("assign", True, "\n".join(lines), data)


def _env_line(launch: Launch) -> str:
    return f"{launch.slot}: CLAUDE_CONFIG_DIR={launch.config_dir}"


def run(
    command: Command,
    m: SubscriptionManager,
    now: float,
    env: Mapping[str, str],
    workspace: Path | None = None,
    session_id: str | None = None,
) -> Answer:
    if command.action == "status":
        return status(m, session_id)
    if command.action == "recommend":
        return recommend(m, now, command.model, command.work)
    if command.action == "switch":
        assert command.slot is not None
        return switch(m, command.slot, session_id)
    if command.action == "check":
        return check(m, env, workspace, now)
    if command.action == "assign":
        return assign(m, command.count or 1)
    return explain(m, now, command.count)


__all__ = [
    "ACTIONS",
    "DEFAULT_EXPLAIN",
    "EXPLAIN_KINDS",
    "MAX_EXPLAIN",
    "SWITCH_REASON",
    "USAGE",
    "WORK_SIZES",
    "Answer",
    "Command",
    "CommandError",
    "check",
    "error_answer",
    "explain",
    "override_problem",
    "parse_command",
    "parse_work",
    "recommend",
    "render_status",
    "run",
    "scrub",
    "status",
    "switch",
]
