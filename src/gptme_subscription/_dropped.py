"""Names of gptme-subscription 0.1.0 with no counterpart here, each with what to use instead.

A dropped module-level name raises ImportError carrying its hint, so `from gptme_subscription
import X` says what to do (an AttributeError from a module's `__getattr__` loses its message on
a from-import). A dropped method or property raises AttributeError with the hint (`Dropped`).
"""

from __future__ import annotations

from typing import NoReturn

HOLDS = (
    "holds are recorded by switch_to() itself: a switch by hand holds for manual_hold, and "
    "every switch is followed by min_dwell"
)

MODULE: dict[str, str] = {
    "probe_credential": (
        "run `gptme-subscription check-auth --probe`: a probe that finds a credential dead "
        "marks its slot rejected, which needs the manager's state"
    ),
    "pressure_from_observation": (
        "pressure is no longer guessed from the time since a reset; "
        "capacity_aware_fallback_order() ranks by when each slot's weekly quota expires"
    ),
    "best_lower_pressure_fallback": (
        "there is no capacity-rebalance rule; SubscriptionManager.evaluate() decides "
        "(forward-routing, 5-hour headroom, rebalance by weekly pace)"
    ),
    "compute_rebalance_hold_seconds": HOLDS,
    "RebalanceState": HOLDS,
    "load_rebalance_state": "SubscriptionManager.load_rebalance_state() gives the manual hold",
    "save_rebalance_state": HOLDS,
    "clear_rebalance_state": HOLDS,
}

MODULE["REAUTH_INSTRUCTIONS"] = "format_reauth_instructions(sub) gives our re-login steps"
MODULE.update(
    (f"DEFAULT_{name}", "our defaults are gptme_subscription_plugin.Thresholds() (tuned)")
    for name in (
        "WEEKLY_EXHAUSTED",
        "FIVE_HOUR_EXHAUSTED",
        "SONNET_WEEKLY_EXHAUSTED",
        "UNKNOWN_FALLBACK_PRESSURE",
        "SOON_TO_EXPIRE_THRESHOLD",
        "EXPIRING_CAPACITY_CREDIT",
        "CAPACITY_REBALANCE_MIN_PRESSURE",
        "CAPACITY_REBALANCE_MARGIN",
        "REBALANCE_MIN_HOLD",
        "REBALANCE_MAX_HOLD",
        "REBALANCE_TARGET_UTILIZATION",
    )
)

MANAGER: dict[str, str] = {
    "record_manual_switch_hold": (
        "switch_to() of a slot no evaluate() decision named is a switch by hand: it holds for "
        "manual_hold by itself"
    ),
    "save_rebalance_state": HOLDS,
    "clear_rebalance_state": HOLDS,
    "compute_rebalance_hold_seconds": HOLDS,
    "record_sub_reset_time": "readings are kept in the shared usage cache; check_usage() fills it",
    "best_lower_pressure_fallback": MODULE["best_lower_pressure_fallback"],
    "slot_is_fresh": "check_credential_file(path, name) gives .status and .expires_in_seconds",
    "detect_slot_identity_drift": (
        "run `gptme-subscription identity check` (gptme_subscription_plugin.accounts.check)"
    ),
    "capture_slot_fingerprint": (
        "run `gptme-subscription identity baseline` (gptme_subscription_plugin.accounts.baseline)"
    ),
}

CONFIG: dict[str, str] = {
    "switch_log": "every switch is an event of kind 'switch' in <state dir>/events.jsonl",
    "rebalance_state_file": "the manual hold is kept in <state dir>/rotation.json",
    "reset_times_file": "readings are kept in <state dir>/usage/<slot>.json",
}


def module_getattr(module: str, name: str) -> NoReturn:
    """For a module's `__getattr__`: ImportError with the hint, else a plain AttributeError."""
    hint = MODULE.get(name)
    if hint is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    raise ImportError(f"{name} of gptme-subscription 0.1.0 was dropped: {hint}", name=module)


class Dropped:
    """A dropped method or property: reading it raises AttributeError with the hint, so
    `hasattr` is False and a call says what to use instead."""

    def __init__(self, owner: str, name: str, hint: str):
        self.message = f"{owner}.{name} of gptme-subscription 0.1.0 was dropped: {hint}"

    def __get__(self, obj: object, objtype: type | None = None) -> NoReturn:
        raise AttributeError(self.message)


def drop_attributes(cls: type, table: dict[str, str]) -> None:
    for name, hint in table.items():
        setattr(cls, name, Dropped(cls.__name__, name, hint))
