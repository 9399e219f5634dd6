"""Claude Code's credential file: parsing, health, fingerprints and account identity.

A token never leaves this module in clear: callers get a short fingerprint (a truncated
SHA-256), which is enough to tell lineages apart and useless to an attacker. Files are copied
as raw bytes, never re-serialised, so keys we do not know survive byte-for-byte.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FINGERPRINT_LEN = 12
MAX_CREDENTIAL_BYTES = 1 << 20  # a credential file is a few hundred bytes; refuse monsters
# expiresAt beyond the year 3000 (or inf, from a JSON 1e400) is no time at all
MAX_EXPIRES_AT_MS = 32_503_680_000_000


class Health(str, enum.Enum):
    """How usable a credential file is, from the cheapest offline checks."""

    VALID = "valid"  # access token still valid, refresh token present
    STALE = "stale"  # access token expired but refreshable: harmless, Claude Code refreshes it
    MISSING = "missing"
    MALFORMED = "malformed"  # not JSON, or no claudeAiOauth object / access token
    UNREADABLE = "unreadable"  # permission denied, a directory, a symlink loop, too large
    NO_REFRESH_TOKEN = "no-refresh-token"  # cannot survive expiry: never link it

    @property
    def usable(self) -> bool:
        """Safe to make live: Claude Code can use or refresh it."""
        return self in (Health.VALID, Health.STALE)


def fingerprint(secret: str) -> str:
    """Short, stable, non-reversible id of a token (never log the token itself)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:FINGERPRINT_LEN]


def content_fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:FINGERPRINT_LEN]


class CredentialError(ValueError):
    """A credential file that cannot be used; the message is safe to print."""

    def __init__(self, health: Health, message: str):
        super().__init__(message)
        self.health = health


@dataclass(frozen=True)
class Credential:
    """The `claudeAiOauth` block of one credential file, with the raw bytes it came from."""

    raw: bytes
    access_token: str
    refresh_token: str | None
    expires_at_ms: int | None
    scopes: tuple[str, ...]
    subscription_type: str | None
    rate_limit_tier: str | None

    @property
    def refresh_fingerprint(self) -> str | None:
        return fingerprint(self.refresh_token) if self.refresh_token else None

    @property
    def access_fingerprint(self) -> str:
        return fingerprint(self.access_token)

    def expired(self, now: float) -> bool:
        return self.expires_at_ms is not None and self.expires_at_ms / 1000.0 <= now

    def health(self, now: float) -> Health:
        if not self.refresh_token:
            return Health.NO_REFRESH_TOKEN
        return Health.STALE if self.expired(now) else Health.VALID


def parse_credential(data: bytes) -> Credential:
    """Parse credential bytes; raise CredentialError (without echoing content) when unusable."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CredentialError(Health.MALFORMED, "not valid JSON") from None
    if not isinstance(doc, dict):
        raise CredentialError(Health.MALFORMED, "top level is not a JSON object")
    oauth = doc.get("claudeAiOauth")
    if not isinstance(oauth, dict):
        raise CredentialError(Health.MALFORMED, "no claudeAiOauth object")
    access = oauth.get("accessToken")
    if not isinstance(access, str) or not access:
        raise CredentialError(Health.MALFORMED, "claudeAiOauth.accessToken missing or empty")
    refresh = oauth.get("refreshToken")
    if refresh is not None and not isinstance(refresh, str):
        raise CredentialError(Health.MALFORMED, "claudeAiOauth.refreshToken is not a string")
    expires = oauth.get("expiresAt")
    if isinstance(expires, bool) or (expires is not None and not isinstance(expires, (int, float))):
        raise CredentialError(Health.MALFORMED, "claudeAiOauth.expiresAt is not a number")
    if expires is not None and not (0 <= expires <= MAX_EXPIRES_AT_MS):  # NaN fails too
        raise CredentialError(Health.MALFORMED, "claudeAiOauth.expiresAt is not a plausible time")
    scopes = oauth.get("scopes")
    scope_list = tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else ()
    sub = oauth.get("subscriptionType")
    tier = oauth.get("rateLimitTier")
    return Credential(
        raw=data,
        access_token=access,
        refresh_token=refresh or None,
        expires_at_ms=int(expires) if expires is not None else None,
        scopes=scope_list,
        subscription_type=sub if isinstance(sub, str) else None,
        rate_limit_tier=tier if isinstance(tier, str) else None,
    )


def read_credential_bytes(path: Path) -> bytes:
    """Read a credential file (following a symlink), refusing directories and huge files."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise CredentialError(Health.MISSING, "file does not exist") from None
    except OSError as exc:
        raise CredentialError(Health.UNREADABLE, _os_reason(exc)) from None
    try:
        st = os.fstat(fd)
        if not _is_regular(st.st_mode):
            raise CredentialError(Health.UNREADABLE, "not a regular file")
        if st.st_size > MAX_CREDENTIAL_BYTES:
            raise CredentialError(Health.UNREADABLE, "file is implausibly large")
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            if sum(len(c) for c in chunks) > MAX_CREDENTIAL_BYTES:
                raise CredentialError(Health.UNREADABLE, "file is implausibly large")
        return b"".join(chunks)
    except OSError as exc:
        raise CredentialError(Health.UNREADABLE, _os_reason(exc)) from None
    finally:
        os.close(fd)


def load_credential(path: Path) -> Credential:
    return parse_credential(read_credential_bytes(path))


def _is_regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


def _os_reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


# the size of a plan's 5-hour window relative to Pro, by the credential's `rateLimitTier`
# (Anthropic sells Max as 5x and 20x Pro usage); team and enterprise plans are not known
TIER_CAPACITY = {
    "default_claude_ai": 1.0,
    "default_claude_max_5x": 5.0,
    "default_claude_max_20x": 20.0,
}


def tier_capacity(rate_limit_tier: str | None) -> float | None:
    """How big this plan's quota windows are, Pro = 1; None for a tier not known here."""
    return TIER_CAPACITY.get(rate_limit_tier) if rate_limit_tier else None


@dataclass(frozen=True)
class CredentialInfo:
    """What a person or an agent may see about a credential file: no secrets."""

    path: str
    health: Health
    detail: str
    refresh_fingerprint: str | None = None
    access_fingerprint: str | None = None
    expires_at_ms: int | None = None
    subscription_type: str | None = None
    rate_limit_tier: str | None = None

    @property
    def needs_reauth(self) -> bool:
        return not self.health.usable

    @property
    def capacity(self) -> float | None:
        return tier_capacity(self.rate_limit_tier)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "health": self.health.value,
            "detail": self.detail,
            "refresh_fingerprint": self.refresh_fingerprint,
            "access_fingerprint": self.access_fingerprint,
            "expires_at_ms": self.expires_at_ms,
            "subscription_type": self.subscription_type,
            "rate_limit_tier": self.rate_limit_tier,
            "needs_reauth": self.needs_reauth,
        }


def check_credential_file(path: Path, now: float) -> CredentialInfo:
    """Offline health check of one credential file (no network, no token in the result).

    `now` is epoch seconds. 0.1.0's `check_credential_file(path, name)` is a TypeError here
    (a missing file would otherwise answer without ever looking at it): that call is
    `gptme_subscription.check_credential_file`.
    """
    if isinstance(now, bool) or not isinstance(now, (int, float)):
        raise TypeError(
            f"now must be epoch seconds, not {type(now).__name__}; for 0.1.0's "
            "check_credential_file(path, name) use gptme_subscription.check_credential_file"
        )
    try:
        cred = load_credential(path)
    except CredentialError as exc:
        return CredentialInfo(path=str(path), health=exc.health, detail=str(exc))
    health = cred.health(now)
    if health is Health.NO_REFRESH_TOKEN:
        detail = "no refresh token: cannot be refreshed, log in again"
    elif health is Health.STALE:
        detail = "access token expired; Claude Code refreshes it on next use"
    else:
        detail = "valid"
    return CredentialInfo(
        path=str(path),
        health=health,
        detail=detail,
        refresh_fingerprint=cred.refresh_fingerprint,
        access_fingerprint=cred.access_fingerprint,
        expires_at_ms=cred.expires_at_ms,
        subscription_type=cred.subscription_type,
        rate_limit_tier=cred.rate_limit_tier,
    )


@dataclass(frozen=True)
class AccountIdentity:
    """Who a credential belongs to, from Claude Code's `oauthAccount` record."""

    account_uuid: str | None
    email: str | None
    organization_uuid: str | None = None

    def matches(self, other: AccountIdentity) -> bool:
        if self.account_uuid and other.account_uuid:
            return self.account_uuid == other.account_uuid
        if self.email and other.email:
            return self.email.lower() == other.email.lower()
        return False

    @property
    def known(self) -> bool:
        return bool(self.account_uuid or self.email)

    def to_dict(self) -> dict[str, str | None]:
        return {
            "account_uuid": self.account_uuid,
            "email": self.email,
            "organization_uuid": self.organization_uuid,
        }

    @classmethod
    def from_dict(cls, data: Any) -> AccountIdentity | None:
        if not isinstance(data, dict):
            return None
        ident = cls(
            account_uuid=_str_or_none(data.get("account_uuid")),
            email=_str_or_none(data.get("email")),
            organization_uuid=_str_or_none(data.get("organization_uuid")),
        )
        return ident if ident.known else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def global_config_path(claude_dir: Path, home: Path, env_config_dir: str | None) -> Path:
    """Where Claude Code keeps `.claude.json` (holding `oauthAccount`)."""
    legacy = claude_dir / ".config.json"
    if legacy.exists():
        return legacy
    if env_config_dir:
        return Path(env_config_dir) / ".claude.json"
    return home / ".claude.json"


def read_account_identity(global_config: Path) -> AccountIdentity | None:
    """The `oauthAccount` identity Claude Code last stored, or None if absent/unreadable."""
    try:
        if global_config.stat().st_size > 64 * MAX_CREDENTIAL_BYTES:
            return None
        doc = json.loads(global_config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    account = doc.get("oauthAccount") if isinstance(doc, dict) else None
    if not isinstance(account, dict):
        return None
    ident = AccountIdentity(
        account_uuid=_str_or_none(account.get("accountUuid")),
        email=_str_or_none(account.get("emailAddress")),
        organization_uuid=_str_or_none(account.get("organizationUuid")),
    )
    return ident if ident.known else None
