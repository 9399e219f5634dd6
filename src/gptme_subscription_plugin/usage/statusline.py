"""Quota from Claude Code's statusline stdin: free, frequent, 5h and 7d only.

Claude Code hands the statusline command `rate_limits.{five_hour,seven_day}` with
`used_percentage` 0-100 and `resets_at` in Unix seconds, copied from the response headers of
the session's last API call. It costs nothing, so it is the first source the cache is fed from.
"""

from __future__ import annotations

from .oauth_document import UsageParseError, json_number
from .snapshot import (
    FIVE_HOUR,
    FIVE_HOUR_S,
    SEVEN_DAY,
    SEVEN_DAY_S,
    UsageSnapshot,
    UsageWindow,
    clamp_fraction,
)

SOURCE = "statusline"


def _statusline_window(raw: object, what: str, seconds: int) -> UsageWindow:
    if not isinstance(raw, dict):
        raise UsageParseError(f"rate_limits.{what} is not an object")
    percent = json_number(raw.get("used_percentage"), f"rate_limits.{what}.used_percentage")
    resets = raw.get("resets_at")
    resets_at = None if resets is None else json_number(resets, f"rate_limits.{what}.resets_at")
    return UsageWindow(clamp_fraction(percent / 100.0), resets_at, seconds)


def parse_statusline_rate_limits(doc: object, slot: str, now: float) -> UsageSnapshot | None:
    """The statusline's stdin JSON -> UsageSnapshot, or None when it carries no rate limits.

    `rate_limits` appears only after the session's first API response, and each window may be
    absent on its own, so "nothing here" is normal and not an error. A window that is present
    but malformed is skipped; if every present window is malformed, UsageParseError.
    """
    if not isinstance(doc, dict):
        raise UsageParseError("statusline input is not a JSON object")
    limits = doc.get("rate_limits")
    if limits is None:
        return None
    if not isinstance(limits, dict):
        raise UsageParseError("rate_limits is not an object")
    windows: dict[str, UsageWindow] = {}
    problem: str | None = None
    for name, seconds in ((FIVE_HOUR, FIVE_HOUR_S), (SEVEN_DAY, SEVEN_DAY_S)):
        raw = limits.get(name)
        if raw is None:
            continue
        try:
            windows[name] = _statusline_window(raw, name, seconds)
        except UsageParseError as exc:
            problem = problem or str(exc)
    if not windows:
        if problem:
            raise UsageParseError(f"rate_limits has no usable window ({problem})")
        return None
    return UsageSnapshot(
        slot=slot,
        source=SOURCE,
        observed_at=now,
        five_hour=windows.get(FIVE_HOUR),
        seven_day=windows.get(SEVEN_DAY),
    )
