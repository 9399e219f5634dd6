"""The rotation state (`<state dir>/rotation.json`) as one typed value.

Everything the rotation remembers between turn boundaries lives here: a switch waiting for
idle sessions, a person's manual hold, when the last switch happened (dwell), rate limits per
slot and per model, refusal streaks, refused credentials, a clamped clock step. The manager
keeps it in rotation.json; the simulator keeps it in memory. Both change it through the
methods below, so one switch or one 429 leaves the same record wherever it happens.

`RotationState.load` reads whatever a file holds without ever raising: a field of the wrong
type, a time that is NaN, infinite, negative or past the year 9999 is dropped on its own and
every other field is kept; unknown keys are dropped. A record that lacks what identifies it
(a pending switch without a slot, a manual hold without its end) is dropped whole; any other
bad part of a record falls back to its default. `dump` writes the JSON shape rotation.json has
always had (its five maps always, empty or not), so files written before this module existed
load to the same meaning.

Pure: no I/O and no clock; every time comes in as an argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from .policy import REJECTED, PolicyView, SlotView
from .usage.snapshot import UsageSnapshot

# Epoch seconds of 9999-12-31T23:59:59Z: no real time lies past it (datetime cannot show one).
MAX_TIME = 253402300799.0
DEFAULT_PENDING_REASON = "pending switch"
DEFAULT_PENDING_MODE = "pending"
UNKNOWN = "?"

_V = TypeVar("_V")


def read_time(value: object) -> float | None:
    """A time or duration as rotation.json stores it (seconds), or None when it is not one:
    not a number (a bool is none), NaN or infinite, negative, or beyond `MAX_TIME`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):  # JSON integers have no bound: float() of a huge one raises
        return float(value) if 0 <= value <= MAX_TIME else None
    if not math.isfinite(value) or value < 0 or value > MAX_TIME:
        return None
    return value


def read_name(value: object) -> str | None:
    """A slot or model name: a non-empty string."""
    return value if isinstance(value, str) and value else None


def _read_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _read_map(value: object, read: Callable[[object], _V | None]) -> dict[str, _V]:
    """A map of name -> value, keeping only the entries whose name and value are well formed."""
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, _V] = {}
    for key, raw in value.items():
        name = read_name(key)
        item = read(raw)
        if name is not None and item is not None:
            out[name] = item
    return out


@dataclass(frozen=True)
class PendingSwitch:
    """A decided switch that waits until no other session is mid-turn."""

    slot: str
    reason: str = DEFAULT_PENDING_REASON
    mode: str = DEFAULT_PENDING_MODE
    since: float | None = None

    @classmethod
    def load(cls, value: object) -> PendingSwitch | None:
        if not isinstance(value, Mapping) or (slot := read_name(value.get("slot"))) is None:
            return None
        return cls(
            slot,
            _read_text(value.get("reason")) or DEFAULT_PENDING_REASON,
            read_name(value.get("mode")) or DEFAULT_PENDING_MODE,
            read_time(value.get("since")),
        )

    def dump(self) -> dict[str, Any]:
        return {"slot": self.slot, "reason": self.reason, "mode": self.mode, "since": self.since}


@dataclass(frozen=True)
class ManualHold:
    """A person chose `slot`: no optional switch away from it before `until`."""

    slot: str
    until: float

    @classmethod
    def load(cls, value: object) -> ManualHold | None:
        if not isinstance(value, Mapping):
            return None
        slot, until = read_name(value.get("slot")), read_time(value.get("until"))
        return None if slot is None or until is None else cls(slot, until)

    def dump(self) -> dict[str, Any]:
        return {"slot": self.slot, "until": self.until}


@dataclass(frozen=True)
class LastSwitch:
    """The last flip, as `explain` tells it."""

    slot: str
    previous: str | None = None
    mode: str = UNKNOWN
    at: float | None = None

    @classmethod
    def load(cls, value: object) -> LastSwitch | None:
        if not isinstance(value, Mapping) or (slot := read_name(value.get("slot"))) is None:
            return None
        return cls(
            slot,
            read_name(value.get("previous")),
            read_name(value.get("mode")) or UNKNOWN,
            read_time(value.get("at")),
        )

    def dump(self) -> dict[str, Any]:
        return {"slot": self.slot, "previous": self.previous, "mode": self.mode, "at": self.at}


@dataclass(frozen=True)
class Rejection:
    """Anthropic refused a slot's credential. It stands while the slot still holds that very
    credential (`credential`: its fingerprint key; None never matches one)."""

    at: float | None = None
    credential: str | None = None
    source: str = UNKNOWN

    @classmethod
    def load(cls, value: object) -> Rejection | None:
        if not isinstance(value, Mapping):
            return None
        return cls(
            read_time(value.get("at")),
            read_name(value.get("credential")),
            read_name(value.get("source")) or UNKNOWN,
        )

    def dump(self) -> dict[str, Any]:
        return {"at": self.at, "credential": self.credential, "source": self.source}


@dataclass(frozen=True)
class Clamped:
    """Times a clock step had left in the future, set back to now at `at`."""

    fields: tuple[str, ...]
    at: float

    @classmethod
    def load(cls, value: object) -> Clamped | None:
        if not isinstance(value, Mapping) or (at := read_time(value.get("at"))) is None:
            return None
        raw = value.get("fields")
        names = raw if isinstance(raw, list) else []
        return cls(tuple(n for n in names if read_name(n) is not None), at)

    def dump(self) -> dict[str, Any]:
        return {"fields": list(self.fields), "at": self.at}


def _read_model_limits(value: object) -> dict[str, float] | None:
    limits = _read_map(value, read_time)
    return limits or None  # a slot with no model limit left has no entry


@dataclass
class RotationState:
    """rotation.json, typed. Maps are keyed by slot name."""

    pending: PendingSwitch | None = None
    manual_hold: ManualHold | None = None
    last_switch_at: float | None = None  # the dwell counts from here
    last_switch: LastSwitch | None = None
    left_exhausted: dict[str, float] = field(default_factory=dict)  # left because it ran out
    limited: dict[str, float] = field(default_factory=dict)  # a 429: nothing until then
    limited_models: dict[str, dict[str, float]] = field(default_factory=dict)  # per-model 429s
    refusing: dict[str, float] = field(default_factory=dict)  # refused since, nothing served
    rejected: dict[str, Rejection] = field(default_factory=dict)
    clamped: Clamped | None = None

    # ------------------------------------------------------------ the file

    @classmethod
    def load(cls, doc: object) -> RotationState:
        """The state a rotation.json document holds; never raises (see the module doc)."""
        if not isinstance(doc, Mapping):
            return cls()
        return cls(
            pending=PendingSwitch.load(doc.get("pending")),
            manual_hold=ManualHold.load(doc.get("manual_hold")),
            last_switch_at=read_time(doc.get("last_switch_at")),
            last_switch=LastSwitch.load(doc.get("last_switch")),
            left_exhausted=_read_map(doc.get("left_exhausted"), read_time),
            limited=_read_map(doc.get("limited"), read_time),
            limited_models=_read_map(doc.get("limited_models"), _read_model_limits),
            refusing=_read_map(doc.get("refusing"), read_time),
            rejected=_read_map(doc.get("rejected"), Rejection.load),
            clamped=Clamped.load(doc.get("clamped")),
        )

    def dump(self) -> dict[str, Any]:
        """The rotation.json document (plain JSON: no NaN, no infinity)."""
        doc: dict[str, Any] = {
            "left_exhausted": dict(self.left_exhausted),
            "limited": dict(self.limited),
            "limited_models": {s: dict(m) for s, m in self.limited_models.items() if m},
            "refusing": dict(self.refusing),
            "rejected": {s: r.dump() for s, r in self.rejected.items()},
        }
        if self.pending is not None:
            doc["pending"] = self.pending.dump()
        if self.manual_hold is not None:
            doc["manual_hold"] = self.manual_hold.dump()
        if self.last_switch_at is not None:
            doc["last_switch_at"] = self.last_switch_at
        if self.last_switch is not None:
            doc["last_switch"] = self.last_switch.dump()
        if self.clamped is not None:
            doc["clamped"] = self.clamped.dump()
        return doc

    # ------------------------------------------------------------ reading

    def model_limits(self, slot: str) -> dict[str, float]:
        """The per-model 429s recorded for `slot` (a copy)."""
        return dict(self.limited_models.get(slot, {}))

    def slot_view(
        self,
        name: str,
        *,
        usable: bool,
        health: str,
        rejected: bool,
        usage: UsageSnapshot | None,
        capacity: float | None,
        home: str = "link",
    ) -> SlotView:
        """The policy's view of slot `name`: what its credential file says (`usable`,
        `health`, `capacity`), its usage, and what this state holds of it. A standing
        rejection makes it unusable whatever the file says."""
        return SlotView(
            name=name,
            usable=usable and not rejected,
            health=REJECTED if rejected else health,
            usage=usage,
            limited_until=self.limited.get(name),
            limited_models=self.model_limits(name),
            left_exhausted_at=self.left_exhausted.get(name),
            capacity=capacity,
            home=home,
        )

    def policy_view(
        self,
        live: str | None,
        slots: tuple[SlotView, ...],
        *,
        model: str | None = None,
        preference: tuple[str, ...] = (),
    ) -> PolicyView:
        """The policy's whole input: the slots, the live one, and the dwell and manual hold
        this state holds."""
        hold = self.manual_hold
        return PolicyView(
            live=live,
            slots=slots,
            model=model,
            last_switch_at=self.last_switch_at,
            manual_hold_slot=hold.slot if hold is not None else None,
            manual_hold_until=hold.until if hold is not None else None,
            preference=preference,
        )

    def standing_rejection(self, slot: str, credential: str | None) -> Rejection | None:
        """The rejection of `slot` while it still holds the very credential that was refused
        (`credential`: the key of the one it holds now)."""
        entry = self.rejected.get(slot)
        if entry is None or entry.credential is None or entry.credential != credential:
            return None
        return entry

    # ------------------------------------------------------------ changing

    def set_pending(self, slot: str, reason: str, mode: str, now: float) -> None:
        self.pending = PendingSwitch(slot, reason, mode, now)

    def clear_pending(self, slot: str | None = None) -> bool:
        """Drop the pending switch (only one to `slot`, when given); True when one went."""
        if self.pending is None or (slot is not None and self.pending.slot != slot):
            return False
        self.pending = None
        return True

    def record_switch(
        self, slot: str, previous: str | None, mode: str, now: float, manual_hold: float
    ) -> None:
        """A flip to `slot` happened at `now`: the dwell starts, the pending switch is done, a
        slot left because it ran out is noted, a switch by hand holds for `manual_hold`
        seconds (any other switch ends a hold), and limits that ran out are forgotten."""
        self.last_switch_at = now
        self.last_switch = LastSwitch(slot, previous, mode, now)
        self.pending = None
        if mode == "exhausted" and previous:
            self.left_exhausted[previous] = now
        self.manual_hold = ManualHold(slot, now + manual_hold) if mode == "manual" else None
        self.expire_limits(now)

    def expire_limits(self, now: float) -> None:
        """Forget the rate limits (whole slot and per model) that end by `now`."""
        for name in [n for n, until in self.limited.items() if until <= now]:
            del self.limited[name]
        for name, models in list(self.limited_models.items()):
            kept = {m: until for m, until in models.items() if until > now}
            if kept:
                self.limited_models[name] = kept
            else:
                del self.limited_models[name]

    def mark_limited(self, slot: str, until: float, model: str | None = None) -> None:
        """A 429: `slot` serves nothing before `until` (with `model`: only that model waits)."""
        if model is None:
            self.limited[slot] = until
        else:
            self.limited_models.setdefault(slot, {})[model] = until

    def start_refusal(self, slot: str, now: float) -> float:
        """A 429 on `slot`: its refusal streak starts now unless one runs; when it started."""
        return self.refusing.setdefault(slot, now)

    def end_refusal(self, slot: str) -> bool:
        """A turn on `slot` was answered: its refusal streak is over; True when one ran."""
        return self.refusing.pop(slot, None) is not None

    def reject(self, slot: str, at: float, credential: str | None, source: str) -> None:
        self.rejected[slot] = Rejection(at, credential, source)

    def clamp_future_times(self, now: float, manual_hold: float) -> tuple[str, ...]:
        """Set a `last_switch_at` after `now`, or a manual hold ending after `now +
        manual_hold` (left by a clock that stepped back), to the most we would set now;
        which fields were clamped (recorded in `clamped` when any)."""
        stepped: list[str] = []
        if self.last_switch_at is not None and self.last_switch_at > now:
            self.last_switch_at = now
            stepped.append("last_switch_at")
        hold = self.manual_hold
        if hold is not None and hold.until > now + manual_hold:
            self.manual_hold = replace(hold, until=now + manual_hold)
            stepped.append("manual_hold")
        if stepped:
            self.clamped = Clamped(tuple(stepped), now)
        return tuple(stepped)


__all__ = [
    "MAX_TIME",
    "Clamped",
    "LastSwitch",
    "ManualHold",
    "PendingSwitch",
    "Rejection",
    "RotationState",
    "read_name",
    "read_time",
]
