"""Configuration: one frozen dataclass validated by pydantic, one precedence rule, one place
for every threshold.

Precedence, highest first: explicit overrides (CLI flags, plugin settings) > environment
(`GPTME_SUBSCRIPTION_<FIELD>`) > `$XDG_CONFIG_HOME/gptme-subscription/config.toml` > defaults.
A bad value is reported as one line naming the key where it came from.

`Config` is a plain dataclass whose field types carry their constraints (`Annotated[float,
Ge(0)]`); pydantic validates and coerces the merged values into it. Importing pydantic and
building its first validator costs ~120 ms, a dozen interpreter start-ups, so Claude Code's
turn-boundary hooks load through `load_config(..., use_cache=True)`: the validated values are
kept in the state dir under a hash of every input (env, config file bytes, overrides), and
pydantic is imported only when an input changed. The cache is never trusted beyond its sources:
a hit also needs every cached value to equal a fresh stdlib parse of them (`_agrees`), so a
planted cache cannot name a usage script, a dir or an endpoint the config does not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from annotated_types import Ge, Gt, Le

from .fsutil import (
    ForeignPathError,
    atomic_write_text,
    check_private,
    ensure_private_dir,
    read_private_bytes,
)
from .names import validate_slot_name
from .paths import (
    ENV_PREFIX,
    config_file_path,
    default_claude_dir,
    default_state_dir,
    path_from_config_file,
    resolve_state_dir,
)
from .session_home import CONFIG_DIR_ENV, profile_slot
from .thresholds import Thresholds

_DEFAULT = Thresholds()

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

DEFAULT_API_BASE = "https://api.anthropic.com"
CACHE_FILE = "config-cache.json"
CACHE_VERSION = 1

Fraction = Annotated[float, Gt(0), Le(1)]
Share = Annotated[float, Ge(0), Le(1)]
Seconds = Annotated[float, Ge(0)]
PositiveSeconds = Annotated[float, Gt(0)]


class ConfigError(ValueError):
    """A configuration problem, phrased as one line that names the offending key."""


@dataclass(frozen=True)
class Config:
    """All settings of the rotation core. Paths are resolved; thresholds live here only."""

    claude_dir: Path = field(default_factory=lambda: default_claude_dir(os.environ))
    state_dir: Path = field(default_factory=lambda: default_state_dir(os.environ))
    profiles_dir: Path | None = None  # None: `<home>/.claude-profiles`
    home: Path = field(default_factory=lambda: Path(os.environ.get("HOME") or Path.home()))
    slots: list[str] = field(default_factory=list)  # empty: every slot file found
    fallback_order: list[str] = field(default_factory=list)  # tie-break preference
    usage_script: Path | None = None
    lock_glob: str = ""  # extra guard: alive-PID lock files of other agents count as mid-turn
    api_base: str = DEFAULT_API_BASE
    poll_interval: Seconds = 180.0
    poll_timeout: Annotated[float, Gt(0), Le(120)] = 8.0
    probe_cooldown: Seconds = _DEFAULT.probe_cooldown
    lock_wait: Annotated[float, Ge(0), Le(600)] = 9.0
    backup_keep: Annotated[int, Ge(1), Le(100)] = 5
    session_ttl: PositiveSeconds = 1800.0
    # the usage cache: the longest wait between polls of a failing slot, and how long a
    # cache write waits for the slot's lock before it is skipped
    usage_max_backoff: PositiveSeconds = 3600.0
    usage_lock_wait: Annotated[float, Ge(0), Le(60)] = 2.0
    # thresholds (fractions 0-1 and seconds); the policy reads them through `thresholds`, and
    # their defaults are the policy's own (`Thresholds`), so they are written down once
    weekly_exhausted: Fraction = _DEFAULT.weekly_exhausted
    five_hour_exhausted: Fraction = _DEFAULT.five_hour_exhausted
    model_weekly_exhausted: Fraction = _DEFAULT.model_weekly_exhausted
    five_hour_headroom: Fraction = _DEFAULT.five_hour_headroom
    rebalance_ahead: Share = _DEFAULT.rebalance_ahead
    forward_route_margin: Seconds = _DEFAULT.forward_route_margin
    forward_route_min_remaining: Share = _DEFAULT.forward_route_min_remaining
    rebalance_window: Seconds = _DEFAULT.rebalance_window
    burst_window: Seconds = _DEFAULT.burst_window
    min_dwell: Seconds = _DEFAULT.min_dwell
    manual_hold: Seconds = _DEFAULT.manual_hold
    warn_pressure: Fraction = _DEFAULT.warn_pressure
    warn_pressure_final: Fraction = _DEFAULT.warn_pressure_final
    usage_max_age: PositiveSeconds = _DEFAULT.usage_max_age
    recovery_margin: Seconds = _DEFAULT.recovery_margin
    unknown_reset_wait: PositiveSeconds = _DEFAULT.unknown_reset_wait
    neutral_pressure: Share = _DEFAULT.neutral_pressure
    reset_resolution: Seconds = _DEFAULT.reset_resolution
    launch_session_cap: Annotated[float, Ge(1), Le(1000)] = _DEFAULT.launch_session_cap
    launch_window: Seconds = _DEFAULT.launch_window
    # `usage` and the dashboard: list prices per model key (`opus-4.5`), USD per million
    # tokens, over the dated table in accounting/prices.py (config file only)
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    # alerts (notify.py): a command (argv, or one string split like a shell would, never run
    # by one) given a JSON event on stdin; at most one per kind per notify_interval
    notify_command: list[str] | str = field(default_factory=list)
    notify_interval: Seconds = 900.0
    notify_timeout: Annotated[float, Gt(0), Le(300)] = 10.0
    pending_alert_after: PositiveSeconds = 900.0

    @property
    def live_path(self) -> Path:
        return self.claude_dir / ".credentials.json"

    @property
    def profiles_path(self) -> Path:
        """Where the per-slot config dirs live: `profiles_dir`, else `~/.claude-profiles`
        (beside the claude dir, not in the state dir: they hold credentials, the state never)."""
        return self.profiles_dir or self.home / ".claude-profiles"

    @property
    def notify_argv(self) -> list[str]:
        command = self.notify_command
        return shlex.split(command) if isinstance(command, str) else list(command)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Thresholds)})

    def to_json(self) -> dict[str, Any]:
        return {
            f.name: str(value) if isinstance(value, Path) else value
            for f in dataclasses.fields(self)
            for value in [getattr(self, f.name)]
        }

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> Config:
        """Rebuild from `to_json` output (already validated: no checks, no pydantic)."""
        converted: dict[str, Any] = {
            name: Path(value) if name in PATH_FIELDS and value is not None else value
            for name, value in values.items()
        }
        return cls(**converted)


FIELDS = {f.name for f in dataclasses.fields(Config)}
PATH_FIELDS = {"claude_dir", "state_dir", "profiles_dir", "home", "usage_script"}
LIST_FIELDS = {"slots", "fallback_order"}
# Names of gptme-subscription 0.1.0 (environment `GPTME_SUBSCRIPTION_<NAME>`, config file
# keys) for our fields. Where both are given, our own name wins.
ENV_ALIASES = {
    "creds_dir": "claude_dir",
    "sonnet_weekly_exhausted": "model_weekly_exhausted",  # binds every per-model weekly window
}

Sourced = dict[str, tuple[Any, str]]  # field -> (raw value, where it came from)


def _is_alias(name: str) -> bool:
    """Sort key: our own names first, so an alias never overrides one of them."""
    return name.lower() in ENV_ALIASES


def _env_values(env: Mapping[str, str]) -> Sourced:
    values: Sourced = {}
    for key, raw in sorted(env.items(), key=lambda kv: _is_alias(kv[0][len(ENV_PREFIX) :])):
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name in ENV_ALIASES and ENV_ALIASES[name] in values:
            continue  # our own name was given too, and wins
        name = ENV_ALIASES.get(name, name)
        if name not in FIELDS:
            continue
        if name in LIST_FIELDS:
            values[name] = ([p.strip() for p in raw.split(",") if p.strip()], key)
        elif raw == "" and name in ("usage_script", "profiles_dir"):
            values[name] = (None, key)
        else:
            values[name] = (raw, key)
    return values


def _file_values(path: Path, data: bytes | None) -> Sourced:
    if data is None:
        return {}
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: not valid TOML ({exc})") from None
    values: Sourced = {}
    for key, value in sorted(doc.items(), key=lambda kv: _is_alias(kv[0])):
        if key in ENV_ALIASES and ENV_ALIASES[key] in values:
            continue  # our own name was given too, and wins
        name = ENV_ALIASES.get(key, key)
        if name not in FIELDS:
            raise ConfigError(f"config file {path}: unknown key {key!r}")
        if name in PATH_FIELDS and isinstance(value, str) and value:
            value = str(path_from_config_file(value, path))
        values[name] = (value, f"{path}: {key}")
    return values


def _read_config_file(path: Path) -> bytes | None:
    """The config file's bytes (None if absent); one another user could write is refused."""
    check_private(path, "config file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read ({exc.strerror})") from None


def _merge(
    overrides: Mapping[str, Any],
    env: Mapping[str, str],
    path: Path,
    data: bytes | None,
    override_label: str,
) -> Sourced:
    merged: Sourced = {}
    merged.update(_file_values(path, data))
    merged.update(_env_values(env))
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in FIELDS:
            raise ConfigError(f"unknown setting {key!r}")
        label = f"{override_label}{key.replace('_', '-')}" if override_label == "--" else key
        merged[key] = (value, label)
    merged.setdefault("claude_dir", (default_claude_dir(env), "default"))
    merged.setdefault("state_dir", (default_state_dir(env), "default"))
    merged.setdefault("home", (Path(env.get("HOME") or Path.home()), "HOME"))
    return merged


def _validate(merged: Sourced) -> Config:
    """pydantic checks types and ranges; then our rules for slot names and the API base."""
    from pydantic import TypeAdapter, ValidationError

    values = {k: v for k, (v, _) in merged.items()}
    try:
        config = TypeAdapter(Config).validate_python(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "?"
        raise _error(merged, name, err["msg"]) from None
    try:
        return _normalize(config)
    except _FieldError as exc:
        raise _error(merged, exc.field, str(exc)) from None


class _FieldError(ValueError):
    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


def _normalize(config: Config) -> Config:
    for name in LIST_FIELDS:
        seen: set[str] = set()
        for slot in getattr(config, name):
            try:
                validate_slot_name(slot)
            except ValueError as exc:
                raise _FieldError(name, str(exc)) from None
            if slot in seen:
                raise _FieldError(name, f"slot {slot!r} listed twice")
            seen.add(slot)
    if isinstance(config.notify_command, str):
        try:
            shlex.split(config.notify_command)
        except ValueError as exc:
            raise _FieldError("notify_command", f"cannot split it into words: {exc}") from None
    if config.prices:
        from .accounting.prices import price_from
    for key, values in config.prices.items():
        try:
            price_from(values)
        except ValueError as exc:
            raise _FieldError("prices", f"{key}: {exc}") from None
    if not re.match(r"^https?://[^\s/]+", config.api_base):
        raise _FieldError("api_base", "must be an http(s) URL such as https://api.anthropic.com")
    return dataclasses.replace(
        config,
        claude_dir=_expand("claude_dir", config.claude_dir),
        state_dir=_expand("state_dir", config.state_dir),
        home=_expand("home", config.home),
        usage_script=_expand("usage_script", config.usage_script) if config.usage_script else None,
        profiles_dir=_expand("profiles_dir", config.profiles_dir) if config.profiles_dir else None,
        api_base=config.api_base.rstrip("/"),
    )


def _expand(name: str, path: Path) -> Path:
    """`~` and `~user` expanded; a user that does not exist (`~0`) is this field's error."""
    try:
        return path.expanduser()
    except RuntimeError:
        raise _FieldError(name, f"cannot expand {str(path)[:40]!r}: no such user's home") from None


def _error(merged: Sourced, name: str, message: str) -> ConfigError:
    source = merged.get(name, (None, name))[1]
    shown = merged.get(name, (None, None))[0]
    msg = message.removeprefix("Value error, ")
    return ConfigError(f"{source}: {msg} (got {str(shown)[:60]!r})")


def _cache_key(
    overrides: Mapping[str, Any], env: Mapping[str, str], path: Path, data: bytes | None
) -> str:
    """Every input that can change the result: our env, the dirs it derives from, the file,
    and the defaults themselves (an upgrade that retunes a threshold must not read old ones)."""
    relevant = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    for key in ("HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "CLAUDE_CONFIG_DIR"):
        relevant[key] = env.get(key, "")
    doc = {
        "v": CACHE_VERSION,
        "defaults": sorted(dataclasses.asdict(_DEFAULT).items()),
        "env": sorted(relevant.items()),
        "file": str(path),
        "data": hashlib.sha256(data).hexdigest() if data is not None else None,
        "overrides": sorted((k, repr(v)) for k, v in overrides.items()),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _cached(state_dir: Path, key: str, merged: Sourced) -> Config | None:
    """The cached Config, used only when it is ours alone and agrees with the sources.

    The key is a hash anyone can compute, so it only says which inputs the cache was made
    for; the values must also be what a fresh parse of those inputs says (`_agrees`). A cache
    that is a symlink, someone else's, or readable by others is not used (and gets replaced).
    """
    path = state_dir / CACHE_FILE
    try:
        raw = read_private_bytes(path, "config cache")
        if raw is None or stat.S_IMODE(os.lstat(path).st_mode) & 0o077:
            return None
        doc = json.loads(raw)
        values = doc.get("values")
        if doc.get("key") == key and isinstance(values, dict) and _agrees(values, merged):
            return Config.from_json(values)
    except (OSError, ValueError, TypeError, AttributeError, ForeignPathError):
        pass
    return None


def _agrees(values: Mapping[str, Any], merged: Sourced) -> bool:
    """Every cached value equals what the flags, env and config file say, field by field.

    Checked without pydantic to keep a hit cheap; any doubt is a miss, and pydantic decides.
    """
    if set(values) != FIELDS:
        return False
    for f in dataclasses.fields(Config):
        if f.name in merged:
            raw = merged[f.name][0]
        elif f.default is not dataclasses.MISSING:
            raw = f.default
        elif f.default_factory is not dataclasses.MISSING:
            raw = f.default_factory()
        else:  # pragma: no cover - every field has a default
            return False
        if not _same(f.name, raw, values[f.name]):
            return False
    return True


def _same(name: str, raw: Any, cached: Any) -> bool:
    """`cached` is what `_normalize` makes of `raw` (paths, URL) or its lax-mode number."""
    if name in PATH_FIELDS:
        if raw is None or cached is None:
            return raw is None and cached is None
        return isinstance(raw, (str, Path)) and str(Path(raw).expanduser()) == cached
    if name in LIST_FIELDS:
        return isinstance(raw, list) and raw == cached
    if name == "api_base":
        return isinstance(raw, str) and raw.rstrip("/") == cached
    if isinstance(raw, (list, dict)):  # notify_command's argv, prices (5 == 5.0 holds)
        return type(raw) is type(cached) and raw == cached
    if isinstance(raw, str) and isinstance(cached, str):
        return raw == cached
    numbers = (int, float)
    if isinstance(raw, bool) or isinstance(cached, bool) or not isinstance(cached, numbers):
        return False
    try:
        return isinstance(raw, (*numbers, str)) and float(raw) == cached
    except ValueError:
        return False


def _store(state_dir: Path, key: str, config: Config) -> None:
    try:
        ensure_private_dir(state_dir)
        atomic_write_text(
            state_dir / CACHE_FILE,
            json.dumps({"key": key, "values": config.to_json()}, sort_keys=True),
        )
    except OSError:
        pass  # a read-only state dir costs speed, not correctness


def load_config(
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    override_label: str = "--",
    use_cache: bool = False,
) -> Config:
    """Build the Config from overrides > env > config file > defaults; ConfigError on bad input.

    `CLAUDE_CONFIG_DIR` naming a slot's profile (our CLI run inside a profile session) is not
    the claude dir: the slots, the live link and the state belong to the main one.

    With `use_cache`, a result validated earlier for exactly the same inputs is reused
    without importing pydantic (see the module docstring).
    """
    env = os.environ if env is None else env
    config = _load_config(overrides or {}, env, override_label, use_cache)
    given = env.get(CONFIG_DIR_ENV)
    if given and config.claude_dir == Path(given).expanduser():
        slot, _ = profile_slot(given, config.profiles_path)
        if slot is not None:  # a session in a slot's profile: the slots live in the main dir
            main_env = {k: v for k, v in env.items() if k != CONFIG_DIR_ENV}
            return _load_config(overrides or {}, main_env, override_label, use_cache)
    return config


def _load_config(
    overrides: Mapping[str, Any], env: Mapping[str, str], override_label: str, use_cache: bool
) -> Config:
    path = config_file_path(env)
    data = _read_config_file(path)
    merged = _merge(overrides, env, path, data, override_label)
    key = _cache_key(overrides, env, path, data) if use_cache else ""
    cache_dir = resolve_state_dir(env) if use_cache else None
    if cache_dir is not None:
        check_private(cache_dir, "state dir")
        hit = _cached(cache_dir, key, merged)
        if hit is not None:
            return hit
    config = _validate(merged)
    if cache_dir is not None and cache_dir == config.state_dir:
        _store(cache_dir, key, config)
    return config
