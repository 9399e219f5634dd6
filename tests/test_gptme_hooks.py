"""The plugin's gptme hooks, fired through gptme's own hook registry (0.35.1 signatures).

The gptme session registers in the core's turn registry: idle at session.start, busy from
turn.pre to turn.post (kept fresh by a heartbeat), gone at session.end. turn.pre is where a
pending switch lands; step.pre never flips.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("gptme")

from gptme.config import Config as GptmeConfig  # noqa: E402
from gptme.config import UserConfig, get_project_config, set_config  # noqa: E402
from gptme.hooks import HookType, clear_hooks, get_hooks, trigger_hook  # noqa: E402
from gptme.hooks.types import ToolExecutePostData, ToolExecutePreData  # noqa: E402
from gptme.logmanager import LogManager  # noqa: E402
from gptme.message import Message  # noqa: E402
from gptme.plugins import discover_plugins  # noqa: E402
from gptme.plugins.registry import clear_registry, discover_all_plugins  # noqa: E402
from gptme.tools import ToolUse, clear_tools, set_tool_format, set_tools  # noqa: E402

from gptme_subscription_plugin.config import load_config  # noqa: E402
from gptme_subscription_plugin.gptme_plugin import hooks as plugin_hooks  # noqa: E402
from gptme_subscription_plugin.gptme_plugin.hooks import LIFECYCLE, register  # noqa: E402
from gptme_subscription_plugin.gptme_plugin.installer import folder_plugin_dir  # noqa: E402
from gptme_subscription_plugin.gptme_plugin.lifecycle import Heartbeat  # noqa: E402
from gptme_subscription_plugin.gptme_plugin.tool import tool  # noqa: E402
from gptme_subscription_plugin.manager import SubscriptionManager  # noqa: E402
from gptme_subscription_plugin.turns import TurnRegistry  # noqa: E402
from gptme_subscription_plugin.usage.snapshot import (  # noqa: E402
    SEVEN_DAY_S,
    UsageSnapshot,
    UsageWindow,
)

from .support.credentials import credential_bytes  # noqa: E402
from .support.sandbox import GptmeSandbox  # noqa: E402

SID = "gptme-conv1"


@pytest.fixture
def sb(tmp_path: Path, fake_server, monkeypatch) -> Iterator[GptmeSandbox]:
    box = GptmeSandbox(tmp_path, fake_server)
    box.apply_env(monkeypatch)
    set_config(GptmeConfig(user=UserConfig(), project=None))
    clear_hooks()
    clear_tools()
    set_tools([tool])
    set_tool_format("markdown")
    register()
    yield box
    LIFECYCLE.close_all()
    clear_hooks()
    clear_tools()


@pytest.fixture
def conv(sb: GptmeSandbox) -> SimpleNamespace:
    """What the turn hooks read of gptme's LogManager: its logdir (a new conversation: gptme
    fires session.start before it creates the log)."""
    return SimpleNamespace(logdir=sb.root / "logs" / "conv1")


def fire(hook: HookType, *args, **kwargs) -> list[Message]:
    msgs = list(trigger_hook(hook, *args, **kwargs))
    assert all("sk-ant" not in m.content for m in msgs)
    return msgs


def start(sb: GptmeSandbox, conv: Any) -> list[Message]:
    return fire(HookType.SESSION_START, logdir=conv.logdir, workspace=sb.ws, initial_msgs=[])


def use_workspace_config(sb: GptmeSandbox, toml: str) -> None:
    (sb.ws / "gptme.toml").write_text(toml)
    set_config(GptmeConfig(user=UserConfig(), project=get_project_config(sb.ws, quiet=True)))


def test_register_installs_every_hook_under_the_plugin_name(sb):
    names = {h.name for h in get_hooks()}
    assert {f"subscription.{n}" for n, *_ in plugin_hooks.HOOKS} <= names
    register()  # both loading routes call it: re-registering replaces, never doubles
    assert len([h for h in get_hooks() if h.name == "subscription.turn_pre"]) == 1


def test_session_start_adds_the_hidden_pressure_summary_and_registers(sb, conv):
    msgs = start(sb, conv)
    assert len(msgs) == 1 and msgs[0].hide and msgs[0].role == "system"
    text = msgs[0].content
    assert text.startswith("[subscription] live slot alice: 5h 10% (resets in ")
    assert "next: bob" in text and "advice: plenty of room" in text
    assert "Call the `subscription` tool" in text
    assert sb.entry(SID)["state"] == "idle"
    hook_status = json.loads((sb.state / "hook-status.json").read_text())
    assert hook_status["live"] == "alice"  # Claude Code's fast path gets the same summary


def test_session_start_warns_the_person_about_credentials_that_bypass_the_slots(
    sb, conv, monkeypatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-xyz")
    msgs = start(sb, conv)
    hidden = [m for m in msgs if m.hide]
    visible = [m for m in msgs if not m.hide]
    assert "ANTHROPIC_API_KEY is set in this gptme process" in hidden[0].content
    assert visible and "subscription WARNING" in visible[0].content


def test_session_start_without_the_tool_loaded_gives_no_tool_hint(sb, conv):
    clear_tools()
    (msg,) = start(sb, conv)
    assert "subscription` tool" not in msg.content


def test_turn_pre_marks_the_session_busy_for_everyone_and_turn_post_idle(sb, conv):
    start(sb, conv)
    fire(HookType.TURN_PRE, manager=conv)
    entry = sb.entry(SID)
    assert entry["state"] == "busy" and entry["pid"] is not None
    # another process (a person at the CLI, or a Claude Code child) now sees gptme mid-turn
    out = sb.run("switch", "bob")
    assert out.returncode == 0 and "pending" in out.stdout and sb.live() == "alice"
    status = json.loads(sb.run("status", "--json").stdout)
    assert status["sessions_mid_turn"] == [SID]
    msgs = fire(HookType.TURN_POST, manager=conv)
    assert sb.entry(SID)["state"] == "idle"
    assert sb.live() == "bob"  # the pending switch landed once gptme's turn ended
    assert any("switched alice -> bob" in m.content for m in msgs)


def test_a_pending_switch_lands_at_turn_pre_and_never_at_step_pre(sb, conv):
    start(sb, conv)
    other = sb.registry()
    other.mark_busy("cc-other", time.time())
    (answer,) = list(ToolUse("subscription", ["switch", "bob"], "").execute())
    assert "NOT switched yet" in answer.content and sb.live() == "alice"
    other.mark_idle("cc-other", time.time())  # the other session finished its turn
    assert fire(HookType.STEP_PRE, manager=conv) == []
    assert sb.live() == "alice"  # step.pre never flips, even with everyone idle
    msgs = fire(HookType.TURN_PRE, manager=conv)
    assert sb.live() == "bob"
    assert [m.content for m in msgs if not m.hide] == [
        "subscription: switched alice -> bob (switched to bob: switched by a gptme agent "
        "(subscription tool))"
    ]
    (news,) = [m for m in msgs if m.hide]  # the model hears the new live slot's summary
    assert news.content.startswith("[subscription] live slot bob: ")
    assert sb.entry(SID)["state"] == "busy"


def test_turn_pre_retells_the_summary_once_per_pressure_crossing(sb, conv):
    start(sb, conv)
    assert fire(HookType.TURN_PRE, manager=conv) == []  # nothing new since session start
    fire(HookType.TURN_POST, manager=conv)
    now = time.time()
    week = UsageWindow(0.93, now + 3 * 86400, SEVEN_DAY_S)  # pressure 98%: the top level
    SubscriptionManager(load_config()).record_usage(
        UsageSnapshot("alice", "statusline", now, seven_day=week)
    )
    sb.registry().mark_busy("claude-code-session", now)  # so the turn cannot switch away
    (note,) = fire(HookType.TURN_PRE, manager=conv)
    assert note.hide and note.content.startswith("[subscription] live slot alice: 5h 10%")
    assert "weekly 93%" in note.content and "pressure 95%" in note.content
    assert fire(HookType.TURN_PRE, manager=conv) == []  # told once per crossing
    assert sb.live() == "alice"


def test_turn_pre_decides_like_user_prompt_submit_when_nobody_else_is_mid_turn(sb, conv):
    """The first prompt after a quiet spell is a decision point of its own (cached usage):
    the same controller as Claude Code's UserPromptSubmit."""
    start(sb, conv)
    fire(HookType.TURN_POST, manager=conv)
    now = time.time()
    week = UsageWindow(0.995, now + 3 * 86400, SEVEN_DAY_S)  # alice ran out
    SubscriptionManager(load_config()).record_usage(
        UsageSnapshot("alice", "statusline", now, seven_day=week)
    )
    msgs = fire(HookType.TURN_PRE, manager=conv)
    assert sb.live() == "bob"
    (line,) = [m.content for m in msgs if not m.hide]
    assert line.startswith("subscription: switched alice -> bob"), line
    assert sb.entry(SID)["state"] == "busy"


def test_a_resumed_conversation_hears_the_summary_at_its_first_turn(sb, conv):
    log = LogManager.load(conv.logdir, initial_msgs=[Message("user", "hi")], create=True)
    log.write()  # the log exists: gptme ignores session.start messages on resume
    start(sb, log)
    conv = log
    (note,) = fire(HookType.TURN_PRE, manager=conv)
    assert note.hide and note.content.startswith("[subscription] live slot alice: ")
    assert fire(HookType.TURN_PRE, manager=conv) == []


def test_turn_pre_leaves_the_switch_pending_while_another_session_is_busy(sb, conv):
    start(sb, conv)
    sb.registry().mark_busy("cc-other", time.time())
    ToolUse("subscription", ["switch", "bob"], "").execute().__next__()
    assert fire(HookType.TURN_PRE, manager=conv) == []
    assert sb.live() == "alice" and sb.rotation()["pending"]["slot"] == "bob"


def test_the_agents_own_turn_never_blocks_its_own_switch(sb, conv):
    start(sb, conv)
    fire(HookType.TURN_PRE, manager=conv)  # busy: mid-turn
    (answer,) = list(ToolUse("subscription", ["switch", "bob"], "").execute())
    assert "switched to bob" in answer.content and sb.live() == "bob"


def test_turn_post_switches_off_an_exhausted_slot_like_claude_codes_stop_hook(sb, conv):
    sb.set_usage("alice", five=20, week=99)  # seen at session start (one poll per 180 s)
    start(sb, conv)
    sb.registry().mark_busy("claude-code-session", time.time())  # turn.pre cannot switch
    fire(HookType.TURN_PRE, manager=conv)
    assert sb.live() == "alice"
    sb.registry().mark_idle("claude-code-session", time.time())
    msgs = fire(HookType.TURN_POST, manager=conv)
    assert sb.live() == "bob"
    assert any("switched alice -> bob" in m.content for m in msgs)
    kinds = [e["kind"] for e in sb.events()]
    assert "decision" in kinds and "switch" in kinds


def test_turn_post_says_so_when_an_urgent_switch_must_wait(sb, conv):
    sb.set_usage("alice", five=20, week=99)
    start(sb, conv)
    sb.registry().mark_busy("cc-other", time.time())
    msgs = fire(HookType.TURN_POST, manager=conv)
    assert sb.live() == "alice"
    assert any("pending" in m.content and "mid-turn" in m.content for m in msgs)


def test_turn_pre_heals_a_refreshed_live_file_first(sb, conv):
    start(sb, conv)
    live = sb.claude / ".credentials.json"
    live.unlink()
    live.write_bytes(credential_bytes("alice", 2))  # Claude Code refreshed: link -> file
    msgs = fire(HookType.TURN_PRE, manager=conv)
    assert live.is_symlink() and sb.live() == "alice"
    assert any("copied live credential into alice" in m.content for m in msgs)


def test_session_end_unregisters_and_stops_the_heartbeat(sb, conv):
    start(sb, conv)
    fire(HookType.TURN_PRE, manager=conv)
    (session,) = LIFECYCLE.sessions()
    beat = session.heartbeat
    assert beat is not None and beat.alive
    fire(HookType.SESSION_END, manager=conv, logdir=conv.logdir)
    assert sb.entry(SID) is None and not beat.alive and LIFECYCLE.sessions() == []


def test_process_exit_without_session_end_leaves_no_busy_entry(sb, conv):
    start(sb, conv)
    fire(HookType.TURN_PRE, manager=conv)
    LIFECYCLE.close_all()  # what the atexit handler runs
    assert sb.entry(SID) is None


def test_heartbeat_keeps_a_long_turn_registered(sb):
    registry = TurnRegistry(sb.state)
    clock = iter(range(1_000_000, 2_000_000, 5))  # every call is 5 s later
    registry.mark_busy("long", 999_990.0)
    beat = Heartbeat(registry, "long", interval=0.01, clock=lambda: float(next(clock)))
    beat.start()
    deadline = time.monotonic() + 5
    while (registry.get("long").last_seen < 1_000_010) and time.monotonic() < deadline:
        time.sleep(0.01)
    beat.stop()
    entry = registry.get("long")
    assert entry.busy and entry.since == 999_990.0 and entry.last_seen >= 1_000_010
    assert not beat.alive


def test_turn_scope_tool_is_busy_only_while_a_tool_runs(sb, conv):
    use_workspace_config(sb, '[plugin.subscription]\nturn_scope = "tool"\n')
    start(sb, conv)
    fire(HookType.TURN_PRE, manager=conv)
    assert sb.entry(SID)["state"] == "idle"
    use = ToolUse("subscription", ["status"], "")
    fire(HookType.TOOL_EXECUTE_PRE, ToolExecutePreData(tool_use=use))
    assert sb.entry(SID)["state"] == "busy"
    fire(HookType.TOOL_EXECUTE_POST, ToolExecutePostData(tool_use=use))
    assert sb.entry(SID)["state"] == "idle"
    fire(HookType.TOOL_EXECUTE_PRE, ToolExecutePreData(tool_use=use))
    fire(HookType.STEP_PRE, manager=conv)  # a tool that raised skips tool.execute.post
    assert sb.entry(SID)["state"] == "idle"


def test_turn_scope_off_never_registers(sb, conv):
    use_workspace_config(sb, '[plugin.subscription]\nturn_scope = "off"\n')
    start(sb, conv)
    fire(HookType.TURN_PRE, manager=conv)
    assert sb.entry(SID) is None
    assert not (sb.state / "sessions").exists() or list((sb.state / "sessions").iterdir()) == []


def test_a_broken_setting_never_breaks_the_session(sb, conv):
    use_workspace_config(sb, '[plugin.subscription]\npoll_interval = "soon"\n')
    (msg,) = start(sb, conv)
    assert not msg.hide
    assert msg.content.startswith("[subscription] not active in this session: gptme.toml ")
    assert "poll_interval" in msg.content
    assert fire(HookType.TURN_PRE, manager=conv) == []
    assert fire(HookType.TURN_POST, manager=conv) == []


# ---------------------------------------------------------------- both loading routes


def test_entry_point_plugin_is_found_by_name(sb):
    clear_registry()
    try:
        plugins = discover_all_plugins(folder_paths=None, enabled_plugins=["subscription"])
        (plugin,) = plugins
        assert plugin.name == "subscription" and plugin.tools == [tool]
        assert plugin.register_hooks is register
    finally:
        clear_registry()


def test_folder_plugin_is_found_at_the_path_the_installer_writes(sb):
    import gptme.plugins as gptme_plugins

    gptme_plugins._plugin_cache.clear()
    (found,) = discover_plugins([folder_plugin_dir()])
    assert found.name == "subscription"
    assert found.tool_modules == ["subscription.tools"]
    assert found.hook_modules == ["subscription.hooks"]
    import subscription.hooks  # type: ignore[import-not-found]
    import subscription.tools.subscription  # type: ignore[import-not-found]

    assert subscription.tools.subscription.tool is tool
    assert subscription.hooks.register is register
    gptme_plugins._plugin_cache.clear()
