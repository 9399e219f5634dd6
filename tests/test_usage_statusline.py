"""Claude Code's statusline stdin: the free 5h/7d source."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptme_subscription_plugin.usage.oauth import UsageParseError
from gptme_subscription_plugin.usage.snapshot import FIVE_HOUR_S, SEVEN_DAY_S
from gptme_subscription_plugin.usage.statusline import parse_statusline_rate_limits

NOW = 1_790_000_000.0

STATUSLINE_DOC = {
    "hook_event_name": "Status",
    "session_id": "abc",
    "model": {"id": "claude-opus-4-1", "display_name": "Opus"},
    "rate_limits": {
        "five_hour": {"used_percentage": 42.5, "resets_at": 1_790_010_000},
        "seven_day": {"used_percentage": 61, "resets_at": 1_790_300_000},
    },
}


def test_parse_full_rate_limits() -> None:
    snap = parse_statusline_rate_limits(STATUSLINE_DOC, "work", NOW)
    assert snap is not None
    assert (snap.slot, snap.source, snap.observed_at) == ("work", "statusline", NOW)
    assert snap.five_hour is not None and snap.seven_day is not None
    assert snap.five_hour.utilization == pytest.approx(0.425)
    assert snap.five_hour.resets_at == 1_790_010_000.0
    assert snap.five_hour.window_seconds == FIVE_HOUR_S
    assert snap.seven_day.utilization == pytest.approx(0.61)
    assert snap.seven_day.window_seconds == SEVEN_DAY_S
    assert snap.models == {}


@pytest.mark.parametrize(
    "doc",
    [
        {"session_id": "abc"},
        {"rate_limits": None},
        {"rate_limits": {}},
        {"rate_limits": {"five_hour": None, "seven_day": None}},
    ],
)
def test_no_rate_limits_is_none(doc: dict) -> None:
    assert parse_statusline_rate_limits(doc, "a", NOW) is None


def test_each_window_may_be_absent() -> None:
    doc = {"rate_limits": {"seven_day": {"used_percentage": 10}}}
    snap = parse_statusline_rate_limits(doc, "a", NOW)
    assert snap is not None and snap.five_hour is None
    assert snap.seven_day is not None and snap.seven_day.resets_at is None


@pytest.mark.parametrize(("value", "expected"), [(150, 1.0), (-3, 0.0), (100, 1.0), (0, 0.0)])
def test_clamped(value: float, expected: float) -> None:
    doc = {"rate_limits": {"five_hour": {"used_percentage": value, "resets_at": NOW}}}
    snap = parse_statusline_rate_limits(doc, "a", NOW)
    assert snap is not None and snap.five_hour is not None
    assert snap.five_hour.utilization == expected


def test_bad_window_skipped_next_to_a_good_one() -> None:
    doc = {
        "rate_limits": {
            "five_hour": {"used_percentage": "high", "resets_at": NOW},
            "seven_day": {"used_percentage": 5, "resets_at": NOW + 10},
        }
    }
    snap = parse_statusline_rate_limits(doc, "a", NOW)
    assert snap is not None and snap.five_hour is None and snap.seven_day is not None


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        "rate_limits",
        {"rate_limits": []},
        {"rate_limits": {"five_hour": {"used_percentage": None}}},
        {"rate_limits": {"five_hour": {"used_percentage": 5, "resets_at": "soon"}}},
        {"rate_limits": {"five_hour": 42}},
        {"rate_limits": {"seven_day": {"used_percentage": float("nan")}}},
    ],
)
def test_garbage_raises_parse_error(doc: object) -> None:
    with pytest.raises(UsageParseError):
        parse_statusline_rate_limits(doc, "a", NOW)


_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.just(10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10)
)
_json = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_window = st.fixed_dictionaries({}, optional={"used_percentage": _leaf, "resets_at": _leaf}) | _json
_doc = _json | st.fixed_dictionaries(
    {},
    optional={
        "rate_limits": st.fixed_dictionaries(
            {}, optional={"five_hour": _window, "seven_day": _window}
        )
        | _json
    },
)


@settings(max_examples=300, deadline=None)
@given(_doc)
def test_parser_only_raises_parse_error_and_clamps(doc: object) -> None:
    try:
        snap = parse_statusline_rate_limits(doc, "a", NOW)
    except UsageParseError:
        return
    if snap is None:
        return
    for window in (snap.five_hour, snap.seven_day):
        if window is not None:
            assert 0.0 <= window.utilization <= 1.0
