"""Add the `subscription` plugin to a workspace's gptme.toml, and take it out again.

Read with tomllib, written with tomli-w: idempotent, every other key kept, the file backed up
before it changes (`gptme.toml.bak-gptme-subscription-<seq>-<time>`, 0600, the newest 5 kept;
see `installfiles`), a file that is not valid TOML (or whose `[plugins]` is not shaped as gptme
expects) refused with nothing changed; a symlinked file is written through to its target.

What it writes, under `[plugins]`:
- `paths`: the folder plugin directory shipped inside this package (a stale one from an older
  install location is replaced);
- `enabled`: "subscription" is appended when the workspace has an allowlist, or when the
  user's gptme config has one (gptme takes the union of both lists). A workspace with no
  allowlist at all already enables every plugin gptme finds; creating one there would switch
  off every other plugin, so the installer leaves it absent and says so.

Comments: tomli-w cannot write them. A file with comments is still installed into (the plugin
is one small table; refusing would leave most real gptme.toml files uninstallable), the
original is in the backup, and the result says how many comment lines were dropped. `--dry-run`
lists the entries it would add or remove (never the file's other content: `[env]` may hold
keys). No gptme import: the CLI runs this without gptme installed.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from ..installfiles import InstallError, backup_user_file, write_user_file
from .settings import PLUGIN_NAME

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

CANDIDATES = ("gptme.toml", ".github/gptme.toml")  # the order gptme looks in
NEW_FILE_MODE = 0o644  # a project file, often committed; it holds no secret
# The tail of every path this installer writes (`folder_plugin_dir()`, absolute); the head is
# wherever the package was installed.
_OUR_PARTS = ("gptme_subscription_plugin", "gptme_plugin", "plugins", PLUGIN_NAME)


@dataclass
class GptmeInstallResult:
    path: Path
    changed: bool
    backup: Path | None
    before: dict[str, Any]
    after: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    comments_dropped: int = 0

    @property
    def changes(self) -> list[dict[str, Any]]:
        return changes_between(self.before, self.after)

    def change_lines(self) -> list[str]:
        sign = {"added": "+", "removed": "-"}
        return [f"{sign[c['change']]} {c['entry']}: {c['value']}" for c in self.changes]

    def to_dict(self) -> dict[str, Any]:
        """What changed, by our entries only: gptme.toml may hold secrets (`[env]`)."""
        return {
            "path": str(self.path),
            "changed": self.changed,
            "backup": str(self.backup) if self.backup else None,
            "notes": self.notes,
            "comments_dropped": self.comments_dropped,
            "changes": self.changes,
        }


def folder_plugin_dir() -> Path:
    """The folder plugin shipped in this package (what `[plugins] paths` points at)."""
    return (Path(__file__).resolve().parent / "plugins" / PLUGIN_NAME).resolve()


def gptme_toml_path(workspace: Path) -> Path:
    """The file gptme reads for this workspace; a new `gptme.toml` when there is none."""
    for name in CANDIDATES:
        if (workspace / name).is_file():
            return workspace / name
    return workspace / CANDIDATES[0]


def is_our_path(entry: Any) -> bool:
    """A `[plugins] paths` entry this installer wrote (from any install location): an absolute
    path to the folder plugin inside this package. A relative path, or one to some other
    directory that only shares a name with ours, is the user's."""
    if not isinstance(entry, str) or not os.path.isabs(entry):
        return False
    return Path(entry).parts[-len(_OUR_PARTS) :] == _OUR_PARTS


def load_gptme_toml(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed document and its text; InstallError (nothing changed) when unusable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, ""
    except OSError as exc:
        raise InstallError(f"cannot read {path}: {exc.strerror}; nothing changed") from None
    try:
        text = data.decode("utf-8")
        doc = tomllib.loads(text)
    except UnicodeDecodeError:
        raise InstallError(f"{path} is not UTF-8 text; nothing changed") from None
    except tomllib.TOMLDecodeError as exc:
        raise InstallError(
            f"{path} is not valid TOML ({exc}); fix or move it aside, nothing changed"
        ) from None
    _check_shape(path, doc)
    return doc, text


def _check_shape(path: Path, doc: Mapping[str, Any]) -> None:
    plugins = doc.get("plugins")
    if plugins is None:
        return
    if not isinstance(plugins, dict):
        raise InstallError(f"{path}: [plugins] is not a table; nothing changed")
    for key in ("paths", "enabled"):
        value = plugins.get(key)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise InstallError(f"{path}: plugins.{key} is not a list of strings; nothing changed")


def user_plugin_allowlist(env: Mapping[str, str]) -> list[str]:
    """`[plugins] enabled` from the user's gptme config (config.toml, config.local.toml)."""
    home = Path(env.get("HOME") or Path.home())
    names: list[str] = []
    for name in ("config.toml", "config.local.toml"):
        try:
            doc = tomllib.loads((home / ".config" / "gptme" / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        plugins = doc.get("plugins")
        enabled = plugins.get("enabled") if isinstance(plugins, dict) else None
        if isinstance(enabled, list):
            names += [e for e in enabled if isinstance(e, str)]
    return names


def with_plugin(
    doc: Mapping[str, Any], plugin_dir: Path, user_enabled: list[str]
) -> tuple[dict[str, Any], list[str]]:
    """A copy of `doc` that loads our plugin, and notes on what that took."""
    new = copy.deepcopy(dict(doc))
    plugins = new.setdefault("plugins", {})
    ours = str(plugin_dir)
    paths = list(plugins.get("paths") or [])
    if ours not in paths:
        stale = [i for i, p in enumerate(paths) if is_our_path(p)]
        if stale:
            paths[stale[0]] = ours
        else:
            paths.append(ours)
    plugins["paths"] = [p for i, p in enumerate(paths) if p == ours or not is_our_path(p)]
    enabled = list(plugins.get("enabled") or [])
    notes: list[str] = []
    if enabled:
        if PLUGIN_NAME not in enabled:
            enabled.append(PLUGIN_NAME)
        plugins["enabled"] = enabled
    elif user_enabled and PLUGIN_NAME not in user_enabled:
        plugins["enabled"] = [PLUGIN_NAME]
        notes.append(
            "your gptme user config restricts plugins ([plugins] enabled = "
            f"{user_enabled}), so subscription was added to this workspace's enabled list"
        )
    else:
        notes.append(
            "no [plugins] enabled list here: gptme enables every plugin it finds, subscription "
            "included (an allowlist was not created, it would switch your other plugins off)"
        )
    return new, notes


def without_plugin(doc: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    new = copy.deepcopy(dict(doc))
    plugins = new.get("plugins")
    notes: list[str] = []
    if not isinstance(plugins, dict):
        return new, notes
    if "paths" in plugins:
        paths = [p for p in plugins["paths"] if not is_our_path(p)]
        if paths:
            plugins["paths"] = paths
        else:
            plugins.pop("paths")
    if "enabled" in plugins:
        enabled = [e for e in plugins["enabled"] if e != PLUGIN_NAME]
        if enabled:
            plugins["enabled"] = enabled
        else:
            plugins.pop("enabled")
            if doc["plugins"].get("enabled"):
                notes.append(
                    "[plugins] enabled listed only subscription; without a list gptme enables "
                    "every plugin it finds, including this package's entry point while it is "
                    "installed in gptme's environment (pip uninstall gptme-subscription-plugin "
                    "there to remove it everywhere)"
                )
    if not plugins:
        new.pop("plugins")
    return new, notes


def _plugin_list(doc: Mapping[str, Any], key: str) -> list[str]:
    plugins = doc.get("plugins")
    value = plugins.get(key) if isinstance(plugins, dict) else None
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def changes_between(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Our `[plugins]` entries that differ between two documents (install and uninstall touch
    nothing else, and only ours are named)."""
    changes: list[dict[str, Any]] = []
    for key, ours in (("paths", is_our_path), ("enabled", lambda v: v == PLUGIN_NAME)):
        old, new = _plugin_list(before, key), _plugin_list(after, key)
        for kind, values in (
            ("removed", [v for v in old if v not in new]),
            ("added", [v for v in new if v not in old]),
        ):
            changes += [
                {"change": kind, "entry": f"plugins.{key}", "value": v} for v in values if ours(v)
            ]
    return changes


def count_comments(text: str) -> int:
    """Comments in TOML text (a `#` outside every kind of string); the text must parse."""
    count = 0
    i, n = 0, len(text)
    state = ""  # "", '"', "'", '"""', "'''"
    while i < n:
        if state == "":
            for quote in ('"""', "'''", '"', "'"):
                if text.startswith(quote, i):
                    state = quote
                    i += len(quote)
                    break
            else:
                if text[i] == "#":
                    count += 1
                    end = text.find("\n", i)
                    i = n if end < 0 else end
                i += 1
            continue
        if state in ('"', '"""') and text[i] == "\\":
            i += 2
        elif text.startswith(state, i):
            i += len(state)
            while state in ('"""', "'''") and text.startswith(state[0], i):
                i += 1  # up to two quotes may close a multi-line string: """a"""""
            state = ""
        elif text[i] == "\n" and state in ('"', "'"):
            state = ""
            i += 1
        else:
            i += 1
    return count


def _write(path: Path, after: Mapping[str, Any], now: float) -> Path | None:
    backup = None
    if path.exists():
        backup = backup_user_file(path, path.read_bytes(), now)
    write_user_file(path, tomli_w.dumps(after).encode("utf-8"), NEW_FILE_MODE)
    return backup


def _finish(
    path: Path,
    before: dict[str, Any],
    after: dict[str, Any],
    text: str,
    notes: list[str],
    dry_run: bool,
    now: float | None,
) -> GptmeInstallResult:
    changed = after != before
    comments = count_comments(text) if changed else 0
    backup = _write(path, after, now or time.time()) if changed and not dry_run else None
    if comments:
        kept = f"kept in {backup}" if backup else "kept only in the original (dry run)"
        notes.append(
            f"{path.name} had {comments} comment(s); tomli-w cannot write comments, so the new "
            f"file has none ({kept}); copy back the ones you need"
        )
    return GptmeInstallResult(path, changed, backup, before, after, notes, comments)


def install(
    workspace: Path,
    dry_run: bool = False,
    now: float | None = None,
    plugin_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> GptmeInstallResult:
    path = gptme_toml_path(workspace)
    before, text = load_gptme_toml(path)
    user_enabled = user_plugin_allowlist(os.environ if env is None else env)
    after, notes = with_plugin(before, plugin_dir or folder_plugin_dir(), user_enabled)
    return _finish(path, before, after, text, notes, dry_run, now)


def uninstall(
    workspace: Path, dry_run: bool = False, now: float | None = None
) -> GptmeInstallResult:
    path = gptme_toml_path(workspace)
    before, text = load_gptme_toml(path)
    after, notes = without_plugin(before)
    if not path.exists():
        after = before  # nothing to take out of a file that is not there: never create one
    return _finish(path, before, after, text, notes, dry_run, now)


__all__ = [
    "GptmeInstallResult",
    "count_comments",
    "folder_plugin_dir",
    "gptme_toml_path",
    "install",
    "uninstall",
    "with_plugin",
    "without_plugin",
]
