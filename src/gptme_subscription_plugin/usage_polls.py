"""Usage polls: each slot's usage source asked within the hook budget, and what answers mean.

The manager holds one `UsagePoller`. It builds the fetch for each slot (the usage endpoint with
the slot's own access token, or the user's usage script), runs the polls in parallel through
the shared usage cache, and notes what each answer means beyond the cache: an error is logged,
a 401 marks the credential rejected, a success lifts a rejection. The rotation state it reads
and edits for that stays the manager's, reached through the three callables it is given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from filelock import Timeout

from . import bounds
from .config import Config
from .credentials import Credential, CredentialError, load_credential
from .outcomes import ProbeResult
from .policy import format_duration
from .rotation_state import Rejection
from .slots import LiveKind, LiveState, SlotStore
from .state import EventLog
from .usage.cache import PollResult, UsageCache
from .usage.oauth import SourceBusy, UsageFetchError, fetch_oauth_usage
from .usage.snapshot import UsageSnapshot

# Inside a hook, no poll starts with less of the budget left than this.
MIN_POLL_S = 0.3
# A usage script is not started with less time left than this (after waiting its turn).
MIN_SCRIPT_S = 1.0


class UsagePoller:
    """Polls the slots' usage sources for the manager (`check_usage`, `probe`).

    `rejections` reads the rotation state's credential rejections now; `reject(slot, source)`
    records one (a 401); `accept(slot, rejection, now)` lifts one after a successful poll
    once the probe cooldown has passed.
    """

    def __init__(
        self,
        config: Config,
        usage: UsageCache,
        slots: SlotStore,
        events: EventLog,
        clock: Callable[[], float],
        *,
        rejections: Callable[[], dict[str, Rejection]],
        reject: Callable[[str, str], None],
        accept: Callable[[str, Rejection, float], None],
    ):
        self.config = config
        self.usage = usage
        self.slots = slots
        self.events = events
        self.clock = clock
        self._rejections = rejections
        self._reject = reject
        self._accept = accept

    def _fetcher(
        self,
        name: str,
        deadline: float | None = None,
        *,
        now: float | None = None,
        no_cache: bool = False,
    ) -> Callable[[], UsageSnapshot] | None:
        """How to poll one slot now, or None when its credential cannot be used to ask.

        Whatever the fetch starts ends by `deadline` (a monotonic time; None: no hook budget):
        the request's whole transfer, or the script with its process group. `now` is the
        observation's one clock read: relative resets ("in 3600 s") of every slot polled
        together count from the same moment. `no_cache` asks a usage script for a fresh
        reading (`--no-cache`).
        """
        path = self.credential_path(name)
        now = self.clock() if now is None else now
        try:
            cred = load_credential(path)
        except CredentialError:
            return None
        if self.config.usage_script is not None:
            return self._script_fetcher(name, path, cred, deadline, now, no_cache)
        if cred.expired(now):
            return None  # never refresh a token to look at usage: Claude Code owns refreshing
        token = cred.access_token
        timeout = bounds.time_left(deadline, self.config.poll_timeout)
        return lambda: fetch_oauth_usage(self.config.api_base, token, name, timeout, now)

    def credential_path(self, name: str) -> Path:
        """Where slot `name`'s credential is read: its home (`SlotFiles.slot_path`), the slot
        file or, for a slot in its profile, the profile's own credential."""
        return self.slots.slot_path(name)

    def _script_fetcher(
        self,
        name: str,
        path: Path,
        cred: Credential,
        deadline: float | None,
        now: float,
        no_cache: bool,
    ) -> Callable[[], UsageSnapshot] | None:
        """The usage script about one slot, in the user's own environment (usage/script.py):
        the live slot in Claude Code's own config dir, any other in a throwaway one."""
        from .usage import script as usage_script

        live_slot = self.slots.active_slot()
        if live_slot is not None and self.slots.slot_path(live_slot) != path:
            live_slot = None  # the slot asked about is not the live one
        live = live_slot is not None
        if not live and cred.expired(now + usage_script.REFRESH_MARGIN_S):
            return None  # its `claude` would refresh the slot's token where the slot loses it
        context = usage_script.ScriptContext(
            home=self.config.home,
            claude_dir=self.config.claude_dir,
            global_config=self.slots.global_config,
            live=live,
        )
        script = self.config.usage_script
        assert script is not None
        timeout = bounds.time_left(deadline, usage_script.time_limit(self.config.poll_timeout))

        def fetch() -> UsageSnapshot:
            # One script run at a time across every process: a script such as 0.1.0's
            # scrapes a `claude` TUI under a global lock of its own, and runs that overlap
            # fail or pile up.
            started = time.monotonic()
            lock = self.usage.source_lock()
            try:
                lock.acquire(timeout=max(0.0, timeout - MIN_SCRIPT_S))
            except Timeout:
                raise SourceBusy from None
            try:
                left = timeout - (time.monotonic() - started)
                if left < MIN_SCRIPT_S:
                    raise SourceBusy
                snapshot = usage_script.run_usage_script(
                    script, name, path, left, now, no_cache, context=context
                )
                if live_slot is not None and _flipped_away(live_slot, self.slots.live_state()):
                    raise UsageFetchError("script", "the live slot changed while the script ran")
                return snapshot
            finally:
                lock.release()

        return fetch

    def check_usage(
        self, names: Iterable[str], *, refresh: bool = True, force: bool = False
    ) -> dict[str, UsageSnapshot | None]:
        """Usage per slot: cached, refreshed within the shared poll budget when asked.

        `force` asks past the poll interval and error backoff (never a rate-limit wait), and a
        usage script past its own cache (`--no-cache`).

        Slots are polled in parallel, so a refresh takes one `poll_timeout` at worst, not one
        per slot. Inside a hook every poll ends by the hook budget's work deadline, and the
        polls are waited for only until then: a slot whose poll has not finished reads from
        the cache, and the poll itself ends at that deadline, so nothing outlives the hook.
        """
        now = self.clock()
        wanted = list(names)
        deadline = bounds.work_deadline()
        if refresh and deadline is not None and bounds.time_left(deadline, 1.0) < MIN_POLL_S:
            refresh = False  # too little of the budget left to ask anyone
        polls: dict[str, PollResult] = {}
        if refresh:
            polls, _ = self._poll_and_note(wanted, now, force, deadline, bounds.join_deadline())
        result: dict[str, UsageSnapshot | None] = {}
        for name in wanted:
            poll = polls.get(name)
            snapshot = poll.snapshot if poll is not None else None
            result[name] = snapshot if snapshot is not None else self.usage.get(name, now)
        return result

    def _note_poll(
        self, name: str, poll: PollResult, now: float, rejected: dict[str, Rejection]
    ) -> None:
        """What a poll's answer means beyond the cache, for every poll (hook, CLI or probe):
        an error is logged, a 401 marks the credential rejected, a success lifts a rejection
        the probe cooldown after it was made. `rejected`: the rotation state's rejections."""
        if poll.error_kind is not None:
            self.events.append(
                "usage-error", now, slot=name, error=poll.error_kind, reason=poll.reason
            )
            if poll.error_kind == "rejected":
                self._reject(name, "the usage endpoint answered 401")
        elif poll.polled and name in rejected:
            self._accept(name, rejected[name], now)

    def probe(self, names: Iterable[str]) -> dict[str, ProbeResult]:
        """Ask every slot's usage source once, now (`check-auth --probe`): past the poll
        interval and error backoff, never past a rate-limit wait; a usage script with
        `--no-cache`. One request per slot, no more. Its readings go to the usage cache and
        its verdicts to the rotation state, as any poll's do, so a later evaluate sees both
        without asking again."""
        now = self.clock()
        wanted = list(names)
        polls, asked = self._poll_and_note(wanted, now, True, None, None)
        source = "usage script" if self.config.usage_script is not None else "usage endpoint"
        return {
            name: self._probe_result(name, source, name in asked, polls.get(name), now)
            for name in wanted
        }

    def _poll_and_note(
        self,
        names: Sequence[str],
        now: float,
        force: bool,
        deadline: float | None,
        join_deadline: float | None,
    ) -> tuple[dict[str, PollResult], set[str]]:
        """Poll `names` (those whose credential can be used to ask) in parallel and note
        what each answer means (`_note_poll`); the polls that ended by `join_deadline`, and
        which slots were asked. `force` is `check_usage`'s; `deadline` bounds each fetch."""
        fetchers = {n: self._fetcher(n, deadline, now=now, no_cache=force) for n in names}
        to_poll = {n: f for n, f in fetchers.items() if f is not None}
        polls = self._poll_all(to_poll, now, force, join_deadline)
        rejected = self._rejections() if polls else {}
        for name in names:
            poll = polls.get(name)
            if poll is not None:
                self._note_poll(name, poll, now, rejected)
        return polls, set(to_poll)

    def _probe_result(
        self, name: str, source: str, asked: bool, poll: PollResult | None, now: float
    ) -> ProbeResult:
        if not asked:
            why = (
                "the access token expires within minutes and the slot is not live: a `claude` "
                "the script starts would refresh it outside the slot"
                if self.config.usage_script is not None
                else "the access token expired; Claude Code refreshes it on use"
            )
            return ProbeResult(name, "skipped", source, why)
        if poll is None:
            return ProbeResult(name, "FAIL", source, f"the {source} gave no answer")
        if poll.error_kind == "rejected":
            text = f"{_error_text(poll)}; marked rejected until a new login"
            return ProbeResult(name, "FAIL", source, text, needs_login=True)
        if poll.error_kind == "auth":
            return ProbeResult(name, "FAIL", source, _error_text(poll), needs_login=True)
        if poll.error_kind is not None:
            return ProbeResult(name, "FAIL", source, _error_text(poll))
        if poll.polled:
            answered = (
                "the usage script answered"
                if self.config.usage_script is not None
                else "the usage endpoint accepted the token"
            )
            return ProbeResult(name, "ok", source, answered)
        if poll.reason == "fresh":  # another process asked at this very moment
            return ProbeResult(name, "ok", source, f"the {source} answered another process now")
        if poll.reason == "backoff":  # only a 429's Retry-After holds a probe back
            until = self.usage.status(name, now).get("rate_limited_until")
            wait = f" for {format_duration(until - now)}" if isinstance(until, float) else ""
            return ProbeResult(name, "FAIL", source, f"not asked: rate limited{wait}")
        if poll.reason == "in-flight elsewhere":
            return ProbeResult(name, "FAIL", source, "not asked: another process is asking now")
        return ProbeResult(name, "FAIL", source, f"not asked: {poll.reason}")

    def _poll_all(
        self,
        fetchers: dict[str, Callable[[], UsageSnapshot]],
        now: float,
        force: bool,
        deadline: float | None,
    ) -> dict[str, PollResult]:
        """Poll every slot in its own daemon thread; wait for them until `deadline` at most
        (a monotonic time; None: until they end, each within its fetch's own bound).

        Daemon threads, not a pool: an executor joins its threads at exit, so one stuck
        poll would hold the hook past its budget.
        """
        polls: dict[str, PollResult] = {}

        def run(name: str, fetch: Callable[[], UsageSnapshot]) -> None:
            polls[name] = self.usage.poll(name, fetch, now, force=force)

        threads = [
            threading.Thread(target=run, args=item, name=f"poll-{item[0]}", daemon=True)
            for item in fetchers.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return dict(polls)


def _flipped_away(slot: str, live: LiveState) -> bool:
    """Does the live link now name another slot than `slot`? A link replaced by a file is
    Claude Code refreshing the live token (the script's own `claude` may do it): not a flip."""
    return live.kind is LiveKind.LINK and live.slot != slot


def _error_text(poll: PollResult) -> str:
    """A failed poll's message, without the cache's "error: " prefix."""
    return poll.reason.removeprefix("error: ")
