"""Claude Code's lock protocol, exercised with real directories and real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gptme_subscription_plugin import claude_locks
from gptme_subscription_plugin.claude_locks import (
    ClaudeLockBusy,
    claude_credential_lock,
    legacy_lock_path,
    lock_status,
    owner_record_path,
    primary_lock_path,
)


@pytest.fixture
def claude_dir(tmp_path: Path) -> Path:
    d = tmp_path / "home" / ".claude"
    d.mkdir(parents=True)
    return d


def _hold_in_subprocess(lock_dir: Path, seconds: float) -> subprocess.Popen[bytes]:
    """Another process that takes a lock the way proper-lockfile does and keeps it."""
    code = "import os, sys, time; os.mkdir(sys.argv[1]); print('held', flush=True); "
    code += "time.sleep(float(sys.argv[2])); os.rmdir(sys.argv[1])"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(lock_dir), str(seconds)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"held"
    return proc


def test_paths_follow_claude_code(claude_dir: Path) -> None:
    assert primary_lock_path(claude_dir) == claude_dir / ".oauth_refresh.lock"
    assert legacy_lock_path(claude_dir) == claude_dir.parent / ".claude.lock"
    link = claude_dir.parent / "linked"
    link.symlink_to(claude_dir)
    assert legacy_lock_path(link) == Path(os.path.realpath(claude_dir) + ".lock")


def test_take_and_release_both(claude_dir: Path) -> None:
    primary, legacy = primary_lock_path(claude_dir), legacy_lock_path(claude_dir)
    with claude_credential_lock(claude_dir):
        assert primary.is_dir() and legacy.is_dir()
    assert not primary.exists() and not legacy.exists()


def test_missing_claude_dir_is_created_private(tmp_path: Path) -> None:
    claude_dir = tmp_path / "fresh" / ".claude"
    with claude_credential_lock(claude_dir):
        assert primary_lock_path(claude_dir).is_dir()
    assert claude_dir.stat().st_mode & 0o777 == 0o700


def test_mtime_refreshed_while_held(claude_dir: Path) -> None:
    primary, legacy = primary_lock_path(claude_dir), legacy_lock_path(claude_dir)

    def mtimes() -> tuple[int, int]:
        return primary.stat().st_mtime_ns, legacy.stat().st_mtime_ns

    with claude_credential_lock(claude_dir, refresh_s=0.05):
        before = after = mtimes()
        deadline = time.monotonic() + 10  # a few refreshes, however loaded the machine
        while not (after[0] > before[0] and after[1] > before[1]) and time.monotonic() < deadline:
            time.sleep(0.01)
            after = mtimes()
    assert after[0] > before[0] and after[1] > before[1]
    assert not primary.exists() and not legacy.exists()


def test_default_refresh_is_five_seconds() -> None:
    assert claude_locks.REFRESH_S == 5.0 and claude_locks.STALE_S == 60.0


def test_fresh_primary_held_by_other_process_times_out(claude_dir: Path) -> None:
    primary = primary_lock_path(claude_dir)
    proc = _hold_in_subprocess(primary, 5)
    try:
        started = time.monotonic()
        with pytest.raises(ClaudeLockBusy) as info, claude_credential_lock(claude_dir, wait_s=0.6):
            pytest.fail("must not get the lock")
        elapsed = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
    assert 0.55 <= elapsed < 1.5
    message = str(info.value)
    assert "\n" not in message
    assert str(primary) in message
    assert "held for at least 0." in message and "retry in a minute" in message
    assert "if no claude process is running" in message
    assert not legacy_lock_path(claude_dir).exists()


def test_contended_legacy_releases_primary(claude_dir: Path) -> None:
    legacy = legacy_lock_path(claude_dir)
    proc = _hold_in_subprocess(legacy, 5)
    try:
        with pytest.raises(ClaudeLockBusy) as info, claude_credential_lock(claude_dir, wait_s=0.4):
            pytest.fail("must not get the lock")
        assert not primary_lock_path(claude_dir).exists(), "primary left behind"
        assert legacy.is_dir(), "we must never remove a live holder's lock"
    finally:
        proc.kill()
        proc.wait()
    assert str(legacy) in str(info.value)


def test_wait_then_acquire_when_holder_releases(claude_dir: Path) -> None:
    proc = _hold_in_subprocess(primary_lock_path(claude_dir), 0.4)
    try:
        with claude_credential_lock(claude_dir, wait_s=5):
            assert primary_lock_path(claude_dir).is_dir()
    finally:
        proc.wait()


def test_stale_locks_are_taken_over(claude_dir: Path) -> None:
    primary, legacy = primary_lock_path(claude_dir), legacy_lock_path(claude_dir)
    old = time.time() - 120
    for path in (primary, legacy):
        path.mkdir()
        os.utime(path, (old, old))
    with claude_credential_lock(claude_dir, wait_s=1):
        assert time.time() - primary.stat().st_mtime < 5
        assert time.time() - legacy.stat().st_mtime < 5
    assert not primary.exists() and not legacy.exists()


def test_lock_younger_than_stale_is_never_taken(claude_dir: Path) -> None:
    primary = primary_lock_path(claude_dir)
    primary.mkdir()
    recent = time.time() - 50
    os.utime(primary, (recent, recent))
    with pytest.raises(ClaudeLockBusy), claude_credential_lock(claude_dir, wait_s=0.2):
        pytest.fail("must not get the lock")
    assert primary.is_dir()
    assert abs(primary.stat().st_mtime - recent) < 1


def test_release_on_exception(claude_dir: Path) -> None:
    with pytest.raises(RuntimeError), claude_credential_lock(claude_dir):
        raise RuntimeError("boom")
    assert not primary_lock_path(claude_dir).exists()
    assert not legacy_lock_path(claude_dir).exists()


def test_legacy_unavailable_holds_primary_only(
    claude_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like Claude Code: a legacy lock that cannot be made is gone without."""
    unmakeable = tmp_path / "no-such-parent" / ".claude.lock"
    monkeypatch.setattr(claude_locks, "legacy_lock_path", lambda _d: unmakeable)
    with claude_credential_lock(claude_dir, wait_s=0.5):
        assert primary_lock_path(claude_dir).is_dir()
        assert not unmakeable.exists()
    assert not primary_lock_path(claude_dir).exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_legacy_parent_not_writable(tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    claude_dir = parent / ".claude"
    claude_dir.mkdir(parents=True)
    parent.chmod(0o500)
    try:
        with claude_credential_lock(claude_dir, wait_s=0.5):
            assert primary_lock_path(claude_dir).is_dir()
            assert not legacy_lock_path(claude_dir).exists()
    finally:
        parent.chmod(0o700)


def test_leftover_owner_record_is_removed(claude_dir: Path) -> None:
    record = owner_record_path(claude_dir)
    record.write_text(json.dumps({"pid": 999999, "lockBirthtimeMs": 1}))
    with claude_credential_lock(claude_dir):
        assert not record.exists()


def test_stolen_lock_is_not_removed_on_release(claude_dir: Path) -> None:
    primary = primary_lock_path(claude_dir)
    with claude_credential_lock(claude_dir, refresh_s=60):
        # Someone judged us stale and re-took the lock: it is theirs now.
        primary.rmdir()
        primary.mkdir()
        os.utime(primary, (time.time() + 5, time.time() + 5))
    assert primary.is_dir()


def test_lock_status(claude_dir: Path) -> None:
    now = time.time()
    infos = lock_status(claude_dir, now)
    assert [i.path for i in infos] == [primary_lock_path(claude_dir), legacy_lock_path(claude_dir)]
    assert all(not i.exists and i.age_s is None and not i.stale for i in infos)
    primary, legacy = primary_lock_path(claude_dir), legacy_lock_path(claude_dir)
    primary.mkdir()
    legacy.mkdir()
    os.utime(primary, (now - 10, now - 10))
    os.utime(legacy, (now - 90, now - 90))
    owner_record_path(claude_dir).write_text(json.dumps({"pid": 4242}))
    p, lg = lock_status(claude_dir, now)
    assert p.exists and not p.stale and p.age_s == pytest.approx(10, abs=0.01)
    assert p.owner_pid == 4242
    assert lg.exists and lg.stale and lg.age_s == pytest.approx(90, abs=0.01)


CONTENDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gptme_subscription_plugin.claude_locks import claude_credential_lock

    claude_dir, log, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    for _ in range(rounds):
        with claude_credential_lock(claude_dir, wait_s=15):
            enter = time.time()
            time.sleep(0.15)
            leave = time.time()
        with open(log, "a") as f:
            f.write(f"{enter} {leave}\\n")
    """
)


def test_two_processes_never_hold_at_once(claude_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "intervals.txt"
    procs = [
        subprocess.Popen([sys.executable, "-c", CONTENDER, str(claude_dir), str(log), "4"])
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=30) == 0
    intervals = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    assert len(intervals) == 8
    for (_, first_leave), (second_enter, _) in zip(intervals, intervals[1:], strict=False):
        assert first_leave <= second_enter
    assert not primary_lock_path(claude_dir).exists()
    assert not legacy_lock_path(claude_dir).exists()
