"""Claude Code hook handlers at turn boundaries (everything but the PreToolUse fast path).

Each handler takes the hook's stdin payload and returns the JSON Claude Code documents for that
event (or None for no output). The dispatcher in `dispatch.py` guarantees exit 0 and turns any
exception into one line on stderr: a hook never hurts the user's session.

Turn lifecycle: UserPromptSubmit (or the first PreToolUse) marks the session busy; Stop,
StopFailure and SessionEnd end the turn. Flips happen only where no other session is mid-turn:
a decided switch stays pending until such a boundary.

A session in a slot's profile (`CLAUDE_CONFIG_DIR=<profiles_dir>/<slot>`, session_home.py)
runs on that slot alone: its hooks register its turns under the slot, poll and mark only that
slot (`ProfileRunner`), and never heal, switch or defer the live link of the main dir.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..boundary_runner import BoundaryResult, BoundaryRunner, ProfileResult, ProfileRunner
from ..config import load_config
from ..manager import SubscriptionManager
from ..overrides import override_warnings
from ..session_home import CONFIG_DIR_ENV, profile_slot, untrusted_line
from .transcript import last_model


class HookSession:
    """The manager a hook works with, and where the session runs: `slot` for a session in
    that slot's profile (the manager is then the main dir's), None on the live link; `note`
    says why a config dir that looks like a profile is not trusted as one."""

    def __init__(self, m: SubscriptionManager, slot: str | None, note: str | None) -> None:
        self.m = m
        self.slot = slot
        self.note = untrusted_line(note) if note else None


def open_session(env: Mapping[str, str]) -> HookSession:
    """The main dir's manager (`load_config` never takes a profile for the claude dir) and
    the profile slot `CLAUDE_CONFIG_DIR` names, if it names a trusted one."""
    m = make_manager(env)
    slot, note = profile_slot(env.get(CONFIG_DIR_ENV), m.config.profiles_path)
    return HookSession(m, slot, note)


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
    hs = open_session(env)
    m = hs.m
    sid = session_of(payload)
    now = m.clock()
    m.turns.sweep(now, m.config.session_ttl)
    if sid:
        m.turns.mark_idle(sid, now, slot=hs.slot)
    if hs.slot is not None:
        return _profile_start(hs, payload, env, sid)
    result = BoundaryRunner(m).session_start()
    notes = _lines(result, hs.note)
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
    hs = open_session(env)
    m = hs.m
    sid = session_of(payload)
    if hs.slot is not None:
        if sid:
            m.turns.mark_busy(sid, m.clock(), slot=hs.slot)
            m.record_turn(sid, "start", hs.slot)
        return _spent_output("UserPromptSubmit", ProfileRunner(m, hs.slot).prompt_submit(), sid)
    result = BoundaryRunner(m).prompt_submit(sid)
    if sid:
        m.turns.mark_busy(sid, m.clock())
        m.record_turn(sid, "start")
    line = result.switched_line()
    notes = _lines(result, line)
    if line is None or result.summary is None:
        return {"systemMessage": "; ".join(notes)} if notes else None
    return context_output("UserPromptSubmit", result.summary.text, "; ".join(notes))


def stop(payload: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any] | None:
    """The turn ends on an answer, so on the live slot (in a profile: on its slot): decide
    on refreshed usage (in a profile: only say when the slot is spent)."""
    hs = open_session(env)
    m = hs.m
    sid = session_of(payload)
    if sid:
        m.turns.mark_idle(sid, m.clock(), slot=hs.slot)
        m.record_turn(sid, "end", hs.slot)  # before any switch: the slot that answered
    if hs.slot is not None:
        line = ProfileRunner(m, hs.slot).stop().spent_line(sid)
        return {"systemMessage": line} if line else None
    result = BoundaryRunner(m).stop(sid, answered_on_live=True)
    notes = _lines(result, hs.note, result.stop_line())
    return {"systemMessage": "; ".join(notes)} if notes else None


def stop_failure(payload: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any] | None:
    """A turn ended on an API error: a rate limit or a refused credential marks the live slot
    (boundary.py says how) and moves at once when nobody else is mid-turn; other errors
    (overloaded, server errors) say nothing about the slot and change nothing."""
    hs = open_session(env)
    m = hs.m
    sid = session_of(payload)
    if sid:
        m.turns.mark_idle(sid, m.clock(), slot=hs.slot)
    error = payload.get("error")
    model = last_model(payload.get("transcript_path")) if error == "rate_limit" else None
    if hs.slot is not None:
        spent = ProfileRunner(m, hs.slot).stop_failure(error, model)
        return _spent_output("StopFailure", spent, sid) if spent is not None else None
    result = BoundaryRunner(m).stop_failure(sid, error, model)
    line = result.switched_line() if result is not None else None
    return {"systemMessage": line} if line else None


# ---------------------------------------------------------------- in a profile


def _profile_start(
    hs: HookSession, payload: Mapping[str, Any], env: Mapping[str, str], sid: str | None
) -> dict[str, Any]:
    """Poll the profile's own slot and tell the agent whose account it runs on; a spent slot
    and credential overrides are said to the person too."""
    assert hs.slot is not None
    result = ProfileRunner(hs.m, hs.slot).session_start()
    text = result.usage_text()
    notes = []
    spent = result.spent_line(sid)
    if spent:
        text += "\n" + spent
        notes.append(spent)
    config_dir = Path(env[CONFIG_DIR_ENV]).expanduser()
    overrides = override_warnings(env, payload, config_dir)
    if overrides:
        warning = (
            "subscription WARNING: "
            + ", ".join(overrides)
            + f" overrides slot {hs.slot}'s credential in this profile session"
        )
        text = warning + "\n" + text
        notes.append(warning)
    return context_output("SessionStart", text, "; ".join(notes) if notes else None)


def _spent_output(
    event: str, result: ProfileResult, session_id: str | None
) -> dict[str, Any] | None:
    """When the profile's slot cannot serve: the same line for the agent and the person;
    nothing at all while it can."""
    line = result.spent_line(session_id)
    return context_output(event, line, line) if line else None


HANDLERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, str]], dict[str, Any] | None]] = {
    "session-start": session_start,
    "user-prompt-submit": user_prompt_submit,
    "stop": stop,
    "stop-failure": stop_failure,
}

__all__ = ["HANDLERS"]
