"""Every tunable number of the rotation policy, in one frozen dataclass.

A core module with no imports of its own: the policy reads these numbers, `Config` loads them
(config.toml, environment, flags) and the simulator and renderers take them as given, so none
of those has to import another to share them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """Every tunable number of the policy, in one place (filled from Config)."""

    # tuned in the tournament (benchmarks/tournament.py; README, Routing simulator)
    weekly_exhausted: float = 0.98
    five_hour_exhausted: float = 0.90
    model_weekly_exhausted: float = 0.95
    five_hour_headroom: float = 0.80
    rebalance_ahead: float = 0.10
    forward_route_margin: float = 2 * 3600.0
    forward_route_min_remaining: float = 0.0
    rebalance_window: float = 12 * 3600.0  # a rebalance target expires about as soon as this
    burst_window: float = 48 * 3600.0  # a bigger plan expiring this much later takes a burst
    min_dwell: float = 900.0
    manual_hold: float = 8 * 3600.0
    probe_cooldown: float = 1800.0
    warn_pressure: float = 0.80
    usage_max_age: float = 4 * 3600.0
