"""Which model a Claude Code session talks to, read from the end of its transcript.

No hook payload says which model a failed request was for (StopFailure carries the error
only), but the session's transcript (`transcript_path`, JSON lines) records the model of each
answer. A session keeps its model from turn to turn, so the last real answer names the model
the failed request most likely used. Only the tail of the file is read: transcripts grow to
many megabytes and a hook must stay quick.
"""

from __future__ import annotations

import json
from typing import Any

from ..bounds import RefusedFile, read_tail

TAIL_BYTES = 256 * 1024


def last_model(transcript_path: Any, tail_bytes: int = TAIL_BYTES) -> str | None:
    """The `message.model` of the last assistant record, or None (no file, no answer yet,
    only synthetic error records such as `<synthetic>`)."""
    if not isinstance(transcript_path, str) or not transcript_path:
        return None
    try:
        # a path from the payload: a FIFO or /dev/zero is refused, never read or waited on
        tail, cut = read_tail(transcript_path, tail_bytes)
    except (OSError, RefusedFile):
        return None
    lines = tail.splitlines()
    if cut:
        lines = lines[1:]  # the first line is cut off
    for raw in reversed(lines):
        model = _answer_model(raw)
        if model is not None:
            return model
    return None


def _answer_model(raw: bytes) -> str | None:
    if b'"assistant"' not in raw:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("type") != "assistant":
        return None
    message = record.get("message")
    model = message.get("model") if isinstance(message, dict) else None
    if not isinstance(model, str) or not model or model.startswith("<"):
        return None
    return model
