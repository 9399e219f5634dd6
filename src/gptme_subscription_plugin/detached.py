"""Hand a job to a process of its own and go on: StopFailure's worker and the alert watchdog.

The child gets a session of its own (a signal to the hook's process group does not reach it),
no inherited descriptors, and its input on stdin; nobody waits for it.
"""

from __future__ import annotations

import sys


def start_detached(module_args: list[str], stdin: bytes) -> None:
    """`python -m MODULE ARGS...` in its own session, fed `stdin` (small: the pipe takes it
    without blocking), not waited for."""
    import subprocess  # only when a job is handed off: keeps the hook path light

    proc = subprocess.Popen(
        [sys.executable, "-m", *module_args],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
