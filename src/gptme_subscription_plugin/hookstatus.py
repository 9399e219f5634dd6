"""The hook status file: what the slow hooks computed, for the PreToolUse fast path to read.

Stdlib only: the fast path reads it on every tool call. Written atomically by the slow hooks
(SessionStart, UserPromptSubmit, Stop, the statusline); a missing or torn file reads as None.
"""

from __future__ import annotations

import json
from pathlib import Path

from .fsutil import atomic_write_text, ensure_private_dir

HOOK_STATUS_FILE = "hook-status.json"


def write_hook_status(state_dir: Path, status: dict[str, object]) -> None:
    ensure_private_dir(state_dir)
    atomic_write_text(state_dir / HOOK_STATUS_FILE, json.dumps(status, sort_keys=True))


def read_hook_status(state_dir: Path) -> dict[str, object] | None:
    try:
        doc = json.loads((state_dir / HOOK_STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
