"""Which home a hook's session runs in, from its `CLAUDE_CONFIG_DIR` (session_home.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gptme_subscription_plugin.config import load_config
from gptme_subscription_plugin.paths import resolve_profiles_dir
from gptme_subscription_plugin.session_home import profile_slot


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    base = tmp_path / "profiles"
    (base / "bob").mkdir(parents=True, mode=0o700)
    base.chmod(0o700)
    return base


def test_a_profile_of_ours_names_its_slot(profiles: Path) -> None:
    assert profile_slot(str(profiles / "bob"), profiles) == ("bob", None)
    assert profile_slot(str(profiles / "bob") + "/", profiles) == ("bob", None)
    assert profile_slot(str(profiles / "x" / ".." / "bob"), profiles) == ("bob", None)


def test_the_profiles_dir_reached_through_a_link_still_counts(
    profiles: Path, tmp_path: Path
) -> None:
    (tmp_path / "linked").symlink_to(profiles)
    assert profile_slot(str(tmp_path / "linked" / "bob"), profiles) == ("bob", None)


@pytest.mark.parametrize("value", [None, "", "relative/bob"])
def test_no_config_dir_or_a_relative_one_is_link_mode(profiles: Path, value: str | None) -> None:
    assert profile_slot(value, profiles) == (None, None)


def test_a_dir_outside_the_profiles_dir_is_link_mode_without_a_word(
    profiles: Path, tmp_path: Path
) -> None:
    (tmp_path / "other" / "bob").mkdir(parents=True)
    assert profile_slot(str(tmp_path / "other" / "bob"), profiles) == (None, None)
    assert profile_slot(str(profiles), profiles) == (None, None)
    assert profile_slot(str(profiles / "bob" / "deeper"), profiles) == (None, None)


def test_look_alikes_are_not_trusted_and_say_why(profiles: Path, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (profiles / "carol").symlink_to(tmp_path / "real")
    slot, why = profile_slot(str(profiles / "carol"), profiles)
    assert slot is None and why is not None and "is a symlink" in why
    (profiles / "dave").write_text("")
    assert "not a directory" in str(profile_slot(str(profiles / "dave"), profiles)[1])
    (profiles / "a.b").mkdir(mode=0o700)
    assert "not a slot name" in str(profile_slot(str(profiles / "a.b"), profiles)[1])
    assert "does not exist" in str(profile_slot(str(profiles / "eve"), profiles)[1])
    (profiles / "bob").chmod(0o777)
    assert "writable by others" in str(profile_slot(str(profiles / "bob"), profiles)[1])
    (profiles / "bob").chmod(0o700)
    profiles.chmod(0o777)
    assert "writable by others" in str(profile_slot(str(profiles / "bob"), profiles)[1])


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"GPTME_SUBSCRIPTION_PROFILES_DIR": "/srv/p"},
        {"GPTME_SUBSCRIPTION_PROFILES_DIR": ""},
        {"GPTME_SUBSCRIPTION_HOME": "/srv/home"},
        {"file": 'profiles_dir = "rel/profiles"\n'},
        {"file": 'home = "/srv/h2"\n'},
        {"file": 'profiles_dir = "/srv/f"\n', "GPTME_SUBSCRIPTION_PROFILES_DIR": ""},
    ],
)
def test_the_fast_path_finds_the_profiles_dir_where_config_does(
    tmp_path: Path, env: dict[str, str]
) -> None:
    env = dict(env)
    cfg = tmp_path / "cfg" / "gptme-subscription"
    cfg.mkdir(parents=True, mode=0o700)
    body = env.pop("file", None)
    if body is not None:
        (cfg / "config.toml").write_text(body)
    full = {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "GPTME_SUBSCRIPTION_STATE_DIR": str(tmp_path / "state"),
        **env,
    }
    assert resolve_profiles_dir(full) == load_config(env=full).profiles_path


def test_the_module_stays_light() -> None:
    code = (
        "import sys, gptme_subscription_plugin.session_home; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'filelock', 'gptme', 'typing', 'dataclasses', 'tomllib')))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"
