"""`gptme-subscription hook <event>`: read Claude Code's stdin JSON, answer, always exit 0.

The rule "hooks must never hurt the user's session": every failure becomes one line on stderr
and exit 0 (never 2, which would block the prompt or the tool), stdout carries only the JSON
Claude Code documents for the event, and a watchdog alarm bounds the run. PreToolUse takes the
stdlib-only fast path; the other events import the core.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

MAX_STDIN = 4 << 20
DEFAULT_BUDGET_S = 25
EVENT_ALIASES = {
    "SessionStart": "session-start",
    "UserPromptSubmit": "user-prompt-submit",
    "PreToolUse": "pre-tool-use",
    "Stop": "stop",
    "StopFailure": "stop-failure",
    "SessionEnd": "session-end",
}
EVENTS = set(EVENT_ALIASES.values())
# Claude Code does not wait for StopFailure hooks: in `-p` mode it exits right after the
# failed turn and a hook still running is killed (measured on 2.1.330: a `sleep 1` hook never
# finished). So that hook only hands its payload to a detached worker and returns.
DETACHED = {"stop-failure": "stop-failure-worker"}
WORKERS = set(DETACHED.values())


class HookTimeout(Exception):
    pass


def _on_alarm(signum: int, frame: object) -> None:
    raise HookTimeout("hook ran out of its time budget")


def read_stdin_payload() -> dict[str, object]:
    raw: bytes = sys.stdin.buffer.read(MAX_STDIN + 1)
    return parse_payload(raw.decode("utf-8", "replace"))


def parse_payload(raw: str) -> dict[str, object]:
    """Claude Code's stdin JSON object; anything else is rejected (and nothing is done)."""
    if len(raw) > MAX_STDIN:
        raise ValueError("hook input is implausibly large")
    if not raw.strip():
        raise ValueError("no hook input on stdin (Claude Code sends a JSON object)")
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("hook input is not a JSON object")
    return doc


def run(event: str, payload: Mapping[str, object], env: Mapping[str, str]) -> dict | None:
    if event == "pre-tool-use":
        from .fast import pre_tool_use

        return pre_tool_use(payload, env, time.time())
    if event == "session-end":
        from .fast import session_end

        return session_end(payload, env)
    if event in DETACHED:
        detach(DETACHED[event], payload)
        return None
    # This process is ours alone: skip pydantic's plugin discovery, which reads every
    # installed distribution's metadata (~20 ms) before the first model is built.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from .hooks import HANDLERS

    return HANDLERS[event.removesuffix("-worker")](payload, env)


def detach(worker: str, payload: Mapping[str, object]) -> None:
    """Run `hook <worker>` in its own session, fed the payload, without waiting for it."""
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "gptme_subscription_plugin", "hook", worker],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(payload).encode())
    proc.stdin.close()


def main(argv: Sequence[str]) -> int:
    """Entry point; returns 0 whatever happens."""
    event = EVENT_ALIASES.get(argv[0], argv[0]) if argv else ""
    if event not in EVENTS and event not in WORKERS:
        print(
            f"gptme-subscription hook: unknown event {event!r} (expected one of "
            f"{', '.join(sorted(EVENTS))})",
            file=sys.stderr,
        )
        return 0
    # Dispositions changed here are put back on the way out: main() also runs inside other
    # processes (tests, gptme), whose children inherit an ignored SIGTERM and become unkillable.
    saved: dict[int, Any] = {}
    if event in DETACHED:
        # Claude Code signals its hooks when it exits; hold on long enough to hand off
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            saved[sig] = signal.signal(sig, signal.SIG_IGN)
    env = os.environ
    budget = _budget(env)
    if budget > 0 and hasattr(signal, "SIGALRM"):
        saved[signal.SIGALRM] = signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(budget)
    try:
        out = run(event, read_stdin_payload(), env)
        if out:
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()
    except BaseException as exc:  # noqa: BLE001 - a hook must never fail the session
        text = str(exc).strip().splitlines()
        detail = text[0][:300] if text else ""
        print(f"gptme-subscription hook {event}: {type(exc).__name__}: {detail}", file=sys.stderr)
    finally:
        if budget > 0 and hasattr(signal, "SIGALRM"):
            signal.alarm(0)
        for signum, previous in saved.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    return 0


def _budget(env: Mapping[str, str]) -> int:
    try:
        return max(0, int(float(env.get("GPTME_SUBSCRIPTION_HOOK_BUDGET", DEFAULT_BUDGET_S))))
    except ValueError:
        return DEFAULT_BUDGET_S
