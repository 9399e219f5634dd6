"""`SubscriptionManager` of gptme-subscription 0.1.0 over ours: translation, no rotation logic.

Every decision is our policy's (`gptme_subscription_plugin.SubscriptionManager.decide`), every
switch our manager's (Claude Code's locks, heal first, never while another session is mid-turn
unless forced), every reading our usage cache's. What is kept here is the 0.1.0 shape:

- `check_usage()` returns the live slot's reading as 0.1.0's usage document (or None);
- `evaluate(usage, active)` decides on *that* reading for `active` (other slots: their cached
  readings; nothing is polled) and returns 0.1.0's `Decision` (`action` "stay" or "switch");
- `switch_to(target, reason)` returns a plain bool: True when `target` is live afterwards.
  A switch that must wait for other sessions' turns is False with `last_switch_deferred` set,
  as 0.1.0 did for an agent's lock; it lands at the next idle turn boundary.

`core` is our manager, for anything 0.1.0 had no word for.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._dropped import MANAGER, drop_attributes
from .config import Config
from .observation import epoch, is_subscription_blocked, usage_document, usage_snapshot

if TYPE_CHECKING:
    from gptme_subscription_plugin.config import Config as CoreConfig
    from gptme_subscription_plugin.manager import SubscriptionManager as CoreManager
    from gptme_subscription_plugin.manager import SwitchOutcome
    from gptme_subscription_plugin.policy import Decision as CoreDecision
    from gptme_subscription_plugin.policy import PolicyView
    from gptme_subscription_plugin.usage.snapshot import UsageSnapshot

# our decision modes under the names 0.1.0 gave the same thing; the others keep ours
MODE_NAMES = {"forward-route": "forward-routing", "manual-hold": "manual-switch-hold"}


@dataclass
class Decision:
    """0.1.0's decision: `action` is "stay" or "switch" (our hold and defer are stays; `mode`
    and `reason` say which); `core` is our Decision."""

    active: str | None
    action: str
    target: str | None
    reason: str
    mode: str | None = None
    hold_until: str | None = None
    hold_seconds: int | None = None
    weekly_utilization: float | None = None
    five_hour_utilization: float | None = None
    sonnet_weekly_utilization: float | None = None
    pace_overage: float | None = None
    rebalance_trigger: str | None = None
    core: CoreDecision | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "active": self.active,
            "action": self.action,
            "target": self.target,
            "reason": self.reason,
        }
        for key in (
            "mode",
            "hold_until",
            "hold_seconds",
            "weekly_utilization",
            "five_hour_utilization",
            "sonnet_weekly_utilization",
            "pace_overage",
            "rebalance_trigger",
        ):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        return d


class SubscriptionManager:
    """0.1.0's manager over `gptme_subscription_plugin.SubscriptionManager`."""

    def __init__(self, config: Config):
        self.config = config
        self._core: tuple[CoreConfig, CoreManager] | None = None
        self._last_decision: Decision | None = None
        self._last_switch_deferred = False
        self.last_outcome: SwitchOutcome | None = None  # our outcome of the last switch_to

    @property
    def core(self) -> CoreManager:
        """Our manager for the config as it is now (rebuilt after a field changes)."""
        from gptme_subscription_plugin.manager import SubscriptionManager as CoreManager

        core_config = self.config.core_config()
        if self._core is None or self._core[0] is not core_config:
            self._core = (core_config, CoreManager(core_config))
        return self._core[1]

    # ---- slots ----

    def get_active_subscription(self) -> str | None:
        return self.core.get_active_subscription()

    def get_available_subscriptions(self) -> list[str]:
        """Configured slots whose credential can be made live (valid, or refreshable)."""
        core = self.core
        return [n for n in core.slot_names() if core.slots.check(n).health.usable]

    def slot_path(self, sub: str) -> Path:
        return self.core.slots.slot_path(sub)

    def slot_credential_is_stale(
        self, sub: str, stale_days: float = 7.0, *, now: datetime | None = None
    ) -> tuple[bool, str]:
        """(unusable, why), from the credential itself: missing, malformed, unreadable, no
        refresh token, or refused by Anthropic. A file's age says nothing here: an idle slot
        is rightly untouched for weeks (`stale_days` and `now` are not used)."""
        from gptme_subscription_plugin.manager import standing_rejection

        core = self.core
        info = core.slots.check(sub)
        if not info.health.usable:
            return True, f"{info.health.value}: {info.detail}"
        rejected = standing_rejection(core.rotation(), sub, info)
        if rejected is not None:
            return True, f"refused by Anthropic ({rejected['source']})"
        return False, info.detail

    def detect_live_slot_drift(self) -> dict[str, Any] | None:
        drift = self.core.slots.detect_drift()
        if drift is None:
            return None
        return {"drift": True, "kind": drift.kind, "detail": drift.detail, "slot": drift.slot}

    def heal_drift(self, execute: bool = False) -> tuple[bool, str]:
        """Ours: into the slot that owns the live credential (0.1.0: the last switched-to)."""
        drift = self.core.slots.detect_drift()
        if drift is None:
            return False, "no drift"
        if not execute:
            return True, f"would heal: {drift.detail}"
        try:
            result = self.core.heal()
        except Exception as exc:  # lock busy, unattributable file: say so, nothing changed
            return False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return result.healed, result.detail

    def detect_external_switch(self) -> None:
        """Note the live slot as it is now (ours notes it at every evaluation)."""
        self.core.slots.observe()

    # ---- the switch log: our events log ----

    def _switches(self) -> list[dict[str, Any]]:
        return self.core.events.tail(10_000, kinds={"switch"})

    def seconds_since_last_switch_to(self, sub: str) -> int | None:
        now = self.core.clock()
        times = [e["ts"] for e in self._switches() if e.get("slot") == sub]
        return int(now - times[-1]) if times else None

    def seconds_since_last_primary_departure(self) -> int | None:
        primary, now = self.config.primary, self.core.clock()
        times = [
            e["ts"]
            for e in self._switches()
            if e.get("previous") == primary and e.get("slot") != primary
        ]
        return int(now - times[-1]) if times else None

    def infer_active_slot_from_log(self) -> str | None:
        names = set(self.core.slot_names())
        slots = [e.get("slot") for e in self._switches() if e.get("slot") in names]
        return slots[-1] if slots else None

    # ---- usage ----

    def check_usage(
        self, no_cache: bool = False, stale_cache: Path | None = None
    ) -> dict[str, Any] | None:
        """The live slot's reading as 0.1.0's usage document, None when there is none.

        Polled within the poll budget all processes share (a reading up to `poll_interval`
        old is the answer); `no_cache` asks now. When the poll fails, the last reading is
        returned marked `_stale`; 0.1.0's `stale_cache` file is read only when we have none,
        and only when `_ok` and younger than `usage_max_age` (4 h, as 0.1.0).
        """
        core = self.core
        live = core.get_active_subscription()
        if live is None:
            return None
        snap = core.check_usage(refresh=True, force=no_cache, names=[live]).get(live)
        now = core.clock()
        if snap is None and stale_cache is not None:
            snap = self._stale_cache(Path(stale_cache), live, now)
        return None if snap is None else usage_document(snap, now)

    def _stale_cache(self, path: Path, slot: str, now: float) -> UsageSnapshot | None:
        try:
            age = now - path.stat().st_mtime
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or not doc.get("_ok"):
            return None
        if age > self.core.config.usage_max_age:
            return None
        snap = usage_snapshot(doc, slot, now)
        return (
            None
            if snap is None
            else dataclasses.replace(snap, observed_at=now - age).marked_stale()
        )

    # ---- rate-limit file ----

    def _rate_limited_until(self) -> float | None:
        """The future time `rate_limit_file` names, as the CLI's `--rate-limit-file` reads it
        (bounded, a regular file only); a file that cannot be read or holds no time: None,
        as 0.1.0 answered."""
        from gptme_subscription_plugin.rate_limit_file import limited_until

        path = self.config.rate_limit_file
        if path is None:
            return None
        try:
            return limited_until(path, self.core.clock())
        except ValueError:  # RateLimitFileError, NotATime
            return None

    def is_rate_limited(self) -> bool:
        return self._rate_limited_until() is not None

    def clear_rate_limit(self) -> None:
        from gptme_subscription_plugin.rate_limit_file import clear

        if self.config.rate_limit_file is not None:
            clear(self.config.rate_limit_file)

    @staticmethod
    def is_subscription_blocked(
        usage: dict[str, Any], *, config: Config | None = None
    ) -> tuple[bool, str]:
        cfg = config or Config()
        return is_subscription_blocked(
            usage,
            weekly_exhausted=cfg.weekly_exhausted,
            five_hour_exhausted=cfg.five_hour_exhausted,
            sonnet_weekly_exhausted=cfg.sonnet_weekly_exhausted,
        )

    # ---- holds ----

    def load_rebalance_state(self, now: datetime | None = None) -> dict[str, Any] | None:
        """The manual hold in force, in 0.1.0's shape (the only hold ours records)."""
        hold = self.core.rotation_state().get("manual_hold")
        if not isinstance(hold, dict):
            return None
        slot, until = hold.get("slot"), hold.get("until")
        if not isinstance(slot, str) or not isinstance(until, (int, float)):
            return None
        if until <= epoch(now):
            return None
        return {
            "active": slot,
            "action": "stay",
            "target": slot,
            "reason": f"manual switch to {slot}",
            "mode": "manual-switch",
            "hold_until": datetime.fromtimestamp(until, timezone.utc),
            "hold_seconds": int(until - epoch(now)),
        }

    def capacity_aware_fallback_order(self, now: datetime | None = None) -> list[str]:
        """`fallback_order` in our candidate ranking on the cached readings (no network)."""
        from .routing import ranked

        order = ranked(self.core.view(), epoch(now), self.core.config.thresholds)
        wanted = self.config.fallback_order
        return [n for n in order if n in wanted] + [n for n in wanted if n not in order]

    # ---- decide and act ----

    def evaluate(
        self,
        usage: dict[str, Any] | None,
        active: str | None,
        *,
        rebalance_state: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Decision:
        """Our policy's decision with `active` live and `usage` its reading (None: no reading).

        Other slots count with their cached readings; nothing is polled. A `rebalance_state`
        of mode "manual-switch" is a manual hold on its target; other 0.1.0 holds have no
        counterpart (ours dwell `min_dwell` after every switch, from our own state). The
        `rate_limit_file`, while it names a future time, limits `active` until then.
        """
        core = self.core
        t = epoch(now)
        readings = core.check_usage(refresh=False)
        if active is not None:
            readings[active] = usage_snapshot(usage, active, t)
        view = dataclasses.replace(core.view(readings), live=active)
        view = self._with_hold(view, rebalance_state, t)
        limited = self._rate_limited_until()
        if limited is not None and active is not None:
            slots = tuple(
                dataclasses.replace(s, limited_until=max(limited, s.limited_until or 0.0))
                if s.name == active
                else s
                for s in view.slots
            )
            view = dataclasses.replace(view, slots=slots)
        decision = self._translate(core.decide(view, now=t), view, usage, t)
        self._last_decision = decision
        return decision

    @staticmethod
    def _with_hold(view: PolicyView, state: dict[str, Any] | None, now: float) -> PolicyView:
        if not state or state.get("mode") != "manual-switch":
            return view
        until = state.get("hold_until")
        if isinstance(until, str):
            try:
                until = datetime.fromisoformat(until)
            except ValueError:
                return view
        target = state.get("target")
        if not isinstance(until, datetime) or not isinstance(target, str):
            return view
        return dataclasses.replace(view, manual_hold_slot=target, manual_hold_until=epoch(until))

    def _translate(
        self, d: CoreDecision, view: PolicyView, usage: dict[str, Any] | None, now: float
    ) -> Decision:
        from gptme_subscription_plugin.policy import pace_gap

        switch = d.wants_switch
        out = Decision(
            active=d.live,
            action="switch" if switch else "stay",
            target=d.target if switch else d.live,
            reason=d.reason,
            mode=MODE_NAMES.get(d.mode, d.mode),
            core=d,
        )
        until = None
        if d.mode == "manual-hold":
            until = view.manual_hold_until
        elif d.mode == "dwell" and view.last_switch_at is not None:
            until = view.last_switch_at + self.core.config.thresholds.min_dwell
        if until is not None and until > now:
            out.hold_until = datetime.fromtimestamp(until, timezone.utc).isoformat()
            out.hold_seconds = int(until - now)
        live = view.slot(d.live)
        snap = live.usage if live is not None else None
        if snap is not None:
            for attr, window in (
                ("weekly_utilization", snap.seven_day),
                ("five_hour_utilization", snap.five_hour),
                ("sonnet_weekly_utilization", snap.models.get("sonnet")),
            ):
                if window is not None:
                    setattr(out, attr, window.effective_utilization(now))
            if d.mode == "rebalance":
                gap = pace_gap(snap.seven_day, now)
                out.pace_overage = None if gap is None else round(gap, 3)
                out.rebalance_trigger = "weekly"
        return out

    def switch_to(self, sub: str, reason: str, force: bool = False) -> bool:
        """Make `sub` live; True when it is live afterwards.

        A switch the last `evaluate()` decided keeps that decision's mode; any other is a
        switch by hand (it holds for `manual_hold`, as 0.1.0's `--switch` did). While another
        session is mid-turn the switch is recorded as pending and lands at the next idle turn
        boundary: False, with `last_switch_deferred` True. `force` flips at once. `last_outcome`
        holds our full outcome (status, detail).
        """
        decided = self._last_decision.core if self._last_decision is not None else None
        mode = "manual"
        if decided is not None and decided.wants_switch and decided.target == sub:
            mode = decided.mode
        outcome = self.core.switch_to(sub, reason, mode=mode, force=force)
        self.last_outcome = outcome
        self._last_switch_deferred = outcome.status == "pending"
        if outcome.status == "switched":
            self.clear_rate_limit()  # it was about the slot that was live
        return bool(outcome)

    @property
    def last_switch_deferred(self) -> bool:
        return self._last_switch_deferred


drop_attributes(SubscriptionManager, MANAGER)

__all__ = ["Decision", "SubscriptionManager"]
