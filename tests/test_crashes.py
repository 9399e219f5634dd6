"""SIGKILL at every step of flip, heal, slot add and state writes, then the next run.

`GPTME_SUBSCRIPTION_CRASH_AT=#N` makes the process kill itself at the N-th crash point it
reaches; each command is run with N = 1, 2, ... on a fresh copy of the same starting state
until it completes without reaching N, so every step of it is covered in order.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from gptme_subscription_plugin.credentials import load_credential

from .support.credentials import FAR_FUTURE, credential_bytes, refresh_token, write_oauth_account
from .support.reliability import check_always, check_repaired
from .support.sandbox import Sandbox


def sandbox(root: Path, slots: tuple[str, ...] = (), **extra: str) -> Sandbox:
    """`slots` (the first one live) under `root`, usage unreachable, lock waits of 3 s."""
    return Sandbox(root, slots, expires_at=FAR_FUTURE, poll_timeout=None, lock_wait="3", env=extra)


def build_template(root: Path) -> tuple[Path, Path, Path, set[str]]:
    """Slots a, b, c; a was live and Claude Code has just refreshed it (link -> file)."""
    box = sandbox(root, ("a", "b", "c"))
    write_oauth_account(box.home, "a")
    box.run("identity", "baseline", code=0)  # the hooks have seen a live before
    live = box.claude / ".credentials.json"
    live.unlink()
    live.write_bytes(credential_bytes("a", 2))  # the refreshed pair: the only copy
    live.chmod(0o600)
    (root / "d.json").write_bytes(credential_bytes("d"))
    tokens = {refresh_token("a", 2), refresh_token("b"), refresh_token("c")}
    return box.home, box.claude, box.state, tokens


def cli(root: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return sandbox(root, **extra).run(*args)


COMMANDS = {
    "flip": ("switch", "b", "--force"),
    "heal": ("heal",),
    "slot-add": ("slot", "add", "d", "--from", "{root}/d.json"),
    "state-write": ("identity", "baseline"),
}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crash-template")
    build_template(root)
    return root


@pytest.mark.crash
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_sigkill_at_every_step_loses_nothing_and_the_next_run_repairs(
    template: Path, tmp_path: Path, command: str
) -> None:
    tokens = {refresh_token("a", 2), refresh_token("b"), refresh_token("c")}
    if command == "slot-add":
        tokens.add(refresh_token("d"))
    crashed = 0
    for n in range(1, 80):
        root = tmp_path / f"n{n}"
        shutil.copytree(template, root, symlinks=True)
        args = [a.format(root=root) for a in COMMANDS[command]]
        proc = cli(root, *args, GPTME_SUBSCRIPTION_CRASH_AT=f"#{n}")
        claude, state = root / "home" / ".claude", root / "state"
        if proc.returncode != -9:  # ran past its last crash point: every step is covered
            assert proc.returncode == 0, proc.stderr
            assert cli(root, "heal").returncode == 0
            check_repaired(claude, state, tokens)
            break
        crashed += 1
        # d lives in its source file until the add completes
        tokens_now = tokens - {refresh_token("d")} if command == "slot-add" else tokens
        check_always(claude, state, tokens_now)
        # the next run: a boundary hook (heal) on the same dirs repairs what can be repaired
        started = time.monotonic()
        repair = cli(root, "heal")
        assert repair.returncode == 0, repair.stdout + repair.stderr
        assert time.monotonic() - started < 10  # no waiting out a 60 s stale lock
        check_repaired(claude, state, tokens_now)
        if command == "slot-add":
            retry = cli(root, *args)  # and the interrupted command can simply be run again
            assert retry.returncode in (0, 1), retry.stderr
            assert (
                refresh_token("d")
                in {load_credential(p).refresh_token for p in claude.glob(".credentials.json.d")}
                or "already" in retry.stderr
            )
        shutil.rmtree(root)
    else:
        pytest.fail("the command never completed")
    assert crashed >= 3, f"{command}: only {crashed} crash points reached"
