"""What the `subscription` tool answers: parsing a call, running an action, rendering for agents.

No gptme import: `tool.py` adapts this to gptme's ToolSpec. Every answer is a short, stable,
plain-text summary (the first line always starts `subscription <action>:`) followed by one
compact JSON block with the same facts as numbers. Nothing secret is ever in it: tokens never
leave credentials.py, and `render` scrubs anything shaped like one as a last line of defence.

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

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import redact
from ..manager import SubscriptionManager
from ..policy import (
    Decision,
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

ACTIONS = ("status", "recommend", "switch", "check", "explain")
USAGE = "status | recommend [model=NAME] [work=SIZE] | switch SLOT | check | explain [N]"
WORK_SIZES = {"small": 0.05, "medium": 0.15, "large": 0.40}
SWITCH_REASON = "switched by a gptme agent (subscription tool)"
EXPLAIN_KINDS = {
    "decision",
    "switch",
    "pending",
    "pending-dropped",
    "refusal",
    "heal",
    "rate-limited",
    "usage-error",
}
DEFAULT_EXPLAIN = 10
MAX_EXPLAIN = 50
_KEYS = {"action", "slot", "model", "work", "count", "n"}


class CommandError(ValueError):
    """A call the tool cannot understand; the message says how to call it."""


@dataclass(frozen=True)
class Command:
    action: str
    slot: str | None = None
    model: str | None = None
    work: float | None = None
    count: int | None = None


@dataclass(frozen=True)
class Answer:
    action: str
    ok: bool
    text: str
    data: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        """Plain text first, then one compact JSON block; token-shaped strings scrubbed."""
        doc = {"action": self.action, "ok": self.ok, **self.data}
        blob = json.dumps(doc, separators=(",", ":"), sort_keys=True, default=str)
        return scrub(f"{self.text.rstrip()}\n\n```json\n{blob}\n```")


def scrub(text: str) -> str:
    return redact.scrub(text)


# ---------------------------------------------------------------- parsing


def parse_command(
    code: str | None, args: Sequence[str] | None, kwargs: Mapping[str, Any] | None
) -> Command:
    """One call in any of gptme's formats.

    markdown: ```subscription switch bob``` gives args ["switch", "bob"]; xml:
    <subscription args="switch bob"/> gives args ["switch bob"]; native tool calls give kwargs
    {"action": "switch", "slot": "bob"}. A block body may hold more words or a JSON object.
    """
    named: dict[str, Any] = {}
    tokens: list[str] = []
    for key, value in (kwargs or {}).items():
        if value is None or value == "":
            continue
        if key == "action":
            tokens[:0] = str(value).split()
        elif key in _KEYS:
            named["count" if key == "n" else key] = value
        else:
            raise CommandError(f"unknown parameter {key!r}; use: {USAGE}")
    for arg in args or []:
        tokens += str(arg).split()
    body = (code or "").strip()
    if body.startswith("{"):
        try:
            doc = json.loads(body)
        except ValueError:
            raise CommandError("the block body is not valid JSON; use: " + USAGE) from None
        if not isinstance(doc, dict):
            raise CommandError("the block body must be a JSON object; use: " + USAGE)
        return parse_command(None, tokens, {**doc, **named})
    tokens += body.split()
    return _from_tokens(tokens, named)


def _from_tokens(tokens: list[str], named: dict[str, Any]) -> Command:
    positional: list[str] = []
    words = iter(tokens)
    for word in words:
        if word.startswith("--"):
            key, eq, value = word[2:].partition("=")
            if not eq:
                value = next(words, "")
            _set_named(named, key, value)
        elif "=" in word and not word.startswith("="):
            key, _, value = word.partition("=")
            _set_named(named, key, value)
        else:
            positional.append(word)
    action = (positional.pop(0) if positional else "status").lower()
    if action not in ACTIONS:
        raise CommandError(f"unknown action {action[:40]!r}; use: {USAGE}")
    slot = named.get("slot")
    model = named.get("model")
    work = named.get("work")
    count = named.get("count")
    if action == "switch":
        if slot is None and positional:
            slot = positional.pop(0)
        if not slot:
            raise CommandError("switch needs a slot name: switch SLOT")
    elif action == "recommend":
        for word in positional:
            if _looks_like_work(word):
                work = word
            else:
                model = word
        positional = []
    elif action == "explain" and positional:
        count = positional.pop(0)
    if positional:
        raise CommandError(f"unexpected {' '.join(positional)[:60]!r} after {action}; use: {USAGE}")
    return Command(
        action,
        slot=str(slot) if slot is not None else None,
        model=str(model) if model else None,
        work=parse_work(work) if work is not None else None,
        count=_parse_count(count) if count is not None else None,
    )


def _set_named(named: dict[str, Any], key: str, value: str) -> None:
    key = "count" if key == "n" else key
    if key not in _KEYS - {"action", "n"}:
        raise CommandError(f"unknown option {key[:30]!r}; use: {USAGE}")
    named[key] = value


def _looks_like_work(word: str) -> bool:
    try:
        parse_work(word)
    except CommandError:
        return False
    return True


def parse_work(value: Any) -> float:
    """Expected share of one slot's 5-hour window: 0.25, 25%, 25, or small/medium/large."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in WORK_SIZES:
            return WORK_SIZES[text]
        percent = text.endswith("%")
        try:
            number = float(text.rstrip("%"))
        except ValueError:
            raise CommandError(
                f"work {value[:20]!r}: use a share of a 5-hour window (0.25 or 25%) "
                "or small/medium/large"
            ) from None
        if percent:
            number /= 100
        elif number > 1:
            number /= 100  # "25" means 25 %
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if number > 1:
            number /= 100
    else:
        raise CommandError("work: use a number (0.25 or 25%) or small/medium/large")
    if not 0 < number <= 1:
        raise CommandError("work must be more than 0 and at most 100% of a 5-hour window")
    return number


def _parse_count(value: Any) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        shown = str(value)[:20]
        raise CommandError(f"explain N: N must be a whole number (got {shown!r})") from None
    return max(1, min(MAX_EXPLAIN, count))


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


def _decision(decision: Decision) -> dict[str, Any]:
    return {
        "action": decision.action,
        "target": decision.target,
        "mode": decision.mode,
        "reason": decision.reason,
        "urgent": decision.urgent,
        "retry_at": decision.retry_at,
    }


def _pending_line(pending: Mapping[str, Any] | None, now: float) -> str:
    if not pending:
        return "pending switch: none"
    since = pending.get("since")
    ago = format_duration(now - since) if isinstance(since, (int, float)) else "?"
    return (
        f"pending switch: -> {pending.get('slot')} ({pending.get('mode')}, {ago} ago): "
        f"{pending.get('reason')}; it lands at the next turn boundary with every session idle"
    )


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
    lines.append(_pending_line(pending, now))
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
            "decision": _decision(snap.decision),
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
    lines.append(_pending_line(pending, now))
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
            "decision": _decision(decision),
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


def check(
    m: SubscriptionManager, env: Mapping[str, str], workspace: Path | None, now: float
) -> Answer:
    """Credential health and what to do, offline (no usage request)."""
    from ..overrides import override_warnings

    problems: list[str] = []
    rows = []
    names = m.slot_names()
    for name in names:
        info = m.slots.check(name)
        fix = None
        if not info.health.usable:
            fix = f"a person runs `gptme-subscription reauth {name}`"
            problems.append(f"{name} is {info.health.value} ({info.detail}): {fix}")
        rows.append(
            {
                "name": name,
                "health": info.health.value,
                "usable": info.health.usable,
                "detail": info.detail,
                "expires_at_ms": info.expires_at_ms,
                "fix": fix,
            }
        )
    if not names:
        problems.append(
            f"no slots in {m.config.claude_dir}: a person adds one with "
            "`gptme-subscription slot add NAME`"
        )
    live = m.get_active_subscription()
    drift = m.slots.detect_drift()
    if drift is not None:
        problems.append(
            f"drift: {drift.detail}: healed at the next turn boundary, or now with "
            "`gptme-subscription heal`"
        )
    elif live is None and names:
        problems.append("no live slot: `gptme-subscription switch NAME` makes one live")
    login = m.slots.pending_login()
    if login is not None:
        problems.append(
            "a login of an account in no slot is kept aside and rotation waits for it: "
            "a person names it with `gptme-subscription slot add NAME`"
        )
    payload = {"cwd": str(workspace)} if workspace is not None else {}
    overrides = override_warnings(env, payload, m.config.claude_dir)
    problems += [override_problem(item) for item in overrides]
    usable = sum(1 for r in rows if r["usable"])
    if problems:
        head = f"subscription check: {len(problems)} problem(s): " + problems[0]
        text = "\n".join([head, *(f"- {p}" for p in problems[1:])])
    else:
        text = (
            f"subscription check: ok: {usable} of {len(rows)} slot(s) usable; live link "
            f"{live} healthy; nothing to do"
        )
    return Answer(
        "check",
        not problems,
        text,
        {
            "live": live,
            "slots": rows,
            "drift": None if drift is None else {"kind": drift.kind, "detail": drift.detail},
            "pending_login": login is not None,
            "overrides": overrides,
            "problems": problems,
        },
    )


def explain(m: SubscriptionManager, now: float, count: int | None = None) -> Answer:
    """The recent decisions and their reasons, newest last, plus what the policy says now."""
    wanted = count or DEFAULT_EXPLAIN
    events = _collapse(m.events.tail(wanted * 4, kinds=EXPLAIN_KINDS))[-wanted:]
    decision = m.policy.decide(m.view(), now)
    rot = m.rotation_state()
    last = rot.get("last_switch") if isinstance(rot.get("last_switch"), dict) else None
    hold = rot.get("manual_hold") if isinstance(rot.get("manual_hold"), dict) else None
    head = [f"subscription explain: live {m.get_active_subscription() or 'none'}"]
    if last:
        at = last.get("at")
        ago = format_duration(now - at) if isinstance(at, (int, float)) else "?"
        head.append(
            f"last switch {ago} ago {last.get('previous') or '?'} -> {last.get('slot')} "
            f"({last.get('mode')})"
        )
    if hold and isinstance(hold.get("until"), (int, float)) and hold["until"] > now:
        head.append(f"manual hold on {hold.get('slot')} for {format_duration(hold['until'] - now)}")
    head.append(f"now: {decision.action} [{decision.mode}]: {decision.reason}")
    lines = ["; ".join(head)]
    lines += [_event_line(e, now) for e in events] or ["no decisions recorded yet"]
    lines.append(_pending_line(m.pending(), now))
    return Answer(
        "explain",
        True,
        "\n".join(lines),
        {
            "now_decision": _decision(decision),
            "events": [_event_data(e) for e in events],
            "last_switch": last,
            "manual_hold": hold,
            "pending": m.pending(),
        },
    )


def override_problem(item: str) -> str:
    """What to do about a credential that outranks the slot files."""
    if item.startswith("apiKeyHelper"):
        return f"{item} overrides the slots: remove it to let rotation work"
    return (
        f"{item} is set in this gptme process: Claude Code processes started from here inherit "
        f"it and use it instead of the slots; unset it for them (`env -u {item} claude ...`)"
    )


def _collapse(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive identical decisions (hooks evaluate at every boundary) become one, counted."""
    out: list[dict[str, Any]] = []
    for event in events:
        prev = out[-1] if out else None
        same = (
            prev is not None
            and event.get("kind") == "decision" == prev.get("kind")
            and all(event.get(k) == prev.get(k) for k in ("decision", "target", "mode", "reason"))
        )
        if same and prev is not None:
            prev["repeat"] = int(prev.get("repeat", 1)) + 1
            prev["ts"] = event.get("ts")
        else:
            out.append(dict(event))
    return out


def _event_line(e: Mapping[str, Any], now: float) -> str:
    ts = e.get("ts")
    ago = format_duration(now - ts) if isinstance(ts, (int, float)) else "?"
    kind = e.get("kind")
    times = f" (x{e['repeat']})" if e.get("repeat") else ""
    if kind == "decision":
        target = f" -> {e.get('target')}" if e.get("target") else ""
        return (
            f"- {ago} ago decision{times}: {e.get('decision')}{target} [{e.get('mode')}]: "
            f"{e.get('reason')}"
        )
    if kind == "switch":
        forced = ", forced" if e.get("forced") else ""
        return (
            f"- {ago} ago switch: {e.get('previous') or '?'} -> {e.get('slot')} "
            f"[{e.get('mode')}{forced}]: {e.get('reason')}"
        )
    if kind == "pending":
        blockers = e.get("blockers") or []
        n = len(blockers) if isinstance(blockers, list) else "?"
        return (
            f"- {ago} ago pending: -> {e.get('slot')} [{e.get('mode')}], {n} session(s) "
            f"mid-turn: {e.get('reason')}"
        )
    if kind == "heal":
        return f"- {ago} ago heal: {e.get('detail')}"
    if kind == "rate-limited":
        until = e.get("until")
        left = format_duration(until - now) if isinstance(until, (int, float)) else "?"
        return f"- {ago} ago rate-limited: {e.get('slot')} until {left} from now"
    slot = f" {e.get('slot')}" if e.get("slot") else ""
    return f"- {ago} ago {kind}{slot}: {e.get('reason') or e.get('detail') or e.get('error')}"


def _event_data(e: Mapping[str, Any]) -> dict[str, Any]:
    keep = (
        "ts",
        "kind",
        "decision",
        "live",
        "target",
        "slot",
        "previous",
        "mode",
        "reason",
        "detail",
        "forced",
        "urgent",
        "until",
        "error",
        "repeat",
    )
    return {k: e[k] for k in keep if k in e and e[k] is not None}


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
    return explain(m, now, command.count)


def error_answer(message: str) -> Answer:
    data = {"error": message, "usage": USAGE}
    return Answer("error", False, f"subscription error: {message}", data)


__all__ = [
    "ACTIONS",
    "Answer",
    "Command",
    "CommandError",
    "USAGE",
    "error_answer",
    "parse_command",
    "parse_work",
    "run",
]
