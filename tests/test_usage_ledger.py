"""`gptme-subscription usage`: every API call in the transcripts goes to the account that
served it (from the `turn` events the real hooks write), to the token and to the cent; an
update reads only what was appended; bad transcripts cost nothing but a count.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.support.sandbox import Sandbox, hook_payload
from tests.support.transcripts import OPUS, Call, transcript_path, write_turn


@pytest.fixture
def sb(tmp_path, fake_server) -> Sandbox:
    sandbox = Sandbox(tmp_path, ("alice", "bob", "carol"), server=fake_server, usage=(10, 20))
    return sandbox


def usage(sb: Sandbox, *args: str) -> dict:
    proc = sb.run("usage", "--json", *args, code=0)
    return json.loads(proc.stdout)


def rows(doc: dict) -> dict[str, dict]:
    return {r["key"]: r for r in doc["rows"]}


def turn(sb: Sandbox, session: str, calls: list[Call], **env: str) -> None:
    """One turn as Claude Code runs it: UserPromptSubmit, the calls in the transcript, Stop."""
    sb.hook("UserPromptSubmit", hook_payload("UserPromptSubmit", session=session), **env)
    write_turn(sb.claude, session, calls)
    sb.hook("Stop", hook_payload("Stop", session=session), **env)


def totals(calls: list[Call]) -> dict[str, float]:
    return {
        "requests": len(calls),
        "input_tokens": sum(c.input for c in calls),
        "output_tokens": sum(c.output for c in calls),
        "cache_write_tokens": sum(c.cache_write for c in calls),
        "cache_read_tokens": sum(c.cache_read for c in calls),
        "cost_usd": pytest.approx(sum(c.cost() for c in calls), abs=1e-6),
    }


def test_each_call_goes_to_the_account_that_served_it(sb: Sandbox) -> None:
    first = [Call("m1", input=11, output=101), Call("m2", OPUS, input=7, output=900)]
    second = [Call("m3", input=5, output=55, cache_write=0, cache_read=70_000)]
    profiled = [Call("m4", output=4321)]
    turn(sb, "s-link", first)  # alice is live
    sb.run("switch", "bob", code=0)
    turn(sb, "s-link", second)  # the same session, now on bob
    sb.run("profile", "enable", "carol", code=0)
    in_carol = {"CLAUDE_CONFIG_DIR": str(sb.home / ".claude-profiles" / "carol")}
    turn(sb, "s-profile", profiled, **in_carol)

    by_account = rows(usage(sb))
    assert set(by_account) == {"alice", "bob", "carol"}
    for name, calls in (("alice", first), ("bob", second), ("carol", profiled)):
        got = {k: by_account[name][k] for k in totals(calls)}
        assert got == totals(calls), name
    doc = usage(sb, "--by", "session")
    assert rows(doc)["s-link"]["requests"] == 3 and rows(doc)["s-profile"]["requests"] == 1
    assert doc["total"]["requests"] == 4 and doc["unknown_models"] == []
    by_model = rows(usage(sb, "--by", "model"))
    assert by_model[OPUS]["output_tokens"] == 900


def test_the_turn_events_the_hooks_write(sb: Sandbox) -> None:
    sb.hook("UserPromptSubmit", hook_payload("UserPromptSubmit", session="s1"))
    sb.hook("Stop", hook_payload("Stop", session="s1"))
    events = [(e["session"], e["slot"], e["home"], e["phase"]) for e in sb.events("turn")]
    assert events == [("s1", "alice", "link", "start"), ("s1", "alice", "link", "end")]


def test_an_update_reads_only_what_was_appended(sb: Sandbox) -> None:
    turn(sb, "s1", [Call("a1"), Call("a2")])
    first = usage(sb)
    assert first["read"]["read"] >= 1 and first["total"]["requests"] == 2
    again = usage(sb)
    assert again["read"]["usage_lines"] == 0 and again["read"]["read"] == 0  # nothing new
    write_turn(sb.claude, "s1", [Call("a3", output=7)])
    third = usage(sb)
    assert third["read"]["usage_lines"] == 2 and third["total"]["requests"] == 3
    # a message seen again (Claude Code rewrites nothing, but a copy is a copy) counts once
    write_turn(sb.claude, "s1-copy", [Call("a3", output=7)])
    assert usage(sb)["total"]["requests"] == 3


def test_attribution_outlives_the_event_log(sb: Sandbox) -> None:
    turn(sb, "s1", [Call("b1")])
    usage(sb)  # the ledger copies the turn events
    for path in sb.state.glob("events.jsonl*"):
        path.unlink()
    write_turn(sb.claude, "s1", [Call("b2")])
    assert rows(usage(sb))["alice"]["requests"] == 2


def test_a_session_before_any_hook_falls_back_to_the_switch_history(sb: Sandbox) -> None:
    write_turn(sb.claude, "old", [Call("c1")], at=time.time() - 3600)
    assert rows(usage(sb)).keys() == {"unknown"}  # no boundary, no switch: not guessed
    sb.run("switch", "bob", code=0)
    write_turn(sb.claude, "old", [Call("c2")])
    got = rows(usage(sb))
    assert got["unknown"]["requests"] == 1 and got["bob"]["requests"] == 1


def test_unknown_models_are_counted_not_priced(sb: Sandbox) -> None:
    turn(sb, "s1", [Call("u1", model="claude-nova-9-20270101", output=50), Call("u2")])
    doc = usage(sb)
    alice = rows(doc)["alice"]
    assert alice["requests"] == 2 and alice["unpriced_requests"] == 1
    assert doc["unknown_models"] == ["claude-nova-9-20270101"]
    text = sb.run("usage", code=0).stdout
    assert "unpriced: 1 request(s)" in text and "claude-nova-9-20270101" in text
    # priced once the user says what it costs (config file, by its key)
    cfg = Path(sb.env["XDG_CONFIG_HOME"]) / "gptme-subscription"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text(
        '[prices."nova-9"]\ninput = 1\noutput = 2\ncache_write = 0\ncache_read = 0\n'
    )
    doc = usage(sb)
    assert doc["unknown_models"] == [] and rows(doc)["alice"]["unpriced_requests"] == 0


def test_bad_lines_and_a_2gb_transcript(sb: Sandbox) -> None:
    path = write_turn(sb.claude, "s1", [Call("d1")])
    with path.open("a") as fh:
        fh.write('{"type": "assistant", "usage": {oops\n')  # not JSON
        fh.write("\x00garbage without a newline at the end")
    huge = transcript_path(sb.claude, "huge")
    huge.parent.mkdir(parents=True, exist_ok=True)
    with huge.open("wb") as fh:
        fh.truncate(2 * 1024**3)  # 2 GiB of zeros, sparse: one line with no end yet
    with huge.open("a") as fh:
        fh.write("\n")
    write_turn(sb.claude, "huge", [Call("d2", output=33)])  # a good line after it
    doc = usage(sb)
    assert doc["total"]["requests"] == 2
    assert doc["read"]["bad_lines"] == 1 and doc["read"]["long_lines"] == 1
    assert os.path.getsize(huge) > 2 * 1024**3
    again = usage(sb)  # the huge line is read once; only s1's unfinished last line again
    assert again["read"]["read"] == 1 and again["read"]["long_lines"] == 0
    assert again["total"]["requests"] == 2


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (("--since", "yesterday"), "cannot read"),
        (("--until", "soon"), "cannot read"),
        (("--by", "colour"), "invalid choice"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    sb: Sandbox, args: tuple[str, ...], word: str
) -> None:
    proc = sb.run("usage", *args, code=2)
    assert word in proc.stderr and not (sb.state / "usage.sqlite").exists()


def test_a_bad_price_in_config_names_it(sb: Sandbox) -> None:
    cfg = Path(sb.env["XDG_CONFIG_HOME"]) / "gptme-subscription"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text('[prices."opus-4.5"]\ninput = -1\n')
    proc = sb.run("usage", code=2)
    assert "prices" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_ledger_is_private(sb: Sandbox) -> None:
    turn(sb, "s1", [Call("e1")])
    usage(sb)
    for path in sb.state.glob("usage.sqlite*"):
        assert path.stat().st_mode & 0o777 == 0o600, path
