"""Every tunable number of the policy is a `Thresholds` field, loadable like the others.

The numbers that used to be module constants of the policy and the summary (recovery margin,
wait for a reset nobody announced, the pressure of an unread slot, the last warning level,
the reset resolution) are fields now: each is read from the thresholds in hand, so changing
it changes the decision, and `Config` loads it from flags, env and config.toml.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path

import pytest

from gptme_subscription_plugin.config import Config, ConfigError, load_config
from gptme_subscription_plugin.policy import (
    DefaultPolicy,
    PolicyView,
    SlotView,
    expected_recovery,
    rank_candidates,
    rank_last_resort,
)
from gptme_subscription_plugin.summary import warn_levels
from gptme_subscription_plugin.thresholds import Thresholds

from .support.usage import DAY, NOW, H, snapshot
from .support.usage import slot_view as slot

T = Thresholds()
NEW = {
    "recovery_margin": 5 * H,
    "unknown_reset_wait": 120.0,
    "neutral_pressure": 0.7,
    "warn_pressure_final": 0.97,
    "reset_resolution": 10.0,
}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"), **extra}


def test_every_threshold_is_a_config_field_with_the_same_default() -> None:
    config = {f.name: f for f in dataclasses.fields(Config)}
    for f in dataclasses.fields(Thresholds):
        assert f.name in config, f.name
        assert config[f.name].default == f.default, f.name
    assert Config().thresholds == T


@pytest.mark.parametrize("name", sorted(NEW))
def test_each_new_threshold_loads_from_env_file_and_flags(tmp_path: Path, name: str) -> None:
    value = NEW[name]
    env = _env(tmp_path, **{f"GPTME_SUBSCRIPTION_{name.upper()}": str(value)})
    assert getattr(load_config(env=env).thresholds, name) == value
    path = tmp_path / "cfg" / "gptme-subscription" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(f"{name} = {value}\n")
    assert getattr(load_config(env=_env(tmp_path)).thresholds, name) == value
    assert getattr(load_config({name: value / 2}, env=env).thresholds, name) == value / 2


@pytest.mark.parametrize("name", sorted(NEW))
def test_a_bad_value_is_one_line_naming_the_key(tmp_path: Path, name: str) -> None:
    env = _env(tmp_path, **{f"GPTME_SUBSCRIPTION_{name.upper()}": "-1"})
    with pytest.raises(ConfigError, match=f"GPTME_SUBSCRIPTION_{name.upper()}") as info:
        load_config(env=env)
    assert "\n" not in str(info.value)


def test_recovery_margin_decides_whether_to_switch_ahead() -> None:
    # nothing serves: a is back in 4 h, b in half an hour
    view = PolicyView(
        "a",
        (
            slot("a", five=1.0, limited_until=NOW + 4 * H),
            slot("b", five=1.0, five_reset_in=0.5 * H, limited_until=NOW + 0.5 * H),
        ),
    )
    assert DefaultPolicy(T).decide(view, NOW).mode == "soonest-recovery"
    late = DefaultPolicy(replace(T, recovery_margin=NEW["recovery_margin"])).decide(view, NOW)
    assert (late.action, late.mode) == ("defer", "all-exhausted")


def test_unknown_reset_wait_is_how_long_a_limit_with_no_reset_lasts() -> None:
    assert expected_recovery(None, T, NOW) == NOW + H
    assert expected_recovery(None, replace(T, unknown_reset_wait=120.0), NOW) == NOW + 120.0
    assert expected_recovery(None, replace(T, unknown_reset_wait=120.0), NOW, default=9) == NOW + 9


def test_neutral_pressure_places_an_unread_slot_among_candidates_and_last_resorts() -> None:
    # b is 60 % of the way to its 5-hour threshold (40 % left); z has no reading; neither
    # has a weekly window, so expiry does not tell them apart
    b = slot("b", five=0.54, week=None)
    z = SlotView("z")
    view = PolicyView(None, (b, z))
    hot = replace(T, neutral_pressure=0.7)
    assert [s.name for s in rank_candidates(view, T, NOW)] == ["z", "b"]
    assert [s.name for s in rank_candidates(view, hot, NOW)] == ["b", "z"]
    assert [s.name for s in rank_last_resort(view, T, NOW)] == ["z", "b"]
    assert [s.name for s in rank_last_resort(view, hot, NOW)] == ["b", "z"]


def test_warn_pressure_final_is_the_last_warning_level() -> None:
    assert warn_levels(T) == [0.8, 0.9, 0.95]
    assert warn_levels(replace(T, warn_pressure_final=0.97)) == [0.8, 0.9, 0.97]


def test_reset_resolution_is_how_close_two_resets_rank_as_one() -> None:
    # equal readings, c's reset 30 s after b's: one rank by default, so preference (c) wins
    def reading(name: str, skew: float) -> SlotView:
        return SlotView(name, usage=snapshot(name, 0.1, 0.3, now=NOW + skew, week_reset_in=DAY))

    view = PolicyView(None, (reading("b", 0), reading("c", 30)), preference=("c", "b"))
    assert [s.name for s in rank_candidates(view, T, NOW + 60)] == ["c", "b"]
    fine = replace(T, reset_resolution=NEW["reset_resolution"])
    assert [s.name for s in rank_candidates(view, fine, NOW + 60)] == ["b", "c"]
