"""Text from outside, made safe to show or store: tokens blanked, one line, capped.

Usage answers, usage-script output, model names and dates that fail to parse all come from
somewhere we do not control; an endpoint that echoes the Authorization header must not get a
token into `status`, `hook-status.json`, the usage cache or the events log. Every parser that
keeps or reports such text passes it through `clean_external` first.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"
# a Claude token or a bearer credential anywhere in the text
TOKEN_RE = re.compile(r"sk-ant-[A-Za-z0-9_\-]*|(?i:bearer)\s+\S+")
# any long run of key-like characters: an unknown token format is still blanked
SECRETISH_RE = re.compile(r"[A-Za-z0-9_\-.+/=]{32,}")


def clean_external(text: str, limit: int = 160) -> str:
    """One line of `text` with token-shaped runs blanked, at most `limit` characters."""
    line = " ".join(text.split())
    line = SECRETISH_RE.sub(REDACTED, TOKEN_RE.sub(REDACTED, line))
    return line if len(line) <= limit else line[: max(0, limit - 1)] + "…"


def scrub(text: str) -> str:
    """`text` as it is, with Claude tokens and bearer credentials blanked (layout kept)."""
    return TOKEN_RE.sub(REDACTED, text)


def has_token(text: str) -> bool:
    return TOKEN_RE.search(text) is not None
