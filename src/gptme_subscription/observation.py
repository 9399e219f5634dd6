"""0.1.0's usage documents, pressure and reset observations, over our policy functions.

The usage document is 0.1.0's usage-script shape (utilization 0-1, `resets_in_seconds`
relative to now, `seven_day_sonnet`, `_pacing`, `_stale`); `usage_snapshot` turns one into
our `UsageSnapshot` with our own script parser and `usage_document` turns ours back. Pressure
and "blocked" are our policy's answers (`slot_pressure`, `blocking`) for that reading, with
0.1.0's threshold arguments mapped onto our `Thresholds`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._dropped import module_getattr

if TYPE_CHECKING:
    from gptme_subscription_plugin.thresholds import Thresholds
    from gptme_subscription_plugin.usage.snapshot import UsageSnapshot, UsageWindow

SEVEN_DAY_S = 7 * 24 * 3600
# 0.1.0's default: a caller passing it explicitly asks for nothing we lack
SHORT_RESET_WINDOW = 7200


def epoch(now: datetime | float | None) -> float:
    """0.1.0 passed datetimes; ours runs on epoch seconds."""
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        return (now if now.tzinfo else now.replace(tzinfo=timezone.utc)).timestamp()
    return float(now)


def thresholds(
    weekly_exhausted: float | None = None,
    five_hour_exhausted: float | None = None,
    sonnet_weekly_exhausted: float | None = None,
) -> Thresholds:
    """Our Thresholds with 0.1.0's three exhaustion levels where given (ours elsewhere)."""
    from gptme_subscription_plugin.thresholds import Thresholds

    given = {
        "weekly_exhausted": weekly_exhausted,
        "five_hour_exhausted": five_hour_exhausted,
        "model_weekly_exhausted": sonnet_weekly_exhausted,
    }
    return replace(Thresholds(), **{k: float(v) for k, v in given.items() if v is not None})


# ---------------------------------------------------------------- the usage document


def usage_snapshot(usage: Mapping[str, Any] | None, slot: str, now: float) -> UsageSnapshot | None:
    """A 0.1.0 usage document as our snapshot of `slot` (None: nothing usable in it).

    `_observed_at` (set by `usage_document`) keeps the reading's age; `_stale` its stale mark.
    """
    from gptme_subscription_plugin.usage.oauth import UsageParseError
    from gptme_subscription_plugin.usage.script import parse_script_usage

    if usage is None:
        return None
    if not isinstance(usage, Mapping):
        raise TypeError(
            f"usage must be a dict (0.1.0's usage document), not {type(usage).__name__}"
        )
    try:
        snap = parse_script_usage(dict(usage), slot, now)
    except UsageParseError:
        return None
    observed = usage.get("_observed_at")
    if isinstance(observed, (int, float)) and not isinstance(observed, bool) and observed <= now:
        snap = replace(snap, observed_at=float(observed))
    return snap.marked_stale() if usage.get("_stale") else snap


def _window_doc(window: UsageWindow, now: float, fixed_phase: bool) -> dict[str, Any]:
    from gptme_subscription_plugin.policy import next_reset

    doc: dict[str, Any] = {"utilization": window.effective_utilization(now)}
    if window.resets_at is not None and window.is_current(now):
        doc["resets_in_seconds"] = int(window.resets_at - now)
    elif fixed_phase and window.resets_at is not None:  # a weekly window keeps its phase
        doc["resets_in_seconds"] = int(next_reset(window, now) - now)
    return doc  # no reset known: the key is left out, as 0.1.0's readers default it


def usage_document(snap: UsageSnapshot, now: float) -> dict[str, Any]:
    """Our snapshot as 0.1.0's usage document (what its `check_usage` returned), plus
    `_slot`, `_source` and `_observed_at`; `_stale` when the reading is an old one."""
    doc: dict[str, Any] = {}
    if snap.five_hour is not None:
        doc["five_hour"] = _window_doc(snap.five_hour, now, fixed_phase=False)
    if snap.seven_day is not None:
        doc["seven_day"] = _window_doc(snap.seven_day, now, fixed_phase=True)
        week = doc["seven_day"]
        if "resets_in_seconds" in week and week["resets_in_seconds"] > 0:
            from .routing import compute_window_pacing

            pacing = compute_window_pacing(
                week["utilization"], week["resets_in_seconds"], SEVEN_DAY_S
            )
            if pacing is not None:
                target, _, status = pacing
                doc["_pacing"] = {
                    "actual_utilization": week["utilization"],
                    "target_utilization": target,
                    "status": status,
                }
    for name, window in sorted(snap.models.items()):
        doc[f"seven_day_{name}"] = _window_doc(window, now, fixed_phase=True)
    doc["_slot"] = snap.slot
    doc["_source"] = snap.source
    doc["_observed_at"] = snap.observed_at
    if snap.stale:
        doc["_stale"] = True
    return doc


# ---------------------------------------------------------------- pressure


def subscription_pressure_from_usage(
    usage: Mapping[str, Any],
    weekly_exhausted: float | None = None,
    five_hour_threshold: float | None = None,
    sonnet_weekly_exhausted: float | None = None,
    short_reset_window: int | None = SHORT_RESET_WINDOW,
) -> float | None:
    """Our `slot_pressure` of this reading: 0-1, 1.0 at a window's exhaustion threshold (the
    tightest window decides); None when the document holds no usable window.

    Thresholds left out are ours (weekly 0.98, 5-hour 0.90, per-model weekly 0.95).
    """
    from gptme_subscription_plugin.policy import slot_pressure

    if short_reset_window not in (None, SHORT_RESET_WINDOW):
        raise ValueError(
            "short_reset_window has no equivalent: our pressure always counts the 5-hour "
            "window (a nearly spent one is what stops the next request)"
        )
    now = time.time()
    snap = usage_snapshot(usage, "-", now)
    t = thresholds(weekly_exhausted, five_hour_threshold, sonnet_weekly_exhausted)
    return slot_pressure(snap, t, now)


def is_subscription_blocked(
    usage: Mapping[str, Any],
    weekly_exhausted: float | None = None,
    five_hour_exhausted: float | None = None,
    sonnet_weekly_exhausted: float | None = None,
) -> tuple[bool, str]:
    """(blocked, reason): blocked when our policy says the slot cannot serve a request of a
    model not yet known (`blocking`): its weekly or 5-hour window is spent. A spent per-model
    window (Sonnet) alone does not block: the slot still serves the other models."""
    from gptme_subscription_plugin.policy import blocking, format_duration, spent_models

    now = time.time()
    snap = usage_snapshot(usage, "-", now)
    if snap is None:
        return False, "no usage data"
    t = thresholds(weekly_exhausted, five_hour_exhausted, sonnet_weekly_exhausted)
    spent = blocking(snap, t, now, None)
    if spent is not None:
        label, reset = spent
        when = f", resets in {format_duration(reset - now)}" if reset is not None else ""
        return True, f"{label} quota exhausted{when}"
    models = spent_models(snap, t, now)
    if models:
        return False, f"serves every model but {', '.join(models)} (its weekly window is spent)"
    return False, "all limits healthy"


def format_duration(seconds: float) -> str:
    """Ours: 45s, 12m, 3h05m, 2d04h."""
    from gptme_subscription_plugin.policy import format_duration as ours

    return ours(seconds)


# ---------------------------------------------------------------- reset observations


@dataclass
class SubscriptionObservation:
    """0.1.0's observation file of one slot: when each metric was seen at a reset boundary."""

    track_resets: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, object] = field(default_factory=dict)


def record_sub_reset_time(
    obs_dir: Path, sub: str, metric_key: str, timestamp: str | None = None
) -> None:
    """Note that `sub`'s `metric_key` window was just seen at its reset (ISO-8601 time, now
    by default) in `<obs_dir>/<sub>.json`, written atomically under a lock (0600)."""
    import filelock

    from gptme_subscription_plugin.fsutil import atomic_write_text, ensure_private_dir
    from gptme_subscription_plugin.names import validate_slot_name

    ensure_private_dir(Path(obs_dir))
    path = Path(obs_dir) / f"{validate_slot_name(sub)}.json"
    with filelock.FileLock(str(path) + ".lock", mode=0o600):
        entry = _read_observation_file(path)
        resets = entry.get("track_resets")
        if not isinstance(resets, dict):
            resets = entry["track_resets"] = {}
        resets[metric_key] = timestamp or datetime.now(timezone.utc).isoformat()
        atomic_write_text(path, json.dumps(entry, indent=2) + "\n")


def _read_observation_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_sub_observations(obs_dir: Path) -> dict[str, SubscriptionObservation]:
    """Every `<sub>.json` observation file in `obs_dir`, by slot name; unreadable ones skipped."""
    found: dict[str, SubscriptionObservation] = {}
    try:
        files = sorted(Path(obs_dir).glob("*.json"))
    except OSError:
        return found
    for path in files:
        data = _read_observation_file(path)
        resets = data.get("track_resets")
        if not isinstance(resets, dict):
            continue
        meta = data.get("metadata")
        found[path.stem] = SubscriptionObservation(
            track_resets={str(k): str(v) for k, v in resets.items()},
            metadata=dict(meta) if isinstance(meta, dict) else {},
        )
    return found


def observed_reset(observation: SubscriptionObservation | None, metric_key: str) -> float | None:
    """When the metric was last seen at a reset (epoch seconds), or None."""
    raw = observation.track_resets.get(metric_key) if observation is not None else None
    if not raw:
        return None
    try:
        return epoch(datetime.fromisoformat(raw))
    except (TypeError, ValueError):
        return None


def remaining_until_observed_reset(
    observation: SubscriptionObservation,
    metric_key: str,
    window_seconds: int,
    now: datetime | None = None,
) -> float | None:
    """Seconds until the window's next reset. A window keeps its phase (our `next_reset`):
    past a reset, the next one is a whole window later (0.1.0 said 0 from then on)."""
    from gptme_subscription_plugin.policy import next_reset
    from gptme_subscription_plugin.usage.snapshot import UsageWindow

    seen = observed_reset(observation, metric_key)
    if seen is None or window_seconds <= 0:
        return None
    t = epoch(now)
    window = UsageWindow(0.0, seen + window_seconds, int(window_seconds))
    return max(0.0, next_reset(window, t) - t)


def __getattr__(name: str) -> Any:
    module_getattr(__name__, name)


__all__ = [
    "SubscriptionObservation",
    "format_duration",
    "is_subscription_blocked",
    "load_sub_observations",
    "record_sub_reset_time",
    "remaining_until_observed_reset",
    "subscription_pressure_from_usage",
]
