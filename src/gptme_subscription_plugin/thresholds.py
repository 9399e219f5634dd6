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
    warn_pressure: float = 0.80  # the first pressure level the agents are warned at
    warn_pressure_final: float = 0.95  # the last one (halfway between the two is the middle)
    usage_max_age: float = 4 * 3600.0
    # when no slot can serve: switch ahead to one back this much sooner than the live one
    recovery_margin: float = 600.0
    # a limit with no reset in sight: look again this much later
    unknown_reset_wait: float = 3600.0
    # the pressure a slot with no reading ranks at among candidates (and 1 minus it, the room
    # it ranks at among last resorts): between a fresh slot and a spent one
    neutral_pressure: float = 0.5
    # Reset times this close rank as one: readings of equal quota taken moments apart (a
    # relative "resets in 3600 s" counted from each poll's own clock read, a script's cached
    # answer, a reset Claude Code's /usage screen shows to the minute) leave the choice to the
    # user's fallback_order. Far below forward_route_margin, which moves load hours ahead.
    reset_resolution: float = 600.0
    # New sessions (launch.py): how many sessions one slot carries at an empty 5-hour window
    # (fewer as it fills), and how long a launch counts as load before its session shows up
    launch_session_cap: float = 8.0
    launch_window: float = 60.0
