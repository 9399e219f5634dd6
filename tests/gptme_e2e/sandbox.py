"""A throwaway world for the gptme plugin: temp HOME, real slot files, usage on loopback.

Used in-process by the unit tests (through `apply_env`) and as a subprocess environment by the
end-to-end test (`env`). Nothing here imports gptme.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from gptme_subscription_plugin.turns import TurnRegistry

from ..support.credentials import credential_bytes, link_live, write_slot
from ..support.fake_api import FakeAnthropicServer

OVERRIDING_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
# Any attempt to reach beyond loopback goes to a closed port on 127.0.0.1 and fails at once.
DEAD_PROXY = "http://127.0.0.1:9"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def access(name: str) -> str:
    return f"sk-ant-oat01-test-{name}-access-1"


class Sandbox:
    def __init__(self, root: Path, server: FakeAnthropicServer) -> None:
        self.root = root
        self.home = root / "home"
        self.claude = self.home / ".claude"
        self.state = root / "state"
        self.ws = root / "ws"
        self.ws.mkdir(parents=True)
        self.server = server
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(root / "cfg"),
            "XDG_DATA_HOME": str(root / "data"),
            "XDG_STATE_HOME": str(root / "xdg-state"),
            "GPTME_SUBSCRIPTION_STATE_DIR": str(self.state),
            "GPTME_SUBSCRIPTION_API_BASE": server.base_url,
            "GPTME_SUBSCRIPTION_POLL_TIMEOUT": "2",
            "GPTME_SUBSCRIPTION_LOCK_WAIT": "2",
            "HTTP_PROXY": DEAD_PROXY,
            "HTTPS_PROXY": DEAD_PROXY,
            "NO_PROXY": "127.0.0.1,localhost",
        }
        now = time.time()
        for name in ("alice", "bob"):
            write_slot(self.claude, name, credential_bytes(name, expires_at=now + 3600))
        self.set_usage("alice", five=10, week=30)
        self.set_usage("bob", five=5, week=20)
        link_live(self.claude, "alice")

    def set_usage(
        self,
        name: str,
        five: float,
        week: float,
        models: dict[str, float] | None = None,
        week_in: float = 3 * 86400,
    ) -> None:
        now = time.time()
        doc: dict[str, Any] = {
            "five_hour": {"utilization": five, "resets_at": iso(now + 3600)},
            "seven_day": {"utilization": week, "resets_at": iso(now + week_in)},
        }
        for model, used in (models or {}).items():
            doc[f"seven_day_{model}"] = {"utilization": used, "resets_at": iso(now + week_in)}
        self.server.set_usage(access(name), doc)

    def apply_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """This process sees only the sandbox (for in-process tool and hook calls)."""
        for key in list(os.environ):
            if key.startswith("GPTME_SUBSCRIPTION_") or key in OVERRIDING_ENV:
                monkeypatch.delenv(key, raising=False)
        monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
        for key, value in self.env.items():
            if key != "PATH":
                monkeypatch.setenv(key, value)

    def live(self) -> str:
        return os.readlink(self.claude / ".credentials.json").rsplit(".", 1)[1]

    def registry(self) -> TurnRegistry:
        return TurnRegistry(self.state)

    def entry(self, session_id: str) -> dict[str, Any] | None:
        path = self.registry().path_for(session_id)
        return json.loads(path.read_text()) if path.exists() else None

    def rotation(self) -> dict[str, Any]:
        path = self.state / "rotation.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def events(self) -> list[dict[str, Any]]:
        path = self.state / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
