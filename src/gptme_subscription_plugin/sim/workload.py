"""Workloads: sessions made of turns made of requests, generated from a seed or replayed.

A workload is fixed before a run starts (every random draw happens here), so no policy can
perturb its own demand. Each request carries its cost twice, on a warm and on a cold prompt
cache; the simulator bills the cold price when the session's cache lives on another account
or went stale, which is the real price of a swap.

Generated requests are coarse: one simulated request stands for a short run of API calls of
one turn (up to `calls_per_request`, with their tool calls inside), so two weeks of a busy
fleet stay fast to simulate. Only the first call of such a run can be cold after a swap, so the
cache cost of a swap stays what it is for real calls. Replayed transcripts keep one request per
API call.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace

from .model import COSTS, DAY, HOUR, T0, WEEK, CostModel


@dataclass(frozen=True, slots=True)
class Request:
    """One request (or a short run of calls) of a turn, as the trace has it."""

    model: str  # model family: "opus", "sonnet", ...
    warm: float  # quota units with a warm cache on its account
    cold: float  # quota units when the cache is cold
    natural_cold: bool  # cold whatever the policy does (first call, or a long gap in the trace)
    duration: float  # seconds in flight
    tool_after: float  # tool time after it, before the next request of the turn (0: last)
    release: float  # when the trace has it start (no stall anywhere before it)
    calls: int = 1

    @property
    def useful(self) -> float:
        """What it costs with no swap anywhere: the demand it represents."""
        return self.cold if self.natural_cold else self.warm


@dataclass(frozen=True, slots=True)
class Turn:
    """A user turn: starts at `at` at the earliest and `think` seconds after the previous one."""

    at: float
    think: float
    requests: tuple[Request, ...]


@dataclass(frozen=True)
class Session:
    """A Claude Code session: its turns, whether it runs our statusline, its retry delay."""

    sid: str
    turns: tuple[Turn, ...]
    statusline: bool = True
    retry: float = 120.0  # first wait before re-submitting a failed turn (doubles, capped)
    lane: int = 0  # a worker (a person, one agent of a fleet) runs one session at a time

    @property
    def trace_end(self) -> float:
        last = self.turns[-1].requests[-1]
        return last.release + last.duration


@dataclass(frozen=True)
class Workload:
    sessions: tuple[Session, ...]
    start: float
    end: float  # the horizon: nothing after it is simulated or counted

    def requests(self) -> Iterator[Request]:
        for session in self.sessions:
            for turn in session.turns:
                yield from turn.requests

    def demand(self) -> float:
        """Useful units of every request the trace starts before the horizon."""
        return sum(r.useful for r in self.requests() if r.release < self.end)

    def request_count(self) -> int:
        return sum(1 for r in self.requests() if r.release < self.end)


@dataclass(frozen=True)
class WorkloadSpec:
    """How to generate a workload; `demand` is useful units per week / fleet weekly capacity."""

    demand: float = 1.0
    agents_per_launch: tuple[int, int] = (1, 4)
    turns_per_session: tuple[int, int] = (8, 40)
    interactive_share: float = 0.3  # launches that are one person's interactive session
    models: tuple[tuple[str, float], ...] = (("opus", 0.5), ("sonnet", 0.5))
    statusline_share: float = 1.0  # sessions that run our statusline command
    night_weight: float = 0.15  # activity 23:00-07:00 relative to working hours
    weekend_weight: float = 0.6
    calls_per_turn: float = 9.0  # mean API calls per turn (agents; people: two thirds of it)
    calls_per_request: int = 4


def activity_weight(t: float, spec: WorkloadSpec) -> float:
    """Relative launch rate at `t` (UTC): working hours, evenings, nights, weekends."""
    day_index = int((t - T0) // DAY) % 7  # T0 is a Monday
    hour = ((t - T0) % DAY) / HOUR
    if 9 <= hour < 19:
        w = 1.0
    elif 7 <= hour < 9 or 19 <= hour < 23:
        w = 0.5
    else:
        w = spec.night_weight
    return w * (spec.weekend_weight if day_index >= 5 else 1.0)


def _lognormal(rng: random.Random, median: float, sigma: float, cap: float) -> float:
    return min(cap, median * math.exp(sigma * rng.gauss(0.0, 1.0)))


def _pick(rng: random.Random, weights: tuple[tuple[str, float], ...]) -> str:
    total = sum(w for _, w in weights)
    x = rng.random() * total
    for name, w in weights:
        x -= w
        if x < 0:
            return name
    return weights[-1][0]


class _SessionBuilder:
    """Draws one session's turns; the conversation context grows and compacts like Claude Code."""

    def __init__(self, rng: random.Random, spec: WorkloadSpec, costs: CostModel):
        self.rng, self.spec, self.costs = rng, spec, costs

    def build(self, sid: str, start: float, interactive: bool, statusline: bool) -> Session:
        rng, spec, costs = self.rng, self.spec, self.costs
        model = _pick(rng, spec.models)
        lo, hi = spec.turns_per_session
        n_turns = (
            rng.randint(max(1, lo // 3), max(1, hi // 3)) if interactive else rng.randint(lo, hi)
        )
        context = rng.uniform(15_000, 40_000)
        t = start
        last_end: float | None = None
        turns: list[Turn] = []
        mean_calls = spec.calls_per_turn * (2 / 3 if interactive else 1.0)
        for i in range(n_turns):
            think = 0.0 if i == 0 else self._think(interactive)
            t = t + think
            n_calls = 1 + int(rng.expovariate(1.0 / max(mean_calls - 1, 0.1)))
            # per call: cost as the trace has it, cost when cold, duration, tool after, cold anyway
            calls: list[tuple[float, float, float, float, bool]] = []
            gap_before = math.inf if last_end is None else t - last_end
            for c in range(n_calls):
                new = _lognormal(rng, 2_500, 0.8, 30_000)
                out = _lognormal(rng, 1_200, 0.7, 16_000)
                compact = context > 160_000
                if compact:
                    context = rng.uniform(20_000, 40_000)
                warm = costs.warm(model, 0.0, context, new, out)
                cold = costs.cold(model, 0.0, context, new, out)
                natural = compact or gap_before > costs.cache_ttl
                duration = rng.uniform(1.5, 4.0) + out / 55.0
                tool = 0.0 if c == n_calls - 1 else _lognormal(rng, 8.0, 1.1, 600.0)
                calls.append((cold if natural else warm, cold, duration, tool, natural))
                context += new + out
                gap_before = tool
            requests: list[Request] = []
            step = max(1, spec.calls_per_request)
            for b in range(0, n_calls, step):
                chunk = calls[b : b + step]
                inside = sum(c[2] + c[3] for c in chunk[:-1]) + chunk[-1][2]
                as_traced = sum(c[0] for c in chunk)
                requests.append(
                    Request(
                        model=model,
                        warm=as_traced,
                        cold=as_traced - chunk[0][0] + chunk[0][1],
                        natural_cold=chunk[0][4],
                        duration=inside,
                        tool_after=chunk[-1][3],
                        release=t,
                        calls=len(chunk),
                    )
                )
                t += inside + chunk[-1][3]
            last_end = t
            turns.append(Turn(at=requests[0].release, think=think, requests=tuple(requests)))
        retry = rng.uniform(60.0, 240.0)
        return Session(sid, tuple(turns), statusline=statusline, retry=retry)

    def _think(self, interactive: bool) -> float:
        if interactive:
            return _lognormal(self.rng, 120.0, 1.0, 1_800.0)
        return self.rng.uniform(3.0, 45.0)


def generate(
    spec: WorkloadSpec,
    weekly_capacity: float,
    seed: int | str,
    start: float = T0,
    days: float = 14.0,
    costs: CostModel = COSTS,
) -> Workload:
    """Draw a workload whose useful demand is `spec.demand` x capacity per week, from `seed`."""
    rng = random.Random(f"workload:{seed}")
    end = start + days * DAY
    target = spec.demand * weekly_capacity * (days * DAY / WEEK)
    builder = _SessionBuilder(rng, spec, costs)
    peak = 1.0
    sessions: list[Session] = []
    total = 0.0
    launch = 0
    while total < target:
        t = start + rng.random() * (end - start)
        if rng.random() * peak > activity_weight(t, spec):
            continue
        interactive = rng.random() < spec.interactive_share
        lo, hi = spec.agents_per_launch
        n = 1 if interactive else rng.randint(lo, hi)
        for k in range(n):
            s_start = t + (0.0 if k == 0 else rng.uniform(0.0, 120.0))
            statusline = rng.random() < spec.statusline_share
            session = builder.build(f"s{launch:04d}-{k:02d}", s_start, interactive, statusline)
            total += sum(
                r.useful for turn in session.turns for r in turn.requests if r.release < end
            )
            sessions.append(session)
        launch += 1
    return Workload(assign_lanes(sessions), start, end)


def assign_lanes(sessions: list[Session]) -> tuple[Session, ...]:
    """Give each session a lane: the first worker free (in trace time) when it starts.

    The simulator starts a session only once the previous session of its lane has ended, so
    a stalled worker delays its own later work instead of piling up new sessions (a closed
    loop), and concurrency never exceeds what the trace itself has.
    """
    lanes: list[float] = []
    placed: list[Session] = []
    for session in sorted(sessions, key=lambda x: (x.turns[0].at, x.sid)):
        start = session.turns[0].at
        lane = next((i for i, free in enumerate(lanes) if free <= start), len(lanes))
        if lane == len(lanes):
            lanes.append(0.0)
        lanes[lane] = session.trace_end
        placed.append(replace(session, lane=lane))
    return tuple(placed)
