"""`gptme-subscription hook <event>`: read Claude Code's stdin JSON, answer, always exit 0.

The rule "hooks must never hurt the user's session": every failure becomes one line on stderr
and exit 0 (never 2, which would block the prompt or the tool), stdout carries only the JSON
Claude Code documents for the event, and the run is bounded by a budget below the timeout
Claude Code gives the hook (`bounds.py`): what the hook starts ends by then, and a watchdog
timer stops the hook itself. PreToolUse takes the stdlib-only fast path; the other events
import the core.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence

from .. import bounds
from ..paths import INSIDE_USAGE_SCRIPT_ENV

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs PreToolUse ~5 ms
if TYPE_CHECKING:
    from typing import Any

MAX_STDIN = 4 << 20
EVENT_ALIASES = {
    "SessionStart": "session-start",
    "UserPromptSubmit": "user-prompt-submit",
    "PreToolUse": "pre-tool-use",
    "Stop": "stop",
    "StopFailure": "stop-failure",
    "SessionEnd": "session-end",
}
EVENTS = set(EVENT_ALIASES.values())
# The `timeout` (seconds) after which Claude Code kills each hook, as `install claude-code`
# (installer.HOOK_SPECS) and the plugin layout (hooks/hooks.json) set it; a hook's budget
# stays `bounds.TIMEOUT_MARGIN_S` below it.
CLAUDE_TIMEOUTS = {
    "session-start": 30,
    "user-prompt-submit": 30,
    "pre-tool-use": 10,
    "stop": 30,
    "stop-failure": 30,
    "session-end": 5,
}
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


def run(event: str, payload: Mapping[str, object], env: Mapping[str, str]) -> dict[str, Any] | None:
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
    from ..detached import start_detached

    start_detached(["gptme_subscription_plugin", "hook", worker], json.dumps(payload).encode())


def main(argv: Sequence[str]) -> int:
    """Entry point; returns 0 whatever happens."""
    if os.environ.get(INSIDE_USAGE_SCRIPT_ENV):
        return 0  # a `claude` our usage script started: its turns are not the user's
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
    budget = event_budget(event, env)
    if hasattr(signal, "setitimer"):
        saved[signal.SIGALRM] = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, budget)
    bounds.start_budget(budget)
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
        if hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0)
        bounds.clear_budget()
        for signum, previous in saved.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    return 0


def event_budget(event: str, env: Mapping[str, str]) -> float:
    """This hook's time budget: `GPTME_SUBSCRIPTION_HOOK_BUDGET` (default 25 s), kept below
    the timeout Claude Code gives the hook; an unusable value is said in one line on stderr."""
    timeout = CLAUDE_TIMEOUTS.get(event.removesuffix("-worker"), min(CLAUDE_TIMEOUTS.values()))
    budget, note = bounds.hook_budget(env, bounds.budget_ceiling(timeout))
    if note:
        print(f"gptme-subscription hook {event}: {note}", file=sys.stderr)
    return budget
