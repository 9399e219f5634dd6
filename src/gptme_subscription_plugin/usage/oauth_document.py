"""The OAuth usage endpoint's JSON document, parsed into a UsageSnapshot.

Scales here: `utilization`/`percent` 0-100 (clamped), `resets_at` ISO-8601 with offset or null.
Bad windows are skipped as long as one usable window remains. The number and date readers
(`json_number`, `parse_iso8601`) serve the other usage sources too. `oauth.py` asks the
endpoint and re-exports these names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ..redact import clean_external
from .snapshot import (
    FIVE_HOUR,
    FIVE_HOUR_S,
    SEVEN_DAY,
    SEVEN_DAY_S,
    UsageSnapshot,
    UsageWindow,
    clamp_fraction,
    normalize_model_key,
)

SOURCE = "oauth"

# Named per-model weekly windows of the endpoint, and the model key each one fills.
NAMED_MODEL_WINDOWS = {"seven_day_opus": "opus", "seven_day_sonnet": "sonnet"}
# limits[] kinds that stand in for a null named window.
LIMIT_KIND_FALLBACK = {"session": FIVE_HOUR, "weekly_all": SEVEN_DAY}


class UsageParseError(ValueError):
    """A usage document we cannot make sense of (short message, never any secret)."""


_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$"
)


def parse_iso8601(text: str) -> float:
    """ISO-8601 to epoch seconds; strict enough to reject junk, lenient about fraction digits.

    Written by hand because `datetime.fromisoformat` on 3.10 rejects `Z` and odd fraction widths.
    A time without an offset is taken as UTC.
    """
    match = _ISO_RE.match(text.strip())
    if not match:
        raise UsageParseError(f"unparsable date {clean_external(text, 40)!r}")
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = match.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz = timezone.utc
    if sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        if offset >= timedelta(hours=24):
            raise UsageParseError(f"unparsable date {clean_external(text, 40)!r}")
        tz = timezone(offset if sign == "+" else -offset)
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tz
        )
        return moment.timestamp()
    except (ValueError, OverflowError):
        raise UsageParseError(f"unparsable date {clean_external(text, 40)!r}") from None


def json_number(value: object, what: str) -> float:
    """A finite JSON number (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageParseError(f"{what} is not a number")
    try:
        result = float(value)
    except OverflowError:
        raise UsageParseError(f"{what} is out of range") from None
    if not math.isfinite(result):
        raise UsageParseError(f"{what} is not finite")
    return result


def _reset_time(value: object, what: str) -> float | None:
    """`resets_at`: ISO string, null, or (leniently) epoch seconds."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse_iso8601(value)
    return json_number(value, f"{what}.resets_at")


def _percent_window(raw: object, what: str, value_key: str, window_seconds: int) -> UsageWindow:
    """One 0-100 window object -> UsageWindow; UsageParseError when it is not usable."""
    if not isinstance(raw, dict):
        raise UsageParseError(f"{what} is not an object")
    percent = json_number(raw.get(value_key), f"{what}.{value_key}")
    resets_at = _reset_time(raw.get("resets_at"), what)
    return UsageWindow(clamp_fraction(percent / 100.0), resets_at, window_seconds)


class _WindowSet:
    """Collects windows from a document, skipping bad ones but remembering the first problem."""

    def __init__(self) -> None:
        self.named: dict[str, UsageWindow] = {}
        self.models: dict[str, UsageWindow] = {}
        self.problem: str | None = None

    def attempt(self, raw: object, what: str, value_key: str, seconds: int) -> UsageWindow | None:
        if raw is None:
            return None
        try:
            return _percent_window(raw, what, value_key, seconds)
        except UsageParseError as exc:
            self.problem = self.problem or str(exc)
            return None

    def note(self, problem: str) -> None:
        self.problem = self.problem or problem

    def empty(self) -> bool:
        return not self.named and not self.models


def _limit_model_key(entry: Mapping[str, Any]) -> str | None:
    """`scope.model.display_name` (or its id), normalized; None when the entry names no model."""
    scope = entry.get("scope")
    model = scope.get("model") if isinstance(scope, dict) else None
    if not isinstance(model, dict):
        return None
    for field in ("display_name", "id"):
        name = model.get(field)
        if isinstance(name, str) and name.strip():
            return normalize_model_key(name)
    return None


def _collect_limits(
    limits: object, found: _WindowSet
) -> tuple[dict[str, UsageWindow], dict[str, UsageWindow]]:
    """limits[]: session/weekly_all as fallbacks for the named windows, weekly_scoped per model."""
    fallbacks: dict[str, UsageWindow] = {}
    scoped: dict[str, UsageWindow] = {}
    if limits is None:
        return fallbacks, scoped
    if not isinstance(limits, list):
        found.note("limits is not a list")
        return fallbacks, scoped
    for index, entry in enumerate(limits):
        if not isinstance(entry, dict):
            found.note(f"limits[{index}] is not an object")
            continue
        kind = entry.get("kind")
        what = f"limits[{index}]"
        if kind in LIMIT_KIND_FALLBACK:
            seconds = FIVE_HOUR_S if LIMIT_KIND_FALLBACK[kind] == FIVE_HOUR else SEVEN_DAY_S
            window = found.attempt(entry, what, "percent", seconds)
            if window is not None:
                fallbacks.setdefault(LIMIT_KIND_FALLBACK[kind], window)
        elif kind == "weekly_scoped":
            key = _limit_model_key(entry)
            if key is None:
                found.note(f"{what} names no model")
                continue
            window = found.attempt(entry, what, "percent", SEVEN_DAY_S)
            if window is not None:
                scoped.setdefault(key, window)
    return fallbacks, scoped


def parse_oauth_usage(doc: object, slot: str, observed_at: float) -> UsageSnapshot:
    """The endpoint's JSON -> UsageSnapshot (source "oauth").

    Named windows win over their limits[] stand-ins; bad windows are skipped as long as at
    least one usable window remains, so one odd field never hides the rest of the answer.
    """
    if not isinstance(doc, dict):
        raise UsageParseError("usage document is not a JSON object")
    found = _WindowSet()
    for name, seconds in ((FIVE_HOUR, FIVE_HOUR_S), (SEVEN_DAY, SEVEN_DAY_S)):
        window = found.attempt(doc.get(name), name, "utilization", seconds)
        if window is not None:
            found.named[name] = window
    for name, key in NAMED_MODEL_WINDOWS.items():
        window = found.attempt(doc.get(name), name, "utilization", SEVEN_DAY_S)
        if window is not None:
            found.models[key] = window
    fallbacks, scoped = _collect_limits(doc.get("limits"), found)
    for name, window in fallbacks.items():
        found.named.setdefault(name, window)
    for key, window in scoped.items():
        found.models.setdefault(key, window)
    if found.empty():
        detail = f" ({found.problem})" if found.problem else ""
        raise UsageParseError(f"usage document has no usable window{detail}")
    return UsageSnapshot(
        slot=slot,
        source=SOURCE,
        observed_at=observed_at,
        five_hour=found.named.get(FIVE_HOUR),
        seven_day=found.named.get(SEVEN_DAY),
        models=dict(found.models),
    )
