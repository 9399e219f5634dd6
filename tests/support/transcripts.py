"""Transcripts written the way Claude Code writes them, with token counts the test chooses:
`<claude dir>/projects/<project>/<session>.jsonl`, a user line per prompt and one assistant
line per content block, each repeating the message's usage."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

SONNET = "claude-sonnet-4-5-20250929"
OPUS = "claude-opus-4-5-20251101"
# list prices (USD per million tokens) of the two, to check costs independently of the code
PRICE = {SONNET: (3.0, 15.0, 3.75, 0.30), OPUS: (5.0, 25.0, 6.25, 0.50)}


@dataclass
class Call:
    message_id: str
    model: str = SONNET
    input: int = 10
    output: int = 100
    cache_write: int = 1000
    cache_read: int = 5000

    def cost(self) -> float:
        i, o, w, r = PRICE[self.model]
        return (self.input * i + self.output * o + self.cache_write * w + self.cache_read * r) / 1e6


def stamp(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat().replace("+00:00", "Z")


def transcript_path(claude_dir: Path, session: str, project: str = "/work/app") -> Path:
    return claude_dir / "projects" / project.replace("/", "-") / f"{session}.jsonl"


def write_turn(
    claude_dir: Path,
    session: str,
    calls: list[Call],
    at: float | None = None,
    project: str = "/work/app",
) -> Path:
    """A prompt and its calls, appended to the session's transcript (two lines per call)."""
    at = time.time() if at is None else at
    path = transcript_path(claude_dir, session, project)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = {"sessionId": session, "cwd": project, "version": "2.1.330"}
    lines = [
        {
            **base,
            "type": "user",
            "timestamp": stamp(at),
            "message": {"role": "user", "content": "go"},
        }
    ]
    for n, call in enumerate(calls):
        usage = {
            "input_tokens": call.input,
            "output_tokens": call.output,
            "cache_creation_input_tokens": call.cache_write,
            "cache_read_input_tokens": call.cache_read,
        }
        for block in ("text", "tool_use"):
            message = {
                "id": call.message_id,
                "type": "message",
                "role": "assistant",
                "model": call.model,
                "content": [{"type": block}],
                "usage": usage,
            }
            lines.append(
                {
                    **base,
                    "type": "assistant",
                    "timestamp": stamp(at + 0.01 * (n + 1)),
                    "message": message,
                }
            )
    with path.open("a") as fh:
        fh.write("".join(json.dumps(line) + "\n" for line in lines))
    return path
