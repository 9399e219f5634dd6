"""State documents and the event log, with real files and real processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gptme_subscription_plugin.state import (
    MAX_EVENT_LINE,
    EventLog,
    StateBusy,
    StateStore,
    validate_name,
)

_FORK = multiprocessing.get_context("fork")


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _increment(state_dir: str, times: int) -> None:
    store = StateStore(Path(state_dir))

    def bump(doc: dict) -> None:
        doc["n"] = doc.get("n", 0) + 1

    for _ in range(times):
        store.update("counter", bump)


def _append_events(state_dir: str, worker: int, times: int) -> None:
    log = EventLog(Path(state_dir))
    for i in range(times):
        log.append("tick", time.time(), worker=worker, i=i, pad="x" * (i % 7 * 300))


def _run_all(target, args_list) -> None:
    procs = [_FORK.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0


def test_concurrent_updates_lose_nothing(tmp_path: Path) -> None:
    _run_all(_increment, [(str(tmp_path), 50)] * 4)
    assert StateStore(tmp_path).read("counter") == {"n": 200}


def test_read_missing_and_roundtrip(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    assert store.read("slots") == {}
    result = store.update("slots", lambda d: {**d, "live": "a"})
    assert result == {"live": "a"}
    assert store.read("slots") == {"live": "a"}


def test_private_modes(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    store = StateStore(state_dir)
    store.update("doc", lambda d: d.update(x=1))
    store.events.append("hello", 1.0)
    assert _mode(state_dir) == 0o700
    assert _mode(state_dir / "doc.json") == 0o600
    assert _mode(state_dir / "events.jsonl") == 0o600
    assert _mode(state_dir / "doc.json.lock") & 0o077 == 0


@pytest.mark.parametrize("bad", ["", "a/b", "../x", "..", ".", "x.json", "a\\b", "é", "a" * 65])
def test_bad_names_refused(tmp_path: Path, bad: str) -> None:
    store = StateStore(tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError, match="invalid state document name"):
        store.update(bad, lambda d: d.update(x=1))
    with pytest.raises(ValueError):
        store.read(bad)
    assert sorted(os.listdir(tmp_path)) == before


def test_good_names() -> None:
    assert validate_name("usage_cache-2") == "usage_cache-2"


@pytest.mark.parametrize("garbage", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_corrupt_document_moved_aside(tmp_path: Path, garbage: bytes) -> None:
    store = StateStore(tmp_path)
    (tmp_path / "doc.json").write_bytes(garbage)
    assert store.read("doc") == {}
    assert not (tmp_path / "doc.json").exists()
    aside = list(tmp_path.glob("doc.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    events = store.events.tail(kinds={"state_corrupt"})
    assert events and events[-1]["name"] == "doc" and events[-1]["moved_to"] == aside[0].name


def test_update_over_corrupt_document(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    (tmp_path / "doc.json").write_text("{oops")
    (tmp_path / f"doc.json.corrupt-{int(time.time())}").write_text("older")
    assert store.update("doc", lambda d: d.update(ok=True)) == {"ok": True}
    assert store.read("doc") == {"ok": True}
    assert len(list(tmp_path.glob("doc.json.corrupt-*"))) == 2


def test_failed_update_writes_nothing(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.update("doc", lambda d: d.update(a=1))
    before = (tmp_path / "doc.json").read_bytes()

    def explode(doc: dict) -> None:
        doc["a"] = 2
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        store.update("doc", explode)
    with pytest.raises(TypeError):
        store.update("doc", lambda d: d.update(bad=object()))
    with pytest.raises(TypeError, match="must produce a dict"):
        store.update("doc", lambda d: [1])  # type: ignore[arg-type,return-value]
    assert (tmp_path / "doc.json").read_bytes() == before


def test_lock_timeout_raises_state_busy(tmp_path: Path) -> None:
    store = StateStore(tmp_path, lock_timeout=0.3)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, filelock; l = filelock.FileLock(sys.argv[1]); l.acquire(); "
            "print('held', flush=True); time.sleep(10)",
            str(tmp_path / "doc.json.lock"),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        started = time.monotonic()
        with pytest.raises(StateBusy) as info:
            store.update("doc", lambda d: d.update(a=1))
        assert time.monotonic() - started < 2
    finally:
        holder.kill()
        holder.wait()
    message = str(info.value)
    assert "\n" not in message and "'doc'" in message and "retry" in message
    assert not (tmp_path / "doc.json").exists()


# -- event log ---------------------------------------------------------------------------


def test_concurrent_appends_all_parse(tmp_path: Path) -> None:
    _run_all(_append_events, [(str(tmp_path), w, 100) for w in range(4)])
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines()
    assert len(lines) == 400
    records = [json.loads(line) for line in lines]
    for w in range(4):
        assert sorted(r["i"] for r in records if r["worker"] == w) == list(range(100))


def test_append_returns_record_and_redacts(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    rec = log.append(
        "flip",
        12.5,
        slot="a",
        token="sk-ant-oat01-SECRET",
        nested={"x": ["ok", "Bearer sk-ant-ort01-SECRET"]},
    )
    assert rec == {
        "ts": 12.5,
        "kind": "flip",
        "slot": "a",
        "token": "[redacted]",
        "nested": {"x": ["ok", "[redacted]"]},
    }
    text = (tmp_path / "events.jsonl").read_text()
    assert "sk-ant-" not in text and "SECRET" not in text
    assert log.tail() == [rec]


def test_long_fields_truncated_below_4k(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    log.append("big", 1.0, text="é" * 10_000, many={f"k{i}": "v" * 200 for i in range(50)})
    log.append("huge", 2.0, **{f"field{i}": i for i in range(2000)})
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines(keepends=True)
    assert len(lines) == 2
    assert all(len(line) < MAX_EVENT_LINE for line in lines)
    first, second = (json.loads(line) for line in lines)
    assert first["kind"] == "big" and first["text"].endswith("[truncated]")
    assert second == {"ts": 2.0, "kind": "huge", "truncated": True}


def test_non_serializable_refused(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    with pytest.raises(TypeError, match="JSON-serializable"):
        log.append("bad", 1.0, thing=object())
    with pytest.raises(ValueError, match="reserved"):
        log.append("bad", 1.0, ts=3)
    assert not (tmp_path / "events.jsonl").exists()


def test_tail_skips_partial_last_line_and_filters(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    for i in range(5):
        log.append("a" if i % 2 else "b", float(i), i=i)
    with (tmp_path / "events.jsonl").open("ab") as f:
        f.write(b'{"ts":9,"kind":"a","x":{"ts":')  # a crash mid-write
    assert [r["i"] for r in log.tail(3)] == [2, 3, 4]
    assert [r["i"] for r in log.tail(10, kinds={"a"})] == [1, 3]
    # An event appended after the partial line is recovered; only the partial one is lost.
    log.append("a", 10.0, i=10, inner={"ts": 1, "s": '{"ts":'})
    assert [r["i"] for r in log.tail(2)] == [4, 10]
    assert log.tail(1)[0]["inner"] == {"ts": 1, "s": '{"ts":'}
    assert log.tail(0) == []


def test_tail_on_missing_log(tmp_path: Path) -> None:
    assert EventLog(tmp_path / "nope").tail() == []


def test_rotation_keeps_one_old_file(tmp_path: Path) -> None:
    log = EventLog(tmp_path, max_bytes=2000)
    for i in range(300):
        log.append("tick", float(i), i=i, pad="p" * 50)
    files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("events.jsonl"))
    assert "events.jsonl" in files and "events.jsonl.1" in files
    assert not [f for f in files if f.endswith((".2", ".old"))]
    assert (tmp_path / "events.jsonl").stat().st_size <= 2000 + 200
    assert _mode(tmp_path / "events.jsonl.1") == 0o600
    # tail reaches back into the rotated file, in order, and no further
    kept = sum(len(p.read_bytes().splitlines()) for p in tmp_path.glob("events.jsonl*"))
    assert 20 < kept < 300
    assert [r["i"] for r in log.tail(1000)] == list(range(300 - kept, 300))


def test_tail_reads_large_file_backwards(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    for i in range(3000):
        log.append("tick", float(i), i=i, pad="q" * 40)
    assert [r["i"] for r in log.tail(5)] == [2995, 2996, 2997, 2998, 2999]
