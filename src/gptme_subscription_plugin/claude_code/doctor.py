"""`gptme-subscription doctor`: check the installation, slots, locks and env overrides.

Each check says OK, WARN or FAIL and, when not OK, what to do about it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..claude_locks import lock_status
from ..installfiles import InstallError
from ..manager import SubscriptionManager
from ..overrides import OVERRIDE_ENV, override_warnings
from .installer import (
    HOOK_SPECS,
    installed_events,
    load_settings,
    our_hook,
    settings_path,
)


@dataclass(frozen=True)
class Check:
    status: str  # OK | WARN | FAIL
    name: str
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"status": self.status, "name": self.name, "detail": self.detail, "fix": self.fix}


# The Claude Code plugin's name (.claude-plugin/plugin.json); enabled as `<name>@<marketplace>`
PLUGIN_NAME = "gptme-subscription"
PLUGIN_INSTALL = "claude plugin install gptme-subscription@gptme-subscription-plugin"


def enabled_plugins(doc: Mapping[str, Any]) -> list[str]:
    """Our plugin's ids that a settings file enables (`enabledPlugins: {"<id>": true}`)."""
    enabled = doc.get("enabledPlugins")
    if not isinstance(enabled, dict):
        return []
    return sorted(
        key
        for key, on in enabled.items()
        if on is True and isinstance(key, str) and key.split("@", 1)[0] == PLUGIN_NAME
    )


def check_installation(m: SubscriptionManager, project_dir: Path) -> list[Check]:
    """Our hooks in a settings file, or our plugin enabled in one: one of the two, not both."""
    checks = []
    wanted = {event for event, *_ in HOOK_SPECS}
    found_any = False
    in_settings: list[str] = []  # scopes whose settings file holds our hooks
    plugins: list[str] = []  # "<id> (<scope>)" for each enabled plugin
    for scope in ("user", "project", "local"):
        path = settings_path(scope, m.config.claude_dir, project_dir)
        try:
            doc = load_settings(path)
        except InstallError as exc:
            checks.append(Check("FAIL", f"settings ({scope})", str(exc), "fix the JSON"))
            continue
        for plugin in enabled_plugins(doc):
            plugins.append(f"{plugin} ({scope})")
            checks.append(Check("OK", f"plugin ({scope})", f"{path}: {plugin} enabled"))
        events = installed_events(doc)
        if not events:
            continue
        found_any = True
        in_settings.append(scope)
        missing = sorted(wanted - events)
        if missing:
            checks.append(
                Check(
                    "WARN",
                    f"hooks ({scope})",
                    f"{path}: missing {', '.join(missing)}",
                    f"gptme-subscription install claude-code --scope {scope}",
                )
            )
        else:
            checks.append(Check("OK", f"hooks ({scope})", f"{path}: all {len(wanted)} hooks"))
        checks += _command_checks(doc, scope)
    if plugins and in_settings:
        checks.append(
            Check(
                "WARN",
                "hooks",
                f"installed twice, as the plugin {', '.join(plugins)} and in the settings of "
                f"scope {', '.join(in_settings)}: every hook runs twice",
                " && ".join(
                    f"gptme-subscription uninstall claude-code --scope {scope}"
                    for scope in in_settings
                ),
            )
        )
    elif not found_any and not plugins:
        checks.append(
            Check(
                "WARN",
                "hooks",
                "not installed: neither in a Claude Code settings file nor as the plugin",
                f"{PLUGIN_INSTALL} (or: gptme-subscription install claude-code)",
            )
        )
    return checks


def _command_checks(doc: dict[str, Any], scope: str) -> list[Check]:
    """The executable our hooks call must exist, or every hook fails silently."""
    commands = set()
    hooks = doc.get("hooks")
    for event, groups in hooks.items() if isinstance(hooks, dict) else ():
        for group in groups if isinstance(groups, list) else []:
            for h in group.get("hooks", []) if isinstance(group, dict) else []:
                ours = our_hook(event, h.get("command")) if isinstance(h, dict) else None
                if ours is not None:
                    commands.add(ours.executable)
    missing = [c for c in sorted(commands) if "/" in c and not os.access(c, os.X_OK)]
    if missing:
        return [
            Check(
                "FAIL",
                f"hook command ({scope})",
                f"not executable: {', '.join(missing)}",
                f"gptme-subscription install claude-code --scope {scope}",
            )
        ]
    return []


def check_slots(m: SubscriptionManager) -> list[Check]:
    names = m.slot_names()
    if not names:
        return [
            Check(
                "FAIL",
                "slots",
                f"no slot files in {m.config.claude_dir}",
                "gptme-subscription slot add NAME",
            )
        ]
    checks = []
    for name in names:
        home = m.slots.home_of(name)
        if home == "ambiguous":
            checks.append(
                Check(
                    "FAIL",
                    f"slot {name}",
                    f"{m.slots.two_homes(name)}: two refreshers of one token chain",
                    "keep the newer file and remove the other",
                )
            )
            continue
        info = m.slots.check(name)
        where = f" (in its profile {m.slots.profile_dir(name)})" if home == "profile" else ""
        if info.health.usable:
            checks.append(Check("OK", f"slot {name}", info.detail + where))
        else:
            checks.append(
                Check(
                    "FAIL",
                    f"slot {name}",
                    f"{info.health.value}: {info.detail}",
                    f"gptme-subscription reauth {name}",
                )
            )
    live = m.slots.live_state()
    drift = m.slots.detect_drift()
    if drift is not None:
        checks.append(Check("WARN", "live credential", drift.detail, "gptme-subscription heal"))
    elif live.slot is None:
        checks.append(
            Check(
                "WARN", "live credential", "no live link", f"gptme-subscription switch {names[0]}"
            )
        )
    else:
        checks.append(Check("OK", "live credential", f"links to {live.slot}"))
    return checks


def check_locks(m: SubscriptionManager, now: float) -> list[Check]:
    checks = []
    for info in lock_status(m.config.claude_dir, now):
        if not info.exists:
            continue
        if info.stale:
            checks.append(
                Check(
                    "WARN",
                    "claude lock",
                    f"{info.path} is stale ({round(info.age_s or 0)} s old)",
                    f"remove {info.path} if no claude process is running",
                )
            )
        else:
            checks.append(
                Check("OK", "claude lock", f"{info.path} held now (Claude Code refreshing)")
            )
    return checks or [Check("OK", "claude locks", "none held")]


def check_environment(
    m: SubscriptionManager, env: Mapping[str, str], project_dir: Path
) -> list[Check]:
    found = override_warnings(env, {"cwd": str(project_dir)}, m.config.claude_dir)
    if found:
        return [
            Check(
                "WARN",
                "credential overrides",
                ", ".join(found) + " outrank the slot files",
                "unset them (or remove apiKeyHelper) for rotation to take effect",
            )
        ]
    return [Check("OK", "credential overrides", "none")]


# `env` keys in a settings file that make Claude Code authenticate with something other than
# the live slot credential: a credential of its own, or another provider.
SETTINGS_CREDENTIAL_ENV = OVERRIDE_ENV
SETTINGS_PROVIDER_ENV = (
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
)
_OFF = {"", "0", "false", "no", "off"}


def settings_env_overrides(doc: Mapping[str, Any]) -> list[str]:
    """Names (never values) of `env` entries in a settings document that bypass the slots."""
    env = doc.get("env")
    if not isinstance(env, dict):
        return []
    found = [k for k in SETTINGS_CREDENTIAL_ENV if isinstance(env.get(k), str) and env[k]]
    found += [
        k for k in SETTINGS_PROVIDER_ENV if k in env and str(env[k]).strip().lower() not in _OFF
    ]
    return found


def check_settings_env(m: SubscriptionManager, project_dir: Path) -> list[Check]:
    """A credential in a settings file's `env` outranks the slot files for every session
    that reads that file: rotation then changes nothing. Names the key, never its value."""
    checks = []
    for scope in ("user", "project", "local"):
        path = settings_path(scope, m.config.claude_dir, project_dir)
        try:
            doc = load_settings(path)
        except InstallError:
            continue  # check_installation reports an unreadable file
        for key in settings_env_overrides(doc):
            checks.append(
                Check(
                    "WARN",
                    f"settings env ({scope})",
                    f"env.{key} in {path} makes Claude Code bypass the slot credential; "
                    "rotation has no effect in sessions that read this file",
                    f"remove {key} from the env of {path}",
                )
            )
    return checks or [Check("OK", "settings env", "no credential override in settings env")]


def _mode_problem(path: Path, is_dir: bool) -> Check | None:
    """A Check when `path` lets group or others in (FAIL for files and for writable dirs)."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return None
    if not mode & 0o077:
        return None
    who = "group/others"
    if mode & 0o022:
        what = f"readable and writable by {who}" if mode & 0o044 else f"writable by {who}"
    else:
        what = f"readable by {who}"
    kind = "dir" if is_dir else "credential file"
    status = "WARN" if is_dir and not mode & 0o022 else "FAIL"
    fix = f"chmod {'700' if is_dir else '600'} {shlex.quote(str(path))}"
    return Check(status, "permissions", f"{kind} {path} is {mode:04o}: {what}", fix)


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def check_permissions(m: SubscriptionManager) -> list[Check]:
    """Slot files, the live file, backups and the dirs holding them must be private: a slot
    readable by others gives away a refresh token, a dir writable by others lets anyone swap
    the live link."""
    slots = m.slots
    dirs = [m.config.claude_dir, slots.backup_dir]
    profiled = slots.profile_slots()
    if profiled:
        dirs += [m.config.profiles_path] + [slots.profile_dir(n) for n in profiled]  # type: ignore[misc]
    problems = [_mode_problem(d, True) for d in dirs]
    files = [slots.slot_path(name) for name in m.slot_names()]
    if _is_regular(slots.live_path):  # drift: a file, not the link; it holds a credential
        files.append(slots.live_path)
    with contextlib.suppress(OSError):
        files += sorted(p for p in slots.backup_dir.iterdir() if _is_regular(p))
    problems += [_mode_problem(f, False) for f in files]
    found = [c for c in problems if c is not None]
    return found or [Check("OK", "permissions", "slot files 0600, their dirs private")]


def check_state(m: SubscriptionManager) -> list[Check]:
    state = m.config.state_dir
    try:
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = state / f".doctor-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return [
            Check(
                "FAIL",
                "state dir",
                f"{state}: {exc.strerror}",
                "make it writable or set GPTME_SUBSCRIPTION_STATE_DIR",
            )
        ]
    checks = [Check("OK", "state dir", str(state))]
    now = m.clock()
    for name in m.slot_names():
        status = m.usage.status(name, now)
        if status.get("last_error"):
            checks.append(
                Check(
                    "WARN",
                    f"usage {name}",
                    str(status["last_error"]),
                    "see `gptme-subscription check-auth --probe`",
                )
            )
    return checks


def run_checks(m: SubscriptionManager, env: Mapping[str, str], project_dir: Path) -> list[Check]:
    now = time.time()
    return (
        check_installation(m, project_dir)
        + check_slots(m)
        + check_locks(m, now)
        + check_environment(m, env, project_dir)
        + check_settings_env(m, project_dir)
        + check_permissions(m)
        + check_state(m)
    )
