"""The modelled world: tiers, quota units, the prompt-cache cost model and window arithmetic.

Everything here is pure and deterministic. Quota is counted in *units*: 1000 input-token
equivalents at Sonnet prices (input 1, cache write 1.25, cache read 0.1, output 5, times a
per-model multiplier). How Anthropic maps tokens to its 5-hour and weekly quotas is not
published, so the tier capacities below are parameters with the ratios the reference notes
suggest (pro 1 : max5 5 : max20 20, weekly = 10 five-hour windows); only ratios matter for
the tournament.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..usage.snapshot import FIVE_HOUR_S, SEVEN_DAY_S

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = float(SEVEN_DAY_S)
FIVE_HOURS = float(FIVE_HOUR_S)
# Monday 2027-01-11 00:00 UTC: every simulation starts here (no wall clock anywhere).
T0 = 1_799_625_600.0


@dataclass(frozen=True)
class Tier:
    """A subscription tier: quota units per 5-hour window and per weekly window."""

    name: str
    five_hour: float
    weekly: float
    rate_limit_tier: str | None = None  # what the account's credential file says


TIERS: dict[str, Tier] = {
    "pro": Tier("pro", 2_400.0, 24_000.0, "default_claude_ai"),
    "max5": Tier("max5", 12_000.0, 120_000.0, "default_claude_max_5x"),
    "max20": Tier("max20", 48_000.0, 480_000.0, "default_claude_max_20x"),
}


@dataclass(frozen=True)
class CostModel:
    """Tokens -> quota units, API price ratios; a cold cache re-bills cached context as writes."""

    input: float = 1.0
    cache_write: float = 1.25
    cache_read: float = 0.1
    output: float = 5.0
    tokens_per_unit: float = 1000.0
    cache_ttl: float = 300.0  # Claude Code's default prompt-cache TTL (5 minutes)
    multipliers: dict[str, float] = field(
        default_factory=lambda: {"opus": 5.0 / 3.0, "sonnet": 1.0, "haiku": 1.0 / 3.0}
    )

    def multiplier(self, model: str) -> float:
        return self.multipliers.get(model_family(model), 1.0)

    def warm(
        self, model: str, input: float, cache_read: float, cache_write: float, output: float
    ) -> float:
        """Units for a request whose cached prefix is still warm on its account."""
        raw = (
            self.input * input
            + self.cache_read * cache_read
            + self.cache_write * cache_write
            + self.output * output
        )
        return self.multiplier(model) * raw / self.tokens_per_unit

    def cold(
        self, model: str, input: float, cache_read: float, cache_write: float, output: float
    ) -> float:
        """The same request on a cold cache: the prefix it would have read is written again."""
        return self.warm(model, input, 0.0, cache_read + cache_write, output)


COSTS = CostModel()


def model_family(model: str) -> str:
    """'claude-opus-4-1-20250805' -> 'opus'; unknown names are kept (lowercased)."""
    name = model.strip().lower()
    for family in ("opus", "sonnet", "haiku", "fable"):
        if family in name:
            return family
    return name


# ---------------------------------------------------------------- window arithmetic


def next_weekly_reset(anchor: float, t: float) -> float:
    """The first reset `anchor + k * WEEK` (any integer k) strictly after `t`."""
    k = math.floor((t - anchor) / WEEK) + 1
    reset = anchor + k * WEEK
    while reset <= t:  # float safety at exact boundaries
        reset += WEEK
    while reset - WEEK > t:
        reset -= WEEK
    return reset


def weekly_windows(anchor: float, start: float, end: float) -> list[tuple[float, float]]:
    """Weekly windows (open, close) that overlap [start, end), in order."""
    close = next_weekly_reset(anchor, start)
    windows = [(close - WEEK, close)]
    while close < end:
        windows.append((close, close + WEEK))
        close += WEEK
    return windows


def five_hour_reset(opened_at: float | None, t: float) -> float | None:
    """When the 5-hour window opened at `opened_at` resets, or None if none is open at `t`.

    A window opens at the first admitted request while none is open and closes exactly five
    hours later (the anchored model: "the 5h window starts at the first message").
    """
    if opened_at is None:
        return None
    closes = opened_at + FIVE_HOURS
    return closes if t < closes else None


def elapsed_fraction(reset_at: float, window: float, t: float) -> float:
    """Fraction of a window of length `window` ending at `reset_at` already gone at `t`."""
    return min(1.0, max(0.0, 1.0 - (reset_at - t) / window))
