"""Alerts: `notify_command` run with one JSON event on stdin when something needs a person.

Kinds: `pool-red` (no slot can serve), `credential-rejected` (Anthropic refused a login),
`needs-login` (a slot's credential cannot be used or refreshed), `refresh-unsaved` (a refreshed
credential in the live file could not be saved into its slot), `pending-stale` (a switch has
waited longer than `pending_alert_after`).

A hook must never wait on it: the command runs under a small detached watchdog (this module
run as a program, in a session of its own) that kills it after `notify_timeout`, and the hook
only starts the watchdog. At most one alert per kind per `notify_interval`: the check and the
record are one locked update of the `alerts` state document, so concurrent hooks send one.
Each alert, sent or dropped, is an `alert` event. The event holds fingerprints, never a token;
any text in it was redacted and capped.

Run as `python -m gptme_subscription_plugin.notify`, it is the watchdog: it reads
`{"argv": [...], "timeout": s, "event": {...}}` on stdin.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from .detached import start_detached
from .redact import clean_external

if TYPE_CHECKING:
    from .manager import SubscriptionManager
    from .policy_types import PolicyView

ALERTS_DOC = "alerts"


def alert(m: SubscriptionManager, kind: str, message: str, **fields: Any) -> bool:
    """Send alert `kind` unless one went out within `notify_interval`; True if sent. Never
    raises: an alert that cannot go out must not break the hook that noticed the problem."""
    argv = m.config.notify_argv
    if not argv:
        return False
    now = m.clock()
    try:
        due = _claim(m, kind, now)
    except Exception:
        return False
    text = clean_external(message, 300)
    if not due:
        m.events.append("alert", now, alert=kind, sent=False, reason="rate-limited")
        return False
    event = {"kind": kind, "ts": now, "message": text, **_clean(fields)}
    try:
        _spawn_watchdog(argv, m.config.notify_timeout, event)
    except OSError as exc:
        m.events.append("alert", now, alert=kind, sent=False, reason=clean_external(str(exc)))
        return False
    m.events.append("alert", now, alert=kind, sent=True, message=text, slot=fields.get("slot"))
    return True


def check_boundary(m: SubscriptionManager, view: PolicyView, now: float) -> None:
    """At a turn boundary, with the policy's view at hand: the pool spent, a slot that needs
    a login, a switch pending too long. Costs nothing when no `notify_command` is set."""
    if not m.config.notify_argv:
        return
    from .render import capacity

    verdict = capacity(view, m.config.thresholds, now)
    if verdict.verdict == "red":
        alert(m, "pool-red", f"no slot can serve: {verdict.reason}", slots=len(view.slots))
    for slot in view.slots:
        # a refused login has its own alert (credential-rejected); this is a file that cannot
        # be used or refreshed at all: missing, malformed, no refresh token, two homes
        if not slot.usable and slot.health not in ("valid", "stale", "rejected"):
            alert(
                m,
                "needs-login",
                f"{slot.name}: credential {slot.health}; run gptme-subscription reauth {slot.name}",
                slot=slot.name,
            )
            break
    pending = m.rotation().pending
    waited = now - pending.since if pending is not None and pending.since is not None else 0.0
    if pending is not None and waited > m.config.pending_alert_after:
        alert(
            m,
            "pending-stale",
            f"the switch to {pending.slot} has waited {round(waited / 60)} min for every "
            "session to be idle",
            slot=pending.slot,
        )


def _claim(m: SubscriptionManager, kind: str, now: float) -> bool:
    """Record this alert as sent unless one of its kind went out within the interval."""
    interval = m.config.notify_interval
    claimed = False

    def update(doc: dict[str, Any]) -> None:
        nonlocal claimed
        last = doc.get(kind)
        if isinstance(last, (int, float)) and 0 <= now - last < interval:
            return
        doc[kind] = now
        claimed = True

    m.state.update(ALERTS_DOC, update)
    return claimed


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        key: clean_external(value, 200) if isinstance(value, str) else value
        for key, value in fields.items()
        if value is None or isinstance(value, (str, int, float, bool, list))
    }


def _spawn_watchdog(argv: list[str], timeout: float, event: dict[str, Any]) -> None:
    """Start the watchdog and hand it the job; do not wait for it."""
    job = json.dumps({"argv": argv, "timeout": timeout, "event": event}).encode()
    start_detached(["gptme_subscription_plugin.notify"], job)


def run_watchdog(job: dict[str, Any]) -> int:
    """Run the command with the event on stdin; kill its whole group after the timeout."""
    import signal
    import subprocess

    argv, timeout, event = job["argv"], float(job["timeout"]), job["event"]
    try:
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        return 127
    try:
        proc.communicate(json.dumps(event).encode() + b"\n", timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return 124
    return proc.returncode


if __name__ == "__main__":
    sys.exit(run_watchdog(json.loads(sys.stdin.buffer.read(1 << 20))))
