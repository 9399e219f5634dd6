"""The PreToolUse fast path: stdlib only, no cross-process lock, never flips.

PreToolUse fires on every tool call, so this path marks the turn busy in the turn registry
(one file per session, atomic rename) and, when the live slot has crossed a pressure level
since this session was last told, returns one agent-readable warning. Nothing else: no
pydantic, no gptme, no network, no lock.

A session in a slot's profile (`CLAUDE_CONFIG_DIR` set: session_home.py) is marked busy under
its slot, so it never holds up a flip of the live link, and hears no warning about the live
slot, which it does not use. Only such a session pays for looking up the profiles dir.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..fsutil import atomic_write_text, check_private, private_subdir, read_private_bytes
from ..hookstatus import read_hook_status
from ..paths import resolve_state_dir
from ..turns import TurnRegistry, session_key

WARNED_DIR = "warned"


def warned_path(state_dir: Path, session_id: str) -> Path:
    """The session's marker; ForeignPathError if `warned/` is a planted link or not ours."""
    check_private(state_dir / WARNED_DIR, "directory", follow=False)
    return state_dir / WARNED_DIR / session_key(session_id)


def read_warned(state_dir: Path, session_id: str) -> str:
    try:
        raw = read_private_bytes(warned_path(state_dir, session_id), "warned marker")
    except OSError:
        return ""
    return raw.decode("utf-8", "replace").strip() if raw is not None else ""


def forget_warned(state_dir: Path, session_id: str) -> None:
    try:  # noqa: SIM105 - contextlib would cost import time on the hook path
        warned_path(state_dir, session_id).unlink()
    except OSError:
        pass


def crossing_warning(state_dir: Path, session_id: str) -> str | None:
    """The warning for a pressure level this session has not heard about yet, else None."""
    status = read_hook_status(state_dir)
    if not status:
        return None
    level = status.get("level")
    live = status.get("live")
    if not isinstance(level, int) or level <= 0 or not isinstance(live, str):
        return None
    told = read_warned(state_dir, session_id)
    told_live, _, told_level = told.partition(":")
    if told_live == live and told_level.isdigit() and int(told_level) >= level:
        return None
    private_subdir(state_dir, WARNED_DIR)
    atomic_write_text(warned_path(state_dir, session_id), f"{live}:{level}")
    text = status.get("text")
    return text if isinstance(text, str) and text else None


def pre_tool_use(
    payload: Mapping[str, object], env: Mapping[str, str], now: float
) -> dict[str, object] | None:
    """Mark this session mid-turn; maybe warn once per pressure crossing."""
    session_id = payload.get("session_id")
    if not isinstance(session_id, str) or not session_id:
        return None
    state_dir = resolve_state_dir(env)
    check_private(state_dir, "state dir")
    check_private(state_dir / WARNED_DIR, "directory", follow=False)  # refuse before acting
    if env.get("CLAUDE_CONFIG_DIR"):
        slot = profile_of(env)
        if slot is not None:
            TurnRegistry(state_dir).mark_busy(session_id, now, slot=slot)
            return None
    TurnRegistry(state_dir).mark_busy(session_id, now)
    warning = crossing_warning(state_dir, session_id)
    if warning is None:
        return None
    return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "additionalContext": warning}}


def profile_of(env: Mapping[str, str]) -> str | None:
    """The slot whose profile this session runs in, or None (session_home.py)."""
    from ..paths import resolve_profiles_dir
    from ..session_home import profile_slot

    return profile_slot(env.get("CLAUDE_CONFIG_DIR"), resolve_profiles_dir(env))[0]


def session_end(payload: Mapping[str, object], env: Mapping[str, str]) -> dict[str, object] | None:
    """Unregister; cheap on purpose (Claude Code gives SessionEnd hooks about 1.5 s)."""
    session_id = payload.get("session_id")
    if isinstance(session_id, str) and session_id:
        state_dir = resolve_state_dir(env)
        check_private(state_dir, "state dir")
        TurnRegistry(state_dir).unregister(session_id)
        forget_warned(state_dir, session_id)
    return None
