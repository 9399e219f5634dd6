"""Claude Code hook handlers at turn boundaries (everything but the PreToolUse fast path).

Each handler takes the hook's stdin payload and returns the JSON Claude Code documents for that
event (or None for no output). The dispatcher in `dispatch.py` guarantees exit 0 and turns any
exception into one line on stderr: a hook never hurts the user's session.

Turn lifecycle: UserPromptSubmit (or the first PreToolUse) marks the session busy; Stop,
StopFailure and SessionEnd end the turn. Flips happen only where no other session is mid-turn:
a decided switch stays pending until such a boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..boundary_runner import BoundaryResult, BoundaryRunner
from ..config import load_config
from ..manager import SubscriptionManager
from ..overrides import override_warnings
from .transcript import last_model


def make_manager(env: Mapping[str, str]) -> SubscriptionManager:
    return SubscriptionManager(load_config(env=env, use_cache=True))


def context_output(event: str, text: str, system_message: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hookSpecificOutput": {"hookEventName": event, "additionalContext": text[:9000]}
    }
    if system_message:
        out["systemMessage"] = system_message[:1000]
    return out


def session_of(payload: Mapping[str, Any]) -> str | None:
    sid = payload.get("session_id")
    return sid if isinstance(sid, str) and sid else None


def _lines(result: BoundaryResult, *extra: str | None) -> list[str]:
    return [line for line in (result.heal, *extra) if line]


# ---------------------------------------------------------------- handlers


def session_start(payload: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any] | None:
    m = make_manager(env)
    sid = session_of(payload)
    now = m.clock()
    m.turns.sweep(now, m.config.session_ttl)
    if sid:
        m.turns.mark_idle(sid, now)
    result = BoundaryRunner(m).session_start()
    notes = _lines(result)
    overrides = override_warnings(env, payload, m.config.claude_dir)
    assert result.summary is not None
    text = result.summary.text
    if overrides:
        warning = (
            "subscription WARNING: "
            + ", ".join(overrides)
            + " overrides the subscription slots; rotation has no effect in this session"
        )
        text = warning + "\n" + text
        notes.append(warning)
    return context_output("SessionStart", text, "; ".join(notes) if notes else None)


def user_prompt_submit(payload: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any] | None:
    """The turn starts: the last safe point before its first request (boundary.py says what
    happens there); then the session is mid-turn."""
    m = make_manager(env)
    sid = session_of(payload)
    result = BoundaryRunner(m).prompt_submit(sid)
    if sid:
        m.turns.mark_busy(sid, m.clock())
    line = result.switched_line()
    notes = _lines(result, line)
    if line is None or result.summary is None:
        return {"systemMessage": "; ".join(notes)} if notes else None
    return context_output("UserPromptSubmit", result.summary.text, "; ".join(notes))


def stop(payload: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any] | None:
    """The turn ends on an answer, so on the live slot: decide on refreshed usage."""
    m = make_manager(env)
    sid = session_of(payload)
    if sid:
        m.turns.mark_idle(sid, m.clock())
    result = BoundaryRunner(m).stop(sid, answered_on_live=True)
    notes = _lines(result, result.stop_line())
    return {"systemMessage": "; ".join(notes)} if notes else None


def stop_failure(payload: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any] | None:
    """A turn ended on an API error: a rate limit or a refused credential marks the live slot
    (boundary.py says how) and moves at once when nobody else is mid-turn; other errors
    (overloaded, server errors) say nothing about the slot and change nothing."""
    m = make_manager(env)
    sid = session_of(payload)
    if sid:
        m.turns.mark_idle(sid, m.clock())
    error = payload.get("error")
    model = last_model(payload.get("transcript_path")) if error == "rate_limit" else None
    result = BoundaryRunner(m).stop_failure(sid, error, model)
    line = result.switched_line() if result is not None else None
    return {"systemMessage": line} if line else None


HANDLERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, str]], dict[str, Any] | None]] = {
    "session-start": session_start,
    "user-prompt-submit": user_prompt_submit,
    "stop": stop,
    "stop-failure": stop_failure,
}

__all__ = ["HANDLERS"]
