"""The hindsight oracle and a provable capture bound.

`oracle` is the best schedule found in hindsight for a (scenario, seed): the simulator runs a
clairvoyant switcher (it reads the ground truth of every account and knows the horizon) under
the same hook-pack rules as everyone else, and the oracle keeps whichever schedule captured the
most among that run and every policy's own run. It therefore knows the whole trace, obeys the
same swap semantics, and no policy can beat it on capture.

`flow_bound` is a ceiling no schedule can pass, whatever its rules: a max-flow relaxation that
routes every request's useful units to any weekly window of any account that is open (or
opens later: demand may wait) before the window closes, the account breaks or the run ends,
within each window's weekly and per-model capacity. It ignores 5-hour windows, swap rules,
cache costs and concurrency, so it is loose where those bind; it is reported as `bound`.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

from ..policy import Decision, PolicyView
from .fleet import FleetAccount
from .model import WEEK, weekly_windows
from .workload import Workload


class ClairvoyantPolicy:
    """Earliest weekly deadline first on ground truth, with 5-hour headroom kept in hand.

    Reads the simulator's accounts (attached at the start of the run), so it never guesses:
    it stays on the live account while it serves and no account whose counted weekly window
    closes sooner has room, and it moves before a 5-hour window runs dry.
    """

    name = "clairvoyant"

    def __init__(self, five_hour_reserve: float = 0.08, forward_margin: float = 2 * 3600.0):
        self.reserve = five_hour_reserve
        self.margin = forward_margin
        self.sim: object | None = None

    def attach(self, sim: object) -> None:
        self.sim = sim

    def _state(self, now: float) -> list[tuple[str, bool, float, float, float, float]]:
        sim = self.sim
        assert sim is not None
        out = []
        for a in sim.accounts:  # type: ignore[attr-defined]
            a.roll(now, sim.end)  # type: ignore[attr-defined]
            room5 = 1.0 - a.five_used / a.c5 if a.five_until is not None else 1.0
            room7 = 1.0 - a.week_used / a.c7
            buckets = min((1.0 - a.model_used[m] / c for m, c in a.caps.items()), default=1.0)
            serves = not a.broken(now) and room5 > 0 and room7 > 0
            deadline = a.week_end if a.week_end <= sim.end else a.week_end + WEEK  # type: ignore[attr-defined]
            out.append((a.name, serves, room5, room7, min(room7, buckets), deadline))
        return out

    def decide(self, view: PolicyView, now: float) -> Decision:
        state = self._state(now)

        def key(
            row: tuple[str, bool, float, float, float, float],
        ) -> tuple[bool, bool, float, float, str]:
            name, _, room5, _, room_all, deadline = row
            return (room5 < 0.3, room_all <= 0.02, deadline, -room_all, name)

        cands = sorted((r for r in state if r[1] and r[0] != view.live), key=key)
        live = next((r for r in state if r[0] == view.live), None)
        if live is None or not live[1] or live[2] < self.reserve:
            if cands and (live is None or not live[1] or cands[0][2] > live[2]):
                return Decision(
                    "switch", view.live, cands[0][0], "clairvoyant", "move", urgent=True
                )
            return Decision("stay", view.live, None, "clairvoyant", "nothing better")
        if cands:
            best = cands[0]
            if best[2] >= 0.3 and best[4] > 0.02 and best[5] + self.margin < live[5]:
                return Decision("switch", view.live, best[0], "clairvoyant", "sooner deadline")
        return Decision("stay", view.live, None, "clairvoyant", "live serves")


# ---------------------------------------------------------------- the flow bound


EPS = 1e-9


class _Dinic:
    """Max flow on a small graph (a few hundred edges): Dinic with float capacities."""

    def __init__(self, n: int):
        self.n = n
        self.adj: list[list[int]] = [[] for _ in range(n)]
        self.to: list[int] = []
        self.cap: list[float] = []
        self.level: list[int] = []
        self.it: list[int] = []

    def add(self, u: int, v: int, c: float) -> None:
        self.adj[u].append(len(self.to))
        self.to.append(v)
        self.cap.append(max(0.0, c))
        self.adj[v].append(len(self.to))
        self.to.append(u)
        self.cap.append(0.0)

    def maxflow(self, s: int, t: int) -> float:
        total = 0.0
        while self._levels(s, t):
            self.it = [0] * self.n
            while True:
                f = self._push(s, t, float("inf"))
                if f <= EPS:
                    break
                total += f
        return total

    def _levels(self, s: int, t: int) -> bool:
        self.level = [-1] * self.n
        self.level[s] = 0
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for e in self.adj[u]:
                if self.cap[e] > EPS and self.level[self.to[e]] < 0:
                    self.level[self.to[e]] = self.level[u] + 1
                    queue.append(self.to[e])
        return self.level[t] >= 0

    def _push(self, u: int, t: int, f: float) -> float:
        if u == t:
            return f
        while self.it[u] < len(self.adj[u]):
            e = self.adj[u][self.it[u]]
            v = self.to[e]
            if self.cap[e] > EPS and self.level[v] == self.level[u] + 1:
                got = self._push(v, t, min(f, self.cap[e]))
                if got > EPS:
                    self.cap[e] -= got
                    self.cap[e ^ 1] += got
                    return got
            self.it[u] += 1
        return 0.0


@dataclass(frozen=True)
class Bound:
    capture: float  # no schedule captures more
    served: float  # no schedule serves a larger share of the demand


def flow_bound(workload: Workload, fleet: tuple[FleetAccount, ...]) -> Bound:
    """Max-flow relaxation over weekly windows (see the module docstring)."""
    start, end = workload.start, workload.end
    # (account index, open, close, serve-by deadline, closes in the run, first window)
    windows = []
    for i, acct in enumerate(fleet):
        for k, (opened, closes) in enumerate(weekly_windows(acct.first_reset, start, end)):
            broken = acct.broken_at if acct.broken_at is not None else end
            deadline = min(closes, end, broken)
            windows.append((i, opened, closes, deadline, closes <= end, k == 0))
    deadlines = sorted({w[3] for w in windows})
    groups: dict[tuple[int, str], float] = {}
    max_cost: dict[str, float] = {}
    demand = 0.0
    for req in workload.requests():
        if req.release >= end:
            continue
        demand += req.useful
        key = (bisect.bisect_right(deadlines, req.release), req.model)
        groups[key] = groups.get(key, 0.0) + req.useful
        max_cost[req.model] = max(max_cost.get(req.model, 0.0), req.cold)

    def solve(count_open: bool) -> float:
        index: dict[tuple[str | int, ...], int] = {}

        def node(key: tuple[str | int, ...]) -> int:
            if key not in index:
                index[key] = len(index)
            return index[key]

        src, sink = node(("s",)), node(("t",))
        edges: list[tuple[int, int, float]] = []
        for w_i, (acct_i, _, _, _, closed, first) in enumerate(windows):
            if not (closed or count_open):
                continue
            acct = fleet[acct_i]
            cap = acct.weekly_cap * (1.0 - acct.initial_weekly if first else 1.0)
            if count_open:
                cap += max(max_cost.values(), default=0.0)  # one admitted request may overshoot
            edges.append((node(("w", w_i)), sink, cap))
            initial = dict(acct.initial_models)
            for model, mcap in acct.model_caps:
                used = initial.get(model, 0.0) if first else 0.0
                room = mcap * (1.0 - used) + max_cost.get(model, 0.0)
                edges.append((node(("m", w_i, model)), node(("w", w_i)), room))
        for (k, model), amount in groups.items():
            g = node(("g", k, model))
            edges.append((src, g, amount))
            for w_i, (acct_i, opened, _, deadline, closed, _) in enumerate(windows):
                if not (closed or count_open) or opened >= deadline:
                    continue  # not counted, or it opens only after the account broke
                if k >= len(deadlines) or deadline < deadlines[k]:
                    continue  # released too late for this window
                has_bucket = any(m == model for m, _ in fleet[acct_i].model_caps)
                target = ("m", w_i, model) if has_bucket else ("w", w_i)
                edges.append((g, node(target), float("inf")))
        graph = _Dinic(len(index))
        for u, v, c in edges:
            graph.add(u, v, c)
        return graph.maxflow(src, sink)

    closed_cap = closed_used = 0.0
    for acct_i, _, _, _, closed, first in windows:
        if closed:
            acct = fleet[acct_i]
            closed_cap += acct.weekly_cap
            if first:
                closed_used += acct.weekly_cap * acct.initial_weekly
    capture = (closed_used + solve(False)) / closed_cap if closed_cap else 0.0
    served = solve(True) / demand if demand else 1.0
    return Bound(capture=min(1.0, capture), served=min(1.0, served))
