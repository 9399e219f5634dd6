"""The dashboard's background thread: fresh usage, new transcript lines, desktop notifications.

It has a manager of its own (the request handlers share another under a lock), so a usage poll
that waits on the network never holds up a page. Polls go through the shared poll budget like
every hook's, so an open dashboard costs the usage endpoint nothing extra.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from typing import TYPE_CHECKING, Any

from ..accounting.ledger import UsageLedger
from ..redact import clean_external

if TYPE_CHECKING:
    from ..manager import SubscriptionManager

LEDGER_EVERY = 5.0
NOTIFY_KINDS = frozenset({"credential-rejected", "alert", "refusal"})
NOTIFY_EVERY = 600.0  # per kind: one desktop notification, then quiet for this long


class Feeder:
    def __init__(self, m: SubscriptionManager) -> None:
        from ..manager import SubscriptionManager

        self.m = SubscriptionManager(m.config)
        self.ledger = _open_ledger(m)
        self._reader = _open_ledger(m)  # the thread's own connection
        self._note: str | None = (
            "reading transcripts…"
            if self.ledger is not None
            else ("usage figures unavailable: the usage ledger could not be opened")
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._notify_send: str | None = None
        self._notified: dict[str, float] = {}
        self._seen_events = 0.0

    def note(self) -> str | None:
        return self._note

    def enable_notifications(self) -> str:
        self._notify_send = shutil.which("notify-send")
        self._seen_events = self.m.clock()
        if self._notify_send is None:
            return "notifications: notify-send not found on PATH; none will be shown"
        return "notifications: on (notify-send)"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dashboard-feeder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        next_poll = 0.0
        while not self._stop.is_set():
            now = self.m.clock()
            if now >= next_poll:
                self._guarded(lambda: self.m.check_usage(refresh=True))
                next_poll = now + self.m.config.poll_interval
            if self._reader is not None:
                self._guarded(self._read_transcripts)
            if self._notify_send is not None:
                self._guarded(self._notify)
            self._stop.wait(LEDGER_EVERY)

    def _read_transcripts(self) -> None:
        assert self._reader is not None
        self._reader.update()
        self._note = None

    def _notify(self) -> None:
        assert self._notify_send is not None
        for event in self.m.events.tail(20, kinds=set(NOTIFY_KINDS)):
            ts = event.get("ts")
            if not isinstance(ts, (int, float)) or ts <= self._seen_events:
                continue
            self._seen_events = ts
            kind = str(event.get("kind"))
            if ts - self._notified.get(kind, float("-inf")) < NOTIFY_EVERY:
                continue
            self._notified[kind] = ts
            text = clean_external(
                " ".join(f"{k}={v}" for k, v in event.items() if k not in ("ts", "kind")), 200
            )
            subprocess.Popen(  # argv, no shell; detached so a slow desktop never stalls us
                [self._notify_send, f"gptme-subscription: {kind}", text],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _guarded(self, step: Any) -> None:
        try:
            step()
        except Exception as exc:  # the page shows the reason; the thread goes on
            self._note = f"background update failed: {clean_external(str(exc), 160)}"


def _open_ledger(m: SubscriptionManager) -> UsageLedger | None:
    """A connection of its own; None (the page says so) when the ledger cannot be opened."""
    try:
        return UsageLedger.open(m.config)
    except Exception:
        return None
