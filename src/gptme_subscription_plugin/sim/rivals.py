"""The rivals: each anchor's switching rule as a small Policy over the same PolicyView.

Each one sees exactly what the shipped policy sees (the view the hook pack builds) and is
called at the same decision points; none of them sees ground truth. Where an anchor routes per
request (a proxy), its rule is applied at the hook pack's boundaries instead, since that is the
only place a credential swap can happen in this setting.

- `sticky`: stay until the live slot is rate-limited, then take the next slot in order.
- `round-robin`: the next usable slot at every decision (CLIProxyAPI `round-robin`).
- `threshold-90`: cswap's `auto` default: when the binding window (max of 5h and 7d) reaches
  90 %, move to the slot with the most headroom that is under 90 % and at least 10 points
  better; 5 minutes between proactive switches (realiti4/claude-swap `AutoSwitchSettings`).
- `soonest-reset`: TeamClaude upstream `_pickBestAvailable`: sticky until 98 % on 5h or 7d,
  then unknown weekly reset first, then the soonest weekly reset; when another account's
  5-hour window is fresh and its weekly expires sooner, move there (`_switchOnSessionReset`,
  better-ccflare drain-soonest).
- `pace`: TeamClaude D1DX D-2104: pace line, end-of-cycle ramp, 5h rail 0.90, hard limit 0.98,
  tie band 0.10, a warm binding kept unless far over its line (-0.10) or railed.
- `gptme-subscription`: the upstream decision logic of reference/gptme.md 3.7, with its own
  memory (switch log, reset-time observations, rebalance hold) as the upstream keeps on disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..policy import Action, Decision, PolicyView, SlotView, is_limited
from ..usage.snapshot import SEVEN_DAY_S, UsageSnapshot, UsageWindow

H = 3600.0


def _decision(
    view: PolicyView, action: Action, mode: str, reason: str, target: str | None = None, **kw: Any
) -> Decision:
    return Decision(action, view.live, target, mode, reason, **kw)


def _util(window: UsageWindow | None, now: float) -> float | None:
    return None if window is None else window.effective_utilization(now)


def _serving(slot: SlotView, now: float) -> bool:
    """A credential that works and no 429 in force: the bare minimum any anchor checks."""
    return slot.usable and not is_limited(slot, now)


def _cyclic_after(view: PolicyView, name: str | None) -> list[SlotView]:
    names = [s.name for s in view.slots]
    start = names.index(name) + 1 if name in names else 0
    return [view.slots[(start + i) % len(names)] for i in range(len(names))]


class StickyPolicy:
    """Stay until a 429, then the next slot in order."""

    name = "sticky"

    def decide(self, view: PolicyView, now: float) -> Decision:
        live = view.slot(view.live)
        if live is not None and _serving(live, now):
            return _decision(view, "stay", "sticky", f"{live.name} answers; staying")
        for cand in _cyclic_after(view, view.live):
            if cand.name != view.live and _serving(cand, now):
                return _decision(
                    view, "switch", "429", f"{view.live} rate-limited", cand.name, urgent=True
                )
        return _decision(view, "defer", "all-limited", "every slot is rate-limited")


class RoundRobinPolicy:
    """The next usable slot at every decision point."""

    name = "round-robin"

    def decide(self, view: PolicyView, now: float) -> Decision:
        for cand in _cyclic_after(view, view.live):
            if cand.name != view.live and _serving(cand, now):
                return _decision(view, "switch", "round-robin", "next in turn", cand.name)
        return _decision(view, "stay", "round-robin", "no other slot")


def binding_percent(usage: UsageSnapshot | None, now: float) -> float | None:
    """cswap's binding window: the higher of 5h and 7d utilization, in percent."""
    if usage is None:
        return None
    parts = [u for u in (_util(usage.five_hour, now), _util(usage.seven_day, now)) if u is not None]
    return max(parts) * 100.0 if parts else None


@dataclass
class ThresholdPolicy:
    """cswap `auto`, strategy `best`: threshold 90 %, hysteresis 10 points, cooldown 300 s."""

    threshold: float = 90.0
    hysteresis: float = 10.0
    cooldown: float = 300.0
    name: str = "threshold-90"

    def decide(self, view: PolicyView, now: float) -> Decision:
        live = view.slot(view.live)
        live_pct = binding_percent(live.usage, now) if live else None
        hard = live is None or not _serving(live, now) or (live_pct is not None and live_pct >= 100)
        if not hard and (live_pct is None or live_pct < self.threshold):
            return _decision(view, "stay", "below-threshold", f"{view.live} under threshold")
        if (
            not hard
            and view.last_switch_at is not None
            and now - view.last_switch_at < self.cooldown
        ):
            return _decision(view, "hold", "cooldown", "switched less than 5 minutes ago")
        best: tuple[float, int, SlotView] | None = None
        for i, cand in enumerate(view.slots):
            pct = binding_percent(cand.usage, now)
            if cand.name == view.live or not _serving(cand, now) or pct is None:
                continue
            if pct >= self.threshold:
                continue
            if live_pct is not None and not hard and pct > live_pct - self.hysteresis:
                continue
            if best is None or (pct, i) < best[:2]:
                best = (pct, i, cand)
        if best is None:
            return _decision(view, "stay", "no-candidate", "no slot with enough headroom")
        trigger = "at-limit" if hard else "proactive"
        return _decision(
            view, "switch", trigger, f"binding {live_pct}% -> {best[0]}%", best[2].name, urgent=hard
        )


@dataclass
class SoonestResetPolicy:
    """TeamClaude upstream: perishable first, sticky until 98 %, move on a fresh 5h window."""

    switch_threshold: float = 0.98
    name: str = "soonest-reset"

    def _near(self, slot: SlotView, now: float) -> bool:
        if not _serving(slot, now):
            return True
        u = slot.usage
        if u is None:
            return False
        return any(
            x is not None and x >= self.switch_threshold
            for x in (_util(u.five_hour, now), _util(u.seven_day, now))
        )

    @staticmethod
    def _reset(slot: SlotView, now: float) -> float | None:
        w = slot.usage.seven_day if slot.usage else None
        if w is None or w.resets_at is None or not w.is_current(now):
            return None
        return w.resets_at

    def _rank(self, slot: SlotView, now: float, order: int) -> tuple[int, float, int]:
        reset = self._reset(slot, now)
        return (0, 0.0, order) if reset is None else (1, reset, order)

    def decide(self, view: PolicyView, now: float) -> Decision:
        live = view.slot(view.live)
        cands = [
            (self._rank(s, now, i), s)
            for i, s in enumerate(view.slots)
            if s.name != view.live and not self._near(s, now)
        ]
        if live is None or self._near(live, now):
            if not cands:
                return _decision(view, "defer", "all-near-quota", "every account near quota")
            best = min(cands, key=lambda c: c[0])[1]
            return _decision(
                view, "switch", "near-quota", "live near quota", best.name, urgent=True
            )
        live_reset = self._reset(live, now)
        fresh = []
        for rank, s in cands:
            five = _util(s.usage.five_hour, now) if s.usage else None
            reset = self._reset(s, now)
            if five == 0.0 and reset is not None and live_reset is not None and reset < live_reset:
                fresh.append((rank, s))
        if fresh:
            best = min(fresh, key=lambda c: c[0])[1]
            return _decision(
                view, "switch", "session-reset", "fresh 5h window expiring sooner", best.name
            )
        return _decision(view, "stay", "sticky", f"{live.name} below {self.switch_threshold:.0%}")


RAMP_TIERS: tuple[tuple[float, float], ...] = ((8, 100), (16, 8), (24, 4), (48, 2), (72, 1))


def pace_score(usage: UsageSnapshot | None, now: float) -> tuple[float, float]:
    """D1DX: (gap to the weekly pace line, gap + end-of-cycle ramp boost)."""
    week = usage.seven_day if usage else None
    reset = week.resets_at if week is not None and week.is_current(now) else None
    u7 = _util(week, now)
    line = 0.0 if reset is None else min(1.0, max(0.0, 1.0 - (reset - now) / SEVEN_DAY_S))
    gap = 0.0 if u7 is None else line - u7
    boost = 0.0
    if reset is not None:
        hours = (reset - now) / H
        weight = next((w for limit, w in RAMP_TIERS if hours <= limit), 0.0)
        boost = (1.0 - (u7 or 0.0)) * weight
    return gap, gap + boost


@dataclass
class PacePolicy:
    """TeamClaude D1DX (D-2104): pace to the weekly line, ramp, 5h rail, tie band."""

    rail: float = 0.90
    hard: float = 0.98
    far_over: float = 0.10
    tie_band: float = 0.10
    name: str = "pace"

    def _usable(self, slot: SlotView, now: float) -> bool:
        if not _serving(slot, now):
            return False
        u = slot.usage
        return u is None or all(
            x is None or x < self.hard for x in (_util(u.five_hour, now), _util(u.seven_day, now))
        )

    def _railed(self, slot: SlotView, now: float) -> bool:
        five = _util(slot.usage.five_hour, now) if slot.usage else None
        return five is not None and five >= self.rail

    def decide(self, view: PolicyView, now: float) -> Decision:
        live = view.slot(view.live)
        if live is not None and self._usable(live, now) and not self._railed(live, now):
            gap, _ = pace_score(live.usage, now)
            if gap >= -self.far_over:
                return _decision(view, "stay", "warm", f"{live.name} binding kept")
        usable = [s for s in view.slots if self._usable(s, now)]
        if not usable:
            return _decision(view, "defer", "all-capped", "every account at its hard limit")
        eligible = {s.name for s in usable if not self._railed(s, now)} or {s.name for s in usable}
        scored = [
            (pace_score(s.usage, now)[1], i, s)
            for i, s in enumerate(view.slots)
            if s.name in eligible
        ]
        best_score = max(score for score, _, _ in scored)
        band = [c for c in scored if c[0] >= best_score - self.tie_band]
        # anti-dogpile inside the band: fewest warm sessions -> every slot but the live one
        pick = min(band, key=lambda c: (c[2].name == view.live, -c[0], c[1]))[2]
        if pick.name == view.live:
            return _decision(view, "stay", "pace", f"{pick.name} still leads")
        urgent = live is None or not self._usable(live, now)
        return _decision(
            view, "switch", "pace", f"pace score {best_score:.2f}", pick.name, urgent=urgent
        )


# ---------------------------------------------------------------- upstream gptme-subscription


def _component(value: float, threshold: float) -> float:
    value = min(1.0, max(0.0, value))
    return 1.0 if threshold <= 0 or value >= threshold else value


@dataclass
class UpstreamUsage:
    """The upstream manager's usage dict, read off our snapshot of the live slot."""

    weekly: float
    five_hour: float
    sonnet: float | None
    weekly_resets_in: float
    five_resets_in: float

    @classmethod
    def of(cls, usage: UsageSnapshot | None, now: float) -> UpstreamUsage | None:
        if usage is None:
            return None
        sonnet = usage.models.get("sonnet")
        return cls(
            weekly=_util(usage.seven_day, now) or 0.0,
            five_hour=_util(usage.five_hour, now) or 0.0,
            sonnet=None if sonnet is None else _util(sonnet, now),
            weekly_resets_in=(usage.seven_day.resets_in(now) or 0.0) if usage.seven_day else 0.0,
            five_resets_in=(usage.five_hour.resets_in(now) or 0.0) if usage.five_hour else 0.0,
        )

    def pressure(self) -> float:
        """subscription_pressure_from_usage with the helper defaults (0.95, 0.95, 0.85)."""
        parts = [_component(self.weekly, 0.95)]
        if self.sonnet is not None:
            parts.append(_component(self.sonnet, 0.85))
        if self.five_resets_in > 7200:
            parts.append(_component(self.five_hour, 0.95))
        return max(parts)

    def blocked(self) -> bool:
        """is_subscription_blocked with the helper defaults (0.95, 0.95, 0.85)."""
        if self.weekly >= 0.95 and self.five_hour >= 0.95:
            return True
        if self.sonnet is not None:
            return self.sonnet >= 0.85
        return self.weekly >= 0.95


@dataclass
class UpstreamPolicy:
    """gptme-contrib gptme-subscription `SubscriptionManager.evaluate` plus its apply step.

    Memory the upstream keeps in files: reset-time observations of each slot (recorded only
    while it is the active one), the switch log, the rebalance hold. Manager thresholds:
    weekly 0.85, 5h 0.90 (with > 2 h left), Sonnet 0.95; probe cooldown 30 min before going
    back to the primary; holds 8 h (forward routing, capacity rebalance) or 6-48 h (rebalance).
    """

    name: str = "gptme-subscription"
    observations: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    switched_at: dict[str, float] = field(default_factory=dict)
    last_live: dict[str, float] = field(default_factory=dict)
    primary_departure: float | None = None
    hold: tuple[str, str, float] | None = None  # target, mode, until
    proposed: tuple[str, str, float] | None = None
    _primary: str | None = None

    def observe_switch(self, previous: str | None, target: str, mode: str, now: float) -> None:
        """The apply step: log the switch, keep or clear the hold."""
        self.switched_at[target] = now
        if self._primary is not None and previous == self._primary:
            self.primary_departure = now
        proposed = self.proposed
        if proposed is not None and proposed[0] == target and proposed[1] in HOLD_MODES:
            self.hold = proposed
        else:
            self.hold = None

    def decide(self, view: PolicyView, now: float) -> Decision:
        names = [s.name for s in view.slots]
        primary = self._primary = names[0]
        fallbacks = names[1:]
        for name in names:
            self.last_live.setdefault(name, now)  # every slot file fresh at the start
        live = view.slot(view.live)
        active = view.live
        if live is None or active is None:
            return self._switch(view, primary, "no-active", "no active slot", now)
        self.last_live[active] = now  # Claude Code keeps the live slot's file fresh
        usage = UpstreamUsage.of(live.usage, now)
        if usage is None:
            return _decision(view, "stay", "no-usage", "could not check usage")
        if usage.weekly_resets_in > 0 and live.usage is not None and not live.usage.stale:
            self.observations[active] = (now, usage.weekly_resets_in, usage.pressure())
        elapsed = max(0.0, SEVEN_DAY_S - usage.weekly_resets_in)
        blocked = usage.blocked()

        if active != primary:
            hold = self.hold
            if hold is not None and hold[2] > now and not blocked and hold[0] == active:
                return _decision(view, "stay", f"{hold[1]}-hold", "honouring hold")
            if not blocked:
                lower = self._lower_pressure(active, usage, fallbacks, now)
                if lower is not None:
                    return self._switch(
                        view, lower, "capacity-rebalance", "lower pressure", now, 8 * H
                    )
            if not blocked and usage.weekly_resets_in > 0:
                if usage.weekly_resets_in < 12 * H:
                    return _decision(view, "stay", "soon-to-expire", "burn expiring quota")
                if elapsed / SEVEN_DAY_S >= 0.25:
                    for sub in fallbacks:
                        if sub != active and self._not_recent(sub, elapsed, now):
                            return self._switch(
                                view, sub, "forward-routing", "forward routing chain", now, 8 * H
                            )
            return self._switch(view, primary, "probe-primary", "on fallback: probe primary", now)

        exhausted = (
            usage.weekly >= 0.85
            or (usage.five_hour >= 0.90 and usage.five_resets_in > 7200)
            or (usage.sonnet is not None and usage.sonnet >= 0.95)
            or is_limited(live, now)
        )
        order = [s for s in self._capacity_order(fallbacks, now) if not self._stale(s, now)]
        if exhausted:
            if not order:
                return _decision(view, "stay", "all-stale", "all fallbacks stale; reauth needed")
            return self._switch(view, order[0], "exhausted", "primary exhausted", now)
        overage = usage.weekly - min(1.0, max(0.0, elapsed / SEVEN_DAY_S))
        sonnet = live.usage.models.get("sonnet") if live.usage else None
        sonnet_elapsed = sonnet.elapsed_fraction(now) if sonnet is not None else None
        if sonnet is not None and sonnet_elapsed is not None:
            overage = max(overage, sonnet.effective_utilization(now) - sonnet_elapsed)
        if overage >= 0.10 and order:
            hold_s = min(48 * H, max(6 * H, int(overage * SEVEN_DAY_S / 0.90)))
            return self._switch(view, order[0], "rebalance", "ahead of pace", now, hold_s)
        if elapsed / SEVEN_DAY_S >= 0.25:
            for sub in fallbacks:
                if not self._stale(sub, now) and self._not_recent(sub, elapsed, now):
                    return self._switch(view, sub, "forward-routing", "forward routing", now, 8 * H)
        return _decision(view, "stay", "healthy", "primary quota healthy")

    # helpers -------------------------------------------------------------------------

    def _switch(
        self, view: PolicyView, target: str, mode: str, reason: str, now: float, hold: float = 0.0
    ) -> Decision:
        names = [s.name for s in view.slots]
        if target == view.live:
            return _decision(view, "stay", mode, reason)
        # apply step: going back to the primary within 30 min of leaving it is deferred
        if (
            target == names[0]
            and self.primary_departure is not None
            and now - self.primary_departure < 1800
        ):
            return _decision(view, "stay", "probe-cooldown", "primary left recently")
        # apply step: a target already blocked would be reverted right after the switch
        slot = view.slot(target)
        usage = UpstreamUsage.of(slot.usage if slot else None, now)
        revert_modes = ("probe-primary", "forward-routing", "capacity-rebalance")
        if mode in revert_modes and usage is not None and usage.blocked():
            return _decision(view, "stay", "reverted", f"{target} blocked")
        self.proposed = (target, mode, now + hold) if hold else None
        return _decision(view, "switch", mode, reason, target, urgent=mode == "exhausted")

    def _not_recent(self, sub: str, elapsed: float, now: float) -> bool:
        last = self.switched_at.get(sub)
        return last is None or now - last > 0.30 * elapsed

    def _stale(self, sub: str, now: float) -> bool:
        """Slot file not rewritten for 7 days (it is rewritten while live)."""
        return now - self.last_live.get(sub, now) > 7 * 24 * H

    def _entry(self, sub: str, now: float) -> tuple[float, float] | None:
        obs = self.observations.get(sub)
        if obs is None or obs[0] + obs[1] <= now:
            return None
        return obs[2], obs[0] + obs[1] - now

    def _capacity_order(self, fallbacks: list[str], now: float) -> list[str]:
        def key(sub: str) -> tuple[float, float]:
            entry = self._entry(sub, now)
            if entry is None:
                return (0.5, math.inf)
            pressure, remaining = entry
            credit = 0.25 * (1 - remaining / (12 * H)) if remaining < 12 * H else 0.0
            return (pressure - credit, round(remaining / H))

        return sorted(fallbacks, key=key)

    def _lower_pressure(
        self, active: str, usage: UpstreamUsage, fallbacks: list[str], now: float
    ) -> str | None:
        active_p = usage.pressure()
        if active_p < 0.70:
            return None
        best: tuple[float, str] | None = None
        for sub in fallbacks:
            entry = self._entry(sub, now)
            if sub == active or entry is None:
                continue
            if active_p - entry[0] >= 0.25 and (best is None or entry[0] < best[0]):
                best = (entry[0], sub)
        return None if best is None else best[1]


HOLD_MODES = ("rebalance", "forward-routing", "capacity-rebalance")
