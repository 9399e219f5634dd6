"""The cross-session turn registry: per-session files, expiry, and a stdlib-only import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gptme_subscription_plugin.turns import (
    REFRESH_MIN_S,
    SessionTurn,
    TurnRegistry,
    session_key,
)

T0 = 1_700_000_000.0
TTL = 600.0


@pytest.fixture
def reg(tmp_path: Path) -> TurnRegistry:
    return TurnRegistry(tmp_path / "state")


def _ids(entries: list[SessionTurn]) -> list[str]:
    return [e.session_id for e in entries]


def test_busy_then_idle_then_unregister(reg: TurnRegistry) -> None:
    assert reg.busy_sessions(T0, TTL) == []
    reg.mark_busy("s1", T0, pid=123)
    assert reg.busy_sessions(T0 + 1, TTL) == [SessionTurn("s1", "busy", T0, T0, 123)]
    reg.mark_idle("s1", T0 + 30)
    assert reg.busy_sessions(T0 + 31, TTL) == []
    assert reg.sessions(T0 + 31, TTL) == [SessionTurn("s1", "idle", T0 + 30, T0 + 30, 123)]
    reg.unregister("s1")
    reg.unregister("s1")  # twice is fine
    assert reg.sessions(T0 + 31, TTL) == []


def test_busy_keeps_since_and_refreshes_last_seen(reg: TurnRegistry) -> None:
    reg.mark_busy("s1", T0)
    entry = reg.mark_busy("s1", T0 + 10, pid=7)
    assert (entry.since, entry.last_seen, entry.pid) == (T0, T0 + 10, 7)
    assert reg.get("s1") == entry
    # A new turn after idle starts a new `since`.
    reg.mark_idle("s1", T0 + 20)
    assert reg.mark_busy("s1", T0 + 40).since == T0 + 40


def test_repeated_busy_is_cheap(reg: TurnRegistry) -> None:
    reg.mark_busy("s1", T0)
    path = reg.path_for("s1")
    before = os.stat(path)
    reg.mark_busy("s1", T0 + REFRESH_MIN_S / 2)
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert reg.get("s1").last_seen == T0  # type: ignore[union-attr]
    reg.mark_busy("s1", T0 + REFRESH_MIN_S + 0.1)
    assert os.stat(path).st_ino != before.st_ino
    assert reg.get("s1").last_seen == T0 + REFRESH_MIN_S + 0.1  # type: ignore[union-attr]


def test_expiry_and_exclude(reg: TurnRegistry) -> None:
    reg.mark_busy("old", T0)
    reg.mark_busy("me", T0 + 500)
    reg.mark_busy("other", T0 + 550)
    reg.mark_idle("idle", T0 + 550)
    now = T0 + 700
    assert _ids(reg.busy_sessions(now, TTL)) == ["me", "other"]
    assert _ids(reg.busy_sessions(now, TTL, exclude="me")) == ["other"]
    assert sorted(_ids(reg.sessions(now, TTL))) == ["idle", "me", "other"]
    assert reg.busy_sessions(now + 1000, TTL) == []


def test_sweep_removes_silent_sessions(reg: TurnRegistry) -> None:
    reg.mark_busy("dead-busy", T0)
    reg.mark_idle("dead-idle", T0 + 10)
    reg.mark_busy("alive", T0 + 500)
    assert reg.sweep(T0 + 700, TTL) == 2
    assert sorted(os.listdir(reg.dir)) == ["alive.json"]
    assert reg.sweep(T0 + 700, TTL) == 0


def test_sweep_removes_old_corrupt_files_and_temp_files(reg: TurnRegistry) -> None:
    """Corrupt and temp files are judged by their file mtime (wall clock)."""
    now = time.time()
    reg.mark_busy("alive", now)
    corrupt = reg.dir / "broken.json"
    corrupt.write_text("{nope")
    temp = reg.dir / "alive.json.tmp-gsp-1-abcd"
    temp.write_text("x")
    assert reg.sweep(now + 1, TTL) == 0  # fresh corrupt file: its session may rewrite it
    assert corrupt.exists() and temp.exists()
    old = now - TTL - 10
    os.utime(corrupt, (old, old))
    os.utime(temp, (old, old))
    assert reg.sweep(now + 1, TTL) == 1
    assert not corrupt.exists() and not temp.exists()
    assert reg.get("alive") is not None


@pytest.mark.parametrize(
    "sid",
    ["a/b", "..", "../../etc/passwd", "/abs", "ünïcødé-会话", "x" * 500, "", ".hidden", "a b"],
)
def test_weird_session_ids_stay_inside_sessions_dir(reg: TurnRegistry, sid: str) -> None:
    reg.mark_busy(sid, T0)
    key = session_key(sid)
    assert key != sid
    assert len(key) <= 64 and all(c.isalnum() or c in "_-" for c in key)
    path = reg.path_for(sid)
    assert path.parent == reg.dir and path.name == f"{key}.json"
    assert os.listdir(reg.dir) == [path.name]
    assert _ids(reg.busy_sessions(T0, TTL)) == [sid]
    assert reg.busy_sessions(T0, TTL, exclude=sid) == []
    reg.unregister(sid)
    assert os.listdir(reg.dir) == []


def test_plain_ids_are_used_as_is() -> None:
    sid = "0b6c3f9e-6f39-4b2c-9b55-3c1e5c8a2a10"
    assert session_key(sid) == sid
    assert session_key("a" * 64) == "a" * 64
    assert session_key("a" * 65) != "a" * 65
    assert session_key("x/y") == session_key("x/y") != session_key("x/z")


@pytest.mark.planted_files  # writes files of its own into a state dir
@pytest.mark.parametrize(
    "content",
    [
        b"{broken",
        b"[]",
        b"\xff",
        json.dumps({"session_id": "c", "state": "weird", "since": 1, "last_seen": 1}).encode(),
        json.dumps({"session_id": "c", "state": "busy", "since": "x", "last_seen": 1}).encode(),
        json.dumps(
            {"session_id": "c", "state": "busy", "since": 1, "last_seen": 1, "pid": "1"}
        ).encode(),
    ],
)
def test_corrupt_files_ignored(reg: TurnRegistry, content: bytes) -> None:
    reg.mark_busy("good", T0)
    (reg.dir / "c.json").write_bytes(content)
    (reg.dir / "notes.txt").write_text("ignored")
    assert _ids(reg.busy_sessions(T0, TTL)) == ["good"]
    assert reg.get("c") is None
    # The owning session simply overwrites its corrupt file.
    reg.mark_busy("c", T0)
    assert sorted(_ids(reg.busy_sessions(T0, TTL))) == ["c", "good"]


def test_private_modes(reg: TurnRegistry) -> None:
    reg.mark_busy("s1", T0)
    assert reg.dir.stat().st_mode & 0o777 == 0o700
    assert reg.path_for("s1").stat().st_mode & 0o777 == 0o600


def test_missing_dir_reads_empty(tmp_path: Path) -> None:
    reg = TurnRegistry(tmp_path / "nothing")
    assert reg.sessions(T0, TTL) == [] and reg.sweep(T0, TTL) == 0
    assert not (tmp_path / "nothing").exists()


def test_import_is_stdlib_only() -> None:
    code = (
        "import sys, gptme_subscription_plugin.turns; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'filelock', 'gptme', 'tomli', 'tomli_w') "
        "or (m.startswith('gptme_subscription_plugin.') and m not in "
        "('gptme_subscription_plugin.turns', 'gptme_subscription_plugin.fsutil', "
        "'gptme_subscription_plugin.crashpoints'))); "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_session_in_a_profile_never_holds_up_the_link_and_is_counted_per_slot(
    reg: TurnRegistry,
) -> None:
    reg.mark_busy("p1", T0, slot="bob")
    reg.mark_busy("p2", T0, slot="bob")
    reg.mark_idle("p3", T0, slot="carol")
    reg.mark_busy("l1", T0)
    assert _ids(reg.busy_sessions(T0, TTL)) == ["l1"]
    assert _ids(reg.busy_sessions(T0, TTL, everywhere=True)) == ["l1", "p1", "p2"]
    assert reg.sessions_by_slot(T0, TTL) == {"bob": 2, "carol": 1}
    reg.mark_busy("p1", T0 + 5)  # a later hook that does not say the slot keeps it
    reg.mark_idle("p1", T0 + 6)
    assert reg.get("p1") == SessionTurn("p1", "idle", T0 + 6, T0 + 6, None, "bob")
    assert reg.sessions_by_slot(T0 + TTL + 1, TTL) == {"bob": 1}  # the others went silent
    assert reg.sessions_by_slot(T0 + 2 * TTL, TTL) == {}


def test_entries_without_a_slot_are_link_sessions_and_a_bad_slot_is_no_entry(
    reg: TurnRegistry,
) -> None:
    reg.mark_busy("old", T0)
    path = reg.path_for("old")
    doc = json.loads(path.read_text())
    del doc["slot"]  # written before entries had one
    path.write_text(json.dumps(doc))
    assert _ids(reg.busy_sessions(T0, TTL)) == ["old"]
    path.write_text(json.dumps({**doc, "slot": "../bob"}))
    assert reg.sessions(T0, TTL) == []
