"""Honest probes and usage scripts: `check-auth --probe` asks, and says who answered; a usage
script runs in the user's own environment; equal readings leave the choice to fallback_order.

Real processes throughout: the CLI as a subprocess, usage scripts as executables, the usage
endpoint as the loopback fake API.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
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


# ---------------------------------------------------------------- scripts that scrape a TUI


def shell_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux, as 0.1.0's script does")
def test_the_scripts_tmux_never_joins_a_tmux_server_already_running(sandbox, tmp_path):
    """0.1.0's script runs `claude` in `tmux new-session -d`: on a server already running
    (the user's own, or one a run for another slot started) the session gets that server's
    environment, and its `claude` reads another credential than the slot's."""
    user_tmux = tmp_path / "user-tmux"
    user_tmux.mkdir(mode=0o700)
    user_env = {"PATH": os.environ["PATH"], "TMUX_TMPDIR": str(user_tmux), "HOME": str(tmp_path)}
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", "user", "sleep 600"], env=user_env, check=True
    )
    seen = tmp_path / "seen"
    seen.mkdir()
    script = shell_script(
        tmp_path / "tmux-usage.sh",
        f"""\
        out={seen}/"$GPTME_SUBSCRIPTION_SLOT"
        tmux new-session -d "printf '%s|%s' \\"\\$CLAUDE_CONFIG_DIR\\" \\
            \\"\\$GPTME_SUBSCRIPTION_INSIDE_USAGE_SCRIPT\\" > $out.tmp && mv $out.tmp $out"
        i=0
        while [ ! -f "$out" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
        echo '{{"five_hour": {{"utilization": 0.1, "resets_in_seconds": 3600}}}}'
        """,
    )
    env = dict(sandbox.env)
    env.update(
        GPTME_SUBSCRIPTION_USAGE_SCRIPT=str(script),
        TMUX_TMPDIR=str(user_tmux),
        TMUX=f"{user_tmux}/tmux-{os.getuid()}/default,1,0",  # as in a pane of the user's tmux
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "gptme_subscription_plugin", "status", "--refresh"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        subprocess.run(["tmux", "kill-server"], env=user_env, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    got = {p.name: p.read_text() for p in seen.iterdir()}
    assert set(got) == {"alice", "bob", "carol"}
    assert got["alice"] == "|1"  # live, in the default dir: no CLAUDE_CONFIG_DIR, as for you
    for name in ("bob", "carol"):  # each in its own throwaway config dir
        config_dir, inside = got[name].split("|")
        assert "gsp-usage-run-" in config_dir and inside == "1", got


def test_usage_script_runs_never_overlap_across_slots_and_processes(sandbox, tmp_path):
    """A script that scrapes a `claude` TUI takes one caller at a time (0.1.0's holds a global
    lock and fails a second caller): every run of ours waits for the one before."""
    running, overlaps = tmp_path / "running", tmp_path / "overlaps"
    script = shell_script(
        tmp_path / "slow-usage.sh",
        f"""\
        if ! mkdir {running} 2>/dev/null; then echo "$GPTME_SUBSCRIPTION_SLOT" >> {overlaps}; fi
        sleep 0.3
        rmdir {running} 2>/dev/null
        echo '{{"seven_day": {{"utilization": 0.2, "resets_in_seconds": 86400}}}}'
        """,
    )
    env = {**sandbox.env, "GPTME_SUBSCRIPTION_USAGE_SCRIPT": str(script)}
    env["GPTME_SUBSCRIPTION_POLL_INTERVAL"] = "0"
    argv = [sys.executable, "-m", "gptme_subscription_plugin", "status", "--refresh", "--json"]
    procs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert not overlaps.exists(), overlaps.read_text()
    cached = json.loads(sandbox.cli("status", "--json", script=False))
    assert all(s["usage"] is not None for s in cached["slots"]), cached  # every slot was read


def test_a_refresh_of_the_live_token_while_its_script_runs_keeps_the_reading(sandbox, tmp_path):
    """The script's own `claude` may refresh the live token, replacing the live link with a
    file (Claude Code's way): the same account, so the reading stands."""
    live = sandbox.claude / ".credentials.json"
    script = shell_script(
        tmp_path / "refreshing-usage.sh",
        f"""\
        if [ "$GPTME_SUBSCRIPTION_SLOT" = alice ]; then
            cp --remove-destination "$(readlink -f {live})" {live}
        fi
        echo '{{"seven_day": {{"utilization": 0.4, "resets_in_seconds": 86400}}}}'
        """,
    )
    env = {**sandbox.env, "GPTME_SUBSCRIPTION_USAGE_SCRIPT": str(script)}
    proc = subprocess.run(
        [sys.executable, "-m", "gptme_subscription_plugin", "status", "--refresh", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    slots = {s["name"]: s for s in json.loads(proc.stdout)["slots"]}
    assert not live.is_symlink()  # the script did refresh it
    assert slots["alice"]["poll"]["last_error"] is None
    assert slots["alice"]["usage"]["seven_day"]["utilization"] == pytest.approx(0.4)


def test_a_probe_of_no_slots_asks_nothing(sandbox, monkeypatch):
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    m = sandbox.script_manager([])
    assert m.probe(names=[]) == {}
    assert m.check_usage(names=[]) == {}
    assert sandbox.calls() == []
