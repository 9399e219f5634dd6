"""The transcripts the demo's sessions would have left, written the way Claude Code writes them.

`<claude dir>/projects/<cwd with / as ->/<session id>.jsonl`: a `user` line for the prompt,
then one `assistant` line per content block, each repeating the message's `usage` (so a
reader must deduplicate by `message.id`). Token counts come from a seeded generator, so the
demo's figures are the same on every run.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from . import fsutil

PROJECT_CWD = "/home/demo/webapp"
CLAUDE_CODE_VERSION = "2.1.330"
MODELS = ("claude-sonnet-4-5-20250929", "claude-opus-4-5-20251101")


class TranscriptWriter:
    def __init__(self, claude_dir: Path, seed: int = 7) -> None:
        self.dir = claude_dir / "projects" / PROJECT_CWD.replace("/", "-")
        self.rng = random.Random(seed)
        self.count = 0

    def turn(self, session: str, at: float, requests: int = 3) -> None:
        """One turn: the person's prompt at `at`, then `requests` API calls a few seconds apart."""
        model = MODELS[0] if self.rng.random() < 0.75 else MODELS[1]
        lines = [self._line(session, at, "user", {"role": "user", "content": "next step, please"})]
        for n in range(requests):
            self.count += 1
            usage = {
                "input_tokens": self.rng.randint(3, 40),
                "cache_creation_input_tokens": self.rng.randint(500, 6000),
                "cache_read_input_tokens": self.rng.randint(10_000, 60_000),
                "output_tokens": self.rng.randint(80, 1500),
            }
            message_id = f"msg_demo{self.count:05d}"
            for block in ({"type": "text", "text": "…"}, {"type": "tool_use", "name": "Edit"}):
                message = {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [block],
                    "usage": usage,
                }
                lines.append(self._line(session, at + 4 * (n + 1), "assistant", message))
        fsutil.ensure_private_dir(self.dir.parent, "directory")
        fsutil.ensure_private_dir(self.dir, "directory")
        data = "".join(lines).encode()
        fd = fsutil.open_private_append(self.dir / f"{session}.jsonl", "transcript")
        try:
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)

    def _line(self, session: str, at: float, kind: str, message: Mapping[str, object]) -> str:
        self.count += 1
        stamp = (
            datetime.fromtimestamp(at, timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        doc = {
            "type": kind,
            "sessionId": session,
            "cwd": PROJECT_CWD,
            "version": CLAUDE_CODE_VERSION,
            "uuid": f"demo-{self.count:06d}",
            "timestamp": stamp,
            "message": message,
        }
        return json.dumps(doc, separators=(",", ":")) + "\n"  # compact, as Claude Code writes
