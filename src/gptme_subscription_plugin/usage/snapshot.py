"""The one normalized shape of quota data, whatever source it came from.

Sources disagree on scale (0-100 vs 0-1) and on time (ISO strings, Unix seconds, relative
seconds). Everything is converted here to: utilization as a 0-1 fraction (clamped), reset as
absolute epoch seconds, plus where it came from, when it was observed and whether it is stale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from ..redact import clean_external

FIVE_HOUR_S = 5 * 3600
SEVEN_DAY_S = 7 * 24 * 3600

FIVE_HOUR = "five_hour"
SEVEN_DAY = "seven_day"


def clamp_fraction(value: float) -> float:
    """Clamp to [0, 1]; NaN counts as unknown-but-present and becomes 0."""
    if math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, value))


MAX_MODEL_KEY = 64


def normalize_model_key(name: str) -> str:
    """Per-model windows are keyed by a lowercase model family name ("sonnet", "opus").

    Names come from outside (the usage endpoint, the statusline): redacted and capped here.
    """
    return clean_external(name, MAX_MODEL_KEY).strip().lower()


def model_matches(key: str, model: str) -> bool:
    """Does the per-model key ("opus") name the family of `model` ("claude-opus-4-5")?
    Model ids carry the family name inside."""
    return bool(key) and key in normalize_model_key(model)


@dataclass(frozen=True)
class UsageWindow:
    """One quota window: how much is used (0-1) and when it resets (epoch seconds, or None)."""

    utilization: float
    resets_at: float | None
    window_seconds: int

    def resets_in(self, now: float) -> float | None:
        return None if self.resets_at is None else max(0.0, self.resets_at - now)

    def elapsed_fraction(self, now: float) -> float | None:
        """Fraction of the window already gone; None when the reset time is unknown."""
        remaining = self.resets_in(now)
        if remaining is None:
            return None
        return clamp_fraction(1.0 - remaining / self.window_seconds)

    def is_current(self, now: float) -> bool:
        """False once the window has reset: its utilization no longer applies."""
        return self.resets_at is None or self.resets_at > now

    def effective_utilization(self, now: float) -> float:
        """Utilization that applies now: a window past its reset counts as empty."""
        return self.utilization if self.is_current(now) else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "utilization": self.utilization,
            "resets_at": self.resets_at,
            "window_seconds": self.window_seconds,
        }

    @classmethod
    def from_dict(cls, data: Any) -> UsageWindow | None:
        if not isinstance(data, dict):
            return None
        util = data.get("utilization")
        resets = data.get("resets_at")
        window = data.get("window_seconds")
        if not isinstance(util, (int, float)) or isinstance(util, bool):
            return None
        if resets is not None and (
            not isinstance(resets, (int, float)) or isinstance(resets, bool)
        ):
            return None
        if not isinstance(window, int) or window <= 0:
            return None
        return cls(clamp_fraction(float(util)), None if resets is None else float(resets), window)


@dataclass(frozen=True)
class UsageSnapshot:
    """Everything known about one slot's quota at `observed_at`."""

    slot: str
    source: str  # "oauth", "script", "statusline", "state"
    observed_at: float
    five_hour: UsageWindow | None = None
    seven_day: UsageWindow | None = None
    models: dict[str, UsageWindow] = field(default_factory=dict)  # per-model weekly windows
    stale: bool = False

    def model_entry(self, model: str | None) -> tuple[str, UsageWindow] | None:
        """The per-model window that applies to `model`, with its key ("sonnet")."""
        if not model:
            return None
        key = normalize_model_key(model)
        if key in self.models:
            return key, self.models[key]
        for name, window in sorted(self.models.items()):
            if model_matches(name, model):
                return name, window
        return None

    def model_window(self, model: str | None) -> UsageWindow | None:
        entry = self.model_entry(model)
        return entry[1] if entry else None

    def age(self, now: float) -> float:
        return max(0.0, now - self.observed_at)

    def marked_stale(self) -> UsageSnapshot:
        return self if self.stale else replace(self, stale=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "source": self.source,
            "observed_at": self.observed_at,
            "five_hour": self.five_hour.to_dict() if self.five_hour else None,
            "seven_day": self.seven_day.to_dict() if self.seven_day else None,
            "models": {name: w.to_dict() for name, w in sorted(self.models.items())},
            "stale": self.stale,
        }

    @classmethod
    def from_dict(cls, data: Any) -> UsageSnapshot | None:
        if not isinstance(data, dict):
            return None
        slot, source, observed = data.get("slot"), data.get("source"), data.get("observed_at")
        if not isinstance(slot, str) or not isinstance(source, str):
            return None
        if not isinstance(observed, (int, float)) or isinstance(observed, bool):
            return None
        models_raw = data.get("models") or {}
        models: dict[str, UsageWindow] = {}
        if isinstance(models_raw, dict):
            for name, raw in models_raw.items():
                window = UsageWindow.from_dict(raw)
                if isinstance(name, str) and window is not None:
                    models[name] = window
        return cls(
            slot=slot,
            source=source,
            observed_at=float(observed),
            five_hour=UsageWindow.from_dict(data.get("five_hour")),
            seven_day=UsageWindow.from_dict(data.get("seven_day")),
            models=models,
            stale=bool(data.get("stale", False)),
        )
