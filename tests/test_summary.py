"""The agent-facing pressure summary, warn levels, and stdlib path resolution."""

from __future__ import annotations

from gptme_subscription_plugin.paths import resolve_claude_dir, resolve_state_dir
from gptme_subscription_plugin.policy import DefaultPolicy, PolicyView, SlotView
from gptme_subscription_plugin.summary import pressure_level, summarize, warn_levels
from gptme_subscription_plugin.thresholds import Thresholds
from gptme_subscription_plugin.usage.snapshot import (
    UsageSnapshot,
)

from .support.usage import NOW, snapshot

T = Thresholds()


def snap(name: str, five: float, week: float, sonnet: float = 0.0) -> UsageSnapshot:
    return snapshot(name, five, week, source="t", models={"sonnet": sonnet})


def test_summary_names_live_usage_next_and_advice():
    view = PolicyView(
        "a",
        (SlotView("a", usage=snap("a", 0.42, 0.61, 0.3)), SlotView("b", usage=snap("b", 0.1, 0.2))),
    )
    decision = DefaultPolicy(T).decide(view, NOW)
    s = summarize(view, decision, T, NOW)
    assert s.text == (
        "[subscription] live slot a: 5h 42% (resets in 2h00m), weekly 61% (resets in 3d00h), "
        "sonnet weekly 30%, pressure 62%; next: b (weekly 20%); advice: plenty of room; carry on"
    )
    assert s.level == 0 and s.live == "a"


def test_summary_when_everything_is_spent_and_a_switch_is_pending():
    view = PolicyView(
        "a",
        (
            SlotView("a", usage=snap("a", 0.95, 0.99)),
            SlotView("b", usable=False, health="malformed"),
        ),
    )
    s = summarize(view, DefaultPolicy(T).decide(view, NOW), T, NOW, pending="b")
    assert "next: none available" in s.text and "switch to b pending" in s.text
    assert "expect rate limits" in s.text and s.level == 3


def test_warn_levels_are_increasing_and_below_one():
    levels = warn_levels(T)
    assert levels == sorted(levels) and levels[0] == T.warn_pressure and max(levels) < 1
    assert [pressure_level(p, levels) for p in (None, 0.5, 0.8, 0.91, 0.99)] == [0, 0, 1, 2, 3]


def test_paths_follow_env_then_config_file(tmp_path):
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    assert resolve_state_dir(env) == tmp_path / ".local/state/gptme-subscription"
    assert resolve_claude_dir(env) == tmp_path / ".claude"
    cfg = tmp_path / "cfg" / "gptme-subscription"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text('state_dir = "/srv/st"\ncreds_dir = "/srv/cc"\n')
    assert resolve_state_dir(env) == tmp_path.__class__("/srv/st")
    assert resolve_claude_dir(env) == tmp_path.__class__("/srv/cc")
    env["GPTME_SUBSCRIPTION_STATE_DIR"] = str(tmp_path / "x")
    assert resolve_state_dir(env) == tmp_path / "x"
    (cfg / "config.toml").write_text("state_dir = [")  # broken file: fall back, never raise
    assert resolve_claude_dir({**env, "CLAUDE_CONFIG_DIR": "/c"}) == tmp_path.__class__("/c")
