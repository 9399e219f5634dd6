"""Atomic, private file writes: the one way this project puts bytes on disk.

Every write goes to a temp file in the same directory, is fsynced, and is renamed over the
target, so a crash leaves either the old content or the new one, never half of each.
Files are 0600 and directories 0700 because they hold (or sit beside) credentials.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .crashpoints import crash_point

FILE_MODE = 0o600
DIR_MODE = 0o700
TEMP_MARKER = ".tmp-gsp-"


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) as 0700 if missing; strip group/other access from it."""
    missing = []
    parent = path
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):  # parents too: mkdir(parents=True) would use 0755
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIR_MODE)
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:  # only ever take access away: a dir made read-only stays read-only
            path.chmod(mode & 0o700)
    except PermissionError:
        pass
    return path


def temp_path_for(target: Path) -> Path:
    """A unique sibling temp name; `sweep_temp_files` recognises the marker after a crash."""
    return target.with_name(f"{target.name}{TEMP_MARKER}{os.getpid()}-{os.urandom(4).hex()}")


def fsync_dir(path: Path) -> None:
    """Persist a rename: fsync the directory entry (best effort on filesystems without it)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(target: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write `data` to `target` atomically with `mode`; the temp file never outlives a failure."""
    tmp = temp_path_for(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        crash_point("write:before-rename")
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(target.parent)


def atomic_write_text(target: Path, text: str, mode: int = FILE_MODE) -> None:
    atomic_write_bytes(target, text.encode("utf-8"), mode)


def atomic_symlink(target_name: str, link: Path) -> None:
    """Point `link` at the relative `target_name` with one rename: no moment without a link."""
    tmp = temp_path_for(link)
    os.symlink(target_name, tmp)
    try:
        crash_point("symlink:before-rename")
        os.replace(tmp, link)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(link.parent)


def _unlink_quietly(path: Path) -> None:
    try:  # noqa: SIM105 - contextlib would cost import time on the hook path
        path.unlink()
    except OSError:
        pass


def sweep_dead_temp_files(directory: Path) -> list[Path]:
    """Remove our temp files whose writer is dead: a crash mid-write leaves them behind.

    The writer's pid is in the name (`temp_path_for`); a live writer's file is never touched.
    """
    removed: list[Path] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        _, marker, rest = name.partition(TEMP_MARKER)
        pid = rest.split("-", 1)[0]
        if not marker or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        path = directory / name
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            continue
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temp_files(directory: Path, prefix: str, older_than_s: float, now: float) -> list[Path]:
    """Remove our own temp files left by a crashed process (name marker + age), return them."""
    removed: list[Path] = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or TEMP_MARKER not in name:
            continue
        try:
            if now - entry.lstat().st_mtime < older_than_s:
                continue
            entry.unlink()
            removed.append(entry)
        except OSError:
            continue
    return removed
