"""Configuration: one pydantic model, one precedence rule, one place for every threshold.

Precedence, highest first: explicit overrides (CLI flags, plugin settings) > environment
(`GPTME_SUBSCRIPTION_<FIELD>`) > `$XDG_CONFIG_HOME/gptme-subscription/config.toml` > defaults.
A bad value is reported as one line naming the key where it came from.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .paths import ENV_PREFIX, config_file_path, default_claude_dir, default_state_dir
from .policy import Thresholds

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

SLOT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
DEFAULT_API_BASE = "https://api.anthropic.com"


class ConfigError(ValueError):
    """A configuration problem, phrased as one line that names the offending key."""


def validate_slot_name(name: str) -> str:
    """Slot names become file name suffixes: plain identifiers only, never a path."""
    if not isinstance(name, str) or not SLOT_NAME_RE.fullmatch(name):
        shown = repr(name)[:40]
        raise ValueError(
            f"invalid slot name {shown}: use 1-64 letters, digits, '-' or '_' "
            "(no dots, slashes or spaces)"
        )
    return name


class Config(BaseModel):
    """All settings of the rotation core. Paths are resolved; thresholds live here only."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    claude_dir: Path = Field(default_factory=lambda: default_claude_dir(os.environ))
    state_dir: Path = Field(default_factory=lambda: default_state_dir(os.environ))
    home: Path = Field(default_factory=lambda: Path(os.environ.get("HOME") or Path.home()))
    slots: list[str] = Field(default_factory=list)  # empty: every slot file found
    fallback_order: list[str] = Field(default_factory=list)  # tie-break preference
    usage_script: Path | None = None
    lock_glob: str = ""  # extra guard: alive-PID lock files of other agents count as mid-turn
    api_base: str = DEFAULT_API_BASE
    poll_interval: float = Field(default=180.0, ge=0)
    poll_timeout: float = Field(default=8.0, gt=0, le=120)
    probe_cooldown: float = Field(default=1800.0, ge=0)
    lock_wait: float = Field(default=9.0, ge=0, le=600)
    backup_keep: int = Field(default=5, ge=1, le=100)
    session_ttl: float = Field(default=1800.0, gt=0)
    # thresholds (fractions 0-1 and seconds); the policy reads them through `thresholds`
    weekly_exhausted: float = Field(default=0.95, gt=0, le=1)
    five_hour_exhausted: float = Field(default=0.90, gt=0, le=1)
    model_weekly_exhausted: float = Field(default=0.95, gt=0, le=1)
    five_hour_headroom: float = Field(default=0.80, gt=0, le=1)
    rebalance_ahead: float = Field(default=0.10, ge=0, le=1)
    forward_route_margin: float = Field(default=12 * 3600.0, ge=0)
    forward_route_min_remaining: float = Field(default=0.10, ge=0, le=1)
    min_dwell: float = Field(default=3600.0, ge=0)
    manual_hold: float = Field(default=8 * 3600.0, ge=0)
    warn_pressure: float = Field(default=0.80, gt=0, le=1)
    usage_max_age: float = Field(default=4 * 3600.0, gt=0)

    @field_validator("slots", "fallback_order")
    @classmethod
    def _check_slot_names(cls, names: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in names:
            validate_slot_name(name)
            if name in seen:
                raise ValueError(f"slot {name!r} listed twice")
            seen.add(name)
        return names

    @field_validator("claude_dir", "state_dir", "home", "usage_script")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    @field_validator("api_base")
    @classmethod
    def _check_api_base(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL such as https://api.anthropic.com")
        return value.rstrip("/")

    @property
    def live_path(self) -> Path:
        return self.claude_dir / ".credentials.json"

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(
            weekly_exhausted=self.weekly_exhausted,
            five_hour_exhausted=self.five_hour_exhausted,
            model_weekly_exhausted=self.model_weekly_exhausted,
            five_hour_headroom=self.five_hour_headroom,
            rebalance_ahead=self.rebalance_ahead,
            forward_route_margin=self.forward_route_margin,
            forward_route_min_remaining=self.forward_route_min_remaining,
            min_dwell=self.min_dwell,
            manual_hold=self.manual_hold,
            probe_cooldown=self.probe_cooldown,
            warn_pressure=self.warn_pressure,
            usage_max_age=self.usage_max_age,
        )


LIST_FIELDS = {"slots", "fallback_order"}


# Environment names that differ from GPTME_SUBSCRIPTION_<FIELD>, kept for upstream parity.
ENV_ALIASES = {"creds_dir": "claude_dir"}


def _env_values(env: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    values: dict[str, tuple[Any, str]] = {}
    fields = set(Config.model_fields)
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        name = key[len(ENV_PREFIX) :].lower()
        name = ENV_ALIASES.get(name, name)
        if name not in fields:
            continue
        if name in LIST_FIELDS:
            values[name] = ([p.strip() for p in raw.split(",") if p.strip()], key)
        elif raw == "" and name == "usage_script":
            values[name] = (None, key)
        else:
            values[name] = (raw, key)
    return values


def _file_values(path: Path) -> dict[str, tuple[Any, str]]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read ({exc.strerror})") from None
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    fields = set(Config.model_fields)
    values: dict[str, tuple[Any, str]] = {}
    for key, value in doc.items():
        name = ENV_ALIASES.get(key, key)
        if name not in fields:
            raise ConfigError(f"config file {path}: unknown key {key!r}")
        values[name] = (value, f"{path}: {key}")
    return values


def load_config(
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    override_label: str = "--",
) -> Config:
    """Build the Config from overrides > env > config file > defaults; ConfigError on bad input."""
    env = os.environ if env is None else env
    merged: dict[str, tuple[Any, str]] = {}
    merged.update(_file_values(config_file_path(env)))
    merged.update(_env_values(env))
    fields = set(Config.model_fields)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in fields:
            raise ConfigError(f"unknown setting {key!r}")
        label = f"{override_label}{key.replace('_', '-')}" if override_label == "--" else key
        merged[key] = (value, label)
    if "claude_dir" not in merged:
        merged["claude_dir"] = (default_claude_dir(env), "default")
    if "state_dir" not in merged:
        merged["state_dir"] = (default_state_dir(env), "default")
    if "home" not in merged:
        merged["home"] = (Path(env.get("HOME") or Path.home()), "HOME")
    try:
        return Config(**{k: v for k, (v, _) in merged.items()})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        source = merged.get(field, (None, field))[1]
        shown = merged.get(field, (None, None))[0]
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{source}: {msg} (got {str(shown)[:60]!r})") from None
