"""Honest probes and usage scripts: `check-auth --probe` asks, and says who answered; a usage
script runs in the user's own environment; equal readings leave the choice to fallback_order.

Real processes throughout: the CLI as a subprocess, usage scripts as executables, the usage
endpoint as the loopback fake API.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gptme_subscription_plugin.config import Config
from gptme_subscription_plugin.manager import SubscriptionManager
from gptme_subscription_plugin.usage.oauth import USAGE_PATH

from .support.credentials import access_token, credential_bytes, link_live, write_slot
from .support.fake_api import FakeAnthropicServer

H = 3600.0
DAY = 24 * H

# A stand-in for 0.1.0's check-claude-usage.sh: it starts `claude` from ~/.local/bin, which
# needs the onboarding flag of `.claude.json` (in $CLAUDE_CONFIG_DIR when set, else in HOME)
# and reads the credential of its config dir.
CLAUDE_LIKE = """
import json, os, sys
home = os.environ["HOME"]
if not os.access(os.path.join(home, ".local", "bin", "claude"), os.X_OK):
    print("claude: command not found", file=sys.stderr)
    sys.exit(127)
config_dir = os.environ.get("CLAUDE_CONFIG_DIR")
global_config = os.path.join(config_dir or home, ".claude.json")
try:
    with open(global_config) as fh:
        onboarded = json.load(fh).get("hasCompletedOnboarding") is True
except OSError:
    onboarded = False
if not onboarded:
    print("claude: onboarding has not been completed", file=sys.stderr)
    sys.exit(1)
credentials = os.path.join(config_dir or os.path.join(home, ".claude"), ".credentials.json")
"""
# A script that asks about the credential file the upstream contract names, nothing else.
PLAIN = """
import json, os, sys
home = os.environ["HOME"]
config_dir = os.environ.get("CLAUDE_CONFIG_DIR")
credentials = os.environ["CLAUDE_USAGE_CREDS_FILE"]
"""
# Both answer per account from a table the test writes (keyed by slot name, recovered from
# the synthetic token), and log each call.
ANSWER = """
with open(credentials) as fh:
    token = json.load(fh)["claudeAiOauth"]["accessToken"]
slot = token.split("-test-", 1)[1].rsplit("-access-", 1)[0]
with open(os.environ["GSP_TEST_LOG"], "a") as fh:
    fh.write(json.dumps({"slot": slot, "argv": sys.argv[1:], "home": home,
                         "config_dir": config_dir, "cwd": os.getcwd()}) + "\\n")
with open(os.environ["GSP_TEST_TABLE"]) as fh:
    answer = json.load(fh).get(slot)
if answer is None:
    print("claude: not logged in", file=sys.stderr)
    sys.exit(1)
print(json.dumps(answer))
"""


def window(used: float, resets_in: float) -> dict:
    return {"utilization": used, "resets_in_seconds": resets_in}


def answer(five: float, week: float, week_reset_in: float = 3 * DAY) -> dict:
    """One script answer, 0.1.0's shape (0-1 fractions, seconds from now)."""
    return {"five_hour": window(five, 2 * H), "seven_day": window(week, week_reset_in)}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


class Sandbox:
    """A user's HOME with Claude Code set up, slots, a usage script and a state dir."""

    def __init__(
        self,
        tmp_path: Path,
        server: FakeAnthropicServer,
        names: tuple[str, ...],
        claude_like: bool = False,
    ):
        self.tmp = tmp_path
        self.server = server
        self.home = tmp_path / "home"
        self.claude = self.home / ".claude"
        self.state = tmp_path / "state"
        self.log = tmp_path / "script-calls.jsonl"
        self.table = tmp_path / "script-answers.json"
        now = time.time()
        for name in names:
            write_slot(self.claude, name, credential_bytes(name, expires_at=now + 8 * H))
        link_live(self.claude, names[0])
        (self.home / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True}))
        claude_bin = self.home / ".local" / "bin" / "claude"
        claude_bin.parent.mkdir(parents=True)
        claude_bin.write_text("#!/bin/sh\nexit 0\n")
        claude_bin.chmod(0o755)
        self.script = tmp_path / "check-claude-usage"
        body = (CLAUDE_LIKE if claude_like else PLAIN) + ANSWER
        self.script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
        self.script.chmod(0o755)
        self.answers: dict[str, dict] = {}
        self.write_answers()
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
            "GPTME_SUBSCRIPTION_STATE_DIR": str(self.state),
            "GPTME_SUBSCRIPTION_API_BASE": server.base_url,
            "GPTME_SUBSCRIPTION_POLL_TIMEOUT": "2",
            "GPTME_SUBSCRIPTION_LOCK_WAIT": "2",
            "GSP_TEST_LOG": str(self.log),
            "GSP_TEST_TABLE": str(self.table),
        }

    def write_answers(self, **answers: dict | None) -> None:
        for name, doc in answers.items():
            if doc is None:
                self.answers.pop(name, None)
            else:
                self.answers[name] = doc
        self.table.write_text(json.dumps(self.answers))

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def run(self, *args: str, code: int | None = 0, script: bool = True) -> str:
        env = dict(self.env)
        if script:
            env["GPTME_SUBSCRIPTION_USAGE_SCRIPT"] = str(self.script)
        proc = subprocess.run(
            [sys.executable, "-m", "gptme_subscription_plugin", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.tmp,
        )
        if code is not None:
            assert proc.returncode == code, (proc.stdout, proc.stderr)
        assert "sk-ant" not in proc.stdout + proc.stderr
        return proc.stdout

    def line(self, out: str, slot: str) -> str:
        return next(line for line in out.splitlines() if line.startswith(f"{slot} "))

    def rotation(self) -> dict:
        path = self.state / "rotation.json"
        return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture
def sandbox(tmp_path: Path, fake_server: FakeAnthropicServer) -> Sandbox:
    return Sandbox(tmp_path, fake_server, ("alice", "bob", "carol"))


@pytest.fixture
def claude_sandbox(tmp_path: Path, fake_server: FakeAnthropicServer) -> Sandbox:
    """The usage script needs the user's HOME, as 0.1.0's check-claude-usage.sh does."""
    return Sandbox(tmp_path, fake_server, ("alice", "bob", "carol"), claude_like=True)


# ---------------------------------------------------------------- check-auth --probe


def test_probe_runs_the_usage_script_with_no_cache_and_says_the_script_answered(sandbox):
    sandbox.write_answers(alice=answer(0.1, 0.2), bob=answer(0.1, 0.3), carol=answer(0.2, 0.1))
    out = sandbox.run("check-auth", "--probe")
    calls = sandbox.calls()
    assert sorted(c["slot"] for c in calls) == ["alice", "bob", "carol"]
    assert all(c["argv"] == ["--json", "--no-cache"] for c in calls)
    for name in ("alice", "bob", "carol"):
        assert "probe: ok (the usage script answered" in sandbox.line(out, name)
    assert "endpoint" not in out
    assert sandbox.server.request_count(path=USAGE_PATH) == 0  # nothing asked the endpoint
    doc = json.loads(sandbox.run("check-auth", "--probe", "--json"))
    assert {row["slot"]: row["probe"]["source"] for row in doc["slots"]} == {
        "alice": "usage script",
        "bob": "usage script",
        "carol": "usage script",
    }


def test_a_failing_script_probe_fails_even_with_an_older_cached_reading(sandbox):
    sandbox.write_answers(alice=answer(0.1, 0.2), bob=answer(0.1, 0.3), carol=answer(0.2, 0.1))
    sandbox.run("status", "--refresh")  # every slot has a good reading in the cache now
    assert len(sandbox.calls()) == 3
    sandbox.write_answers(bob=None)  # bob's script answer fails from now on
    out = sandbox.run("check-auth", "--probe", code=1)
    bob = sandbox.line(out, "bob")
    assert "probe: FAIL" in bob and "not logged in" in bob and "answered" not in bob
    assert "probe: ok" in sandbox.line(out, "alice")
    doc = json.loads(sandbox.run("check-auth", "--probe", "--json", code=1))
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
    sandbox.run("status", "--refresh", script=False)
    sandbox.server.set_fault("500", token=access_token("bob"))
    out = sandbox.run("check-auth", "--probe", code=1, script=False)
    bob = sandbox.line(out, "bob")
    assert "probe: FAIL" in bob and "HTTP 500" in bob and "reauth" not in bob
    assert "probe: ok (the usage endpoint accepted the token)" in sandbox.line(out, "alice")
    assert "usage script" not in out


def test_a_401_probe_marks_the_credential_rejected_and_evaluate_never_switches_onto_it(sandbox):
    server = sandbox.server
    now = time.time()

    def doc(week: float, reset_in: float) -> dict:
        return {
            "five_hour": {"utilization": 10, "resets_at": iso(now + 2 * H)},
            "seven_day": {"utilization": week, "resets_at": iso(now + reset_in)},
        }

    # bob would be the best target: his weekly quota expires first
    server.set_usage(access_token("alice"), doc(20, 3 * DAY))
    server.set_usage(access_token("bob"), doc(10, 1 * DAY))
    server.set_usage(access_token("carol"), doc(10, 5 * DAY))
    sandbox.run("status", "--refresh", script=False)
    server.set_usage(access_token("alice"), doc(100, 3 * DAY))  # alice runs dry
    server.remove_usage(access_token("bob"))  # bob's credential is revoked: 401 from now on
    server.reset_requests()

    out = sandbox.run("check-auth", "--probe", code=1, script=False)
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
    decision = json.loads(sandbox.run("evaluate", "--json", script=False))["decision"]
    # the probe's readings and its verdict still stand: nothing is asked again
    assert server.request_count(path=USAGE_PATH) == 0
    assert decision["target"] == "carol", decision
    status = json.loads(sandbox.run("status", "--json", script=False))
    bob_row = next(s for s in status["slots"] if s["name"] == "bob")
    assert bob_row["rejected"]["source"] == "the usage endpoint answered 401"


def test_an_evaluate_after_a_script_probe_uses_its_readings_without_asking_again(sandbox):
    sandbox.write_answers(alice=answer(0.1, 0.99), bob=answer(0.1, 0.3), carol=answer(0.1, 0.3))
    sandbox.run("check-auth", "--probe")
    assert len(sandbox.calls()) == 3
    decision = json.loads(sandbox.run("evaluate", "--json"))["decision"]
    assert len(sandbox.calls()) == 3  # within the poll interval: the probe's readings
    assert decision["action"] == "switch" and decision["target"] in ("bob", "carol")


# ---------------------------------------------------------------- the script's environment


def test_a_usage_script_that_needs_the_users_home_answers_for_every_slot(claude_sandbox):
    sb = claude_sandbox
    sb.write_answers(alice=answer(0.1, 0.2), bob=answer(0.2, 0.3), carol=answer(0.3, 0.4))
    out = sb.run("check-auth", "--probe")
    for name in ("alice", "bob", "carol"):
        assert "probe: ok" in sb.line(out, name)
    calls = {c["slot"]: c for c in sb.calls()}
    assert all(c["home"] == str(sb.home) and c["cwd"] == str(sb.tmp) for c in calls.values())
    assert calls["alice"]["config_dir"] is None  # the live slot: the user's own ~/.claude
    assert None not in (calls["bob"]["config_dir"], calls["carol"]["config_dir"])
    assert calls["bob"]["config_dir"] != calls["carol"]["config_dir"]  # one throwaway each
    status = json.loads(sb.run("status", "--json"))
    weekly = {s["name"]: s["usage"]["seven_day"]["utilization"] for s in status["slots"]}
    assert weekly == {"alice": 0.2, "bob": 0.3, "carol": 0.4}


def test_a_slot_that_is_not_live_and_about_to_expire_is_not_handed_to_the_script(sandbox):
    """A `claude` started by the script would refresh it in a throwaway dir: the slot would
    keep a spent refresh token."""
    sandbox.write_answers(alice=answer(0.1, 0.2), bob=answer(0.1, 0.3), carol=answer(0.1, 0.3))
    write_slot(sandbox.claude, "bob", credential_bytes("bob", expires_at=time.time() + 60))
    out = sandbox.run("check-auth", "--probe")
    assert sorted(c["slot"] for c in sandbox.calls()) == ["alice", "carol"]
    assert "probe: skipped" in sandbox.line(out, "bob")


def test_a_live_reading_taken_while_the_live_link_moved_is_dropped(claude_sandbox, monkeypatch):
    """The live slot's script reads Claude Code's own dir: after a flip it reads another
    account, and that reading must not be filed under the slot it was asked about."""
    sandbox = claude_sandbox
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    sandbox.write_answers(alice=answer(0.1, 0.2), bob=answer(0.9, 0.9), carol=answer(0.1, 0.3))
    flipping = sandbox.tmp / "flip-then-ask"
    flipping.write_text(
        f"#!/bin/sh\nln -sfn .credentials.json.bob {sandbox.claude}/.credentials.json\n"
        f'exec {sandbox.script} "$@"\n'
    )
    flipping.chmod(0o755)
    config = manager(sandbox, []).config
    m = SubscriptionManager(dataclasses.replace(config, usage_script=flipping))
    usage = m.check_usage(names=["alice"])
    assert usage["alice"] is None  # bob's 90 % never lands in alice's cache
    assert "live slot changed" in (m.usage.status("alice", time.time())["last_error"] or "")


# ---------------------------------------------------------------- one clock read per observation


def manager(sandbox: Sandbox, order: list[str]) -> SubscriptionManager:
    config = Config(
        claude_dir=sandbox.claude,
        state_dir=sandbox.state,
        home=sandbox.home,
        usage_script=sandbox.script,
        fallback_order=order,
        poll_interval=180,
        poll_timeout=5.0,
        lock_wait=2.0,
    )
    return SubscriptionManager(config)


def test_one_refresh_reads_the_clock_once_for_every_slot(sandbox, monkeypatch):
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    same = answer(0.1, 0.3)
    sandbox.write_answers(alice=same, bob=same, carol=same)
    snaps = manager(sandbox, []).check_usage()
    assert len({s.observed_at for s in snaps.values() if s is not None}) == 1
    assert len({s.seven_day.resets_at for s in snaps.values() if s and s.seven_day}) == 1
