"""Replay from Claude Code transcripts: usage records deduplicated by message id, turns kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gptme_subscription_plugin.cli import main
from gptme_subscription_plugin.sim.model import COSTS, T0
from gptme_subscription_plugin.sim.transcripts import TranscriptError, load_transcripts


def _ts(seconds: float) -> str:
    from datetime import datetime, timezone

    return (
        datetime.fromtimestamp(1_760_000_000 + seconds, timezone.utc)
        .isoformat()
        .replace("+00:00", "Z")
    )


def _user(session: str, at: float, content) -> dict:
    return {
        "type": "user",
        "sessionId": session,
        "timestamp": _ts(at),
        "message": {"role": "user", "content": content},
    }


def _assistant(session: str, at: float, mid: str, usage: dict, block: str = "text") -> dict:
    return {
        "type": "assistant",
        "sessionId": session,
        "timestamp": _ts(at),
        "message": {
            "id": mid,
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": block}],
            "usage": usage,
        },
    }


def usage(read: int, write: int, out: int) -> dict:
    return {
        "input_tokens": 10,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
        "output_tokens": out,
    }


def write_transcripts(root: Path) -> Path:
    project = root / "projects" / "-home-me-repo"
    project.mkdir(parents=True)
    lines = [
        _user("s1", 0, "fix the bug"),
        # one message streamed as three content blocks: the same id and usage three times
        _assistant("s1", 20, "msg_1", usage(0, 20_000, 300), "thinking"),
        _assistant("s1", 21, "msg_1", usage(0, 20_000, 300), "text"),
        _assistant("s1", 22, "msg_1", usage(0, 20_000, 300), "tool_use"),
        _user("s1", 30, [{"type": "tool_result", "content": "ok"}]),  # same turn
        _assistant("s1", 50, "msg_2", usage(20_000, 1_000, 500)),
        _user("s1", 400, [{"type": "text", "text": "now the docs"}]),  # a new turn
        _assistant("s1", 420, "msg_3", usage(21_000, 800, 200)),
        "not json at all",
        {"type": "summary", "summary": "no usage here"},
    ]
    with (project / "s1.jsonl").open("w") as fh:
        for line in lines:
            fh.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    other = [_user("s2", 100, "hello"), _assistant("s2", 110, "msg_9", usage(0, 5_000, 100))]
    (project / "sub").mkdir()
    with (project / "sub" / "s2.jsonl").open("w") as fh:
        fh.writelines(json.dumps(line) + "\n" for line in other)
    return root / "projects"


def test_transcripts_become_sessions_turns_and_deduplicated_requests(tmp_path):
    wl = load_transcripts(write_transcripts(tmp_path))
    by_id = {s.sid: s for s in wl.sessions}
    assert set(by_id) == {"s1", "s2"}
    s1 = by_id["s1"]
    assert [len(t.requests) for t in s1.turns] == [2, 1]  # msg_1 counted once, not three times
    first, second = s1.turns[0].requests
    assert first.warm == pytest.approx(COSTS.warm("sonnet", 10, 0, 20_000, 300))
    assert first.natural_cold and not second.natural_cold
    assert second.cold - second.warm == pytest.approx(
        COSTS.cold("sonnet", 10, 20_000, 1_000, 500) - COSTS.warm("sonnet", 10, 20_000, 1_000, 500)
    )
    assert wl.start == T0 and min(r.release for r in wl.requests()) == pytest.approx(T0)
    assert wl.request_count() == 4 and wl.end - wl.start >= 8 * 86400
    assert second.release - first.release == pytest.approx(30.0, abs=10)  # timing kept


def test_simulate_replays_a_transcript_dir(tmp_path, capsys):
    root = write_transcripts(tmp_path)
    rc = main(
        ["simulate", "--from-transcripts", str(root), "--seeds", "1", "--json", "--workers", "1"]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    replay = doc["scenarios"]["replay"]["policies"]
    assert set(replay) >= {"default", "oracle"}
    assert replay["default"]["served"] == pytest.approx(1.0)


def test_an_empty_transcript_dir_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(TranscriptError):
        load_transcripts(tmp_path)
    assert main(["simulate", "--from-transcripts", str(tmp_path), "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no assistant usage records" in err
