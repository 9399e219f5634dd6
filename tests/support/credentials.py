"""Synthetic credentials and slot files, and what Claude Code does to them (refresh, /login)."""

from __future__ import annotations

import json
from pathlib import Path

from gptme_subscription_plugin import fsutil

FAR_FUTURE = 4_000_000_000.0  # an expiry no test reaches (Unix s, in 2096)


def credential_bytes(
    name: str,
    generation: int = 1,
    expires_at: float = FAR_FUTURE,
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


def access_token(name: str, generation: int = 1) -> str:
    return f"sk-ant-oat01-test-{name}-access-{generation}"


def account_email(name: str) -> str:
    return f"{name}@example.com"


def serve_profile(server, name: str, generation: int = 1) -> None:
    """The fake API answers the profile of `name`'s account for that generation's token."""
    from gptme_subscription_plugin.loopback import make_profile_doc

    server.set_profile(
        access_token(name, generation),
        make_profile_doc(account_email(name), account_uuid=f"uuid-{name}"),
    )


def claude_code_refresh(claude_dir: Path, data: bytes) -> None:
    """What Claude Code does on a token refresh: the live link becomes a regular file.

    `~/.claude.json` is left alone: Claude Code does not touch `oauthAccount` on refresh.
    """
    fsutil.ensure_private_dir(claude_dir)
    fsutil.atomic_write_bytes(claude_dir / ".credentials.json", data)


def claude_code_login(claude_dir: Path, home: Path, name: str, generation: int = 1) -> None:
    """What `/login` does: a regular file with the new login, and `oauthAccount` rewritten."""
    claude_code_refresh(claude_dir, credential_bytes(name, generation))
    write_oauth_account(home, name)
