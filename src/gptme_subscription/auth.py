"""Credential checks of gptme-subscription 0.1.0, answered by our offline credential check."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ._dropped import module_getattr

CredentialStatus = Literal["valid", "stale", "missing", "malformed", "unreadable"]

# our Health -> the 0.1.0 status string. A file without a refresh token cannot survive its
# access token's expiry: 0.1.0 had no word for that, and "malformed" is the one that says
# "log in again" (needs_reauth_hint); `error` says why.
STATUS: dict[str, CredentialStatus] = {
    "valid": "valid",
    "stale": "stale",
    "missing": "missing",
    "malformed": "malformed",
    "unreadable": "unreadable",
    "no-refresh-token": "malformed",
}


@dataclass
class CredentialInfo:
    """0.1.0's credential report. `health` and `detail` are ours (`health` has one state more)."""

    sub: str
    path: Path
    status: CredentialStatus
    expires_at: int | None = None  # unix epoch milliseconds
    expires_in_seconds: int | None = None  # negative once lapsed
    subscription_type: str | None = None
    scopes: list[str] | None = None  # not reported: our check reads no scopes
    error: str | None = None
    health: str = ""
    detail: str = ""

    @property
    def needs_reauth_hint(self) -> bool:
        """True for states where a person should log in again."""
        return self.status in ("missing", "malformed", "unreadable")

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"sub": self.sub, "path": str(self.path), "status": self.status}
        for key in ("expires_at", "expires_in_seconds", "subscription_type", "scopes", "error"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        return d


def check_credential_file(path: Path, sub: str) -> CredentialInfo:
    """0.1.0's `check_credential_file(path, sub)`: ours, offline, no token in the result."""
    from gptme_subscription_plugin.credentials import check_credential_file as check

    now = time.time()
    info = check(Path(path), now)
    status = STATUS[info.health.value]
    expires_in = None
    if info.expires_at_ms is not None:
        expires_in = int((info.expires_at_ms - now * 1000) / 1000)
    return CredentialInfo(
        sub=sub,
        path=Path(path),
        status=status,
        expires_at=info.expires_at_ms,
        expires_in_seconds=expires_in,
        subscription_type=info.subscription_type,
        error=info.detail if status in ("malformed", "unreadable") else None,
        health=info.health.value,
        detail=info.detail,
    )


def format_reauth_instructions(sub: str) -> str:
    """Our re-login steps for `sub` (`gptme-subscription reauth SUB`): the login happens in a
    fresh private dir made for it, so the live link and the other slots are never touched."""
    import tempfile

    from gptme_subscription_plugin.cli import reauth_instructions
    from gptme_subscription_plugin.names import validate_slot_name

    name = validate_slot_name(sub)
    login_dir = Path(tempfile.mkdtemp(prefix=f"gptme-subscription-reauth-{name}-"))
    return reauth_instructions(name, login_dir)


def __getattr__(name: str) -> Any:
    module_getattr(__name__, name)


__all__ = [
    "CredentialInfo",
    "CredentialStatus",
    "check_credential_file",
    "format_reauth_instructions",
]
