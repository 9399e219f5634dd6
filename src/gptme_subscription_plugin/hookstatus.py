"""The hook status file: what the slow hooks computed, for the PreToolUse fast path to read.

Stdlib only: the fast path reads it on every tool call. Written atomically by the slow hooks
(SessionStart, UserPromptSubmit, Stop, the statusline); a missing or torn file reads as None.
"""

from __future__ import annotations

import json
from pathlib import Path

from .fsutil import atomic_write_text, ensure_private_dir, read_private_bytes

HOOK_STATUS_FILE = "hook-status.json"


def write_hook_status(state_dir: Path, status: dict[str, object]) -> None:
    ensure_private_dir(state_dir, "state dir")
    atomic_write_text(state_dir / HOOK_STATUS_FILE, json.dumps(status, sort_keys=True))


def read_hook_status(state_dir: Path) -> dict[str, object] | None:
    """The status the slow hooks left; None when missing or torn (ForeignPathError if not ours)."""
    try:
        raw = read_private_bytes(state_dir / HOOK_STATUS_FILE, "hook status file")
        doc = json.loads(raw) if raw is not None else None
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
