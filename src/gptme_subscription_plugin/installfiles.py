"""How the installers rewrite a file that belongs to the user (settings.json, gptme.toml).

The file is the user's, so the write keeps what is theirs about it: a symlink (a dotfiles
setup) stays a link and its target is replaced atomically; the file keeps its mode. Before it
changes, its old content goes to a numbered backup beside it
(`<name>.bak-gptme-subscription-<sequence>-<UTC time>`, 0600) that never replaces another one;
only the newest `BACKUPS_KEPT` by sequence are kept (a clock that steps back cannot make the
newest copy look old).
"""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

from . import fsutil


class InstallError(Exception):
    """A file we will not touch; the message says why and what to do."""


def write_target(path: Path) -> Path:
    """The file a write to `path` must replace: its final target when `path` is a symlink, so
    the link survives (replacing the link itself would cut the user's dotfiles loose)."""
    if not path.is_symlink():
        return path
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        raise InstallError(
            f"{path} is a symlink to {target}, whose directory does not exist; nothing changed"
        )
    if target.exists() and not target.is_file():
        raise InstallError(f"{path} is a symlink to {target}, not a file; nothing changed")
    return target


def write_user_file(path: Path, data: bytes, new_file_mode: int) -> None:
    """Replace `path` (through a symlink) atomically with `data`, keeping the file's mode;
    a file that does not exist yet gets `new_file_mode`."""
    target = write_target(path)
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = new_file_mode
    make_private_dirs(target.parent)
    fsutil.atomic_write_bytes(target, data, mode)


def make_private_dirs(directory: Path) -> None:
    """Create `directory` and its missing parents as 0700, whatever the umask (mkdir's mode is
    masked by it, so each new dir is chmodded after); dirs that exist are the user's, untouched."""
    missing = []
    current = directory
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for new in reversed(missing):
        try:
            new.mkdir(mode=fsutil.DIR_MODE)
        except FileExistsError:
            continue  # made by someone else meanwhile: theirs
        new.chmod(fsutil.DIR_MODE)


BACKUP_MARK = ".bak-gptme-subscription-"
BACKUPS_KEPT = 5
_NUMBERED = re.compile(r"(\d+)-(\d{8}T\d{6}Z)")
# `<name>.bak-gptme-subscription-<unix time>[-<n>]`: what earlier versions wrote
_TIMED = re.compile(r"(\d+)(?:-(\d+))?")


def _backup_order(path: Path, candidate: str) -> tuple[int, int, str] | None:
    """Where a backup of `path` named `candidate` sorts, oldest first; None if it is not one.
    Backups from earlier versions (named by time) are older than every numbered one."""
    prefix = path.name + BACKUP_MARK
    if not candidate.startswith(prefix):
        return None
    rest = candidate[len(prefix) :]
    numbered = _NUMBERED.fullmatch(rest)
    if numbered:
        return (1, int(numbered[1]), numbered[2])
    timed = _TIMED.fullmatch(rest)
    if timed:
        return (0, int(timed[1]), f"{int(timed[2] or 0):09d}")
    return None


def backups_of(path: Path) -> list[Path]:
    """Our backups of `path` (regular files beside it), oldest first."""
    found: list[tuple[tuple[int, int, str], Path]] = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    for name in names:
        order = _backup_order(path, name)
        if order is None:
            continue
        entry = path.parent / name
        try:
            if not stat.S_ISREG(entry.lstat().st_mode):
                continue
        except OSError:
            continue
        found.append((order, entry))
    return [entry for _, entry in sorted(found)]


def backup_user_file(path: Path, data: bytes, now: float, keep: int = BACKUPS_KEPT) -> Path:
    """Save `data` (the content `path` had) as the next numbered backup beside `path`, 0600,
    never over an existing file; then drop all but the newest `keep`. Returns the backup."""
    existing = backups_of(path)
    numbered = [_backup_order(path, p.name) for p in existing]
    seq = 1 + max((o[1] for o in numbered if o is not None and o[0] == 1), default=0)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    tmp = fsutil.temp_path_for(path.parent / f"{path.name}{BACKUP_MARK}")
    fsutil.atomic_write_bytes(tmp, data, fsutil.FILE_MODE)
    try:
        while True:
            backup = path.parent / f"{path.name}{BACKUP_MARK}{seq:04d}-{stamp}"
            try:
                os.link(tmp, backup)  # fails rather than replace: no backup overwrites another
                break
            except FileExistsError:
                seq += 1
    finally:
        tmp.unlink()
    fsutil.fsync_dir(path.parent)
    for old in backups_of(path)[:-keep]:
        if old != backup:
            try:
                old.unlink()
            except OSError:
                continue
    return backup
