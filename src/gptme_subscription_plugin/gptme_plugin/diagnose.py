"""The `subscription` tool's `check` and `explain`: what is wrong and what to do, and why the
rotation did what it did (from the event log). No gptme import; `answers.run` calls them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..manager import SubscriptionManager
from ..policy import format_duration
from .command import Answer, decision_data, pending_line

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
    lines.append(pending_line(m.pending(), now))
    return Answer(
        "explain",
        True,
        "\n".join(lines),
        {
            "now_decision": decision_data(decision),
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
