"""Faults: a misbehaving usage endpoint and a hostile disk.

Each fault gets a clear message, nothing else changes, and no hook ever fails the session.
Permission faults run the tool without root's capabilities (setpriv), since root ignores file
modes; full-disk faults use a small tmpfs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from .support.credentials import access_token, credential_bytes
from .support.fake_api import FakeAnthropicServer
from .support.sandbox import Sandbox, tree
from .support.usage import iso

SETPRIV = shutil.which("setpriv")


UNPRIVILEGED = (SETPRIV or "setpriv", "--bounding-set=-all", "--inh-caps=-all")  # root, sans caps


def make_box(root: Path, server: FakeAnthropicServer | None = None) -> Sandbox:
    """Slots a (live), b, c; our CLI waits at most a second on polls and locks."""
    return Sandbox(root, ("a", "b", "c"), server=server, poll_timeout="1", lock_wait="1")


def one_line(text: str) -> bool:
    return text.strip() != "" and text.strip().count("\n") == 0 and "Traceback" not in text


# ---------------------------------------------------------------- the usage endpoint

FAULTS = [
    "timeout",
    "refused",
    "429",
    "429-no-retry-after",
    "500",
    "truncated",
    "garbage",
    "out-of-range",
    "missing-windows",
]


@pytest.mark.parametrize("fault", FAULTS)
def test_usage_endpoint_faults_degrade_cleanly(tmp_path, fake_server, fault):
    box = make_box(tmp_path, fake_server)
    now = time.time()
    for name in ("a", "b", "c"):
        box.set_usage(name, five=10, week=30)
    env: dict[str, str] = {}
    if fault == "refused":
        env["GPTME_SUBSCRIPTION_API_BASE"] = "http://127.0.0.1:9"
    elif fault == "out-of-range":
        fake_server.set_usage(
            access_token("a"),
            {
                "five_hour": {"utilization": 250, "resets_at": iso(now + 3600)},
                "seven_day": {"utilization": -40, "resets_at": iso(now + 86400)},
            },
        )
    elif fault == "missing-windows":
        fake_server.set_usage(
            access_token("a"), {"five_hour": None, "seven_day": None, "limits": []}
        )
    elif fault == "429":
        fake_server.set_fault("429", retry_after=600)
    elif fault == "429-no-retry-after":
        fake_server.set_fault("429")
    else:
        fake_server.set_fault(fault)

    started = time.monotonic()
    for _ in range(3):  # three turns in a row: the poll budget holds
        proc = box.run("hook", "stop", stdin=json.dumps({"session_id": "s"}), **env)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr
        assert proc.stdout.strip() == "" or isinstance(json.loads(proc.stdout), dict)
    assert time.monotonic() - started < 20  # bounded even when every poll hangs
    polls = fake_server.request_count(path="/api/oauth/usage")
    assert polls <= 3  # at most one poll per slot per interval, whatever failed
    status = box.run("status", "--json", **env)
    assert status.returncode == 0
    doc = json.loads(status.stdout)
    slot_a = next(s for s in doc["slots"] if s["name"] == "a")
    if fault == "out-of-range":
        usage = slot_a["usage"]
        assert usage["five_hour"]["utilization"] == 1.0 and usage["seven_day"]["utilization"] == 0
        assert box.live_link() == ".credentials.json.b"  # a 5-hour window read as spent: moved on
        return
    if fault != "missing-windows":
        assert slot_a["poll"]["last_error"]  # the status says what went wrong
        assert slot_a["usage"] is None or slot_a["usage"]["stale"]
    assert box.live_link() == ".credentials.json.a"  # no data is no reason to move


# ---------------------------------------------------------------- the disk

needs_setpriv = pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) not installed")


@needs_setpriv
def test_read_only_state_dir_refuses_the_switch_and_changes_nothing(tmp_path):
    box = make_box(tmp_path)
    assert box.run("status").returncode == 0  # creates the state dir
    box.state.chmod(0o500)
    before = tree(box.claude)
    proc = box.run("switch", "b", prefix=UNPRIVILEGED)
    assert proc.returncode == 1 and one_line(proc.stdout + proc.stderr)
    assert "not writable" in proc.stdout + proc.stderr
    assert tree(box.claude) == before
    hook = box.run("hook", "stop", stdin='{"session_id": "s"}', prefix=UNPRIVILEGED)
    assert hook.returncode == 0 and tree(box.claude) == before
    box.state.chmod(0o700)


@needs_setpriv
def test_permission_denied_on_a_slot(tmp_path):
    box = make_box(tmp_path)
    (box.claude / ".credentials.json.b").chmod(0)
    before = tree(box.claude)
    check = box.run("check-auth", "--json", prefix=UNPRIVILEGED)
    rows = {r["slot"]: r for r in json.loads(check.stdout)["slots"]}
    assert check.returncode == 1 and rows["b"]["health"] == "unreadable"
    assert "Permission denied" in rows["b"]["detail"]
    proc = box.run("switch", "b", prefix=UNPRIVILEGED)
    assert proc.returncode == 1 and "unreadable" in proc.stdout and one_line(proc.stdout)
    assert tree(box.claude) == before


@pytest.mark.parametrize("kind", ["directory", "symlink-loop"])
def test_a_slot_that_is_not_a_file(tmp_path, kind):
    box = make_box(tmp_path)
    slot = box.claude / ".credentials.json.b"
    slot.unlink()
    if kind == "directory":
        slot.mkdir()
    else:
        os.symlink(".credentials.json.b", slot)
    before = tree(box.claude)
    check = json.loads(box.run("check-auth", "--json").stdout)
    row = next(r for r in check["slots"] if r["slot"] == "b")
    assert row["health"] == "unreadable"
    proc = box.run("switch", "b")
    assert proc.returncode == 1 and "unreadable" in proc.stdout and one_line(proc.stdout)
    assert box.run("hook", "stop", stdin='{"session_id": "s"}').returncode == 0
    assert tree(box.claude) == before


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(directory: Path) -> None:
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


def test_full_disk_under_the_state_dir(tmp_path, tiny_tmpfs):
    box = make_box(tmp_path)
    state = tiny_tmpfs / "state"
    assert box.run("status", GPTME_SUBSCRIPTION_STATE_DIR=str(state)).returncode == 0
    fill(tiny_tmpfs)
    before = tree(box.claude)
    proc = box.run("switch", "b", GPTME_SUBSCRIPTION_STATE_DIR=str(state))
    assert proc.returncode == 1 and "No space left" in proc.stdout and one_line(proc.stdout)
    assert tree(box.claude) == before
    hook = box.run(
        "hook", "stop", stdin='{"session_id": "s"}', GPTME_SUBSCRIPTION_STATE_DIR=str(state)
    )
    assert hook.returncode == 0 and tree(box.claude) == before


def test_full_disk_under_the_claude_dir_keeps_the_live_credential(tmp_path, tiny_tmpfs):
    """Healing needs to write a slot; with no space the live file must stay as it is."""
    box = make_box(tmp_path)
    claude = tiny_tmpfs / "claude"
    shutil.copytree(box.claude, claude, symlinks=True)
    env = {"CLAUDE_CONFIG_DIR": str(claude)}
    assert box.run("evaluate", "--no-refresh", **env).returncode == 0  # notes the live slot
    live = claude / ".credentials.json"
    live.unlink()
    live.write_bytes(credential_bytes("a", 2))  # Claude Code refreshed: the only copy
    fill(tiny_tmpfs)
    proc = box.run("heal", **env)
    assert proc.returncode == 1 and "No space left" in proc.stdout + proc.stderr
    assert json.loads(live.read_bytes())["claudeAiOauth"]["refreshToken"].endswith("refresh-2")
    assert not [p for p in claude.iterdir() if ".tmp-gsp-" in p.name]
    (tiny_tmpfs / "filler").unlink()
    assert box.run("heal", **env).returncode == 0 and live.is_symlink()


def test_claude_code_lock_held_forever(tmp_path):
    box = make_box(tmp_path)
    lock = box.claude / ".oauth_refresh.lock"
    lock.mkdir()
    stop = threading.Event()

    def heartbeat() -> None:  # a holder that keeps its lock fresh and never lets go
        while not stop.wait(0.2):
            os.utime(lock)

    t = threading.Thread(target=heartbeat, daemon=True)
    t.start()
    try:
        before = tree(box.claude)
        started = time.monotonic()
        proc = box.run("switch", "b")
        assert time.monotonic() - started < 10  # bounded wait (lock_wait 1 s)
        assert proc.returncode == 1 and "is busy" in proc.stdout and one_line(proc.stdout)
        heal = box.run("heal")
        assert heal.returncode == 3 and "is busy" in heal.stderr
        hook = box.run("hook", "stop", stdin='{"session_id": "s"}')
        assert hook.returncode == 0
        assert tree(box.claude) == before
    finally:
        stop.set()
        t.join()
