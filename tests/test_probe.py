"""Honest probes and usage scripts: `check-auth --probe` asks, and says who answered; a usage
script runs in the user's own environment; equal readings leave the choice to fallback_order.

Real processes throughout: the CLI as a subprocess, usage scripts as executables, the usage
endpoint as the loopback fake API.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from gptme_subscription_plugin.manager import SubscriptionManager
from gptme_subscription_plugin.usage.oauth import USAGE_PATH

from .support.credentials import access_token, credential_bytes, write_slot
from .support.fake_api import FakeAnthropicServer
from .support.sandbox import ScriptSandbox
from .support.sandbox import script_answer as answer
from .support.usage import DAY, H, iso


@pytest.fixture
def sandbox(tmp_path: Path, fake_server: FakeAnthropicServer) -> ScriptSandbox:
    return ScriptSandbox(tmp_path, fake_server, ("alice", "bob", "carol"))


@pytest.fixture
def claude_sandbox(tmp_path: Path, fake_server: FakeAnthropicServer) -> ScriptSandbox:
    """The usage script needs the user's HOME, as 0.1.0's check-claude-usage.sh does."""
    return ScriptSandbox(tmp_path, fake_server, ("alice", "bob", "carol"), claude_like=True)


# ---------------------------------------------------------------- check-auth --probe


def test_probe_runs_the_usage_script_with_no_cache_and_says_the_script_answered(sandbox):
    sandbox.write_answers(alice=answer(0.1, 0.2), bob=answer(0.1, 0.3), carol=answer(0.2, 0.1))
    out = sandbox.cli("check-auth", "--probe")
    calls = sandbox.calls()
    assert sorted(c["slot"] for c in calls) == ["alice", "bob", "carol"]
    assert all(c["argv"] == ["--json", "--no-cache"] for c in calls)
    for name in ("alice", "bob", "carol"):
        assert "probe: ok (the usage script answered" in sandbox.line(out, name)
    assert "endpoint" not in out
    assert sandbox.server.request_count(path=USAGE_PATH) == 0  # nothing asked the endpoint
    doc = json.loads(sandbox.cli("check-auth", "--probe", "--json"))
    assert {row["slot"]: row["probe"]["source"] for row in doc["slots"]} == {
        "alice": "usage script",
        "bob": "usage script",
        "carol": "usage script",
    }


def test_a_failing_script_probe_fails_even_with_an_older_cached_reading(sandbox):
    sandbox.write_answers(alice=answer(0.1, 0.2), bob=answer(0.1, 0.3), carol=answer(0.2, 0.1))
    sandbox.cli("status", "--refresh")  # every slot has a good reading in the cache now
    assert len(sandbox.calls()) == 3
    sandbox.write_answers(bob=None)  # bob's script answer fails from now on
    out = sandbox.cli("check-auth", "--probe", code=1)
    bob = sandbox.line(out, "bob")
    assert "probe: FAIL" in bob and "not logged in" in bob and "answered" not in bob
    assert "probe: ok" in sandbox.line(out, "alice")
    doc = json.loads(sandbox.cli("check-auth", "--probe", "--json", code=1))
    assert doc["ok"] is False
    row = next(r for r in doc["slots"] if r["slot"] == "bob")
    assert row["probe"]["ok"] is False and row["probe"]["source"] == "usage script"


def test_a_failing_endpoint_probe_fails_even_with_an_older_cached_reading(sandbox):
    now = time.time()
    for name in ("alice", "bob", "carol"):
        sandbox.server.set_usage(
            access_token(name),
            {"seven_day": {"utilization": 20, "resets_at": iso(now + 3 * DAY)}},
        )
    sandbox.cli("status", "--refresh", script=False)
    sandbox.server.set_fault("500", token=access_token("bob"))
    out = sandbox.cli("check-auth", "--probe", code=1, script=False)
    bob = sandbox.line(out, "bob")
    assert "probe: FAIL" in bob and "HTTP 500" in bob and "reauth" not in bob
    assert "probe: ok (the usage endpoint accepted the token)" in sandbox.line(out, "alice")
    assert "usage script" not in out


def test_a_401_probe_marks_the_credential_rejected_and_evaluate_never_switches_onto_it(sandbox):
    server = sandbox.server

    def publish(name: str, week: float, reset_in: float) -> None:
        sandbox.set_usage(name, five=10, week=week, week_in=reset_in, five_in=2 * H)

    # bob would be the best target: his weekly quota expires first
    publish("alice", 20, 3 * DAY)
    publish("bob", 10, 1 * DAY)
    publish("carol", 10, 5 * DAY)
    sandbox.cli("status", "--refresh", script=False)
    publish("alice", 100, 3 * DAY)  # alice runs dry
    server.remove_usage(access_token("bob"))  # bob's credential is revoked: 401 from now on
    server.reset_requests()

    out = sandbox.cli("check-auth", "--probe", code=1, script=False)
    bob = sandbox.line(out, "bob")
    assert "probe: FAIL" in bob and "401" in bob and "reauth bob" in bob
    # one request per slot, no more
    counts = [server.request_count(access_token(n), USAGE_PATH) for n in ("alice", "bob", "carol")]
    assert counts == [1, 1, 1]
    rejected = sandbox.rotation()["rejected"]["bob"]
    assert rejected["source"] == "the usage endpoint answered 401"  # what a poll in a hook writes
    events = [json.loads(line) for line in (sandbox.state / "events.jsonl").open()]
    assert any(e["kind"] == "credential-rejected" and e["slot"] == "bob" for e in events)

    server.reset_requests()
    decision = json.loads(sandbox.cli("evaluate", "--json", script=False))["decision"]
    # the probe's readings and its verdict still stand: nothing is asked again
    assert server.request_count(path=USAGE_PATH) == 0
    assert decision["target"] == "carol", decision
    status = json.loads(sandbox.cli("status", "--json", script=False))
    bob_row = next(s for s in status["slots"] if s["name"] == "bob")
    assert bob_row["rejected"]["source"] == "the usage endpoint answered 401"


def test_an_evaluate_after_a_script_probe_uses_its_readings_without_asking_again(sandbox):
    sandbox.write_answers(alice=answer(0.1, 0.99), bob=answer(0.1, 0.3), carol=answer(0.1, 0.3))
    sandbox.cli("check-auth", "--probe")
    assert len(sandbox.calls()) == 3
    decision = json.loads(sandbox.cli("evaluate", "--json"))["decision"]
    assert len(sandbox.calls()) == 3  # within the poll interval: the probe's readings
    assert decision["action"] == "switch" and decision["target"] in ("bob", "carol")


# ---------------------------------------------------------------- the script's environment


def test_a_usage_script_that_needs_the_users_home_answers_for_every_slot(claude_sandbox):
    sb = claude_sandbox
    sb.write_answers(alice=answer(0.1, 0.2), bob=answer(0.2, 0.3), carol=answer(0.3, 0.4))
    out = sb.cli("check-auth", "--probe")
    for name in ("alice", "bob", "carol"):
        assert "probe: ok" in sb.line(out, name)
    calls = {c["slot"]: c for c in sb.calls()}
    assert all(c["home"] == str(sb.home) and c["cwd"] == str(sb.root) for c in calls.values())
    assert calls["alice"]["config_dir"] is None  # the live slot: the user's own ~/.claude
    assert None not in (calls["bob"]["config_dir"], calls["carol"]["config_dir"])
    assert calls["bob"]["config_dir"] != calls["carol"]["config_dir"]  # one throwaway each
    status = json.loads(sb.cli("status", "--json"))
    weekly = {s["name"]: s["usage"]["seven_day"]["utilization"] for s in status["slots"]}
    assert weekly == {"alice": 0.2, "bob": 0.3, "carol": 0.4}


def test_a_slot_that_is_not_live_and_about_to_expire_is_not_handed_to_the_script(sandbox):
    """A `claude` started by the script would refresh it in a throwaway dir: the slot would
    keep a spent refresh token."""
    sandbox.write_answers(alice=answer(0.1, 0.2), bob=answer(0.1, 0.3), carol=answer(0.1, 0.3))
    write_slot(sandbox.claude, "bob", credential_bytes("bob", expires_at=time.time() + 60))
    out = sandbox.cli("check-auth", "--probe")
    assert sorted(c["slot"] for c in sandbox.calls()) == ["alice", "carol"]
    assert "probe: skipped" in sandbox.line(out, "bob")


def test_a_live_reading_taken_while_the_live_link_moved_is_dropped(claude_sandbox, monkeypatch):
    """The live slot's script reads Claude Code's own dir: after a flip it reads another
    account, and that reading must not be filed under the slot it was asked about."""
    sandbox = claude_sandbox
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    sandbox.write_answers(alice=answer(0.1, 0.2), bob=answer(0.9, 0.9), carol=answer(0.1, 0.3))
    flipping = sandbox.root / "flip-then-ask"
    flipping.write_text(
        f"#!/bin/sh\nln -sfn .credentials.json.bob {sandbox.claude}/.credentials.json\n"
        f'exec {sandbox.script} "$@"\n'
    )
    flipping.chmod(0o755)
    config = sandbox.script_manager([]).config
    m = SubscriptionManager(dataclasses.replace(config, usage_script=flipping))
    usage = m.check_usage(names=["alice"])
    assert usage["alice"] is None  # bob's 90 % never lands in alice's cache
    assert "live slot changed" in (m.usage.status("alice", time.time())["last_error"] or "")


# ---------------------------------------------------------------- one clock read per observation


def test_one_refresh_reads_the_clock_once_for_every_slot(sandbox, monkeypatch):
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    same = answer(0.1, 0.3)
    sandbox.write_answers(alice=same, bob=same, carol=same)
    snaps = sandbox.script_manager([]).check_usage()
    assert len({s.observed_at for s in snaps.values() if s is not None}) == 1
    assert len({s.seven_day.resets_at for s in snaps.values() if s and s.seven_day}) == 1
