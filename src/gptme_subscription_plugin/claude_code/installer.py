"""Merge our hooks (and statusline) into a Claude Code settings.json, and take them out again.

Idempotent, and careful with the user's file: every other key and hook is kept, the file is
backed up before it changes, and a file that is not valid JSON is refused with nothing changed.

"Ours" is exactly what this installer writes, never a command that merely mentions our name:
a hook handler is ours when its command is, byte for byte, the command we generate for that
event (`<absolute path>/gptme-subscription hook <name>`, or `<absolute python> -m
gptme_subscription_plugin hook <name>`; StopFailure's behind its signal shield), or the form an
earlier version of this installer wrote there. The statusline is ours when it is exactly
`<prefix> statusline`, optionally with `--wrap <the user's command>`.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import fsutil
from ..installfiles import InstallError, backup_user_file, write_user_file

SCOPES = ("user", "project", "local")
# StopFailure errors the hook acts on (a rate limit; Anthropic refusing the credential); the
# others (overloaded, server errors, ...) say nothing about the slot.
STOP_FAILURE_MATCHER = "rate_limit|authentication_failed|oauth_org_not_allowed"
# (Claude Code event, matcher or None, our hook name, timeout in seconds)
HOOK_SPECS: tuple[tuple[str, str | None, str, int], ...] = (
    ("SessionStart", None, "session-start", 30),
    ("UserPromptSubmit", None, "user-prompt-submit", 30),
    ("PreToolUse", "*", "pre-tool-use", 10),
    ("Stop", None, "stop", 30),
    ("StopFailure", STOP_FAILURE_MATCHER, "stop-failure", 30),
    ("SessionEnd", None, "session-end", 5),
)
HOOK_EVENTS = {name: event for event, _, name, _ in HOOK_SPECS}
SCRIPT_NAME = "gptme-subscription"
MODULE_NAME = "gptme_subscription_plugin"


@dataclass
class InstallResult:
    """What an install or uninstall did. `before`/`after` hold the whole settings document (it
    may carry secrets, e.g. `env.ANTHROPIC_API_KEY`): they are never printed; `changes` and
    `to_dict` name only our own entries."""

    path: Path
    changed: bool
    backup: Path | None
    before: dict[str, Any]
    after: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[dict[str, Any]]:
        return changes_between(self.before, self.after)

    def change_lines(self) -> list[str]:
        lines = []
        for c in self.changes:
            sign = {"added": "+", "removed": "-"}.get(c["change"], "~")
            if "command" in c:
                lines.append(f"{sign} {c['entry']}: {c['command']}")
            else:
                wraps = " (wrapping your statusline)" if c.get("wraps_your_statusline") else ""
                lines.append(f"{sign} {c['entry']}{wraps}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "changed": self.changed,
            "backup": str(self.backup) if self.backup else None,
            "notes": self.notes,
            "changes": self.changes,
        }


def settings_path(scope: str, claude_dir: Path, project_dir: Path) -> Path:
    """user: <claude dir>/settings.json; project: .claude/settings.json; local: settings.local."""
    if scope == "user":
        return claude_dir / "settings.json"
    if scope == "project":
        return project_dir / ".claude" / "settings.json"
    if scope == "local":
        return project_dir / ".claude" / "settings.local.json"
    raise InstallError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")


def our_command_prefix() -> str:
    """How settings.json should call us: the absolute console script, else python -m. Both
    are forms `our_hook` recognises, so a reinstall replaces what this one writes."""
    script = shutil.which(SCRIPT_NAME)
    argv0 = Path(sys.argv[0])
    if argv0.name == SCRIPT_NAME and argv0.exists():
        script = str(argv0)
    if script:
        resolved = Path(script).resolve()
        # a console script reached through a link of another name keeps the name we look for
        path = resolved if resolved.name == SCRIPT_NAME else Path(os.path.abspath(script))
        return shlex.quote(str(path))
    return f"{shlex.quote(os.path.abspath(sys.executable))} -m {MODULE_NAME}"


# Claude Code signals a StopFailure hook as it exits (2.1.330, -p mode) without waiting for
# it; ignoring the signals from the shell on (inherited across exec) lets the hook hand its
# work to a detached worker.
SIGNAL_SHIELDED = {"stop-failure"}
SIGNAL_SHIELD = "trap '' HUP INT TERM; exec "
# Hooks an earlier version of this installer wrote without the signal shield.
UNSHIELDED_BEFORE = {"stop-failure"}


def hook_command(prefix: str, name: str) -> str:
    command = f"{prefix} hook {name}"
    return f"{SIGNAL_SHIELD}{command}" if name in SIGNAL_SHIELDED else command


def statusline_command(prefix: str, wrapped: str | None) -> str:
    command = f"{prefix} statusline"
    return f"{command} --wrap {shlex.quote(wrapped)}" if wrapped else command


def _split_prefix(command: str) -> tuple[str, str, list[str]] | None:
    """(prefix as we write it, our executable, the words after it), if `command` starts with
    one of the two prefixes `our_command_prefix` produces: an absolute path to our console
    script, or an absolute python with `-m gptme_subscription_plugin`."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or not os.path.isabs(words[0]):
        return None
    exe = words[0]
    if Path(exe).name == SCRIPT_NAME:
        return shlex.quote(exe), exe, words[1:]
    if words[1:3] == ["-m", MODULE_NAME]:
        return f"{shlex.quote(exe)} -m {MODULE_NAME}", exe, words[3:]
    return None


@dataclass(frozen=True)
class OurHook:
    """A hook handler this installer wrote: which of our hooks, and the executable it runs."""

    name: str
    executable: str


def our_hook(event: str, command: Any) -> OurHook | None:
    """The hook of ours `command` is under `event`, if it is exactly a command we write there
    (now, or as an earlier version did); None for everything else, the user's own commands
    that mention our name included."""
    if not isinstance(command, str):
        return None
    body = command.removeprefix(SIGNAL_SHIELD)
    split = _split_prefix(body)
    if split is None:
        return None
    prefix, exe, rest = split
    if len(rest) != 2 or rest[0] != "hook" or HOOK_EVENTS.get(rest[1]) != event:
        return None
    name = rest[1]
    forms = {hook_command(prefix, name)}
    if name in UNSHIELDED_BEFORE:
        forms.add(f"{prefix} hook {name}")
    return OurHook(name, exe) if command in forms else None


def our_statusline(command: Any) -> tuple[bool, str | None]:
    """(is it our statusline, the user's command it wraps) for a statusLine command."""
    if not isinstance(command, str):
        return False, None
    split = _split_prefix(command)
    if split is None:
        return False, None
    prefix, _, rest = split
    if rest == ["statusline"]:
        wrapped = None
    elif len(rest) == 3 and rest[:2] == ["statusline", "--wrap"]:
        wrapped = rest[2]
    else:
        return False, None
    if statusline_command(prefix, wrapped) != command:
        return False, None
    return True, wrapped


def load_settings(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InstallError(f"cannot read {path}: {exc.strerror}; nothing changed") from None
    if not text.strip():
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InstallError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "fix or move it aside, nothing changed"
        ) from None
    if not isinstance(doc, dict):
        raise InstallError(f"{path} is not a JSON object; nothing changed")
    hooks = doc.get("hooks")
    if hooks is not None and not isinstance(hooks, dict):
        raise InstallError(f'{path}: "hooks" is not an object; nothing changed')
    return doc


def _is_our_handler(event: str, handler: Any) -> bool:
    return isinstance(handler, dict) and our_hook(event, handler.get("command")) is not None


def _strip_ours(hooks: dict[str, Any]) -> dict[str, Any]:
    """The user's hooks with every handler of ours removed (empty groups of ours dropped)."""
    cleaned: dict[str, Any] = {}
    for event, groups in hooks.items():
        if not isinstance(groups, list):
            cleaned[event] = groups
            continue
        kept_groups = []
        for group in groups:
            if not isinstance(group, dict) or not isinstance(group.get("hooks"), list):
                kept_groups.append(group)
                continue
            handlers = [h for h in group["hooks"] if not _is_our_handler(event, h)]
            if handlers or len(handlers) == len(group["hooks"]):
                kept_groups.append({**group, "hooks": handlers})
        if kept_groups or not groups:
            cleaned[event] = kept_groups
    return cleaned


def with_our_hooks(doc: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A copy of `doc` with exactly one set of our hooks and our statusline."""
    new = copy.deepcopy(doc)
    hooks = _strip_ours(new.get("hooks") or {})
    for event, matcher, name, timeout in HOOK_SPECS:
        group: dict[str, Any] = {}
        if matcher is not None:
            group["matcher"] = matcher
        group["hooks"] = [
            {"type": "command", "command": hook_command(prefix, name), "timeout": timeout}
        ]
        hooks.setdefault(event, []).append(group)
    new["hooks"] = hooks
    new["statusLine"] = _wrapped_statusline(new.get("statusLine"), prefix)
    return new


def without_our_hooks(doc: dict[str, Any]) -> dict[str, Any]:
    new = copy.deepcopy(doc)
    if isinstance(new.get("hooks"), dict):
        hooks = _strip_ours(new["hooks"])
        if hooks:
            new["hooks"] = hooks
        else:
            new.pop("hooks")
    line = new.get("statusLine")
    if isinstance(line, dict):
        ours, original = our_statusline(line.get("command"))
        if ours and original:
            new["statusLine"] = {**line, "command": original}
        elif ours:
            new.pop("statusLine")
    return new


def _wrapped_statusline(current: Any, prefix: str) -> dict[str, Any]:
    """Our statusline; a user's own statusline command keeps running, wrapped by ours."""
    base = current if isinstance(current, dict) else {}
    command = base.get("command")
    ours, original = our_statusline(command)
    if not ours:
        original = command if isinstance(command, str) and command else None
    return {**base, "type": "command", "command": statusline_command(prefix, original)}


def _write(path: Path, doc: dict[str, Any], now: float) -> Path | None:
    """Back the old file up (0600), then write the new one atomically (through a symlink)."""
    backup = None
    if path.exists():
        backup = backup_user_file(path, path.read_bytes(), now)
    write_user_file(path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"), fsutil.FILE_MODE)
    return backup


def install(
    path: Path, prefix: str | None = None, dry_run: bool = False, now: float | None = None
) -> InstallResult:
    before = load_settings(path)
    after = with_our_hooks(before, prefix or our_command_prefix())
    changed = after != before
    backup = _write(path, after, now or time.time()) if changed and not dry_run else None
    notes = []
    if os.environ.get("CLAUDE_CODE_SUBPROCESS_ENV_SCRUB"):
        notes.append("CLAUDE_CODE_SUBPROCESS_ENV_SCRUB is set: hooks cannot see env overrides")
    return InstallResult(path, changed, backup, before, after, notes)


def uninstall(path: Path, dry_run: bool = False, now: float | None = None) -> InstallResult:
    before = load_settings(path)
    after = without_our_hooks(before)
    changed = after != before
    backup = _write(path, after, now or time.time()) if changed and not dry_run else None
    return InstallResult(path, changed, backup, before, after)


def installed_events(doc: dict[str, Any]) -> set[str]:
    """Which Claude Code events call one of our hooks in this settings document."""
    found: set[str] = set()
    hooks = doc.get("hooks")
    if not isinstance(hooks, dict):
        return found
    for event, groups in hooks.items():
        for group in groups if isinstance(groups, list) else []:
            handlers = group.get("hooks") if isinstance(group, dict) else None
            if any(_is_our_handler(event, h) for h in handlers or []):
                found.add(event)
    return found


def _our_handlers(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """(event, command) of every hook handler of ours in `doc`."""
    found: set[tuple[str, str]] = set()
    hooks = doc.get("hooks")
    for event, groups in hooks.items() if isinstance(hooks, dict) else ():
        for group in groups if isinstance(groups, list) else []:
            handlers = group.get("hooks") if isinstance(group, dict) else None
            for h in handlers if isinstance(handlers, list) else []:
                if _is_our_handler(event, h):
                    found.add((event, h["command"]))
    return found


def changes_between(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Our entries that differ between two settings documents, and nothing of the user's: our
    hook commands by event, and whether our statusline came or went (never its command, which
    holds the user's own statusline command)."""
    old, new = _our_handlers(before), _our_handlers(after)
    changes: list[dict[str, Any]] = [
        {"change": "removed", "entry": f"hooks.{event}", "command": command}
        for event, command in sorted(old - new)
    ]
    changes += [
        {"change": "added", "entry": f"hooks.{event}", "command": command}
        for event, command in sorted(new - old)
    ]
    line_before, line_after = before.get("statusLine"), after.get("statusLine")
    if line_before != line_after:
        was_ours, _ = our_statusline(_command_of(line_before))
        is_ours, wrapped = our_statusline(_command_of(line_after))
        kind = "updated" if was_ours == is_ours else "added" if is_ours else "removed"
        change: dict[str, Any] = {"change": kind, "entry": "statusLine"}
        if is_ours:
            change["wraps_your_statusline"] = wrapped is not None
        changes.append(change)
    return changes


def _command_of(line: Any) -> Any:
    return line.get("command") if isinstance(line, dict) else None
