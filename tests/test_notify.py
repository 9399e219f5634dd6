"""Alerts: `notify_command` gets one JSON event on stdin, from real hook runs; the hook never
waits for it, a hung command is killed, one alert per kind per interval even when hooks race,
no token ever in it, and a broken command breaks nothing.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.credentials import (
    access_token,
    claude_code_refresh,
    credential_bytes,
    refresh_token,
)
from tests.support.sandbox import Sandbox, hook_payload

REJECTED = hook_payload("StopFailure", error="authentication_failed", error_details="401")
# StopFailure hands its work to a detached worker; the tests run that worker's step directly
FAILURE = "stop-failure-worker"
RECORDER = """
import sys
with open(sys.argv[1], "ab") as fh:
    fh.write(sys.stdin.buffer.read())
"""


@pytest.fixture
def sb(tmp_path, fake_server) -> Sandbox:
    return Sandbox(tmp_path, ("alice", "bob"), server=fake_server, usage=(10, 20))


def recorder(sb: Sandbox) -> tuple[dict[str, str], Path]:
    """The env that makes a script the notify command, and the file it appends events to."""
    script, out = sb.root / "recorder.py", sb.root / "alerts.jsonl"
    script.write_text(RECORDER)
    command = json.dumps([sys.executable, str(script), str(out)])
    cfg = Path(sb.env["XDG_CONFIG_HOME"]) / "gptme-subscription"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "config.toml").write_text(f"notify_command = {command}\nnotify_timeout = 5\n")
    return {}, out


def wait_for(predicate, timeout: float = 30.0):
    """Poll a file-system fact the detached watchdog produces (nothing to wait on but it)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def alerts(out: Path) -> list[dict]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def test_a_rejected_login_alerts_once_per_interval_without_a_token(sb: Sandbox) -> None:
    _, out = recorder(sb)
    sb.hook(FAILURE, REJECTED)
    (event,) = wait_for(lambda: alerts(out))
    assert event["kind"] == "credential-rejected" and event["slot"] == "alice"
    assert "reauth alice" in event["message"]
    raw = out.read_text()
    for token in (access_token("alice"), refresh_token("alice"), "sk-ant"):
        assert token not in raw
    sb.hook(FAILURE, REJECTED)  # the same kind again, within notify_interval
    sent = [e["sent"] for e in sb.events("alert") if e["alert"] == "credential-rejected"]
    assert sent == [True, False]


def test_racing_hooks_send_one_alert(sb: Sandbox) -> None:
    recorder(sb)
    threads = [threading.Thread(target=sb.hook, args=(FAILURE, REJECTED)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = [e["sent"] for e in sb.events("alert") if e["alert"] == "credential-rejected"]
    assert sorted(sent) == [False, False, False, True]


def test_the_hook_does_not_wait_and_a_hung_command_is_killed(sb: Sandbox) -> None:
    pidfile = sb.root / "hung.pid"
    script = sb.root / "hang.py"
    script.write_text(
        "import os, sys, time\n"
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    cfg = Path(sb.env["XDG_CONFIG_HOME"]) / "gptme-subscription"
    cfg.mkdir(parents=True)
    command = json.dumps([sys.executable, str(script)])
    (cfg / "config.toml").write_text(f"notify_command = {command}\nnotify_timeout = 1\n")
    started = time.monotonic()
    sb.hook(FAILURE, REJECTED)
    assert time.monotonic() - started < 30  # far less than the command's 60 s
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text()))

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone)  # killed by the watchdog after notify_timeout, not after 60 s


def test_a_spent_pool_and_a_stale_pending_switch_alert(sb: Sandbox) -> None:
    _, out = recorder(sb)
    cfg = Path(sb.env["XDG_CONFIG_HOME"]) / "gptme-subscription" / "config.toml"
    cfg.write_text(cfg.read_text() + "pending_alert_after = 0.001\n")
    # a switch that must wait: another session is mid-turn
    sb.hook("UserPromptSubmit", hook_payload("UserPromptSubmit", session="busy"))
    sb.run("switch", "bob", code=0)
    sb.hook("Stop", hook_payload("Stop", session="other"))
    wait_for(lambda: any(a["kind"] == "pending-stale" for a in alerts(out)))
    sb.hook("Stop", hook_payload("Stop", session="busy"))
    for name in ("alice", "bob"):
        sb.set_usage(name, 100, 100)
    sb.run("check-auth", "--probe")  # a poll now, past the poll interval
    sb.hook("Stop", hook_payload("Stop", session="busy"))
    red = wait_for(lambda: [a for a in alerts(out) if a["kind"] == "pool-red"])
    assert "no slot can serve" in red[0]["message"]


def test_a_missing_command_or_none_at_all_breaks_nothing(sb: Sandbox) -> None:
    cfg = Path(sb.env["XDG_CONFIG_HOME"]) / "gptme-subscription"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text('notify_command = "/nonexistent/notify --flag"\n')
    doc, _ = sb.hook(FAILURE, REJECTED)
    assert [e["sent"] for e in sb.events("alert")] == [True]  # handed to the watchdog
    (cfg / "config.toml").write_text("")
    sb.hook(FAILURE, hook_payload("StopFailure", session="s2", error="authentication_failed"))
    assert len(sb.events("alert")) == 1  # no command: no alert, no state


def test_a_refresh_that_cannot_be_filed_alerts(sb: Sandbox) -> None:
    """Claude Code refreshed alice (the live link became a file) and holds its credential
    lock: heal cannot file the new pair into alice's slot, and says so."""
    _, out = recorder(sb)
    claude_code_refresh(sb.claude, credential_bytes("alice", generation=2))
    (sb.claude / ".oauth_refresh.lock").mkdir()  # held, as proper-lockfile holds it
    try:
        proc = sb.run("heal", GPTME_SUBSCRIPTION_LOCK_WAIT="0.3")
    finally:
        (sb.claude / ".oauth_refresh.lock").rmdir()
    assert proc.returncode != 0
    (event,) = wait_for(lambda: [a for a in alerts(out) if a["kind"] == "refresh-unsaved"])
    assert "could not be saved" in event["message"]
    assert refresh_token("alice", 2) not in out.read_text()
