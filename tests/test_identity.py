"""Profile lookups against the loopback fake API: cached per token, never an expired token."""

from __future__ import annotations

from gptme_subscription_plugin.credentials import parse_credential
from gptme_subscription_plugin.identity import FAILURE_RETRY_S, PROFILE_PATH, IdentityResolver
from gptme_subscription_plugin.state import StateStore

from .support.credentials import access_token, account_email, credential_bytes, serve_profile
from .support.usage import Clock

T = 1_900_000_000.0


def test_asks_once_per_token_and_remembers(tmp_path, fake_server) -> None:
    clock = Clock(T)
    resolver = IdentityResolver(StateStore(tmp_path / "state"), fake_server.base_url, 2.0, clock)
    serve_profile(fake_server, "alice", 1)
    cred = parse_credential(credential_bytes("alice", 1))
    assert resolver.resolve(cred).email == account_email("alice")
    again = IdentityResolver(StateStore(tmp_path / "state"), fake_server.base_url, 2.0, clock)
    assert again.resolve(cred).email == account_email("alice")  # from the shared cache
    assert fake_server.request_count(access_token("alice", 1), PROFILE_PATH) == 1
    assert "sk-ant" not in (tmp_path / "state" / "profiles.json").read_text()


def test_a_failure_is_not_asked_again_for_a_while(tmp_path, fake_server) -> None:
    clock = Clock(T)
    resolver = IdentityResolver(StateStore(tmp_path / "state"), fake_server.base_url, 2.0, clock)
    cred = parse_credential(credential_bytes("alice", 1))
    fake_server.set_profile(access_token("alice", 1), {"no": "account"})
    assert resolver.resolve(cred) is None
    assert resolver.resolve(cred) is None
    assert fake_server.request_count(access_token("alice", 1), PROFILE_PATH) == 1
    serve_profile(fake_server, "alice", 1)
    assert resolver.resolve(cred, retry_failures=True).email == account_email("alice")
    clock.now += FAILURE_RETRY_S + 1
    assert resolver.cached(cred).email == account_email("alice")


def test_an_expired_token_is_never_sent(tmp_path, fake_server) -> None:
    resolver = IdentityResolver(StateStore(tmp_path / "state"), fake_server.base_url, 2.0, Clock(T))
    cred = parse_credential(credential_bytes("alice", 1, expires_at=1_000_000_000.0))
    assert resolver.resolve(cred, retry_failures=True) is None
    assert fake_server.request_count() == 0


def test_an_unreachable_endpoint_gives_no_identity(tmp_path) -> None:
    resolver = IdentityResolver(StateStore(tmp_path / "state"), "http://127.0.0.1:9", 2.0, Clock(T))
    assert resolver.resolve(parse_credential(credential_bytes("alice"))) is None
