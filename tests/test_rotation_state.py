"""RotationState: rotation.json read without ever failing, written in the shape it always had."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptme_subscription_plugin.rotation_state import (
    MAX_TIME,
    Clamped,
    LastSwitch,
    ManualHold,
    PendingSwitch,
    Rejection,
    RotationState,
)

T0 = 1_760_000_000.0

# rotation.json exactly as the manager of main (0de9200) wrote it after: two switches away from
# exhausted slots, a switch by hand, whole-slot and per-model 429s, two refusal streaks, two
# refused credentials, a switch left pending, and a clock that stepped back an hour (clamped).
MAIN_FILE: dict[str, Any] = {
    "clamped": {"at": 1759996400.0, "fields": ["last_switch_at", "manual_hold"]},
    "last_switch": {"at": 1760000060.0, "mode": "manual", "previous": "erin", "slot": "carol"},
    "last_switch_at": 1759996400.0,
    "left_exhausted": {"alice": 1760000000.0, "bob": 1760000030.0},
    "limited": {"alice": 1760003600.0, "bob": 1760005400.0},
    "limited_models": {"alice": {"opus": 1760172800.0, "sonnet": 1760259200.0}},
    "manual_hold": {"slot": "carol", "until": 1760025200.0},
    "pending": {
        "mode": "forward",
        "reason": "bob resets first",
        "since": 1760000300.0,
        "slot": "bob",
    },
    "refusing": {"alice": 1760000100.0, "bob": 1760000150.0},
    "rejected": {
        "dave": {
            "at": 1760000200.0,
            "credential": "fp-dave",
            "source": "StopFailure authentication_failed",
        },
        "erin": {
            "at": 1760000200.0,
            "credential": "fp-erin",
            "source": "the usage endpoint answered 401",
        },
    },
}

MAIN_STATE = RotationState(
    pending=PendingSwitch("bob", "bob resets first", "forward", T0 + 300),
    manual_hold=ManualHold("carol", T0 + 7 * 3600),  # clamped to now + 8 h
    last_switch_at=T0 - 3600,
    last_switch=LastSwitch("carol", "erin", "manual", T0 + 60),
    left_exhausted={"alice": T0, "bob": T0 + 30},
    limited={"alice": T0 + 3600, "bob": T0 + 5400},
    limited_models={"alice": {"opus": T0 + 2 * 86400, "sonnet": T0 + 3 * 86400}},
    refusing={"alice": T0 + 100, "bob": T0 + 150},
    rejected={
        "dave": Rejection(T0 + 200, "fp-dave", "StopFailure authentication_failed"),
        "erin": Rejection(T0 + 200, "fp-erin", "the usage endpoint answered 401"),
    },
    clamped=Clamped(("last_switch_at", "manual_hold"), T0 - 3600),
)


def test_a_rotation_json_written_by_main_loads_to_the_same_meaning_and_dumps_unchanged():
    state = RotationState.load(json.loads(json.dumps(MAIN_FILE)))
    assert state == MAIN_STATE
    assert state.dump() == MAIN_FILE
    assert state.model_limits("alice") == MAIN_FILE["limited_models"]["alice"]
    assert state.standing_rejection("dave", "fp-dave") == state.rejected["dave"]
    assert state.standing_rejection("dave", "fp-new-login") is None


def test_a_file_main_wrote_with_a_pending_switch_only_keeps_its_meaning():
    doc = {"pending": {"slot": "bob", "reason": "by hand", "mode": "manual", "since": T0}}
    state = RotationState.load(doc)
    assert state == RotationState(pending=PendingSwitch("bob", "by hand", "manual", T0))
    dumped = state.dump()
    assert dumped["pending"] == doc["pending"]
    # maps main left out are written empty: main and this code read both the same way
    assert {k: v for k, v in dumped.items() if k != "pending"} == {
        "left_exhausted": {},
        "limited": {},
        "limited_models": {},
        "refusing": {},
        "rejected": {},
    }
    assert RotationState.load(dumped) == state


def test_unknown_keys_are_dropped_and_everything_known_is_kept():
    doc = copy.deepcopy(MAIN_FILE)
    doc["future_field"] = {"x": 1}
    doc["pending"]["priority"] = 3
    doc["rejected"]["dave"]["note"] = "hand-edited"
    doc["manual_hold"]["by"] = "someone"
    state = RotationState.load(doc)
    assert state == MAIN_STATE
    assert state.dump() == MAIN_FILE


@pytest.mark.parametrize("doc", [None, [], "rotation", 7, 1.5, True, [MAIN_FILE]])
def test_a_document_that_is_no_object_loads_as_the_empty_state(doc: Any):
    assert RotationState.load(doc) == RotationState()


# ---------------------------------------------------------------- one corrupt field at a time

MISSING = object()
NAN, INF = float("nan"), float("inf")
# every kind of damage; a value that is well formed for the field at hand is skipped
DAMAGE: list[Any] = ["x", "", 7, True, None, [], {}, NAN, INF, -INF, -1.0, 1e300, 10**400]
DAMAGE.append(MISSING)
VALID_FOR = {"time": (7,), "name": ("x",), "rejection": ({},)}

Expect = Callable[[RotationState], RotationState]


def _without(attr: str, key: str) -> Expect:
    return lambda s: replace(s, **{attr: {k: v for k, v in getattr(s, attr).items() if k != key}})


def _sub(attr: str, **changes: Any) -> Expect:
    return lambda s: replace(s, **{attr: replace(getattr(s, attr), **changes)})


def _rejection(**changes: Any) -> Expect:
    return lambda s: replace(
        s, rejected={**s.rejected, "dave": replace(s.rejected["dave"], **changes)}
    )


# (path into MAIN_FILE, kind of value, the state expected once that one value is damaged)
FIELDS: list[tuple[tuple[Any, ...], str, Expect]] = [
    (("pending",), "record", lambda s: replace(s, pending=None)),
    (("pending", "slot"), "name", lambda s: replace(s, pending=None)),
    (("pending", "reason"), "name", _sub("pending", reason="pending switch")),
    (("pending", "mode"), "name", _sub("pending", mode="pending")),
    (("pending", "since"), "time", _sub("pending", since=None)),
    (("manual_hold",), "record", lambda s: replace(s, manual_hold=None)),
    (("manual_hold", "slot"), "name", lambda s: replace(s, manual_hold=None)),
    (("manual_hold", "until"), "time", lambda s: replace(s, manual_hold=None)),
    (("last_switch_at",), "time", lambda s: replace(s, last_switch_at=None)),
    (("last_switch",), "record", lambda s: replace(s, last_switch=None)),
    (("last_switch", "slot"), "name", lambda s: replace(s, last_switch=None)),
    (("last_switch", "previous"), "name", _sub("last_switch", previous=None)),
    (("last_switch", "mode"), "name", _sub("last_switch", mode="?")),
    (("last_switch", "at"), "time", _sub("last_switch", at=None)),
    (("left_exhausted",), "map", lambda s: replace(s, left_exhausted={})),
    (("left_exhausted", "alice"), "time", _without("left_exhausted", "alice")),
    (("limited",), "map", lambda s: replace(s, limited={})),
    (("limited", "alice"), "time", _without("limited", "alice")),
    (("limited_models",), "map", lambda s: replace(s, limited_models={})),
    (("limited_models", "alice"), "map", _without("limited_models", "alice")),
    (
        ("limited_models", "alice", "opus"),
        "time",
        lambda s: replace(s, limited_models={"alice": {"sonnet": T0 + 3 * 86400}}),
    ),
    (("refusing",), "map", lambda s: replace(s, refusing={})),
    (("refusing", "bob"), "time", _without("refusing", "bob")),
    (("rejected",), "map", lambda s: replace(s, rejected={})),
    (("rejected", "dave"), "rejection", _without("rejected", "dave")),
    (("rejected", "dave", "at"), "time", _rejection(at=None)),
    (("rejected", "dave", "credential"), "name", _rejection(credential=None)),
    (("rejected", "dave", "source"), "name", _rejection(source="?")),
    (("clamped",), "record", lambda s: replace(s, clamped=None)),
    (("clamped", "at"), "time", lambda s: replace(s, clamped=None)),
    (("clamped", "fields"), "list", _sub("clamped", fields=())),
    (("clamped", "fields", 0), "name", _sub("clamped", fields=("manual_hold",))),
]


def _damaged(path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(MAIN_FILE)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if value is MISSING:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


CASES = [
    pytest.param(path, value, expect, id=f"{'.'.join(map(str, path))}={value!r}")
    for path, kind, expect in FIELDS
    for value in DAMAGE
    if not any(
        value is v or (value == v and type(value) is type(v)) for v in VALID_FOR.get(kind, ())
    )
]


@pytest.mark.parametrize(("path", "value", "expect"), CASES)
def test_a_damaged_field_is_dropped_on_its_own(
    path: tuple[Any, ...], value: Any, expect: Expect
) -> None:
    state = RotationState.load(_damaged(path, value))
    assert state == expect(MAIN_STATE)
    json.dumps(state.dump(), allow_nan=False)  # what is written back is plain JSON


def test_every_field_of_the_file_has_a_damage_case():
    """A field added to MAIN_FILE later needs its rows in FIELDS."""
    covered = {path for path, _, _ in FIELDS}
    assert {(key,) for key in MAIN_FILE} <= covered
    for record in (("pending",), ("manual_hold",), ("last_switch",), ("clamped",)):
        assert {(*record, key) for key in MAIN_FILE[record[0]]} <= covered
    assert {("rejected", "dave", key) for key in MAIN_FILE["rejected"]["dave"]} <= covered


# ---------------------------------------------------------------- round trip and fuzz

times = st.floats(min_value=0.0, max_value=MAX_TIME)
names = st.text(min_size=1, max_size=12)
opt_times = st.none() | times
states = st.builds(
    RotationState,
    pending=st.none() | st.builds(PendingSwitch, names, names, names, opt_times),
    manual_hold=st.none() | st.builds(ManualHold, names, times),
    last_switch_at=opt_times,
    last_switch=st.none() | st.builds(LastSwitch, names, st.none() | names, names, opt_times),
    left_exhausted=st.dictionaries(names, times, max_size=3),
    limited=st.dictionaries(names, times, max_size=3),
    limited_models=st.dictionaries(
        names, st.dictionaries(names, times, min_size=1, max_size=3), max_size=3
    ),
    refusing=st.dictionaries(names, times, max_size=3),
    rejected=st.dictionaries(
        names, st.builds(Rejection, opt_times, st.none() | names, names), max_size=3
    ),
    clamped=st.none() | st.builds(Clamped, st.lists(names, max_size=3).map(tuple), times),
)


@given(states)
def test_any_state_survives_a_round_trip_through_the_file(state: RotationState):
    text = json.dumps(state.dump(), allow_nan=False)
    assert RotationState.load(json.loads(text)) == state


FIELD_NAMES = sorted({*MAIN_FILE, "other"})
SUB_NAMES = ["slot", "reason", "mode", "since", "until", "previous", "at", "credential"]
SUB_NAMES += ["source", "fields", "alice", "opus", ""]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, -(10**400), 2**1100])
    | st.floats()
    | st.text(max_size=6)
)
json_like = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.sampled_from(SUB_NAMES), inner, max_size=4)
        | st.dictionaries(st.integers(), inner, max_size=2)
    ),
    max_leaves=16,
)
shaped = st.dictionaries(
    st.sampled_from(FIELD_NAMES),
    json_like
    | st.dictionaries(
        st.sampled_from(SUB_NAMES),
        json_like | st.dictionaries(st.sampled_from(SUB_NAMES), json_like, max_size=4),
        max_size=6,
    ),
    max_size=len(FIELD_NAMES),
)


@settings(max_examples=300, deadline=None)
@given(json_like | shaped)
def test_loading_anything_never_raises_and_writes_back_plain_json(doc: Any):
    state = RotationState.load(doc)
    dumped = state.dump()
    text = json.dumps(dumped, allow_nan=False)
    assert RotationState.load(json.loads(text)) == state  # what it kept is stable
    for value in _numbers(dumped):
        assert math.isfinite(value) and 0 <= value <= MAX_TIME


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


# ---------------------------------------------------------------- the shared transitions


def test_a_switch_starts_the_dwell_ends_the_pending_switch_and_forgets_spent_limits():
    state = RotationState.load(MAIN_FILE)
    now = T0 + 4000  # alice's whole-slot limit has run out, bob's has not
    state.record_switch("alice", "carol", "exhausted", now, manual_hold=8 * 3600)
    assert (state.last_switch_at, state.pending, state.manual_hold) == (now, None, None)
    assert state.last_switch == LastSwitch("alice", "carol", "exhausted", now)
    assert state.left_exhausted["carol"] == now
    assert state.limited == {"bob": T0 + 5400}
    state.record_switch("bob", "alice", "manual", T0 + 3 * 86400, manual_hold=60)
    assert state.manual_hold == ManualHold("bob", T0 + 3 * 86400 + 60)
    assert state.limited_models == {}  # a slot with no model limit left has no entry


def test_a_refusal_streak_keeps_its_start_and_ends_once():
    state = RotationState()
    assert state.start_refusal("alice", T0) == T0
    assert state.start_refusal("alice", T0 + 60) == T0
    assert state.end_refusal("alice") and not state.end_refusal("alice")
    assert state.start_refusal("alice", T0 + 120) == T0 + 120


def test_times_a_clock_step_left_in_the_future_are_clamped_once():
    state = RotationState(last_switch_at=T0 + 86400, manual_hold=ManualHold("bob", T0 + 86400))
    assert state.clamp_future_times(T0, manual_hold=3600) == ("last_switch_at", "manual_hold")
    assert (state.last_switch_at, state.manual_hold) == (T0, ManualHold("bob", T0 + 3600))
    assert state.clamped == Clamped(("last_switch_at", "manual_hold"), T0)
    assert state.clamp_future_times(T0 + 1, manual_hold=3600) == ()
