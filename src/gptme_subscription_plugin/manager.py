"""SubscriptionManager: observe -> decide -> apply at a safe boundary.

The file-backed core: it reads the slot files, the usage cache and rotation.json into the
policy's view, and carries out switches. When to switch at a turn boundary is decided by the
boundary controller (boundary.py, run on these files by boundary_runner.py); the CLI and the
gptme tool call `switch_to` directly. `switch_to` checks the turn registry so a flip never
lands while another session is mid-turn (unless a person forces it), heals drift first, and
every decision, switch, pending switch, heal and refusal goes to the events log.
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from . import fsutil
from .config import Config
from .identity import IdentityResolver
from .notify import alert
from .outcomes import (
    ProbeResult,
    SlotReport,
    SwitchOutcome,
    credential_key,
    first_outcome,
    standing_rejection,
)
from .policy import Decision, DefaultPolicy, Policy, PolicyView
from .rotation_state import Rejection, RotationState
from .slots import HealResult, SlotError, SlotStore, global_config_for
from .state import EventLog, StateStore
from .status_snapshot import StatusSnapshot, slot_reports, status_notes, take_snapshot
from .turns import TurnRegistry
from .usage.cache import UsageCache
from .usage.oauth import UsageFetchError
from .usage.snapshot import UsageSnapshot
from .usage_polls import UsagePoller

ROTATION_DOC = "rotation"
_T = TypeVar("_T")


class SubscriptionManager:
    """The rotation core behind every surface."""

    def __init__(
        self,
        config: Config,
        *,
        policy: Policy | None = None,
        clock: Callable[[], float] = time.time,
    ):
        fsutil.check_private(config.claude_dir, "claude dir")  # before anything reads or writes it
        self.config = config
        self.clock = clock
        self.policy: Policy = policy or DefaultPolicy(config.thresholds)
        self.state = StateStore(config.state_dir)
        self.events = EventLog(config.state_dir)
        self.turns = TurnRegistry(config.state_dir)
        self.usage = UsageCache(
            config.state_dir,
            config.poll_interval,
            max_backoff=config.usage_max_backoff,
            lock_timeout=config.usage_lock_wait,
        )
        self.identities = IdentityResolver(
            self.state, config.api_base, config.poll_timeout, clock=clock
        )
        self.slots = SlotStore(
            config.claude_dir,
            self.state,
            global_config_for(config.claude_dir, config.home),
            backup_keep=config.backup_keep,
            lock_wait=config.lock_wait,
            clock=clock,
            resolver=self.identities,
            profiles_dir=config.profiles_path,
        )
        self.poller = UsagePoller(
            config,
            self.usage,
            self.slots,
            self.events,
            clock,
            rejections=lambda: self.rotation().rejected,
            reject=self.record_rejection,
            accept=self._clear_rejection_after_success,
        )
        self.repair()

    def repair(self) -> None:
        """What a crashed run may have left: temp files of dead writers, our dead locks."""
        self.slots.repair()
        state = self.config.state_dir
        fsutil.sweep_dead_temp_files(state)
        for name in ("usage", "sessions", "warned"):
            fsutil.check_private(state / name, "directory", follow=False)  # never sweep a link
            fsutil.sweep_dead_temp_files(state / name)
        # a warning marker outlives its session only when the session died without SessionEnd
        fsutil.sweep_old_files(state / "warned", self.config.session_ttl, self.clock())

    # ------------------------------------------------------------ observing

    def slot_names(self) -> list[str]:
        """Configured slots, else every slot file found."""
        return list(self.config.slots) or self.slots.list_slots()

    def get_active_subscription(self) -> str | None:
        return self.slots.active_slot()

    def rotation(self) -> RotationState:
        """rotation.json as it is now (read without the lock; its well-formed fields)."""
        return RotationState.load(self.state.read(ROTATION_DOC))

    def rotation_state(self) -> dict[str, Any]:
        """rotation.json as a plain document: `rotation()` dumped."""
        return self.rotation().dump()

    def pending(self) -> dict[str, Any] | None:
        pending = self.rotation().pending
        return pending.dump() if pending is not None else None

    def _update_rotation(self, change: Callable[[RotationState], _T]) -> _T:
        """Load rotation.json, let `change` edit the typed state, write it back, all under the
        document's lock (so concurrent updates never lose each other's); what `change` gave."""
        results: list[_T] = []

        def update(doc: dict[str, Any]) -> dict[str, Any]:
            state = RotationState.load(doc)
            results.append(change(state))
            return state.dump()

        self.state.update(ROTATION_DOC, update)
        return results[0]

    def busy_sessions(self, *, exclude: str | None = None, everywhere: bool = False) -> list[str]:
        """Who is mid-turn on the live link right now (other sessions, plus alive agent lock
        files): what a flip waits for. A session in a profile never uses the link, so it
        counts only with `everywhere`."""
        now = self.clock()
        ttl = self.config.session_ttl
        turns = self.turns.busy_sessions(now, ttl, exclude=exclude, everywhere=everywhere)
        return [t.session_id for t in turns] + _alive_lock_holders(self.config.lock_glob)

    def sessions_by_slot(self) -> dict[str, int]:
        """Live sessions per profile slot (the launcher's load), from the turn registry."""
        return self.turns.sessions_by_slot(self.clock(), self.config.session_ttl)

    def check_usage(
        self, *, refresh: bool = True, force: bool = False, names: Iterable[str] | None = None
    ) -> dict[str, UsageSnapshot | None]:
        """Usage per slot: cached, refreshed within the shared poll budget when asked.

        `force` asks past the poll interval and error backoff (never a rate-limit wait), and a
        usage script past its own cache (`--no-cache`). The polls: usage_polls.py.
        """
        wanted = self.slot_names() if names is None else names
        return self.poller.check_usage(wanted, refresh=refresh, force=force)

    def probe(self, *, names: Iterable[str] | None = None) -> dict[str, ProbeResult]:
        """Ask every slot's usage source once, now (`check-auth --probe`; usage_polls.py)."""
        return self.poller.probe(self.slot_names() if names is None else names)

    def view(
        self,
        usage: dict[str, UsageSnapshot | None] | None = None,
        *,
        model: str | None = None,
        home: str | None = "link",
        names: Iterable[str] | None = None,
    ) -> PolicyView:
        """The policy's whole input, built from files and state (no network): the slots
        (`names`, else every slot) whose home is `home` ("link": what the live link may
        serve; None: every slot)."""
        rot = self.rotation()
        usage = usage if usage is not None else self.check_usage(refresh=False)
        views = []
        for name in self.slot_names() if names is None else names:
            where = self.slots.home_of(name) or "link"
            if home is not None and where != home:
                continue
            info = self.slots.check(name)
            views.append(
                rot.slot_view(
                    name,
                    usable=info.health.usable and where != "ambiguous",
                    health="two homes" if where == "ambiguous" else info.health.value,
                    rejected=standing_rejection(rot, name, info) is not None,
                    usage=usage.get(name),
                    capacity=info.capacity,
                    home=where,
                )
            )
        return rot.policy_view(
            self.get_active_subscription(),
            tuple(views),
            model=model,
            preference=tuple(self.config.fallback_order),
        )

    def _clamp_future_times(self) -> None:
        """Times a clock step left in the future last no longer than we would have set them.

        A `last_switch_at` or manual hold written before the clock stepped back by years would
        otherwise freeze rotation that long; each is clamped once, with an event that says so.
        """
        now, hold_for = self.clock(), self.config.manual_hold
        if not self.rotation().clamp_future_times(now, hold_for):  # on a copy: nothing to write
            return
        stepped = self._update_rotation(lambda rot: rot.clamp_future_times(now, hold_for))
        if stepped:
            self.events.append("clamped", now, fields=list(stepped), reason="time in the future")

    def evaluate(
        self, *, refresh: bool = True, model: str | None = None, log: bool = True
    ) -> Decision:
        """Decide what to do now (pure policy over fresh-enough data); never flips.

        Every parameter is keyword-only: a positional call such as 0.1.0's
        `evaluate(usage, active)` is a TypeError here, never read as `(refresh, model)`.
        """
        return self.decide(self.current_view(refresh=refresh, model=model), log=log)

    def current_view(self, *, refresh: bool, model: str | None = None) -> PolicyView:
        """The view a decision is taken on: clock-step clamps applied, the live link noted,
        usage refreshed within the budget when asked (and one identity learnt with it)."""
        self._clamp_future_times()
        self.slots.observe()
        usage = self.check_usage(refresh=refresh)
        if refresh:
            self.slots.learn_identities(limit=1)  # one profile request at most per evaluation
        return self.view(usage, model=model)

    def decide(self, view: PolicyView, *, now: float | None = None, log: bool = True) -> Decision:
        """The policy on a view the caller built or adjusted (`view()` gives the current one);
        logged as a decision like `evaluate`'s. Never polls, never flips."""
        decision = self.policy.decide(view, self.clock() if now is None else now)
        if log:
            self.log_decision(decision)
        return decision

    def log_decision(self, decision: Decision) -> None:
        self.events.append(
            "decision", self.clock(), policy=self.policy.name, **_decision_fields(decision)
        )

    def report(self, *, refresh: bool = False) -> list[SlotReport]:
        """Every slot's report, as `status` shows it (status_snapshot.py)."""
        return slot_reports(self, refresh=refresh)

    def notes(self, reports: Sequence[SlotReport]) -> list[str]:
        """One line per thing `status` should admit (status_snapshot.py)."""
        return status_notes(self, reports)

    def status_snapshot(
        self, *, refresh: bool = False, exclude: str | None = None
    ) -> StatusSnapshot:
        """Everything a status surface shows, read once (status_snapshot.py)."""
        return take_snapshot(self, refresh=refresh, exclude=exclude)

    # ------------------------------------------------------------ acting

    def switch_to(
        self,
        slot: str,
        reason: str = "requested",
        *,
        mode: str = "manual",
        force: bool = False,
        session_id: str | None = None,
    ) -> SwitchOutcome:
        """Flip to `slot` now if no other session is mid-turn (or `force`), else record pending."""
        now = self.clock()
        try:
            info = self.slots.check(slot)
        except SlotError as exc:
            return self._refuse(slot, str(exc))
        if slot not in self.slot_names():
            return self._refuse(slot, f"no slot named {slot}")
        try:
            self.slots.require_link_home(slot, "linked")
        except SlotError as exc:
            return self._refuse(slot, str(exc))
        if not info.health.usable:
            return self._refuse(
                slot,
                f"slot {slot} is {info.health.value} ({info.detail}); "
                f"see `gptme-subscription reauth {slot}`",
            )
        rejected = standing_rejection(self.rotation(), slot, info)
        if rejected is not None and not force:
            return self._refuse(
                slot,
                f"Anthropic refused {slot}'s credential ({rejected.get('source')}); log it in "
                f"again (`gptme-subscription reauth {slot}`) or use --force",
            )
        live = self.get_active_subscription()
        if live == slot and self.slots.detect_drift() is None:
            self._clear_pending(slot)
            return SwitchOutcome("unchanged", slot, f"{slot} is already live", previous=live)
        blockers = tuple(self.busy_sessions(exclude=session_id))
        if blockers and not force:
            return self.defer(slot, reason, mode=mode, blockers=blockers)
        try:
            self.state.ensure_writable()  # a flip we could not record must not happen
            flip = self.slots.flip(slot)
        except Exception as exc:  # lock busy, refused slot, disk error: report, change nothing
            return self._refuse(slot, _one_line(exc))
        self._after_flip(
            flip.slot, flip.previous, mode, reason, now, forced=force and bool(blockers)
        )
        if flip.heal is not None and flip.heal.healed:
            self.events.append(
                "heal", now, detail=flip.heal.detail, owner=flip.heal.owner, method=flip.heal.method
            )
        return SwitchOutcome(
            "switched",
            slot,
            f"switched to {slot}: {reason}",
            previous=flip.previous,
            blockers=blockers,
            heal=flip.heal,
        )

    def apply(self, decision: Decision, *, session_id: str | None = None) -> SwitchOutcome | None:
        """Carry out a decision: flip or leave it pending; None when nothing is to be done."""
        if decision.wants_switch and decision.target is not None:
            return self.switch_to(
                decision.target, decision.reason, mode=decision.mode, session_id=session_id
            )
        return None

    def defer(
        self, slot: str, reason: str, *, mode: str, blockers: tuple[str, ...]
    ) -> SwitchOutcome:
        """Record a switch to `slot` as pending: `blockers` are mid-turn; it lands at the next
        turn boundary where they are not."""
        now = self.clock()
        self._set_pending(slot, reason, mode, now)
        self.events.append(
            "pending", now, slot=slot, mode=mode, reason=reason, blockers=list(blockers)
        )
        return SwitchOutcome(
            "pending",
            slot,
            f"switch to {slot} pending: {len(blockers)} other session(s) mid-turn",
            previous=self.get_active_subscription(),
            blockers=blockers,
        )

    def drop_pending(self, slot: str, mode: str, reason: str) -> None:
        """The pending switch to `slot` will not happen (its target can no longer serve)."""
        self._clear_pending(slot)
        self.events.append("pending-dropped", self.clock(), slot=slot, mode=mode, reason=reason)

    def heal(self) -> HealResult:
        now = self.clock()
        try:
            result = self.slots.heal()
        except Exception as exc:
            self.events.append("refusal", now, action="heal", reason=_one_line(exc))
            alert(
                self,
                "refresh-unsaved",
                f"the live credential could not be saved into its slot: {_one_line(exc)}; "
                "run gptme-subscription doctor",
            )
            raise
        if result.healed or result.actions:
            self.events.append(
                "heal",
                now,
                detail=result.detail,
                owner=result.owner,
                method=result.method,
                kept_aside=result.kept_aside,
            )
        return result

    def heal_if_drifted(self) -> HealResult | None:
        """At a turn boundary: heal drift, else note the healthy live link for a later heal.

        The profile lookup a heal may need happens first, outside Claude Code's lock.
        """
        self.slots.prefetch_identity()
        if self.slots.detect_drift() is None:
            self.slots.observe()
            return None
        return self.heal()

    def record_rate_limit(self, slot: str, until: float, *, model: str | None = None) -> None:
        """A 429 / StopFailure(rate_limit): the slot serves nothing before `until`; with
        `model` (a per-model weekly window ran out), only that model waits."""
        now = self.clock()
        self._update_rotation(lambda rot: rot.mark_limited(slot, until, model))
        extra = {} if model is None else {"model": model}
        self.events.append("rate-limited", now, slot=slot, until=until, **extra)

    def record_refusal(self, slot: str, now: float) -> float:
        """A 429 on `slot`: start its refusal streak unless one is running; returns when it
        started (`policy.rate_limit_marks` reads how long the slot has refused)."""
        return self._update_rotation(lambda rot: rot.start_refusal(slot, now))

    def record_served(self, slot: str) -> None:
        """A turn on `slot` ended with an answer: its refusal streak, if any, is over.
        Read first: most Stop hooks have nothing to clear and should not write."""
        if slot in self.rotation().refusing:
            self._update_rotation(lambda rot: rot.end_refusal(slot))

    def record_rejection(self, slot: str, source: str) -> None:
        """Anthropic refused this slot's credential (a 401, StopFailure
        authentication_failed): it is unusable until its credential changes (a new login
        or refresh) or a usage poll succeeds with it `probe_cooldown` later."""
        now = self.clock()
        key = credential_key(self.slots.check(slot))
        self._update_rotation(lambda rot: rot.reject(slot, now, key, source))
        self.events.append("credential-rejected", now, slot=slot, source=source)
        alert(
            self,
            "credential-rejected",
            f"{slot}: Anthropic refused its login ({source}); run gptme-subscription reauth {slot}",
            slot=slot,
        )

    def _clear_rejection_after_success(self, slot: str, entry: Rejection, now: float) -> None:
        at = entry.at
        if at is None or now - at < self.config.thresholds.probe_cooldown:
            return
        self._update_rotation(lambda rot: rot.rejected.pop(slot, None))
        self.events.append("credential-accepted", now, slot=slot, source="usage endpoint")

    def record_turn(self, session_id: str, phase: str, slot: str | None = None) -> None:
        """The slot serving `session_id` at a turn boundary (`phase` "start" or "end"), in the
        event log: the usage ledger attributes the session's requests by it. `slot`: the
        session's profile slot; None for a session on the live link (the live slot now)."""
        home = "profile" if slot is not None else "link"
        serving = slot if slot is not None else self.get_active_subscription()
        self.events.append(
            "turn", self.clock(), session=session_id, slot=serving, home=home, phase=phase
        )

    def record_usage(self, snapshot: UsageSnapshot) -> None:
        """Feed a free observation (statusline, response headers) into the shared cache."""
        self.usage.record(snapshot)

    # ------------------------------------------------------------ internals

    def _refuse(self, slot: str | None, detail: str) -> SwitchOutcome:
        with contextlib.suppress(OSError):  # the refusal stands even if it cannot be logged
            self.events.append("refusal", self.clock(), action="switch", slot=slot, reason=detail)
        return SwitchOutcome("refused", slot, detail)

    def _set_pending(self, slot: str, reason: str, mode: str, now: float) -> None:
        self._update_rotation(lambda rot: rot.set_pending(slot, reason, mode, now))

    def _clear_pending(self, slot: str | None) -> None:
        if self.rotation().pending is not None:
            self._update_rotation(lambda rot: rot.clear_pending(slot))

    def _after_flip(
        self, slot: str, previous: str | None, mode: str, reason: str, now: float, forced: bool
    ) -> None:
        hold_for = self.config.manual_hold
        self._update_rotation(lambda rot: rot.record_switch(slot, previous, mode, now, hold_for))
        self.events.append(
            "switch", now, slot=slot, previous=previous, mode=mode, reason=reason, forced=forced
        )


def _decision_fields(decision: Decision) -> dict[str, Any]:
    fields = decision.to_dict()
    fields["decision"] = fields.pop("action")
    return fields


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def _alive_lock_holders(pattern: str) -> list[str]:
    """Agent lock files (upstream lock_glob): a live PID inside means that agent is busy."""
    if not pattern:
        return []
    holders = []
    for path in sorted(glob.glob(os.path.expanduser(pattern))):
        try:
            with open(path, encoding="utf-8") as fh:
                pid = int(fh.read(32).split()[0])
        except (OSError, ValueError, IndexError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        holders.append(f"lock:{os.path.basename(path)}")
    return holders


__all__ = [
    "ProbeResult",
    "SlotReport",
    "SubscriptionManager",
    "SwitchOutcome",
    "UsageFetchError",
    "credential_key",
    "first_outcome",
    "standing_rejection",
]
