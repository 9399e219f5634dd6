"""gptme hooks at gptme's own boundaries (0.32+ signatures), and reading `[plugin.subscription]`.

Thin adapters over `lifecycle.Lifecycle`: each turns gptme's arguments into a session, calls
the boundary, and turns its notes into `Message`s. A hook never breaks the gptme session: an
error becomes a log warning (and, at session start, one visible line saying the plugin is not
active and why).

| gptme hook            | what it does                                                        |
|-----------------------|---------------------------------------------------------------------|
| session.start         | registers the session, heals drift, adds the pressure summary (hidden) |
| turn.pre              | the safe boundary: applies a pending switch, marks the session busy  |
| step.pre              | never flips; refreshes the busy mark                                 |
| tool.execute.pre/post | only with turn_scope = "tool": busy while a tool runs                |
| turn.post             | idle; decides on fresh-enough usage and switches or leaves it pending |
| session.end           | unregisters                                                          |
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from gptme.hooks import HookType, register_hook
from gptme.hooks.types import ToolExecutePostData, ToolExecutePreData
from gptme.message import Message

from ..config import Config
from .lifecycle import Lifecycle, Note
from .settings import PLUGIN_NAME, PluginSettings, SettingsSource, load_settings

log = logging.getLogger(__name__)
HOOK_PREFIX = f"{PLUGIN_NAME}."


def settings_sources(workspace: Path | None = None) -> list[SettingsSource]:
    """`[plugin.subscription]` from gptme's user config, then the workspace's gptme.toml."""
    from gptme.config import get_config

    cfg = get_config()
    sources: list[SettingsSource] = []
    user = cfg.user.plugin.get(PLUGIN_NAME)
    if user:
        sources.append(SettingsSource("gptme user config", user))
    project = cfg.project.plugin.get(PLUGIN_NAME) if cfg.project is not None else None
    if project:
        base = workspace or getattr(cfg.project, "_workspace", None)
        sources.append(SettingsSource("gptme.toml", project, Path(base) if base else None))
    return sources


def load_from_gptme(workspace: Path | None = None) -> tuple[Config, PluginSettings]:
    return load_settings(settings_sources(workspace))


LIFECYCLE = Lifecycle(load_from_gptme)


def _messages(
    event: str, boundary: Callable[[], list[Note]], visible_errors: bool = False
) -> list[Message]:
    try:
        notes = boundary()
    except Exception as exc:  # noqa: BLE001 - a hook must never break the gptme session
        detail = _one_line(exc)
        log.warning("subscription %s hook: %s: %s", event, type(exc).__name__, detail)
        if visible_errors:
            return [Message("system", f"[subscription] not active in this session: {detail}")]
        return []
    return [Message("system", note.text, hide=note.hide) for note in notes]


def _logdir(manager: Any) -> Path | None:
    logdir = getattr(manager, "logdir", None)
    return Path(logdir) if logdir is not None else None


def _tool_loaded() -> bool:
    from gptme.tools import has_tool

    return has_tool(PLUGIN_NAME)


def on_session_start(
    logdir: Path | None = None,
    workspace: Path | None = None,
    initial_msgs: list[Message] | None = None,
    **_: Any,
) -> Generator[Message, None, None]:
    ws = Path(workspace) if workspace is not None else None
    yield from _messages(
        "session.start",
        lambda: LIFECYCLE.session_start(logdir, ws, _tool_loaded()),
        visible_errors=True,
    )


def on_turn_pre(manager: Any = None, **_: Any) -> Generator[Message, None, None]:
    yield from _messages("turn.pre", lambda: LIFECYCLE.turn_pre(_logdir(manager)))


def on_step_pre(manager: Any = None, **_: Any) -> Generator[Message, None, None]:
    yield from _messages("step.pre", lambda: LIFECYCLE.step_pre(_logdir(manager)))


def on_tool_pre(data: ToolExecutePreData) -> Generator[Message, None, None]:
    yield from _messages("tool.execute.pre", lambda: LIFECYCLE.tool_pre(None))


def on_tool_post(data: ToolExecutePostData) -> Generator[Message, None, None]:
    yield from _messages("tool.execute.post", lambda: LIFECYCLE.tool_post(None))


def on_turn_post(manager: Any = None, **_: Any) -> Generator[Message, None, None]:
    yield from _messages("turn.post", lambda: LIFECYCLE.turn_post(_logdir(manager)))


def on_session_end(
    manager: Any = None, logdir: Path | None = None, **_: Any
) -> Generator[Message, None, None]:
    where = Path(logdir) if logdir is not None else _logdir(manager)
    yield from _messages("session.end", lambda: LIFECYCLE.session_end(where))


HOOKS: tuple[tuple[str, HookType, Callable[..., Generator[Message, None, None]]], ...] = (
    ("session_start", HookType.SESSION_START, on_session_start),
    ("turn_pre", HookType.TURN_PRE, on_turn_pre),
    ("step_pre", HookType.STEP_PRE, on_step_pre),
    ("tool_pre", HookType.TOOL_EXECUTE_PRE, on_tool_pre),
    ("tool_post", HookType.TOOL_EXECUTE_POST, on_tool_post),
    ("turn_post", HookType.TURN_POST, on_turn_post),
    ("session_end", HookType.SESSION_END, on_session_end),
)


def register() -> None:
    """Register every hook (re-registering replaces: safe from both loading routes)."""
    for name, hook_type, func in HOOKS:
        register_hook(HOOK_PREFIX + name, hook_type, func)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


__all__ = ["HOOKS", "LIFECYCLE", "load_from_gptme", "register", "settings_sources"]
