"""Shared test builders: synthetic credentials and a sandboxed Claude config dir."""

from __future__ import annotations

import json
from pathlib import Path

from gptme_subscription_plugin import fsutil


def credential_bytes(
    name: str,
    generation: int = 1,
    expires_at: float = 4_000_000_000.0,
    refresh: bool = True,
    extra: dict | None = None,
) -> bytes:
    oauth = {
        "accessToken": f"sk-ant-oat01-test-{name}-access-{generation}",
        "expiresAt": int(expires_at * 1000),
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
        "rateLimitTier": "default_claude_max_20x",
    }
    if refresh:
        oauth["refreshToken"] = f"sk-ant-ort01-test-{name}-refresh-{generation}"
    doc = {"claudeAiOauth": oauth, **(extra or {})}
    return json.dumps(doc, indent=1).encode()


def refresh_token(name: str, generation: int = 1) -> str:
    return f"sk-ant-ort01-test-{name}-refresh-{generation}"


def write_slot(claude_dir: Path, name: str, data: bytes) -> Path:
    fsutil.ensure_private_dir(claude_dir)
    path = claude_dir / f".credentials.json.{name}"
    fsutil.atomic_write_bytes(path, data)
    return path


def write_oauth_account(home: Path, name: str) -> None:
    doc = {
        "hasCompletedOnboarding": True,
        "oauthAccount": {"accountUuid": f"uuid-{name}", "emailAddress": f"{name}@example.com"},
    }
    fsutil.atomic_write_text(home / ".claude.json", json.dumps(doc))


def link_live(claude_dir: Path, name: str) -> None:
    fsutil.atomic_symlink(f".credentials.json.{name}", claude_dir / ".credentials.json")
