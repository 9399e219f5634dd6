"""The scenario suite: fleets and workloads the tournament runs every policy through."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from .engine import SimOptions
from .fleet import AccountSpec, FleetAccount, draw_fleet
from .model import DAY, HOUR, T0
from .workload import Workload, WorkloadSpec, generate


@dataclass(frozen=True)
class SimInput:
    """Everything one run needs, fully drawn from (scenario, seed) before it starts."""

    scenario: str
    seed: int
    workload: Workload
    fleet: tuple[FleetAccount, ...]
    options: SimOptions


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    accounts: tuple[AccountSpec, ...]
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    days: float = 14.0
    broken: bool = False  # one slot's credential is revoked mid-week
    outage_share: float = 0.0  # share of time the usage endpoint answers 429

    @property
    def is_fleet(self) -> bool:
        """Fleets of ten agents or more launched together: where link mode stalls most."""
        return self.workload.agents_per_launch[0] >= 10

    def weekly_capacity(self) -> float:
        from .model import TIERS

        return sum(TIERS[a.tier].weekly for a in self.accounts)

    def instantiate(self, seed: int, workload: Workload | None = None) -> SimInput:
        key = f"{self.name}:{seed}"
        wl = workload or generate(self.workload, self.weekly_capacity(), key, T0, self.days)
        fleet = draw_fleet(self.accounts, key, wl.start, (wl.end - wl.start) / DAY, self.broken)
        return SimInput(self.name, seed, wl, fleet, SimOptions(outages=self._outages(key, wl)))

    def _outages(self, key: str, wl: Workload) -> tuple[tuple[float, float], ...]:
        """Endpoint outages: blocks of 2-8 h covering about `outage_share` of the run."""
        if self.outage_share <= 0:
            return ()
        rng = random.Random(f"outages:{key}")
        blocks = []
        t = wl.start
        while t < wl.end:
            length = rng.uniform(2 * HOUR, 8 * HOUR)
            gap = length * (1 - self.outage_share) / self.outage_share
            t += rng.uniform(0.5, 1.5) * gap
            blocks.append((t, min(wl.end, t + length)))
            t += length
        return tuple(b for b in blocks if b[0] < wl.end)

    def scaled(self, days: float | None = None, demand: float | None = None) -> Scenario:
        """A variant (shorter, lighter) for quick runs and tests."""
        wl = self.workload if demand is None else replace(self.workload, demand=demand)
        return replace(self, days=days or self.days, workload=wl)


def _slots(*tiers: str, **kw: object) -> tuple[AccountSpec, ...]:
    names = "abcdefgh"
    return tuple(AccountSpec(names[i], tier, **kw) for i, tier in enumerate(tiers))  # type: ignore[arg-type]


FOUR_MAX5 = _slots("max5", "max5", "max5", "max5")
OPUS_LIMITED = _slots("max5", "max5", "max5", "max5", model_limits=(("opus", 0.4),))

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "under-demand",
            "4 x max5, demand 60% of weekly capacity, agents and people",
            FOUR_MAX5,
            WorkloadSpec(demand=0.6),
        ),
        Scenario(
            "over-demand",
            "4 x max5, demand 150% of weekly capacity",
            FOUR_MAX5,
            WorkloadSpec(demand=1.5),
        ),
        Scenario(
            "bursty-fleet",
            "4 x max5, fleets of 10-25 agents launched together, short sessions, demand 100%",
            FOUR_MAX5,
            WorkloadSpec(
                demand=1.0,
                agents_per_launch=(10, 25),
                turns_per_session=(3, 12),
                interactive_share=0.0,
            ),
        ),
        Scenario(
            "fleet-mixed",
            "max20 + max5 + max5 + pro, fleets of 16-24 agents launched together, demand 100%",
            _slots("max20", "max5", "max5", "pro"),
            WorkloadSpec(
                demand=1.0,
                agents_per_launch=(16, 24),
                turns_per_session=(3, 12),
                interactive_share=0.0,
            ),
        ),
        Scenario(
            "staggered-resets",
            "4 x max5 resetting 1.75 days apart, demand 90%",
            tuple(
                AccountSpec(n, "max5", reset_in=(i * 1.75 + 0.5) * DAY)
                for i, n in enumerate("abcd")
            ),
            WorkloadSpec(demand=0.9),
        ),
        Scenario(
            "mixed-tiers",
            "pro + max5 + max5 + max20, demand 100%",
            _slots("pro", "max5", "max5", "max20"),
            WorkloadSpec(demand=1.0),
        ),
        Scenario(
            "stale-observability",
            "4 x max5, no statusline, usage endpoint rate-limited 40% of the time, demand 100%",
            FOUR_MAX5,
            WorkloadSpec(demand=1.0, statusline_share=0.0),
            outage_share=0.4,
        ),
        Scenario(
            "model-limits",
            "4 x max5 with an Opus weekly bucket of 40%, Opus-heavy demand 100%",
            OPUS_LIMITED,
            WorkloadSpec(demand=1.0, models=(("opus", 0.7), ("sonnet", 0.3))),
        ),
        Scenario(
            "broken-slot",
            "4 x max5, one credential revoked server-side mid-week, demand 100%",
            FOUR_MAX5,
            WorkloadSpec(demand=1.0),
            broken=True,
        ),
    )
}

REPLAY_FLEET = _slots("max5", "max5")


def replay_scenario(
    workload: Workload, accounts: tuple[AccountSpec, ...] = REPLAY_FLEET
) -> Scenario:
    """A scenario around a replayed workload (its own timing; fleet phases drawn per seed)."""
    days = (workload.end - workload.start) / DAY
    return Scenario("replay", "replayed Claude Code transcripts", accounts, days=days)
