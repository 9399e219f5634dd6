"""Where things live, resolved from the environment with the stdlib only.

The Claude Code PreToolUse hook must not import pydantic, so it cannot build a Config; it
resolves the state dir here with the same rule Config uses (env > config.toml > default).
Config uses these functions for its defaults, so the two never disagree.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

ENV_PREFIX = "GPTME_SUBSCRIPTION_"
# Set for a usage script and all it starts: our hooks in a `claude` it runs do nothing.
INSIDE_USAGE_SCRIPT_ENV = ENV_PREFIX + "INSIDE_USAGE_SCRIPT"


def home_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def default_claude_dir(env: Mapping[str, str]) -> Path:
    """Claude Code's config dir: $CLAUDE_CONFIG_DIR, else ~/.claude."""
    if env.get("CLAUDE_CONFIG_DIR"):
        return Path(env["CLAUDE_CONFIG_DIR"]).expanduser()
    return home_dir(env) / ".claude"


def default_state_dir(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else home_dir(env) / ".local/state"
    return base / "gptme-subscription"


def config_file_path(env: Mapping[str, str]) -> Path:
    if env.get(ENV_PREFIX + "CONFIG"):
        return Path(env[ENV_PREFIX + "CONFIG"]).expanduser()
    xdg = env.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else home_dir(env) / ".config"
    return base / "gptme-subscription" / "config.toml"


def path_from_config_file(value: str, config_path: Path) -> Path:
    """A path written in config.toml: a relative one is relative to the file's own dir.

    Never to the working directory: every hook runs in whatever project Claude Code is in,
    and the same config must name the same dir (and the same script) from all of them.
    """
    path = Path(value)
    if path.is_absolute() or value.startswith("~"):
        return path.expanduser()
    return config_path.absolute().parent / path


def _file_setting(env: Mapping[str, str], *keys: str) -> str | None:
    """One value from config.toml, or None when absent or unreadable.

    A config file another user could write raises ForeignPathError, as it does for Config.
    """
    from .fsutil import check_private

    path = config_file_path(env)
    check_private(path, "config file")
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    for key in keys:
        value = doc.get(key)
        if isinstance(value, str):
            return value
    return None


def resolve_state_dir(env: Mapping[str, str]) -> Path:
    """The state dir as Config would resolve it (env > config.toml > default)."""
    if env.get(ENV_PREFIX + "STATE_DIR"):
        return Path(env[ENV_PREFIX + "STATE_DIR"]).expanduser()
    from_file = _file_setting(env, "state_dir")
    if from_file:
        return path_from_config_file(from_file, config_file_path(env))
    return default_state_dir(env)


def resolve_claude_dir(env: Mapping[str, str]) -> Path:
    """The Claude config dir as Config would resolve it (env > config.toml > default)."""
    for key in (ENV_PREFIX + "CLAUDE_DIR", ENV_PREFIX + "CREDS_DIR"):
        if env.get(key):
            return Path(env[key]).expanduser()
    from_file = _file_setting(env, "claude_dir", "creds_dir")
    if from_file:
        return path_from_config_file(from_file, config_file_path(env))
    return default_claude_dir(env)


def resolve_profiles_dir(env: Mapping[str, str]) -> Path:
    """Where the profiles live, as Config.profiles_path resolves it: `profiles_dir` (env >
    config.toml; an empty env value means the default), else `<home>/.claude-profiles`."""
    key = ENV_PREFIX + "PROFILES_DIR"
    if env.get(key):
        return Path(env[key]).expanduser()
    if key not in env:
        from_file = _file_setting(env, "profiles_dir")
        if from_file:
            return path_from_config_file(from_file, config_file_path(env))
    if env.get(ENV_PREFIX + "HOME"):
        return Path(env[ENV_PREFIX + "HOME"]).expanduser() / ".claude-profiles"
    from_file = _file_setting(env, "home")
    home = path_from_config_file(from_file, config_file_path(env)) if from_file else home_dir(env)
    return home / ".claude-profiles"
