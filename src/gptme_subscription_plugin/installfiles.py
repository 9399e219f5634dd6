"""How the installers rewrite a file that belongs to the user (settings.json, gptme.toml).

The file is the user's, so the write keeps what is theirs about it: a symlink (a dotfiles
setup) stays a link and its target is replaced atomically; the file keeps its mode. No
secret-bearing content is ever printed from here.
"""

from __future__ import annotations

import os
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
    if not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write_bytes(target, data, mode)
