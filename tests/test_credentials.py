"""Credential parsing, health states, fingerprints and identity, on real files."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptme_subscription_plugin.credentials import (
    AccountIdentity,
    CredentialError,
    Health,
    check_credential_file,
    fingerprint,
    parse_credential,
    read_account_identity,
    tier_capacity,
)

from .support.credentials import credential_bytes

NOW = 1_800_000_000.0


def test_valid_and_stale(tmp_path):
    path = tmp_path / "c"
    path.write_bytes(credential_bytes("a", expires_at=NOW + 60))
    info = check_credential_file(path, NOW)
    assert info.health is Health.VALID and not info.needs_reauth
    assert info.refresh_fingerprint == fingerprint("sk-ant-ort01-test-a-refresh-1")
    assert check_credential_file(path, NOW + 120).health is Health.STALE
    assert Health.STALE.usable


def test_the_plan_tier_says_how_big_the_quota_windows_are(tmp_path):
    assert [tier_capacity(t) for t in ("default_claude_ai", "default_claude_max_5x")] == [1, 5]
    assert tier_capacity("default_claude_max_20x") == 20
    assert tier_capacity("default_claude_team") is None and tier_capacity(None) is None
    path = tmp_path / "c"
    path.write_bytes(credential_bytes("a"))  # the helper writes a Max 20x credential
    assert check_credential_file(path, NOW).capacity == 20


@pytest.mark.parametrize(
    ("content", "health"),
    [
        (b"{not json", Health.MALFORMED),
        (b"[]", Health.MALFORMED),
        (b'{"claudeAiOauth": {}}', Health.MALFORMED),
        (b'{"claudeAiOauth": {"accessToken": "x", "expiresAt": "soon"}}', Health.MALFORMED),
        (b'{"claudeAiOauth": {"accessToken": "x"}}', Health.NO_REFRESH_TOKEN),
        (b"\xff\xfe", Health.MALFORMED),
    ],
)
def test_bad_content(tmp_path, content, health):
    path = tmp_path / "c"
    path.write_bytes(content)
    info = check_credential_file(path, NOW)
    assert info.health is health and info.needs_reauth


def test_missing_unreadable_directory_and_loop(tmp_path):
    assert check_credential_file(tmp_path / "nope", NOW).health is Health.MISSING
    (tmp_path / "dir").mkdir()
    assert check_credential_file(tmp_path / "dir", NOW).health is Health.UNREADABLE
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    assert check_credential_file(tmp_path / "loop1", NOW).health is Health.UNREADABLE
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked"
        locked.write_bytes(credential_bytes("a"))
        locked.chmod(0)
        assert check_credential_file(locked, NOW).health is Health.UNREADABLE


def test_no_token_in_info_or_errors(tmp_path):
    path = tmp_path / "c"
    path.write_bytes(credential_bytes("a"))
    text = json.dumps(check_credential_file(path, NOW).to_dict())
    assert "sk-ant" not in text
    with pytest.raises(CredentialError) as exc:
        parse_credential(b'{"claudeAiOauth": {"accessToken": "sk-ant-x", "refreshToken": 5}}')
    assert "sk-ant" not in str(exc.value)


def test_unknown_keys_survive_in_raw(tmp_path):
    data = credential_bytes("a", extra={"mcpOAuth": {"srv": {"t": 1}}, "organizationUuid": "o"})
    assert parse_credential(data).raw == data


def test_identity_from_claude_json(tmp_path):
    cfg = tmp_path / ".claude.json"
    cfg.write_text(json.dumps({"oauthAccount": {"accountUuid": "u1", "emailAddress": "A@x.com"}}))
    ident = read_account_identity(cfg)
    assert ident == AccountIdentity("u1", "A@x.com")
    assert ident.matches(AccountIdentity(None, "a@x.com"))
    assert not ident.matches(AccountIdentity("u2", "a@x.com"))
    cfg.write_text("{broken")
    assert read_account_identity(cfg) is None
    assert read_account_identity(tmp_path / "missing") is None


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300)
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(
                st.sampled_from(["claudeAiOauth", "accessToken", "refreshToken", "expiresAt", "x"]),
                c,
                max_size=4,
            )
        ),
        max_leaves=12,
    ).map(lambda d: json.dumps(d).encode())
)
def test_parser_only_raises_credential_error(data):
    try:
        cred = parse_credential(data)
    except CredentialError as exc:
        assert exc.health in (Health.MALFORMED, Health.NO_REFRESH_TOKEN)
    else:
        assert cred.access_token


@pytest.mark.parametrize("value", ["1e400", "-1e400", "NaN", "-5", "1e30"])
def test_an_implausible_expiry_is_malformed_not_a_crash(value: str) -> None:
    raw = (
        '{"claudeAiOauth": {"accessToken": "sk-ant-oat01-x", "refreshToken": "sk-ant-ort01-x", '
        f'"expiresAt": {value}}}}}'
    ).encode()
    with pytest.raises(CredentialError) as caught:
        parse_credential(raw)
    assert caught.value.health is Health.MALFORMED and "plausible" in str(caught.value)
