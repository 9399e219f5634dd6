"""Deterministic crash injection for the reliability tests.

`GPTME_SUBSCRIPTION_CRASH_AT` names where this process kills itself with SIGKILL:
`flip:linked` (the first time that point is reached), `flip:linked@2` (the second time), or
`#N` (the N-th crash point reached, whatever its name), so a test can walk every step of a
command in order. Unset (always, outside tests), a crash point costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "GPTME_SUBSCRIPTION_CRASH_AT"
_seen: dict[str, int] = {}
_total = 0


def crash_point(name: str) -> None:
    """Die here, now, like a power cut, if the environment asks for it."""
    target = os.environ.get(ENV)
    if not target:
        return
    global _total
    _total += 1
    _seen[name] = _seen.get(name, 0) + 1
    want, _, nth = target.partition("@")
    if target.startswith("#"):
        hit = target[1:].isdigit() and _total == int(target[1:])
    else:
        hit = want == name and _seen[name] == (int(nth) if nth.isdigit() else 1)
    if hit:
        os.kill(os.getpid(), signal.SIGKILL)
