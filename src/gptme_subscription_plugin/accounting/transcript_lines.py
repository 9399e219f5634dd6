"""One line of a Claude Code transcript, read for what it says about usage.

Claude Code writes `<claude dir>/projects/<project>/<session>.jsonl`: one JSON object per
line; an assistant message is written once per content block, each line repeating the
message's `usage`, so a reader keeps one record per `message.id` (the fullest output count).
The usage ledger and the simulator's replay mode both read lines through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Claude Code's own placeholder for a message no API call produced (an error shown in the chat)
SYNTHETIC_MODEL = "<synthetic>"


@dataclass
class UsageLine:
    """The usage of one API call, as one transcript line reports it (token counts)."""

    message_id: str
    session: str | None
    at: float
    model: str
    input: int
    output: int
    cache_write: int  # all cache writes (5-minute and 1-hour)
    cache_write_1h: int  # the 1-hour part of them, when Claude Code says
    cache_read: int
    cwd: str | None


def parse_timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def is_prompt(message: Any) -> bool:
    """A user line that starts a turn: text from the person, not only tool results."""
    if not isinstance(message, dict):
        return False
    content = message.get("content")
    if isinstance(content, str):
        return bool(content.strip())
    if isinstance(content, list):
        kinds = {b.get("type") for b in content if isinstance(b, dict)}
        return bool(kinds) and "tool_result" not in kinds
    return False


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return 0
    return int(value)


def parse_usage_line(doc: Any) -> UsageLine | None:
    """The API call an assistant line reports; None for any other line, a line without usage
    or a time, and Claude Code's synthetic messages."""
    if not isinstance(doc, dict) or doc.get("type") != "assistant":
        return None
    message = doc.get("message")
    if not isinstance(message, dict):
        return None
    usage, mid = message.get("usage"), message.get("id")
    at = parse_timestamp(doc.get("timestamp"))
    if not isinstance(usage, dict) or not isinstance(mid, str) or not mid or at is None:
        return None
    model = message.get("model")
    model = model if isinstance(model, str) and model else "unknown"
    if model == SYNTHETIC_MODEL:
        return None
    creation = usage.get("cache_creation")
    one_hour = _count(creation, "ephemeral_1h_input_tokens") if isinstance(creation, dict) else 0
    session, cwd = doc.get("sessionId"), doc.get("cwd")
    return UsageLine(
        message_id=mid[:200],
        session=session[:200] if isinstance(session, str) and session else None,
        at=at,
        model=model[:100],
        input=_count(usage, "input_tokens"),
        output=_count(usage, "output_tokens"),
        cache_write=_count(usage, "cache_creation_input_tokens"),
        cache_write_1h=one_hour,
        cache_read=_count(usage, "cache_read_input_tokens"),
        cwd=cwd[:500] if isinstance(cwd, str) and cwd else None,
    )


def merge(old: UsageLine, new: UsageLine) -> UsageLine:
    """The same message seen again (another content block): earliest time, fullest counts."""
    keep = new if new.output >= old.output else old
    keep.at = min(old.at, new.at)
    return keep
