"""The discrete-event simulator: a fleet, a workload, the hook pack, and any Policy.

Ground truth (what Anthropic counts) lives in `Account` (accounts.py); the policy never sees it.
What the policy sees is built the way production builds it:

- the statusline records the live slot's 5-hour and weekly use after each response of a
  session that runs it (0-100 percentages, parsed by the production parser);
- the usage endpoint is polled at Stop and SessionStart, at most once per `poll_interval`
  (180 s) per slot, only for slots whose access token has not expired (production never
  refreshes a token to look at usage), with production's backoff after failures; answers are
  0-100 with ISO resets, parsed by the production parser;
- both feed one `SlotRecord` per slot, under production's `UsageRules` (usage/cache.py):
  merge, staleness, poll budget and backoff are the cache's own code, in memory.

At every turn boundary the simulator asks production's boundary controller (boundary.py) with
a `Moment` built as `boundary_runner.py` builds it, and carries the `Plan` out in memory the
way the runner does on files: the rotation edits on production's `RotationState`, switches and
deferrals as `manager.switch_to` / `manager.defer` do them. One live credential serves every
session; a request is bound to the account that is live when it starts. A flip while any
session is mid-turn or mid-request is counted as a violation (the controller never orders
one; the count checks it). The run's results are metrics.py's. Profile mode
(profile_mode.py) is a subclass: `_account_for` names each session's own slot and `_retry`
is its supervisor.

Over 500 lines on purpose: the event loop, the hooks, the runner's carry-out and the view
cache all read and write one run's state (sessions, live link, rotation state, usage records),
and split apart they would pass that state through every call on the hot path.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..boundary import (
    BoundaryController,
    Change,
    DropPending,
    EndRefusal,
    MarkLimited,
    Moment,
    Move,
    Plan,
    Reject,
    StartRefusal,
    matters,
    refreshes,
)
from ..credentials import tier_capacity
from ..policy import Policy, PolicyView, SlotView
from ..rotation_state import RotationState
from ..thresholds import Thresholds
from ..usage.cache import SlotRecord, UsageRules, fresh_until
from ..usage.oauth import parse_oauth_usage
from ..usage.snapshot import FIVE_HOUR, SEVEN_DAY, UsageSnapshot
from ..usage.statusline import parse_statusline_rate_limits
from .accounts import (
    ENDPOINT_RETRY_AFTER,
    REFRESH_BUFFER,
    TOKEN_LIFETIME,
    Account,
    endpoint_document,
    endpoint_fractions,
    endpoint_percent,
)
from .fleet import FleetAccount
from .metrics import RunMetrics, RunResult
from .model import HOUR
from .workload import Request, Session, Workload

MAX_TURN_RETRY = 1800.0
SAMPLE_EVERY = 900.0

_TURN, _REQUEST, _TURN_END, _SAMPLE = 0, 1, 2, 3


@dataclass(frozen=True)
class SimOptions:
    """Production settings the hook pack runs with (config defaults)."""

    poll_interval: float = 180.0
    session_ttl: float = 1800.0
    usage_max_backoff: float = 3600.0
    cache_ttl: float = 300.0
    outages: tuple[tuple[float, float], ...] = ()  # the usage endpoint answers 429 in these


class _SessionState:
    __slots__ = (
        "index",
        "session",
        "turn",
        "req",
        "started",
        "in_turn",
        "req_end",
        "cache_acct",
        "last_end",
        "fails",
        "fail_since",
        "next_in_lane",
    )

    def __init__(self, index: int, session: Session):
        self.index = index
        self.session = session
        self.turn = 0
        self.req = 0
        self.started = False
        self.in_turn = False
        self.req_end = -1.0
        self.cache_acct = -1
        self.last_end = -1e18
        self.fails = 0
        self.fail_since: float | None = None
        self.next_in_lane: _SessionState | None = None


class Simulator:
    """One run: `Simulator(workload, fleet, policy).run()` -> RunResult. Deterministic."""

    def __init__(
        self,
        workload: Workload,
        fleet: tuple[FleetAccount, ...],
        policy: Policy,
        options: SimOptions | None = None,
        thresholds: Thresholds | None = None,
        sample: bool = False,
        record: bool = False,
    ):
        self.workload = workload
        self.policy = policy
        self.opt = options or SimOptions()
        # the manager's own thresholds (Config defaults), whatever policy runs
        self.thresholds = thresholds or Thresholds()
        self.sample = sample
        self.record = record
        self.end = workload.end
        self.accounts = [Account(a) for a in fleet]
        self.specs = fleet
        self.names = [a.name for a in fleet]
        self.index = {n: i for i, n in enumerate(self.names)}
        self.cache = [SlotRecord(n) for n in self.names]
        self.usage_rules = UsageRules(self.opt.poll_interval, self.opt.usage_max_backoff)
        self.controller = BoundaryController.for_policy(policy, self.thresholds)
        self.sessions = [_SessionState(i, s) for i, s in enumerate(workload.sessions)]
        # hook-pack state: the live link, rotation.json (the manager's own type) and the
        # turn registry
        self.live: int | None = 0
        self.rotation = RotationState()
        # each account keeps one credential all run long (its refreshes are not modelled), so
        # a rejection stands once made, as the manager's rule says for an unchanged credential
        self._credential = [f"sim:{n}" for n in self.names]
        # the plan size each slot's credential file declares (manager.view: info.capacity)
        self._capacity = [tier_capacity(a.spec.tier.rate_limit_tier) for a in self.accounts]
        # view() builds a slot's part again only when it may have changed
        self._slot_views = [SlotView(name) for name in self.names]
        self._slot_valid_until = [-math.inf] * len(self.names)
        # the production parsers, memoised on what they read; a parse's time is its argument
        # alone, so a memoised one is re-dated to each reading
        self._statusline_parsed: dict[tuple[Any, ...], UsageSnapshot] = {}
        self._endpoint_parsed: dict[tuple[Any, ...], UsageSnapshot] = {}
        self.registry: dict[int, list[Any]] = {}  # session -> [busy, last_seen]
        self.busy: set[int] = set()
        self._heap: list[tuple[float, int, int, int]] = []
        self._seq = 0
        self._obs: list[tuple[float, int, int, tuple[float, float | None, float, float]]] = []
        self.m = RunMetrics()
        self.result = RunResult(self.m)
        self._observe: Callable[..., None] | None = getattr(policy, "observe_switch", None)
        attach = getattr(policy, "attach", None)
        if attach is not None:  # only the hindsight oracle asks for the ground truth
            attach(self)

    # ------------------------------------------------------------ the rotation state by index

    def _by_index(self, by_name: dict[str, Any]) -> dict[int, Any]:
        return {self.index[name]: value for name, value in by_name.items()}

    @property
    def limited(self) -> dict[int, float]:
        """`rotation.limited` keyed by slot index (a copy, for tests and plots)."""
        return self._by_index(self.rotation.limited)

    @property
    def limited_models(self) -> dict[int, dict[str, float]]:
        return self._by_index(self.rotation.limited_models)

    @property
    def refusing(self) -> dict[int, float]:
        return self._by_index(self.rotation.refusing)

    @property
    def left_exhausted(self) -> dict[int, float]:
        return self._by_index(self.rotation.left_exhausted)

    @property
    def rejected(self) -> set[int]:
        """The slots whose credential stands rejected."""
        return {i for i in range(len(self.names)) if self._rejected(i)}

    def _rejected(self, slot: int) -> bool:
        return (
            self.rotation.standing_rejection(self.names[slot], self._credential[slot]) is not None
        )

    def _reject(self, slot: int, now: float, source: str) -> None:
        """manager.record_rejection"""
        self.rotation.reject(self.names[slot], now, self._credential[slot], source)

    # ------------------------------------------------------------ event plumbing

    def _push(self, t: float, kind: int, si: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, si))

    def run(self) -> RunResult:
        lanes: dict[int, list[_SessionState]] = {}
        for s in self.sessions:
            lanes.setdefault(s.session.lane, []).append(s)
        for queue in lanes.values():
            for prev, nxt in zip(queue, queue[1:], strict=False):
                prev.next_in_lane = nxt
            first = queue[0].session.turns[0].at
            if first < self.end:
                self._push(first, _TURN, queue[0].index)
        if self.sample:
            t = self.workload.start
            while t < self.end:
                self._push(t, _SAMPLE, -1)
                t += SAMPLE_EVERY
        # the person set things up just now: every slot's token was good for one poll
        self._refresh(self.workload.start)
        heap = self._heap
        end = self.end
        while heap:
            t, _, kind, si = heapq.heappop(heap)
            if t >= end:
                break
            if kind == _REQUEST:
                self._request(self.sessions[si], t)
            elif kind == _TURN:
                self._turn_start(self.sessions[si], t)
            elif kind == _TURN_END:
                self._turn_end(self.sessions[si], t)
            else:
                self._take_sample(t)
        self._finish()
        return self.result

    # ------------------------------------------------------------ scripted runs

    def at_boundary(self, event: str, sid: str, t: float, error: str | None = None) -> None:
        """Fire one hook by hand (a scripted run instead of `run()`): "session-start",
        "prompt-submit", "stop", "stop-failure" (with `error`) for the session `sid`."""
        s = next(s for s in self.sessions if s.session.sid == sid)
        if event == "session-start":
            self._hook_session_start(s, t)
        elif event == "prompt-submit":
            self._hook_user_prompt_submit(s, t)
        elif event == "stop":
            self._hook_stop(s, t)
        elif event == "stop-failure":
            self._hook_stop_failure(s, t, error or "")
        else:
            raise ValueError(f"no boundary event {event!r}")

    def spend(self, slot: str, t: float, units: float, model: str = "sonnet") -> None:
        """Charge `units` of quota to `slot`'s account at `t`, outside the workload."""
        a = self.accounts[self.index[slot]]
        a.roll(t, self.end)
        a.charge(t, units, units, model)

    def endpoint_answer(self, slot: str, t: float) -> dict[str, Any]:
        """What the usage endpoint would answer for `slot` at `t` (its ground truth)."""
        i = self.index[slot]
        self.accounts[i].roll(t, self.end)
        return endpoint_document(self.accounts[i].spec, endpoint_fractions(self.accounts[i]))

    # ------------------------------------------------------------ sessions

    def _turn_start(self, s: _SessionState, t: float) -> None:
        if not s.started:
            s.started = True
            self._hook_session_start(s, t)
        self._hook_user_prompt_submit(s, t)
        s.in_turn = True
        self._request(s, t)

    def _request(self, s: _SessionState, t: float) -> None:
        req = s.session.turns[s.turn].requests[s.req]
        live = self._account_for(s)
        if live is None:  # nothing linked: Claude Code has no credential
            self._fail(s, t, req, "authentication_failed")
            return
        a = self.accounts[live]
        a.roll(t, self.end)
        if a.broken(t):
            self._fail(s, t, req, "authentication_failed")
            return
        if a.admits(req.model) is not None:
            self._fail(s, t, req, "rate_limit")
            return
        m = self.m
        cost = req.warm
        if not req.natural_cold:
            if t - s.last_end > self.opt.cache_ttl:
                cost = req.cold  # the session waited (a stall or a retry): its cache expired
                m.wait_cache_extra += cost - req.useful
            elif s.cache_acct != live:
                cost = req.cold  # warm on another account: the price of a swap
                m.cache_extra += cost - req.useful
        else:
            cost = req.cold
        a.charge(t, cost, req.useful, req.model)
        m.requests += 1
        m.served += req.useful
        if s.fail_since is not None:
            m.stall_hours += (t - s.fail_since) / HOUR
            s.fail_since = None
        s.fails = 0
        if a.token_exp - REFRESH_BUFFER <= t:
            a.token_exp = t + TOKEN_LIFETIME  # Claude Code refreshes the live token on use
            self._changed(live)
        done = t + req.duration
        if self.record:
            self.result.requests.append((s.session.sid, s.turn, t, done, a.name))
        s.cache_acct = live
        s.last_end = done
        s.req_end = done
        if s.session.statusline:
            self._seq += 1
            heapq.heappush(self._obs, (done, self._seq, live, a.fractions()))
        s.req += 1
        if s.req < len(s.session.turns[s.turn].requests):
            entry = self.registry.get(s.index)
            if entry is not None:
                entry[1] = done  # PreToolUse refreshes the busy entry
            self._push(done + req.tool_after, _REQUEST, s.index)
        else:
            self._push(done, _TURN_END, s.index)

    def _fail(self, s: _SessionState, t: float, req: Request, error: str) -> None:
        m = self.m
        m.refused += 1
        if error == "rate_limit":
            m.rate_limited += 1
        else:
            m.auth_errors += 1
        if self._another_could_serve(t, req, self._account_for(s)):
            m.stalls += 1
        if s.fail_since is None:
            s.fail_since = t
        s.in_turn = False
        self._hook_stop_failure(s, t, error)
        s.fails += 1
        self._retry(s, t, error)

    def _account_for(self, s: _SessionState) -> int | None:
        """The account a request of `s` goes to: the live link's, for every session."""
        return self.live

    def _retry(self, s: _SessionState, t: float, error: str) -> None:
        """After a refused request: Claude Code's own retry, later each time."""
        delay = min(MAX_TURN_RETRY, s.session.retry * 2 ** (s.fails - 1))
        self._push(t + delay, _TURN, s.index)

    def _another_could_serve(self, t: float, req: Request, exclude: int | None) -> bool:
        for i, a in enumerate(self.accounts):
            if i == exclude:
                continue
            a.roll(t, self.end)
            if not a.broken(t) and a.admits(req.model) is None:
                return True
        return False

    def _turn_end(self, s: _SessionState, t: float) -> None:
        s.in_turn = False
        self._hook_stop(s, t)
        s.turn += 1
        s.req = 0
        turns = s.session.turns
        if s.turn < len(turns):
            nxt = turns[s.turn]
            self._push(max(nxt.at, t + nxt.think), _TURN, s.index)
        else:  # SessionEnd: unregister; the lane's next session may start
            self.registry.pop(s.index, None)
            self.busy.discard(s.index)
            nxt_session = s.next_in_lane
            if nxt_session is not None:
                first = nxt_session.session.turns[0].at
                self._push(max(first, t), _TURN, nxt_session.index)

    # ------------------------------------------------------------ the hooks (boundary.py)

    def _hook_session_start(self, s: _SessionState, t: float) -> None:
        self._mark_idle(s.index, t)
        self.controller.on_session_start()  # decides nothing
        if refreshes("session-start"):
            self._refresh(t)  # for the summary: polls within the budget

    def _hook_user_prompt_submit(self, s: _SessionState, t: float) -> None:
        plan = self.controller.on_prompt_submit(self._moment(s.index, t, "prompt-submit"))
        self._carry_out(plan, s.index, t)
        self.registry[s.index] = [True, t]
        self.busy.add(s.index)

    def _hook_stop(self, s: _SessionState, t: float) -> None:
        self._mark_idle(s.index, t)
        plan = self.controller.on_stop(self._moment(s.index, t, "stop"), answered_on_live=True)
        self._carry_out(plan, s.index, t)

    def _hook_stop_failure(self, s: _SessionState, t: float, error: str) -> None:
        self._mark_idle(s.index, t)
        if not matters(error):
            return  # production ignores every other API error
        # the hook reads the session's model from its transcript: known once it had an answer
        model = s.session.turns[s.turn].requests[s.req].model if s.cache_acct >= 0 else None
        moment = self._moment(s.index, t, "stop-failure")
        self._carry_out(self.controller.on_stop_failure(moment, error, model), s.index, t)

    def _mark_idle(self, si: int, t: float) -> None:
        self.registry[si] = [False, t]
        self.busy.discard(si)

    def _blockers(self, si: int | None, now: float) -> tuple[str, ...]:
        """The other sessions mid-turn (a busy entry older than session_ttl has expired)."""
        ttl = self.opt.session_ttl
        return tuple(
            self.sessions[other].session.sid
            for other in sorted(self.busy)
            if other != si and now - self.registry[other][1] <= ttl
        )

    # ------------------------------------------------------------ boundary_runner.py

    def _moment(self, si: int, now: float, event: str) -> Moment:
        """What the runner reads: who else is busy, and the view after the event's refresh
        when the controller looks."""
        blockers = self._blockers(si, now)

        def read_view() -> PolicyView:
            self._flush_observations(now)
            if refreshes(event):
                self._refresh(now)
            return self.view(now)

        return Moment(now, read_view, self.rotation, blockers)

    def _carry_out(self, plan: Plan, si: int, now: float) -> None:
        for change in plan.changes:
            self._change(change, now)
        if plan.decision is not None:
            self.m.decisions += 1
        for move in plan.moves:
            if self._move(move, si, now) == "switched":
                break

    def _change(self, change: Change, now: float) -> None:
        """As the manager's record_* do, on the in-memory rotation state."""
        rot, slot = self.rotation, change.slot
        if isinstance(change, EndRefusal):
            rot.end_refusal(slot)
        elif isinstance(change, StartRefusal):
            rot.start_refusal(slot, change.at)
        elif isinstance(change, MarkLimited):
            rot.mark_limited(slot, change.until, change.model)
        elif isinstance(change, Reject):
            self._reject(self.index[slot], now, change.source)
        elif isinstance(change, DropPending):
            rot.clear_pending(slot)
        if slot in self.index:
            self._changed(self.index[slot])

    def _move(self, move: Move, si: int, now: float) -> str:
        """manager.switch_to, which carries out a switch and a deferral alike: the status of
        the outcome."""
        target = self.index.get(move.slot)
        if target is None or (self.rotation.rejected and self._rejected(target)):
            return "refused"
        if self.live == target:
            self.rotation.clear_pending(move.slot)
            return "unchanged"
        if self._blockers(si, now):  # switch_to looks again
            self.rotation.set_pending(move.slot, move.reason, move.mode, now)
            return "pending"
        self._flip(target, move.mode, now)
        return "switched"

    # ------------------------------------------------------------ the manager's view and polls

    def _flush_observations(self, now: float) -> None:
        obs = self._obs
        while obs and obs[0][0] <= now:
            at, _, slot, (u5, r5, u7, r7) = heapq.heappop(obs)
            p5, p7 = round(u5 * 100.0), round(u7 * 100.0)
            key = (slot, p5, r5, p7, r7)
            parsed = self._statusline_parsed.get(key)
            if parsed is None:
                rate_limits: dict[str, Any] = {SEVEN_DAY: {"used_percentage": p7, "resets_at": r7}}
                if r5 is not None:
                    rate_limits[FIVE_HOUR] = {"used_percentage": p5, "resets_at": r5}
                doc = {"rate_limits": rate_limits}
                parsed = parse_statusline_rate_limits(doc, self.names[slot], at)
                assert parsed is not None  # the weekly window is always there
                self._statusline_parsed[key] = parsed
            self.cache[slot].merge(parsed, at)
            self._changed(slot)

    def _refresh(self, now: float) -> None:
        """check_usage(refresh=True): poll each slot the budget allows and a token permits."""
        rules = self.usage_rules
        for i, cache in enumerate(self.cache):
            a = self.accounts[i]
            if a.token_exp <= now or rules.gate(cache.poll, now) is not None:
                continue
            self.m.polls += 1
            self._changed(i)
            a.roll(now, self.end)
            if a.broken(now):
                rules.fail(cache.poll, now, "auth", "401", None)
                self._reject(i, now, "the usage endpoint answered 401")  # as check_usage does
            elif any(lo <= now < hi for lo, hi in self.opt.outages):
                rules.fail(cache.poll, now, "rate_limited", "429", ENDPOINT_RETRY_AFTER)
            else:
                fractions = endpoint_fractions(a)
                # each window as the document shows it (or finer): equal keys, equal documents
                key = (i, *((k, endpoint_percent(f), r) for k, (f, r) in fractions.items()))
                parsed = self._endpoint_parsed.get(key)
                if parsed is None:
                    doc = endpoint_document(a.spec, fractions)
                    parsed = self._endpoint_parsed[key] = parse_oauth_usage(doc, a.name, now)
                cache.merge(parsed, now)
                cache.poll.succeeded(now)

    def view(self, now: float) -> PolicyView:
        """The policy's whole input, as manager.view builds it (model unknown at Stop).

        A slot's part is built again only when it may differ: after a change to what it is
        made of (every such change calls `_changed`), or once its reading turns stale or its
        token expires. Mostly only the live slot changes between two decisions."""
        built = self._slot_views
        for i, until in enumerate(self._slot_valid_until):
            if now >= until:
                built[i], self._slot_valid_until[i] = self._slot_view(i, now)
        return self._policy_view(tuple(built))

    def _changed(self, slot: int | None = None) -> None:
        """What the view of `slot` (None: of every slot) is made of changed."""
        if slot is None:
            self._slot_valid_until = [-math.inf] * len(self.names)
        else:
            self._slot_valid_until[slot] = -math.inf

    def _slot_view(self, i: int, now: float) -> tuple[SlotView, float]:
        """Slot `i` as the policy sees it, and until when that holds by time alone: a fresh
        reading turns stale past twice the poll interval, a valid token expires."""
        interval = self.opt.poll_interval
        usage = self.usage_rules.view(self.cache[i], now)
        name, rot = self.names[i], self.rotation
        rejected = bool(rot.rejected) and self._rejected(i)
        health = self._health(i, now)
        until = math.inf
        if usage is not None and not usage.stale:
            until = math.nextafter(fresh_until(usage.observed_at, interval), math.inf)
        if health == "valid":
            until = min(until, self.accounts[i].token_exp)
        view = rot.slot_view(
            name,
            usable=True,  # the files look healthy: only Anthropic says otherwise
            health=health,
            rejected=rejected,
            usage=usage,
            capacity=self._capacity[i],
        )
        return view, until

    def _policy_view(self, slots: tuple[SlotView, ...]) -> PolicyView:
        live = None if self.live is None else self.names[self.live]
        return self.rotation.policy_view(live, slots)

    def _health(self, slot: int, now: float) -> str:
        """What check_credential_file would say of the slot file."""
        return "valid" if self.accounts[slot].token_exp > now else "stale"

    def _flip(self, target: int, mode: str, now: float) -> None:
        m = self.m
        for s in self.sessions:
            if s.in_turn:
                m.mid_turn_swaps += 1
            if s.req_end > now:
                m.mid_request_swaps += 1
        m.swaps += 1
        self._changed()
        previous = self.live
        self.live = target
        prev_name = None if previous is None else self.names[previous]
        self.rotation.record_switch(
            self.names[target], prev_name, mode, now, self.thresholds.manual_hold
        )
        self.result.switches.append((now, prev_name, self.names[target], mode))
        if self._observe is not None:
            self._observe(prev_name, self.names[target], mode, now)

    # ------------------------------------------------------------ results

    def _take_sample(self, t: float) -> None:
        values = []
        for a in self.accounts:
            a.roll(t, self.end)
            u5, _, u7, _ = a.fractions()
            values.append((u5, u7))
        live = None if self.live is None else self.names[self.live]
        self.result.samples.append((t, live, tuple(values)))

    def _finish(self) -> None:
        m = self.m
        end = self.end
        useful = cap = 0.0
        for a in self.accounts:
            a.roll(end, end)
            for close, used_useful, used, c7 in a.closed:
                useful += min(used_useful, c7)
                cap += c7
                self.result.windows.append((a.name, close, used_useful / c7, used / c7, c7))
                m.closed_windows += 1
        for s in self.sessions:
            if s.fail_since is not None:
                m.stall_hours += (end - s.fail_since) / HOUR
        demand = self.workload.demand()
        m.capture = useful / cap if cap else 0.0
        m.cache_extra_pct = m.cache_extra / m.served if m.served else 0.0
        m.served = m.served / demand if demand else 1.0
        m.violations = m.mid_turn_swaps + m.mid_request_swaps
        days = (end - self.workload.start) / (24 * HOUR)
        m.swaps_per_day = m.swaps / days if days else 0.0


__all__ = ["RunMetrics", "RunResult", "SimOptions", "Simulator"]
