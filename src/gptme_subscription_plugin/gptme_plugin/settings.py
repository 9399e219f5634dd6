"""Settings from gptme's `[plugin.subscription]` sections, merged under the core's precedence.

gptme keeps plugin sections as raw dicts (user config `~/.config/gptme/config.toml`, then the
workspace's `gptme.toml`, project last). Keys that are core settings become *overrides* to
`load_config`, so they rank like CLI flags: above the environment and the core's own
`config.toml`. A few keys belong to the plugin alone (`turn_scope`). A bad value is reported
as one line that names the gptme.toml key it came from. No gptme import here: callers hand in
the sections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ENV_ALIASES, FIELDS, LIST_FIELDS, PATH_FIELDS, Config, ConfigError, load_config

PLUGIN_NAME = "subscription"
SECTION = f"[plugin.{PLUGIN_NAME}]"
# How long the gptme session counts as mid-turn in the core's turn registry (see lifecycle.py)
TURN_SCOPES = ("turn", "tool", "off")
PLUGIN_KEYS = {"turn_scope"}


@dataclass(frozen=True)
class PluginSettings:
    """What only the gptme surface reads."""

    turn_scope: str = "turn"


@dataclass(frozen=True)
class SettingsSource:
    """One `[plugin.subscription]` table and where it came from."""

    label: str  # "gptme.toml" or "gptme user config"
    values: Mapping[str, Any]
    base_dir: Path | None = None  # relative paths resolve against it (the workspace)


def key_label(source_label: str, key: str) -> str:
    return f"{source_label} {SECTION} {key}"


def load_settings(
    sources: Sequence[SettingsSource], env: Mapping[str, str] | None = None
) -> tuple[Config, PluginSettings]:
    """The core Config with our sections as overrides, and the plugin's own settings.

    Later sources win (user config first, then the project's gptme.toml). Raises ConfigError
    with a message naming the gptme.toml key, or the env/config.toml key, that is wrong.
    """
    overrides: dict[str, Any] = {}
    labels: dict[str, str] = {}
    plugin: dict[str, Any] = {}
    for source in sources:
        if not isinstance(source.values, Mapping):
            raise ConfigError(f"{source.label} {SECTION}: not a table")
        for raw_key, value in source.values.items():
            key = ENV_ALIASES.get(str(raw_key), str(raw_key))
            label = key_label(source.label, str(raw_key))
            if key in PLUGIN_KEYS:
                plugin[key] = _plugin_value(key, value, label)
            elif key in FIELDS:
                overrides[key] = _core_value(key, value, source.base_dir)
                labels[key] = label
            else:
                raise ConfigError(
                    f"{label}: unknown setting (use a core setting such as slots or "
                    f"poll_interval, or one of: {', '.join(sorted(PLUGIN_KEYS))})"
                )
    try:
        config = load_config(overrides, env, override_label=f"gptme.toml {SECTION} ")
    except ConfigError as exc:
        raise ConfigError(_name_our_key(str(exc), labels)) from None
    return config, PluginSettings(**plugin)


def _plugin_value(key: str, value: Any, label: str) -> Any:
    if key == "turn_scope":
        if value not in TURN_SCOPES:
            raise ConfigError(f"{label}: must be one of {', '.join(TURN_SCOPES)} (got {value!r})")
        return value
    raise ConfigError(f"{label}: unknown setting")  # pragma: no cover - PLUGIN_KEYS guards


def _core_value(key: str, value: Any, base_dir: Path | None) -> Any:
    """TOML already typed the value; accept a comma string for lists, resolve relative paths."""
    if key in LIST_FIELDS and isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if key in PATH_FIELDS and isinstance(value, str) and value:
        path = Path(value)
        if not path.is_absolute() and not value.startswith("~") and base_dir is not None:
            path = base_dir / path
        return path
    return value


def _name_our_key(message: str, labels: Mapping[str, str]) -> str:
    """The core labels an override by its bare key; say which gptme.toml key it was.

    (A core that prefixes `override_label` to every key needs no rewrite: the message then
    already starts with that label and passes through unchanged.)
    """
    for key, label in labels.items():
        if message.startswith(f"{key}: "):
            return label + message[len(key) :]
    return message


__all__ = [
    "PLUGIN_NAME",
    "PluginSettings",
    "SettingsSource",
    "TURN_SCOPES",
    "load_settings",
]
