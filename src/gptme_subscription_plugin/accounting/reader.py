"""Only the new, complete lines of an append-only file, in bounded memory.

Transcripts and the event log only grow, so a reader remembers where it stopped (the byte
after the last complete line) and starts there next time. A line longer than `max_line` (a
pasted file, a huge tool result) is skipped without ever being held whole, so a 2 GB line or
a file of zeros cannot exhaust memory, and is read once, not at every update; a partial last
line (a writer mid-write) is left for the
next read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

CHUNK = 1 << 20
MAX_LINE = 8 << 20


@dataclass
class ReadStats:
    end: int = 0  # the offset to start from next time
    skipped_long: int = 0  # lines over max_line, skipped


def new_lines(
    fd: int,
    start: int,
    stats: ReadStats,
    wanted: Callable[[bytes], bool] = lambda line: True,
    max_line: int = MAX_LINE,
) -> Iterator[bytes]:
    """Complete lines of `fd` from `start` that `wanted` accepts; `stats.end` follows the
    last complete line read (so it is right once the iterator is exhausted)."""
    stats.end = start
    pos = start
    rest = b""
    skipping = False  # inside a line longer than max_line: drop bytes to its end
    while True:
        chunk = os.pread(fd, CHUNK, pos)
        if not chunk:
            return
        pos += len(chunk)
        data = rest + chunk
        lines = data.split(b"\n")
        rest = lines.pop()  # no newline after it (yet)
        for line in lines:
            if skipping:
                skipping = False
                stats.skipped_long += 1
            elif len(line) > max_line:
                stats.skipped_long += 1
            elif wanted(line):
                yield line
        if skipping or len(rest) > max_line:
            # consumed for good: a later read resumes after it, never rescans a huge line
            # (its tail, once a newline ends it, is one line that does not parse)
            skipping = True
            rest = b""
        stats.end = pos - len(rest)
