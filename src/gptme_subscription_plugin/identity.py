"""Which account a credential belongs to, asked of the account itself.

`GET {api_base}/api/oauth/profile` with the credential's own access token names the account
that owns it. It is free (no inference) and the only identity that cannot be wrong:
`~/.claude.json` `oauthAccount` is not updated when Claude Code refreshes a token, so after any
swap it names another account (DESIGN.md, fact 5). Answers are cached per access-token
fingerprint in the state doc `profiles`, failures too (for FAILURE_RETRY_S), so a hook asks at
most once per new token. An expired access token is never sent: refreshing belongs to Claude
Code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .bounds import time_left, work_deadline
from .credentials import AccountIdentity, Credential
from .state import StateStore

PROFILE_PATH = "/api/oauth/profile"
PROFILES_DOC = "profiles"
FAILURE_RETRY_S = 600.0
CACHE_KEEP = 200  # access tokens remembered; each refresh adds one

ProfileFetcher = Callable[[str, str, float], AccountIdentity]


class ProfileError(Exception):
    """The profile endpoint gave no identity; the message is one line, never a secret."""


def parse_profile(doc: Any) -> AccountIdentity:
    """The identity in a profile answer: account uuid and email, organization uuid."""
    account = doc.get("account") if isinstance(doc, dict) else None
    if not isinstance(account, dict):
        raise ProfileError("profile answer has no account")
    org = doc.get("organization") if isinstance(doc.get("organization"), dict) else {}
    email = account.get("email_address") or account.get("email")
    identity = AccountIdentity(
        account_uuid=_short_str(account.get("uuid")),
        email=_short_str(email),
        organization_uuid=_short_str(org.get("uuid")),
    )
    if not identity.known:
        raise ProfileError("profile answer names no account")
    return identity


def _short_str(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


def fetch_profile(api_base: str, access_token: str, timeout: float) -> AccountIdentity:
    """Ask the profile endpoint once, within `timeout` overall; ProfileError on any failure.

    The usage endpoint's client does the asking: one total deadline across connect and every
    read, redirects refused, a size cap, and no message that could hold the token.
    """
    from .usage.oauth import UsageFetchError, bearer_request, fetch_body

    try:
        request = bearer_request(api_base, PROFILE_PATH, access_token)
        body = fetch_body(request, timeout, time.time())
    except UsageFetchError as exc:
        raise ProfileError(str(exc).replace("usage endpoint", "profile endpoint")) from None
    except ValueError:
        raise ProfileError("profile endpoint URL is not usable") from None
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProfileError("profile endpoint answered non-JSON") from None
    return parse_profile(doc)


class IdentityResolver:
    """Profile lookups with a shared cache; `resolve` never raises."""

    def __init__(
        self,
        state: StateStore,
        api_base: str,
        timeout: float,
        clock: Callable[[], float] = time.time,
        fetch: ProfileFetcher = fetch_profile,
    ) -> None:
        self.state = state
        self.api_base = api_base
        self.timeout = timeout
        self.clock = clock
        self.fetch = fetch

    def _lookup(self, cred: Credential, now: float) -> tuple[AccountIdentity | None, bool]:
        """What the cache says of this access token: (identity, failed within FAILURE_RETRY_S)."""
        entry = self.state.read(PROFILES_DOC).get(cred.access_fingerprint)
        if not isinstance(entry, dict):
            return None, False
        failed_at = entry.get("failed_at")
        recent = isinstance(failed_at, (int, float)) and 0 <= now - failed_at < FAILURE_RETRY_S
        return AccountIdentity.from_dict(entry.get("identity")), recent

    def cached(self, cred: Credential) -> AccountIdentity | None:
        """The identity already known for this access token, without asking."""
        return self._lookup(cred, self.clock())[0]

    def askable(self, cred: Credential) -> bool:
        """Would `resolve` send a request now (not known, not failed lately, not expired)?"""
        now = self.clock()
        known, failed_recently = self._lookup(cred, now)
        return known is None and not failed_recently and not cred.expired(now)

    def resolve(self, cred: Credential, *, retry_failures: bool = False) -> AccountIdentity | None:
        """Who owns `cred`: cached, else asked (unless expired or failed recently), else None."""
        now = self.clock()
        known, failed_recently = self._lookup(cred, now)
        if known is not None:
            return known
        if (failed_recently and not retry_failures) or cred.expired(now):
            return None
        timeout = time_left(work_deadline(), self.timeout)  # inside a hook: its budget too
        if timeout <= 0:
            return None
        key = cred.access_fingerprint
        try:
            identity = self.fetch(self.api_base, cred.access_token, timeout)
        except ProfileError as exc:
            self._store(key, {"failed_at": now, "error": str(exc)[:200]})
            return None
        self._store(key, {"identity": identity.to_dict(), "at": now})
        return identity

    def _store(self, key: str, record: dict[str, Any]) -> None:
        def update(doc: dict[str, Any]) -> None:
            doc[key] = record
            if len(doc) > CACHE_KEEP:
                oldest = sorted(doc, key=lambda k: _stamp(doc[k]))
                for stale in oldest[: len(doc) - CACHE_KEEP]:
                    doc.pop(stale, None)

        self.state.update(PROFILES_DOC, update)


def _stamp(entry: Any) -> float:
    if not isinstance(entry, dict):
        return 0.0
    value = entry.get("at", entry.get("failed_at", 0.0))
    return float(value) if isinstance(value, (int, float)) else 0.0
