"""Reading the session's model from the end of a Claude Code transcript."""

from __future__ import annotations

import json

from gptme_subscription_plugin.claude_code.transcript import last_model


def record(kind: str, model: str | None = None, **extra) -> str:
    message = {"role": kind, "content": "x"}
    if model is not None:
        message["model"] = model
    return json.dumps({"type": kind, "message": message, **extra})


def test_the_last_real_answer_names_the_model(tmp_path):
    path = tmp_path / "s.jsonl"
    lines = [
        record("user"),
        record("assistant", "claude-sonnet-4-5"),
        record("user"),
        record("assistant", "claude-opus-4-5"),
        record("user"),
        # what Claude Code writes for an API error: not a model
        record("assistant", "<synthetic>", isApiErrorMessage=True),
        "not json {",
    ]
    path.write_text("\n".join(lines) + "\n")
    assert last_model(str(path)) == "claude-opus-4-5"


def test_no_answer_yet_or_no_file_means_unknown(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(record("user") + "\n")
    assert last_model(str(path)) is None
    assert last_model(str(tmp_path / "missing.jsonl")) is None
    assert last_model(None) is None and last_model("") is None and last_model(7) is None


def test_only_the_tail_is_read_and_a_cut_first_line_is_skipped(tmp_path):
    path = tmp_path / "s.jsonl"
    early = record("assistant", "claude-haiku-4")
    filler = [record("user", extra="y" * 200) for _ in range(40)]
    path.write_text("\n".join([early, *filler]) + "\n")
    assert last_model(str(path)) == "claude-haiku-4"
    assert last_model(str(path), tail_bytes=2000) is None  # the answer is outside the tail
