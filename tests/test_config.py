"""Config precedence (flags > env > file > defaults) and one-line errors naming the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gptme_subscription_plugin.config import ConfigError, load_config
from gptme_subscription_plugin.names import validate_slot_name


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"), **extra}


def write_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "cfg" / "gptme-subscription" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_defaults(tmp_path):
    cfg = load_config(env=env_for(tmp_path))
    assert cfg.claude_dir == tmp_path / "home" / ".claude"
    assert cfg.state_dir == tmp_path / "home" / ".local/state/gptme-subscription"
    assert cfg.poll_interval == 180 and cfg.api_base == "https://api.anthropic.com"
    assert cfg.live_path.name == ".credentials.json"
    assert cfg.thresholds.weekly_exhausted == cfg.weekly_exhausted


def test_claude_config_dir_and_xdg_state(tmp_path):
    cfg = load_config(
        env=env_for(
            tmp_path, CLAUDE_CONFIG_DIR=str(tmp_path / "cc"), XDG_STATE_HOME=str(tmp_path / "st")
        )
    )
    assert cfg.claude_dir == tmp_path / "cc"
    assert cfg.state_dir == tmp_path / "st" / "gptme-subscription"


def test_precedence_flag_over_env_over_file(tmp_path):
    write_file(tmp_path, 'poll_interval = 60\nslots = ["a", "b"]\nweekly_exhausted = 0.9\n')
    env = env_for(tmp_path, GPTME_SUBSCRIPTION_POLL_INTERVAL="90")
    cfg = load_config(env=env)
    assert (cfg.poll_interval, cfg.slots, cfg.weekly_exhausted) == (90, ["a", "b"], 0.9)
    cfg = load_config({"poll_interval": 30, "slots": None}, env=env)
    assert cfg.poll_interval == 30 and cfg.slots == ["a", "b"]


def test_env_lists_and_aliases(tmp_path):
    cfg = load_config(
        env=env_for(
            tmp_path,
            GPTME_SUBSCRIPTION_SLOTS="a, b,c",
            GPTME_SUBSCRIPTION_FALLBACK_ORDER="c,a",
            GPTME_SUBSCRIPTION_CREDS_DIR=str(tmp_path / "x"),
            GPTME_SUBSCRIPTION_API_BASE="http://127.0.0.1:9/",
        )
    )
    assert cfg.slots == ["a", "b", "c"] and cfg.fallback_order == ["c", "a"]
    assert cfg.claude_dir == tmp_path / "x" and cfg.api_base == "http://127.0.0.1:9"


def test_0_1_0_sonnet_weekly_variable_sets_the_per_model_threshold(tmp_path):
    """0.1.0's GPTME_SUBSCRIPTION_SONNET_WEEKLY_EXHAUSTED is our model_weekly_exhausted, for
    the CLI and hooks as for the compat package; our own name wins when both are set."""
    alias = {"GPTME_SUBSCRIPTION_SONNET_WEEKLY_EXHAUSTED": "0.9"}
    for use_cache in (False, True, True):  # the second cached call is a cache hit
        cfg = load_config(env=env_for(tmp_path, **alias), use_cache=use_cache)
        assert cfg.model_weekly_exhausted == 0.9 and cfg.thresholds.model_weekly_exhausted == 0.9
    ours = {"GPTME_SUBSCRIPTION_MODEL_WEEKLY_EXHAUSTED": "0.8"}
    for env in ({**alias, **ours}, {**ours, **alias}):
        assert load_config(env=env_for(tmp_path, **env)).model_weekly_exhausted == 0.8
    with pytest.raises(ConfigError, match="GPTME_SUBSCRIPTION_SONNET_WEEKLY_EXHAUSTED"):
        load_config(env=env_for(tmp_path, GPTME_SUBSCRIPTION_SONNET_WEEKLY_EXHAUSTED="2"))
    write_file(tmp_path, "sonnet_weekly_exhausted = 0.85\n")
    assert load_config(env=env_for(tmp_path)).model_weekly_exhausted == 0.85
    write_file(tmp_path, "model_weekly_exhausted = 0.7\nsonnet_weekly_exhausted = 0.85\n")
    assert load_config(env=env_for(tmp_path)).model_weekly_exhausted == 0.7


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"GPTME_SUBSCRIPTION_POLL_INTERVAL": "soon"}, "GPTME_SUBSCRIPTION_POLL_INTERVAL"),
        ({"GPTME_SUBSCRIPTION_WEEKLY_EXHAUSTED": "1.5"}, "GPTME_SUBSCRIPTION_WEEKLY_EXHAUSTED"),
        ({"GPTME_SUBSCRIPTION_SLOTS": "ok,../etc"}, "GPTME_SUBSCRIPTION_SLOTS"),
        ({"GPTME_SUBSCRIPTION_API_BASE": "ftp://x"}, "GPTME_SUBSCRIPTION_API_BASE"),
    ],
)
def test_bad_env_value_is_one_line_naming_the_key(tmp_path, env, needle):
    with pytest.raises(ConfigError) as exc:
        load_config(env=env_for(tmp_path, **env))
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_bad_file(tmp_path):
    write_file(tmp_path, "poll_interval = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(env=env_for(tmp_path))
    write_file(tmp_path, "pol_interval = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'pol_interval'"):
        load_config(env=env_for(tmp_path))
    write_file(tmp_path, "backup_keep = 0\n")
    with pytest.raises(ConfigError, match=r"config.toml: backup_keep"):
        load_config(env=env_for(tmp_path))


def test_bad_flag_names_the_flag(tmp_path):
    with pytest.raises(ConfigError, match="--poll-interval"):
        load_config({"poll_interval": -1}, env=env_for(tmp_path))


@pytest.mark.parametrize("name", ["", "a/b", "..", "a.b", "../x", "a\x00b", "x" * 65, "é", " a"])
def test_slot_names_refused(name):
    with pytest.raises(ValueError):
        validate_slot_name(name)


@pytest.mark.parametrize("name", ["alice", "Bob_2", "max-20x", "a"])
def test_slot_names_accepted(name):
    assert validate_slot_name(name) == name


def test_cached_config_skips_pydantic_and_follows_every_input(tmp_path):
    """Hooks reuse a validated config; any change of env or config file re-validates."""
    import json
    import subprocess
    import sys

    env = env_for(
        tmp_path,
        GPTME_SUBSCRIPTION_STATE_DIR=str(tmp_path / "state"),
        GPTME_SUBSCRIPTION_POLL_INTERVAL="77",
    )
    first = load_config(env=env, use_cache=True)
    assert (tmp_path / "state" / "config-cache.json").exists()
    code = (
        "import json, os, sys\n"
        "from gptme_subscription_plugin.config import load_config\n"
        "c = load_config(use_cache=True)\n"
        "print(json.dumps([c.poll_interval, 'pydantic' in sys.modules]))\n"
    )

    def run(extra_env: dict[str, str]) -> list:
        proc = subprocess.run(
            [sys.executable, "-c", code], env=extra_env, capture_output=True, text=True, check=True
        )
        return json.loads(proc.stdout)

    assert run(env) == [77.0, False]  # cache hit: no pydantic
    assert run({**env, "GPTME_SUBSCRIPTION_POLL_INTERVAL": "88"}) == [88.0, True]
    write_file(tmp_path, "weekly_exhausted = 0.9\n")
    assert load_config(env=env, use_cache=True).weekly_exhausted == 0.9
    (tmp_path / "state" / "config-cache.json").write_text("{garbage")
    assert load_config(env=env, use_cache=True) == dataclasses.replace(first, weekly_exhausted=0.9)


def test_cached_config_still_refuses_bad_values(tmp_path):
    env = env_for(tmp_path, GPTME_SUBSCRIPTION_STATE_DIR=str(tmp_path / "state"))
    load_config(env=env, use_cache=True)
    with pytest.raises(ConfigError, match="GPTME_SUBSCRIPTION_LOCK_WAIT"):
        load_config(env={**env, "GPTME_SUBSCRIPTION_LOCK_WAIT": "-1"}, use_cache=True)
