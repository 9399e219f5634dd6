"""`Config` of gptme-subscription 0.1.0, resolved through gptme-subscription-plugin's own.

The 0.1.0 field names and `GPTME_SUBSCRIPTION_*` variables keep working. A field left out is
taken from the environment, then `config.toml`, then our defaults (which differ from 0.1.0's
where the tournament retuned them: `weekly_exhausted` is 0.98, not 0.85); `core_config()` is
the `gptme_subscription_plugin.Config` every call goes through, validated by it. A 0.1.0
field we have no equivalent for is accepted only at its 0.1.0 default: any other value raises
ValueError naming what to use instead, so a setting never silently does nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._dropped import CONFIG, drop_attributes

if TYPE_CHECKING:
    from gptme_subscription_plugin.config import Config as CoreConfig


class _Unset:
    def __repr__(self) -> str:
        return "<from env / config.toml / default>"


UNSET: Any = _Unset()

# 0.1.0 field -> our Config field, same meaning
MAPPED = {
    "creds_dir": "claude_dir",
    "state_dir": "state_dir",
    "usage_script": "usage_script",
    "lock_glob": "lock_glob",
    "weekly_exhausted": "weekly_exhausted",
    "five_hour_exhausted": "five_hour_exhausted",
    "sonnet_weekly_exhausted": "model_weekly_exhausted",  # binds every per-model weekly window
    "probe_primary_cooldown": "probe_cooldown",
    "rebalance_ahead_threshold": "rebalance_ahead",
    "forward_routing_hold_seconds": "manual_hold",  # a hold after a switch by hand
}
PATHS = ("creds_dir", "state_dir", "usage_script")

_DWELL = "our policy holds min_dwell (15 min) after every switch"
_EXPIRY = (
    "our policy forward-routes by when each slot's weekly quota expires "
    "(forward_route_margin, rebalance_window)"
)
# 0.1.0 field -> (its 0.1.0 default, what to use instead)
NO_EQUIVALENT: dict[str, tuple[Any, str]] = {
    "creds_live_name": (
        ".credentials.json",
        "the live credential is the file Claude Code reads, <creds_dir>/.credentials.json",
    ),
    "slot_template": (
        ".credentials.json.{sub}",
        "slot files are <creds_dir>/.credentials.json.<slot>",
    ),
    "fingerprint_template": (
        ".credentials.json.{sub}.fingerprint.json",
        "identities are asked of the account and kept in the state dir "
        "(`gptme-subscription identity baseline`)",
    ),
    "rebalance_target_utilization": (0.90, _DWELL),
    "rebalance_min_hold": (6 * 3600, _DWELL),
    "rebalance_max_hold": (48 * 3600, _DWELL),
    "forward_routing_period_threshold": (0.25, _EXPIRY),
    "forward_routing_idle_frac": (0.30, _EXPIRY),
    "soon_to_expire_threshold": (12 * 3600, _EXPIRY),
    "expiring_capacity_credit": (0.25, _EXPIRY),
    "unknown_fallback_pressure": (
        0.50,
        "a slot without readings ranks after those whose quota is known to expire",
    ),
    "capacity_rebalance_min_pressure": (0.70, "use rebalance_ahead_threshold (pace rebalance)"),
    "capacity_rebalance_margin": (0.25, "use rebalance_ahead_threshold (pace rebalance)"),
}


@dataclass
class Config:
    """All 0.1.0 settings; the ones with an equivalent resolve through ours."""

    # --- slots ---
    subscriptions: list[str] = UNSET  # empty: every slot file found (0.1.0: ["primary"])
    fallback_order: list[str] = UNSET  # default: every slot but the primary
    primary: str = ""  # first entry of `subscriptions` unless given
    # --- credential storage ---
    creds_dir: Path = UNSET
    creds_live_name: str = NO_EQUIVALENT["creds_live_name"][0]
    slot_template: str = NO_EQUIVALENT["slot_template"][0]
    fingerprint_template: str = NO_EQUIVALENT["fingerprint_template"][0]
    # --- state ---
    state_dir: Path = UNSET
    # --- usage ---
    usage_script: Path | None = UNSET
    lock_glob: str = UNSET
    # --- thresholds ---
    weekly_exhausted: float = UNSET
    five_hour_exhausted: float = UNSET
    sonnet_weekly_exhausted: float = UNSET
    probe_primary_cooldown: float = UNSET
    rebalance_ahead_threshold: float = UNSET
    rebalance_target_utilization: float = NO_EQUIVALENT["rebalance_target_utilization"][0]
    rebalance_min_hold: int = NO_EQUIVALENT["rebalance_min_hold"][0]
    rebalance_max_hold: int = NO_EQUIVALENT["rebalance_max_hold"][0]
    forward_routing_period_threshold: float = NO_EQUIVALENT["forward_routing_period_threshold"][0]
    forward_routing_idle_frac: float = NO_EQUIVALENT["forward_routing_idle_frac"][0]
    forward_routing_hold_seconds: float = UNSET
    soon_to_expire_threshold: int = NO_EQUIVALENT["soon_to_expire_threshold"][0]
    expiring_capacity_credit: float = NO_EQUIVALENT["expiring_capacity_credit"][0]
    unknown_fallback_pressure: float = NO_EQUIVALENT["unknown_fallback_pressure"][0]
    capacity_rebalance_min_pressure: float = NO_EQUIVALENT["capacity_rebalance_min_pressure"][0]
    capacity_rebalance_margin: float = NO_EQUIVALENT["capacity_rebalance_margin"][0]
    # --- rate-limit indicator: a file holding an ISO time until which the live slot is limited
    rate_limit_file: Path | None = None

    _core: tuple[str, CoreConfig] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        from gptme_subscription_plugin.config import load_config

        for name, (default, instead) in NO_EQUIVALENT.items():
            if getattr(self, name) != default:
                raise ValueError(
                    f"Config.{name}={getattr(self, name)!r} has no equivalent in "
                    f"gptme-subscription-plugin: {instead}"
                )
        overrides = {
            ours: getattr(self, theirs)
            for theirs, ours in MAPPED.items()
            if getattr(self, theirs) is not UNSET
        }
        if self.subscriptions is not UNSET:
            overrides["slots"] = list(self.subscriptions)
        core = load_config(overrides, override_label="Config.")
        for theirs, ours in MAPPED.items():
            given = getattr(self, theirs)
            if given is UNSET or (given is not None and theirs in PATHS):
                setattr(self, theirs, getattr(core, ours))  # resolved: ~ expanded
        if self.subscriptions is UNSET:
            self.subscriptions = list(core.slots)
        self.subscriptions = list(self.subscriptions)
        if not self.primary and self.subscriptions:
            self.primary = self.subscriptions[0]
        if self.fallback_order is UNSET:  # ours is the whole preference order: drop the primary
            self.fallback_order = [s for s in core.fallback_order if s != self.primary]
        self.fallback_order = list(self.fallback_order)
        if not self.fallback_order:
            self.fallback_order = [s for s in self.subscriptions if s != self.primary]
        if self.subscriptions:
            unknown = [s for s in self.fallback_order if s not in self.subscriptions]
            if unknown:
                raise ValueError(f"fallback_order references slots not in subscriptions: {unknown}")
            if self.primary not in self.subscriptions:
                raise ValueError(
                    f"primary {self.primary!r} not in subscriptions {self.subscriptions}"
                )
        self.core_config()  # validate the whole, as every call will

    def core_config(self) -> CoreConfig:
        """The `gptme_subscription_plugin.Config` these settings mean (rebuilt after a field
        changes). `fallback_order` becomes our tie-break order with the primary first."""
        from gptme_subscription_plugin.config import load_config

        key = repr(self)
        if self._core is not None and self._core[0] == key:
            return self._core[1]
        preference = [self.primary] if self.primary else []
        preference += [s for s in self.fallback_order if s not in preference]
        overrides: dict[str, Any] = {ours: getattr(self, theirs) for theirs, ours in MAPPED.items()}
        overrides["slots"] = list(self.subscriptions)
        overrides["fallback_order"] = preference
        core = load_config(overrides, override_label="Config.")
        if self.usage_script is None:  # none, whatever the environment or config.toml say
            core = dataclasses.replace(core, usage_script=None)
        self._core = (key, core)
        return core

    # ---- derived paths ----

    @property
    def creds_link(self) -> Path:
        return Path(self.core_config().live_path)

    def slot_path(self, sub: str) -> Path:
        """`<creds_dir>/.credentials.json.<sub>`; ValueError for a name that is not a slot name."""
        from gptme_subscription_plugin.names import validate_slot_name
        from gptme_subscription_plugin.slots import SLOT_PREFIX

        return Path(self.creds_dir) / f"{SLOT_PREFIX}{validate_slot_name(sub)}"


drop_attributes(Config, CONFIG)

__all__ = ["Config"]
