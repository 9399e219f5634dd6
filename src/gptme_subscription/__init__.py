"""gptme-subscription 0.1.0's Python API, provided by gptme-subscription-plugin.

A drop-in for code written against gptme-contrib's gptme-subscription 0.1.0: the same names,
signatures and result shapes, translated to gptme-subscription-plugin's own API
(`gptme_subscription_plugin`), which decides, switches and reads usage. There is no rotation
logic here. What changed and why, and what was dropped (importing a dropped name raises
ImportError saying what to use instead): docs/migrating-from-0.1.md, "Python API".

Names load on first use (PEP 562), so importing the package costs nothing until then.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~10 ms to import; type checkers read the block below
if TYPE_CHECKING:
    from typing import Any

    from .auth import CredentialInfo, check_credential_file, format_reauth_instructions
    from .config import Config
    from .manager import Decision, SubscriptionManager
    from .observation import (
        SubscriptionObservation,
        format_duration,
        is_subscription_blocked,
        load_sub_observations,
        record_sub_reset_time,
        remaining_until_observed_reset,
        subscription_pressure_from_usage,
    )
    from .routing import (
        PacingSnapshot,
        capacity_aware_fallback_order,
        combine_window_pacing_snapshots,
        compute_pacing_snapshot,
        compute_window_pacing,
        compute_window_pacing_snapshot,
        soonest_resetting_fallback,
    )

__version__ = "0.1.0"  # the API version this package reproduces

_EXPORTS = {
    # auth
    "CredentialInfo": "auth",
    "check_credential_file": "auth",
    "format_reauth_instructions": "auth",
    # config / manager
    "Config": "config",
    "Decision": "manager",
    "SubscriptionManager": "manager",
    # observation
    "SubscriptionObservation": "observation",
    "format_duration": "observation",
    "is_subscription_blocked": "observation",
    "load_sub_observations": "observation",
    "record_sub_reset_time": "observation",
    "remaining_until_observed_reset": "observation",
    "subscription_pressure_from_usage": "observation",
    # routing
    "PacingSnapshot": "routing",
    "capacity_aware_fallback_order": "routing",
    "combine_window_pacing_snapshots": "routing",
    "compute_pacing_snapshot": "routing",
    "compute_window_pacing": "routing",
    "compute_window_pacing_snapshot": "routing",
    "soonest_resetting_fallback": "routing",
}

__all__ = [
    "Config",
    "CredentialInfo",
    "Decision",
    "PacingSnapshot",
    "SubscriptionManager",
    "SubscriptionObservation",
    "capacity_aware_fallback_order",
    "check_credential_file",
    "combine_window_pacing_snapshots",
    "compute_pacing_snapshot",
    "compute_window_pacing",
    "compute_window_pacing_snapshot",
    "format_duration",
    "format_reauth_instructions",
    "is_subscription_blocked",
    "load_sub_observations",
    "record_sub_reset_time",
    "remaining_until_observed_reset",
    "soonest_resetting_fallback",
    "subscription_pressure_from_usage",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        from ._dropped import module_getattr

        module_getattr(__name__, name)
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
