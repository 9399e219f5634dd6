"""Atomic, private file writes: the one way this project puts bytes on disk.

Every write goes to a temp file in the same directory, is fsynced, and is renamed over the
target, so a crash leaves either the old content or the new one, never half of each.
Files are 0600 and directories 0700 because they hold (or sit beside) credentials.

Nothing another user could have written is trusted: `check_private` refuses a path owned by
someone else or writable by group/others (`ForeignPathError`), subdirectories are never
symlinks, and state files are opened with O_NOFOLLOW.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from .crashpoints import crash_point

FILE_MODE = 0o600
DIR_MODE = 0o700
TEMP_MARKER = ".tmp-gsp-"


class ForeignPathError(Exception):
    """A path someone else could have written: refused before anything is read or changed.

    Deliberately not an OSError, so code that shrugs off I/O errors does not shrug this off.
    """


def untrusted_reason(st: os.stat_result) -> str | None:
    """Why a file or dir with this stat could hold another user's bytes, or None if it cannot.

    Trusted: owned by us (or root, who can write anything anyway) and writable by nobody else.
    Group write is tolerated only for a user-private group (named like us, as pam_umask's
    `usergroups` assumes), so a umask of 002 on such systems does not lock people out.
    """
    euid = os.geteuid()
    if st.st_uid not in (euid, 0):
        return f"is owned by uid {st.st_uid}, not by you (uid {euid})"
    mode = stat.S_IMODE(st.st_mode)
    if mode & stat.S_IWOTH or (mode & stat.S_IWGRP and not _private_group(st.st_gid)):
        return f"is writable by others (mode {mode:04o}; fix: chmod go-w)"
    return None


def _private_group(gid: int) -> bool:
    """True for a user-private group: our primary group, named as we are, with no members."""
    if gid != os.getegid():
        return False
    try:
        import grp
        import pwd

        group = grp.getgrgid(gid)
        return group.gr_name == pwd.getpwuid(os.geteuid()).pw_name and not group.gr_mem
    except (ImportError, KeyError):
        return False


def check_private(path: Path, what: str, follow: bool = True) -> None:
    """Raise ForeignPathError if `path` is not ours alone; a missing path passes (we create it).

    `follow=False` also refuses a symlink: for entries inside our own dirs, where a link can
    only be planted. The state and claude dirs themselves may be links (dotfiles) to a dir of ours.
    """
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError:
        return  # missing or unreachable: the caller's own open reports it
    if stat.S_ISLNK(st.st_mode):
        raise ForeignPathError(f"{what} {path} is a symlink; refusing to follow it")
    reason = untrusted_reason(st)
    if reason is not None:
        raise ForeignPathError(f"{what} {path} {reason}; refusing to use it")


def check_runnable(path: Path, what: str) -> None:
    """Raise ForeignPathError unless only we (or root) could have put the program at `path`.

    Checks the file a link resolves to and the dir holding it: whoever can write either can
    swap what we run. A sticky dir (/tmp) is fine for a file of ours, as no one else can
    replace it there.
    """
    try:
        target = path.resolve(strict=True)
        st = os.stat(target)
        parent = os.stat(target.parent)
    except (OSError, RuntimeError):
        return  # missing: running it reports that
    reason = untrusted_reason(st)
    if reason is None and not parent.st_mode & stat.S_ISVTX:
        reason = untrusted_reason(parent)
        if reason is not None:
            reason = f"is in {target.parent}, which {reason}"
    if reason is not None:
        raise ForeignPathError(f"{what} {path} {reason}; refusing to run it")


def ensure_private_dir(path: Path, what: str = "directory", follow: bool = True) -> Path:
    """Create `path` (and parents) as 0700 if missing; strip group/other access from it.

    An existing dir that is not ours alone is refused (`check_private`), never repaired: someone
    else may already have put files in it.
    """
    missing = []
    parent = path
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):  # parents too: mkdir(parents=True) would use 0755
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIR_MODE)
    check_private(path, what, follow)
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:  # only ever take access away: a dir made read-only stays read-only
            path.chmod(mode & 0o700)
    except PermissionError:
        pass
    return path


def private_subdir(parent: Path, name: str) -> Path:
    """`parent/name` as a private dir of ours: created 0700, refused if it is a symlink."""
    check_private(parent, "directory")
    return ensure_private_dir(parent / name, "directory", follow=False)


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _open_private(path: Path, flags: int, what: str) -> int:
    """Open without following a symlink; the fd only if the file is ours alone and regular."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ForeignPathError(f"{what} {path} is a symlink; refusing to follow it") from None
        raise
    try:
        st = os.fstat(fd)
        reason = untrusted_reason(st)
        if reason is None and not stat.S_ISREG(st.st_mode):
            reason = "is not a regular file"
    except BaseException:
        os.close(fd)
        raise
    if reason is not None:
        os.close(fd)
        raise ForeignPathError(f"{what} {path} {reason}; refusing to use it")
    return fd


def open_private_append(path: Path, what: str = "file") -> int:
    """An O_APPEND fd on `path` (created 0600); never through a symlink, never someone else's."""
    return _open_private(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, what)


def open_private_read(path: Path, what: str = "state file") -> int:
    """A read-only fd on a file of ours; never through a symlink (FileNotFoundError if absent)."""
    return _open_private(path, os.O_RDONLY | os.O_NONBLOCK, what)


def read_private_bytes(
    path: Path, what: str = "state file", limit: int | None = None
) -> bytes | None:
    """The bytes of a file of ours, None if missing; ForeignPathError if a link or not ours.

    With `limit`, a file larger than that raises ValueError without being read.
    """
    try:
        fd = open_private_read(path, what)
    except FileNotFoundError:
        return None
    try:
        if limit is not None and os.fstat(fd).st_size > limit:
            raise ValueError(f"{what} {path} is larger than {limit} bytes")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


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


def sweep_old_files(directory: Path, older_than_s: float, now: float) -> list[Path]:
    """Remove regular files in `directory` not modified for `older_than_s` (links untouched).

    For per-session markers whose session ended without saying so (a crash, a kill): without
    this they would pile up forever.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and now - st.st_mtime > older_than_s:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed
