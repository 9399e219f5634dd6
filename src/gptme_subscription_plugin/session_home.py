"""Which home a hook's session runs in: the main claude dir (link mode) or a slot's profile.

Claude Code sets no `CLAUDE_CONFIG_DIR` for a session in the main dir, and `P` for one started
in a profile `P`; the hooks from the shared `settings.json` see the same (docs/facts.md, fact
15). A session in `<profiles_dir>/<slot>` runs on that slot's credential for its whole life and
never uses the live link, so its hooks must neither heal nor switch the link, and the turn
registry must not count it as mid-turn on the link.

Only a dir that is exactly `<profiles_dir>/<valid slot name>` after normalisation, a real
directory (not a link) ours alone, is trusted as a profile; anything else is not a profile, and
one that merely looks like one gets a line that says why. This runs on every tool call
(PreToolUse), so it imports only the stdlib and the stdlib-only `fsutil` and `names`, and costs
a few `lstat`s, only when `CLAUDE_CONFIG_DIR` is set.
"""

from __future__ import annotations

import os
import stat

from .fsutil import untrusted_reason
from .names import is_valid_name

CONFIG_DIR_ENV = "CLAUDE_CONFIG_DIR"


def _normal(path: str) -> str:
    return os.path.normpath(os.path.expanduser(path))


def profile_slot(
    config_dir: str | None, profiles_dir: str | os.PathLike[str]
) -> tuple[str | None, str | None]:
    """(slot, None) for a trusted profile `<profiles_dir>/<slot>`; (None, why) for a dir that
    looks like one and is not to be trusted; (None, None) for anything else (link mode)."""
    if not config_dir:
        return None, None
    given = _normal(config_dir)
    if not os.path.isabs(given):
        return None, None  # relative to a cwd we cannot know: never a profile
    parent, name = os.path.split(given)
    base = _normal(os.fspath(profiles_dir))
    if parent != base:
        try:  # the same dir reached another way (a linked home): compare where both lead
            if not os.path.samefile(parent, base):
                return None, None
        except OSError:
            return None, None
    shown = f"CLAUDE_CONFIG_DIR {given}"
    if not is_valid_name(name):
        return None, f"{shown} is in the profiles dir but {name!r} is not a slot name"
    try:
        st = os.lstat(given)
        base_st = os.stat(base)
    except OSError:
        return None, f"{shown} does not exist"
    if stat.S_ISLNK(st.st_mode):
        return None, f"{shown} is a symlink, not a profile of ours"
    if not stat.S_ISDIR(st.st_mode) or not stat.S_ISDIR(base_st.st_mode):
        return None, f"{shown} is not a directory"
    reason = untrusted_reason(st) or untrusted_reason(base_st)
    if reason is not None:
        return None, f"{shown} (or the profiles dir) {reason}"
    return name, None


def untrusted_line(note: str) -> str:
    """The hook's line for a config dir that looks like a profile and is not trusted."""
    return f"subscription: {note}; not treated as a profile (link mode)"


__all__ = ["CONFIG_DIR_ENV", "profile_slot", "untrusted_line"]
