"""The OAuth usage endpoint: parsing its JSON and asking it over real loopback HTTP."""

from __future__ import annotations

import email.utils
import json
import socket
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gptme_subscription_plugin.usage.oauth import (
    OAUTH_BETA,
    UsageFetchError,
    UsageParseError,
    fetch_oauth_usage,
    is_loopback_host,
    parse_iso8601,
    parse_oauth_usage,
    parse_retry_after,
)
from gptme_subscription_plugin.usage.snapshot import FIVE_HOUR_S, SEVEN_DAY_S

from .support.fake_api import FakeResponse, make_usage_doc

TOKEN = "sk-ant-oat01-test-SECRET-usage-token-0123456789abcdef"
NOW = 1_790_000_000.0

# reference/claude-code.md section 3.2, with the elided resets_at of limits[] filled in
REFERENCE_DOC = {
    "five_hour": {"utilization": 8.0, "resets_at": "2026-10-08T12:39:59.638246+00:00"},
    "seven_day": {"utilization": 41.5, "resets_at": "2026-10-12T15:00:00+00:00"},
    "seven_day_opus": None,
    "seven_day_sonnet": {"utilization": 12, "resets_at": "2026-10-12T15:00:00+00:00"},
    "seven_day_oauth_apps": None,
    "iguana_necktie": None,
    "extra_usage": {
        "is_enabled": True,
        "monthly_limit": 5000,
        "used_credits": 250.0,
        "utilization": 5.0,
        "currency": "USD",
        "decimal_places": 2,
    },
    "limits": [
        {
            "kind": "session",
            "group": "session",
            "percent": 10,
            "severity": "normal",
            "resets_at": "2026-10-08T12:39:59.638246+00:00",
            "scope": None,
            "is_active": True,
        },
        {
            "kind": "weekly_all",
            "group": "weekly",
            "percent": 55,
            "severity": "normal",
            "resets_at": "2026-10-12T15:00:00+00:00",
            "scope": None,
            "is_active": False,
        },
        {
            "kind": "weekly_scoped",
            "group": "weekly",
            "percent": 84,
            "severity": "warning",
            "resets_at": "2026-10-13T09:00:00.5+02:00",
            "scope": {"model": {"id": None, "display_name": "Fable"}, "surface": None},
            "is_active": False,
        },
    ],
}


def ts(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0, micro: int = 0
) -> float:
    return datetime(year, month, day, hour, minute, sec, micro, tzinfo=timezone.utc).timestamp()


# ---------------------------------------------------------------- parsing


def test_parse_reference_example() -> None:
    snap = parse_oauth_usage(REFERENCE_DOC, "work", NOW)
    assert (snap.slot, snap.source, snap.observed_at, snap.stale) == ("work", "oauth", NOW, False)
    assert snap.five_hour is not None and snap.seven_day is not None
    assert snap.five_hour.utilization == pytest.approx(0.08)
    assert snap.five_hour.resets_at == pytest.approx(ts(2026, 10, 8, 12, 39, 59, 638246))
    assert snap.five_hour.window_seconds == FIVE_HOUR_S
    # the named windows win over their limits[] stand-ins (session 10, weekly_all 55)
    assert snap.seven_day.utilization == pytest.approx(0.415)
    assert snap.seven_day.window_seconds == SEVEN_DAY_S
    assert set(snap.models) == {"sonnet", "fable"}
    assert snap.models["sonnet"].utilization == pytest.approx(0.12)
    fable = snap.models["fable"]
    assert fable.utilization == pytest.approx(0.84)
    assert fable.window_seconds == SEVEN_DAY_S
    assert fable.resets_at == pytest.approx(ts(2026, 10, 13, 7, 0, 0, 500000))
    assert snap.model_window("claude-fable-5") is fable


def test_reference_placeholders_skip_only_the_bad_limits() -> None:
    doc = json.loads(json.dumps(REFERENCE_DOC))
    for entry in doc["limits"]:
        entry["resets_at"] = "…"  # literally what the reference shows
    snap = parse_oauth_usage(doc, "a", NOW)
    assert snap.five_hour is not None and snap.seven_day is not None
    assert set(snap.models) == {"sonnet"}


def test_limits_fill_null_named_windows() -> None:
    doc = json.loads(json.dumps(REFERENCE_DOC))
    doc["five_hour"] = None
    doc["seven_day"] = None
    doc["seven_day_sonnet"] = None
    snap = parse_oauth_usage(doc, "a", NOW)
    assert snap.five_hour is not None and snap.five_hour.utilization == pytest.approx(0.10)
    assert snap.five_hour.window_seconds == FIVE_HOUR_S
    assert snap.seven_day is not None and snap.seven_day.utilization == pytest.approx(0.55)
    assert snap.seven_day.window_seconds == SEVEN_DAY_S
    assert set(snap.models) == {"fable"}


def test_null_windows_and_null_reset() -> None:
    doc = {
        "five_hour": {"utilization": 0, "resets_at": None},  # window not started yet
        "seven_day": None,
        "seven_day_opus": None,
        "tangelo": None,
        "limits": None,
    }
    snap = parse_oauth_usage(doc, "a", NOW)
    assert snap.five_hour is not None
    assert snap.five_hour.resets_at is None and snap.five_hour.utilization == 0.0
    assert snap.seven_day is None and snap.models == {}


@pytest.mark.parametrize(
    ("value", "expected"), [(130, 1.0), (100.4, 1.0), (-5, 0.0), (-0.1, 0.0), (50, 0.5)]
)
def test_out_of_range_utilization_is_clamped(value: float, expected: float) -> None:
    doc = {"five_hour": {"utilization": value, "resets_at": None}}
    window = parse_oauth_usage(doc, "a", NOW).five_hour
    assert window is not None and window.utilization == expected


def test_bad_window_is_skipped_when_another_is_good() -> None:
    doc = {
        "five_hour": {"utilization": "lots", "resets_at": None},
        "seven_day": {"utilization": 20, "resets_at": "2026-10-12T15:00:00Z"},
        "seven_day_sonnet": {"utilization": 5, "resets_at": "next tuesday"},
        "limits": [{"kind": "weekly_scoped", "percent": 9, "resets_at": None, "scope": None}],
    }
    snap = parse_oauth_usage(doc, "a", NOW)
    assert snap.five_hour is None and snap.models == {}
    assert snap.seven_day is not None and snap.seven_day.utilization == pytest.approx(0.2)


@pytest.mark.parametrize(
    "doc",
    [
        [],
        "five_hour",
        None,
        42,
        {},
        {"five_hour": None, "seven_day": None, "limits": []},
        {"five_hour": {"utilization": "8", "resets_at": None}},
        {"five_hour": {"utilization": True, "resets_at": None}},
        {"five_hour": {"utilization": float("nan"), "resets_at": None}},
        {"five_hour": {"utilization": float("inf"), "resets_at": None}},
        {"five_hour": {"utilization": 10**400, "resets_at": None}},
        {"five_hour": {"resets_at": None}},
        {"five_hour": {"utilization": 5, "resets_at": "tomorrow"}},
        {"five_hour": {"utilization": 5, "resets_at": "2026-13-01T00:00:00Z"}},
        {"five_hour": [5]},
        {"limits": "session"},
        {"limits": [{"kind": "session", "percent": None}]},
    ],
)
def test_garbage_raises_parse_error(doc: object) -> None:
    with pytest.raises(UsageParseError):
        parse_oauth_usage(doc, "a", NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-10-08T12:39:59.638246+00:00", ts(2026, 10, 8, 12, 39, 59, 638246)),
        ("2026-10-08T12:39:59Z", ts(2026, 10, 8, 12, 39, 59)),
        ("2026-10-08T12:39:59.5Z", ts(2026, 10, 8, 12, 39, 59, 500000)),
        ("2026-10-08T12:39:59.123456789+00:00", ts(2026, 10, 8, 12, 39, 59, 123456)),
        ("2026-10-08T18:09:59+05:30", ts(2026, 10, 8, 12, 39, 59)),
        ("2026-10-08T07:39:59-0500", ts(2026, 10, 8, 12, 39, 59)),
        ("2026-10-08 12:39", ts(2026, 10, 8, 12, 39)),
    ],
)
def test_iso8601_variants(text: str, expected: float) -> None:
    assert parse_iso8601(text) == pytest.approx(expected)


# Hypothesis: whatever the endpoint sends, the parser either returns a clamped snapshot or
# raises UsageParseError, never anything else.

_json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.just(10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_offsets = st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)).map(
    lambda d: timezone(timedelta(minutes=int(d.total_seconds() // 60)))
)
_dates = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes(timezones=_offsets).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
)
_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.just(10**400),
    _json_leaf,
)
_window = st.fixed_dictionaries({"utilization": _numbers, "resets_at": _dates}) | _json
_model = st.fixed_dictionaries(
    {"id": _json_leaf, "display_name": st.text(max_size=12) | _json_leaf}
)
_limit = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["session", "weekly_all", "weekly_scoped", "other"]) | _json_leaf,
        "percent": _numbers,
        "resets_at": _dates,
        "scope": st.none() | st.fixed_dictionaries({"model": _model | _json_leaf}) | _json,
    }
)
_usage_doc = st.one_of(
    _json,
    st.fixed_dictionaries(
        {},
        optional={
            "five_hour": st.none() | _window,
            "seven_day": st.none() | _window,
            "seven_day_opus": st.none() | _window,
            "seven_day_sonnet": st.none() | _window,
            "limits": st.none() | st.lists(_limit | _json, max_size=4) | _json,
            "iguana_necktie": _json,
        },
    ),
)


@settings(max_examples=300, deadline=None)
@given(_usage_doc)
def test_parser_only_raises_parse_error_and_clamps(doc: object) -> None:
    try:
        snap = parse_oauth_usage(doc, "a", NOW)
    except UsageParseError:
        event("rejected")
        return
    event("parsed")
    windows = [snap.five_hour, snap.seven_day, *snap.models.values()]
    assert any(w is not None for w in windows)
    for window in windows:
        if window is not None:
            assert 0.0 <= window.utilization <= 1.0
            assert window.resets_at is None or isinstance(window.resets_at, float)


# ---------------------------------------------------------------- small helpers


def test_parse_retry_after() -> None:
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after("", NOW) is None
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(" 0 ", NOW) == 0.0
    assert parse_retry_after("-5", NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None
    date = email.utils.formatdate(NOW + 300, usegmt=True)
    assert parse_retry_after(date, NOW) == pytest.approx(300.0)
    assert parse_retry_after(email.utils.formatdate(NOW - 300, usegmt=True), NOW) == 0.0


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("::1", True),
        ("api.anthropic.com", False),
        ("128.0.0.1", False),
        ("10.0.0.1", False),
        (None, False),
    ],
)
def test_is_loopback_host(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


# ---------------------------------------------------------------- fetching over HTTP


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fetch_error(base: str, token: str = TOKEN, timeout: float = 2.0) -> UsageFetchError:
    with pytest.raises(UsageFetchError) as info:
        fetch_oauth_usage(base, token, "a", timeout, time.time())
    err = info.value
    for text in (str(err), repr(err), *map(str, err.args)):
        assert TOKEN not in text
    assert "\n" not in str(err)
    return err


def test_fetch_success_sends_the_oauth_headers(fake_server) -> None:
    now = time.time()
    fake_server.set_usage(TOKEN, make_usage_doc(now, five_hour=30, sonnet=70, scoped={"Fable": 84}))
    snap = fetch_oauth_usage(fake_server.base_url + "/", TOKEN, "a", 2.0, now)
    assert snap.source == "oauth" and snap.observed_at == now
    assert snap.five_hour is not None and snap.five_hour.utilization == pytest.approx(0.30)
    assert snap.models["fable"].utilization == pytest.approx(0.84)
    (request,) = fake_server.requests(TOKEN)
    assert (request.method, request.path) == ("GET", "/api/oauth/usage")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert OAUTH_BETA in request.headers["anthropic-beta"]
    assert request.headers["user-agent"].startswith("gptme-subscription-plugin/")
    assert request.headers["accept"] == "application/json"


def test_429_without_retry_after(fake_server) -> None:
    fake_server.set_usage(TOKEN, make_usage_doc(time.time()))
    fake_server.set_fault("429", token=TOKEN)
    err = _fetch_error(fake_server.base_url)
    assert (err.kind, err.status, err.retry_after) == ("rate_limited", 429, None)


def test_429_with_retry_after_seconds(fake_server) -> None:
    fake_server.set_usage(TOKEN, make_usage_doc(time.time()))
    fake_server.set_fault("429", retry_after=3600)
    err = _fetch_error(fake_server.base_url)
    assert (err.kind, err.retry_after) == ("rate_limited", 3600.0)


def test_429_with_retry_after_http_date(fake_server) -> None:
    fake_server.set_usage(TOKEN, make_usage_doc(time.time()))
    fake_server.set_fault("429", retry_after=email.utils.formatdate(time.time() + 600, usegmt=True))
    err = _fetch_error(fake_server.base_url)
    assert err.kind == "rate_limited"
    assert err.retry_after == pytest.approx(600.0, abs=3.0)


def test_500_is_a_server_error(fake_server) -> None:
    fake_server.set_usage(TOKEN, make_usage_doc(time.time()))
    fake_server.set_fault("500")
    err = _fetch_error(fake_server.base_url)
    assert (err.kind, err.status) == ("server", 500)


def test_an_unknown_token_is_rejected(fake_server) -> None:
    err = _fetch_error(fake_server.base_url)  # 401: revoked or signed out, not a scope problem
    assert (err.kind, err.status) == ("rejected", 401)


def test_timeout_is_bounded(fake_server) -> None:
    fake_server.set_usage(TOKEN, make_usage_doc(time.time()))
    fake_server.set_fault("timeout", token=TOKEN)
    started = time.monotonic()
    err = _fetch_error(fake_server.base_url, timeout=0.5)
    assert err.kind == "timeout"
    assert time.monotonic() - started < 3.0


def test_garbage_body(fake_server) -> None:
    fake_server.set_usage(TOKEN, make_usage_doc(time.time()))
    fake_server.set_fault("garbage")
    assert _fetch_error(fake_server.base_url).kind == "garbage"


def test_json_that_is_not_a_usage_document(fake_server) -> None:
    fake_server.set_usage(TOKEN, {"hello": "world"})
    err = _fetch_error(fake_server.base_url)
    assert err.kind == "garbage" and "no usable window" in str(err)


def test_truncated_body(fake_server) -> None:
    fake_server.set_usage(TOKEN, make_usage_doc(time.time()))
    fake_server.set_fault("truncated", token=TOKEN)
    err = _fetch_error(fake_server.base_url)
    assert err.kind == "network" and "truncated" in str(err)


def test_oversized_body_is_refused(fake_server) -> None:
    huge = FakeResponse(200, b"[" + b"0," * (600 * 1024) + b"0]")
    fake_server.add_route("GET", "/api/oauth/usage", lambda request: huge)
    assert _fetch_error(fake_server.base_url).kind == "garbage"


def test_connection_refused() -> None:
    err = _fetch_error(f"http://127.0.0.1:{_closed_port()}")
    assert err.kind == "network" and err.status is None


def test_redirects_are_not_followed(fake_server) -> None:
    """urllib would forward the Authorization header to the redirect target."""
    fake_server.add_route(
        "GET",
        "/api/oauth/usage",
        lambda request: FakeResponse(302, headers={"Location": "/elsewhere"}),
    )
    err = _fetch_error(fake_server.base_url)
    assert (err.kind, err.status) == ("server", 302)
    assert fake_server.request_count(path="/elsewhere") == 0


def test_unusable_token_is_refused_before_any_request(fake_server) -> None:
    for token in ("", "a\r\nX-Evil: 1"):
        with pytest.raises(UsageFetchError) as info:
            fetch_oauth_usage(fake_server.base_url, token, "a", 1.0, NOW)
        assert info.value.kind == "auth"
    assert fake_server.request_count() == 0


def _clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_loopback_bypasses_proxy_env(fake_server, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_env(monkeypatch)
    dead_proxy = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    monkeypatch.setenv("http_proxy", dead_proxy)
    fake_server.set_usage(TOKEN, make_usage_doc(time.time()))
    snap = fetch_oauth_usage(fake_server.base_url, TOKEN, "a", 2.0, time.time())
    assert snap.five_hour is not None


def test_other_hosts_honour_proxy_env(fake_server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake server doubles as the proxy: the request reaches it in absolute form."""
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("http_proxy", fake_server.base_url)
    fake_server.set_usage(TOKEN, make_usage_doc(time.time()))
    snap = fetch_oauth_usage("http://api.example.invalid", TOKEN, "a", 2.0, time.time())
    assert snap.seven_day is not None
    (request,) = fake_server.requests(TOKEN)
    assert request.path == "http://api.example.invalid/api/oauth/usage"


def test_fetch_error_survives_pickling() -> None:
    import pickle

    err = UsageFetchError("rate_limited", "slow down", status=429, retry_after=5.0)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.kind, copy.status, copy.retry_after, str(copy)) == (
        "rate_limited",
        429,
        5.0,
        "slow down",
    )
    with pytest.raises(ValueError):
        UsageFetchError("bogus", "x")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["five_hour", "seven_day", "seven_day_opus", "seven_day_sonnet"]),
            st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**9), 10**9),
            st.none() | st.datetimes(timezones=_offsets).map(lambda d: d.isoformat()),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_numeric_utilization_always_ends_in_unit_range(windows: list) -> None:
    doc = {name: {"utilization": value, "resets_at": reset} for name, value, reset in windows}
    try:
        snap = parse_oauth_usage(doc, "a", NOW)
    except UsageParseError:
        # only a date outside what a timestamp can hold may reject a numeric window
        assert all(reset is not None for _, _, reset in windows)
        return
    for window in [snap.five_hour, snap.seven_day, *snap.models.values()]:
        if window is not None:
            assert 0.0 <= window.utilization <= 1.0


@pytest.mark.parametrize("base", ["http://127.0.0.1:99999", "http://[::1", "ftp://example.com"])
def test_unusable_api_base(base: str) -> None:
    with pytest.raises(UsageFetchError) as info:
        fetch_oauth_usage(base, TOKEN, "a", 1.0, NOW)
    assert info.value.kind == "network"
