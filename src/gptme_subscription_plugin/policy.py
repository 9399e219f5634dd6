"""Pure rotation policy (placeholder until written)."""
from __future__ import annotations
from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    weekly_exhausted: float = 0.95
    five_hour_exhausted: float = 0.90
    model_weekly_exhausted: float = 0.95
    five_hour_headroom: float = 0.80
    rebalance_ahead: float = 0.10
    forward_route_margin: float = 12 * 3600.0
    forward_route_min_remaining: float = 0.10
    min_dwell: float = 3600.0
    manual_hold: float = 8 * 3600.0
    probe_cooldown: float = 1800.0
    warn_pressure: float = 0.80
    usage_max_age: float = 4 * 3600.0
