"""Accounts as one run sees them: tier, weekly reset phase, model buckets, initial state."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .model import DAY, HOUR, TIERS, WEEK, Tier


@dataclass(frozen=True)
class AccountSpec:
    """One slot of a scenario; what is left as None is drawn per seed."""

    name: str
    tier: str = "max5"
    reset_in: float | None = None  # seconds from the start to its first weekly reset
    model_limits: tuple[tuple[str, float], ...] = ()  # per-model weekly bucket: share of weekly


@dataclass(frozen=True)
class FleetAccount:
    """One account of one run, fully drawn: the ground truth the simulator starts from."""

    name: str
    tier: Tier
    first_reset: float  # absolute time of its first weekly reset after the start
    initial_weekly: float  # weekly utilization at the start (0-1)
    model_caps: tuple[tuple[str, float], ...] = ()  # (family, units per week)
    initial_models: tuple[tuple[str, float], ...] = ()  # (family, utilization at the start)
    token_expires_at: float = 0.0  # the slot's access token (Claude Code refreshes it in use)
    broken_at: float | None = None  # credential revoked server-side from then on

    @property
    def five_hour_cap(self) -> float:
        return self.tier.five_hour

    @property
    def weekly_cap(self) -> float:
        return self.tier.weekly


def draw_fleet(
    specs: tuple[AccountSpec, ...],
    seed: int | str,
    start: float,
    days: float,
    broken: bool = False,
) -> tuple[FleetAccount, ...]:
    """Reset phases, initial use, token expiry and the broken slot, all from `seed`."""
    rng = random.Random(f"fleet:{seed}")
    broken_index = rng.randrange(len(specs)) if broken else -1
    broken_time = start + rng.uniform(3.0, 5.0) * DAY if broken else None
    accounts = []
    for i, spec in enumerate(specs):
        reset_in = spec.reset_in if spec.reset_in is not None else rng.uniform(0.0, WEEK)
        reset_in = min(max(reset_in, 60.0), WEEK)
        elapsed = 1.0 - reset_in / WEEK
        initial = round(elapsed * rng.uniform(0.3, 0.9), 4)  # used on its own pace so far
        tier = TIERS[spec.tier]
        caps = tuple((m, share * tier.weekly) for m, share in spec.model_limits)
        initial_models = tuple(
            (m, round(min(1.0, initial * rng.uniform(0.8, 1.3)), 4)) for m, _ in caps
        )
        accounts.append(
            FleetAccount(
                name=spec.name,
                tier=tier,
                first_reset=start + reset_in,
                initial_weekly=initial,
                model_caps=caps,
                initial_models=initial_models,
                token_expires_at=start + rng.uniform(1.0, 8 * HOUR),
                broken_at=broken_time if i == broken_index else None,
            )
        )
    return tuple(accounts)
