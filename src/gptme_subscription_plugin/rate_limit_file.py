"""0.1.0's rate-limit file: a file holding an ISO-8601 time until which the live slot is limited.

Wrappers written for gptme-subscription 0.1.0 write it when Claude Code reports a rate limit;
0.1.0 treated the live slot as exhausted while that time lay ahead and deleted the file after
every successful switch (it was about the slot that was live). The CLI's `--rate-limit-file`
and the `gptme_subscription` compatibility package both go through here. The file comes from
outside: it is read bounded and only when it is a regular file, so a FIFO or a device can
neither hang a cron job nor feed it forever.
"""

from __future__ import annotations

import os
import stat
from datetime import datetime, timezone
from pathlib import Path

from .bounds import RefusedFile, read_bounded

# An ISO-8601 time with an offset is ~32 bytes; this leaves room for whitespace, not for a log.
MAX_BYTES = 4096


class RateLimitFileError(ValueError):
    """The file exists but cannot be read as one (not a regular file, too large, unreadable)."""


class NotATime(ValueError):
    """The file holds something other than an ISO-8601 time (0.1.0 ignored such a file)."""


def read_until(path: str | os.PathLike[str]) -> float | None:
    """The time the file names, in epoch seconds (naive times are UTC, as in 0.1.0); None when
    there is no file. RateLimitFileError when it cannot be read, NotATime for other content.
    `~` is expanded (a shell leaves `--rate-limit-file=~/f` as it is)."""
    path = Path(path).expanduser()
    try:
        data = read_bounded(path, MAX_BYTES)
    except FileNotFoundError:
        return None
    except RefusedFile as exc:
        raise RateLimitFileError(f"rate-limit file {exc}") from None
    except OSError as exc:
        raise RateLimitFileError(
            f"rate-limit file {path}: cannot read it ({exc.strerror or exc})"
        ) from None
    try:
        text = data.decode("utf-8").strip()
        if text.endswith(("Z", "z")):  # fromisoformat takes "Z" only from Python 3.11
            text = text[:-1] + "+00:00"
        when = datetime.fromisoformat(text)
    except ValueError:  # UnicodeDecodeError included
        raise NotATime(f"rate-limit file {path} does not hold an ISO-8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def limited_until(path: str | os.PathLike[str], now: float) -> float | None:
    """The time the file names while it lies after `now`, else None (same errors as
    `read_until`)."""
    until = read_until(path)
    return until if until is not None and until > now else None


def clear(path: str | os.PathLike[str]) -> bool:
    """Delete the file after a switch away from the slot it was about; True when deleted.

    Only a regular file (or a symlink, which goes, not its target) is removed: anything else
    at that path was never read as a rate-limit file and is not ours to delete.
    """
    path = Path(path).expanduser()
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
