"""Quota-aware rotation of Claude subscription credentials ("slots").

The public API is exported lazily (PEP 562) so that the Claude Code hook fast path, which
imports `gptme_subscription_plugin.turns`, does not pay for pydantic or anything else.
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "config",
    "ConfigError": "config",
    "load_config": "config",
    "SubscriptionManager": "manager",
    "SwitchOutcome": "manager",
    "Decision": "policy",
    "DefaultPolicy": "policy",
    "Policy": "policy",
    "PolicyView": "policy",
    "SlotView": "policy",
    "Thresholds": "thresholds",
    "can_serve": "policy",
    "exhaustion": "policy",
    "format_duration": "policy",
    "pace_gap": "policy",
    "rank_candidates": "policy",
    "slot_pressure": "policy",
    "window_pressure": "policy",
    "check_credential_file": "credentials",
    "CredentialInfo": "credentials",
    "Health": "credentials",
    "UsageSnapshot": "usage.snapshot",
    "UsageWindow": "usage.snapshot",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> object:
    """Import an exported name on first use (no typing/importlib cost on the hook path)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
