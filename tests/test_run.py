"""`run` and `env`: a new session starts in the profile of the slot routing picks.

Real processes throughout: our CLI as a subprocess, and in place of Claude Code a small script
that reports the config dir and arguments it was started with (and, when told, ends the way
Claude Code ends a turn refused for a rate limit: the error on stdout, exit 1; `--output-format
json` by default, or the text `FAKE_CLAUDE_LIMIT_OUTPUT` says; or as it ends a turn whose
credential the API refused: `FAKE_CLAUDE_REFUSED`, printing `FAKE_CLAUDE_REFUSED_OUTPUT`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .support.fake_api import FakeAnthropicServer
from .support.sandbox import Sandbox, tree

SLOTS = ("alice", "bob", "carol", "dave")

# Claude Code 2.1.330 `claude -p` after four 401s (authentication_error "OAuth token revoked"),
# exit 1, nothing on stderr (tests/e2e/test_run_e2e.py): text output, and the last lines of
# `--output-format json` (one line) and `stream-json` (the assistant's error, then the result).
REFUSED_TEXT = "Failed to authenticate. API Error: 401 OAuth token revoked"
REFUSED_RESULT = (
    '{"duration_api_ms":0,"stop_reason":"stop_sequence","session_id":"e8d8c7ed-e416-4da2-90ae-'
    '6a482e3ad5f5","total_cost_usd":0,"modelUsage":{},"permission_denials":[],"terminal_reason"'
    ':"api_error","is_error":true,"num_turns":1,"subtype":"success","api_error_status":401,'
    '"api_error_type":"authentication_error","result":"Failed to authenticate. API Error: 401 '
    'OAuth token revoked","type":"result","duration_ms":2201,"queued_turn_count":0,'
    '"result_index":0}'
)
REFUSED_STREAM = (
    '{"type":"assistant","message":{"model":"<synthetic>","role":"assistant","content":[{"type"'
    ':"text","text":"Failed to authenticate. API Error: 401 OAuth token revoked"}]},'
    '"session_id":"e8d8c7ed-e416-4da2-90ae-6a482e3ad5f5","error":"authentication_failed",'
    '"is_api_error_message":true,"api_error_status":401,"api_error_type":"authentication_error"}'
    "\n" + REFUSED_RESULT
)

FAKE_CLAUDE = """\
import json, os, signal, subprocess, sys
log = os.environ["FAKE_CLAUDE_LOG"]
config = os.environ.get("CLAUDE_CONFIG_DIR", "")
stdin = sys.stdin.read() if os.environ.get("FAKE_CLAUDE_READ_STDIN") else None
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
with open(log, "a") as f:
    doc = {"config": config, "argv": sys.argv[1:], "stdin": stdin, "pid": os.getpid()}
    f.write(json.dumps(doc) + "\\n")
if os.environ.get("FAKE_CLAUDE_WAIT"):  # until a signal ends it
    signal.pause()
limited = os.environ.get("FAKE_CLAUDE_LIMITED", "").split(",")
if os.path.basename(config) in limited:
    print(os.environ.get(
        "FAKE_CLAUDE_LIMIT_OUTPUT",
        '{"type":"result","is_error":true,"result":"API Error: 429 rate_limit_error"}',
    ))
    sys.exit(1)
if os.path.basename(config) in os.environ.get("FAKE_CLAUDE_REFUSED", "").split(","):
    if os.environ.get("FAKE_CLAUDE_STOP_FAILURE"):  # our StopFailure hook, as Claude Code runs it
        payload = {"session_id": "s", "hook_event_name": "StopFailure", "cwd": "/tmp",
                   "error": os.environ["FAKE_CLAUDE_STOP_FAILURE"]}
        subprocess.run([sys.executable, "-m", "gptme_subscription_plugin", "hook",
                        "stop-failure-worker"], input=json.dumps(payload), text=True, check=True)
    print(os.environ["FAKE_CLAUDE_REFUSED_OUTPUT"])
    sys.exit(1)
print("served from " + os.path.basename(config))
sys.exit(int(os.environ.get("FAKE_CLAUDE_EXIT", "0")))
"""


@pytest.fixture
def sb(tmp_path: Path, fake_server: FakeAnthropicServer) -> Sandbox:
    """alice live; bob, carol and dave in their profiles, all with room."""
    sandbox = Sandbox(tmp_path, SLOTS, server=fake_server, usage=(10.0, 20.0))
    sandbox.run("profile", "enable", code=0)
    claude = tmp_path / "claude"
    claude.write_text(f"#!{sys.executable}\n{FAKE_CLAUDE}")
    claude.chmod(0o700)
    sandbox.env["FAKE_CLAUDE_LOG"] = str(tmp_path / "claude.log")
    return sandbox


def claude(sb: Sandbox) -> str:
    return str(sb.root / "claude")


def started(sb: Sandbox) -> list[dict[str, object]]:
    log = sb.root / "claude.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def profile(sb: Sandbox, slot: str) -> str:
    return str(sb.home / ".claude-profiles" / slot)


def refused(sb: Sandbox, *args: str, code: int = 1, **env: str) -> str:
    """Exit `code`, one line on stderr, nothing on stdout, no file changed, nothing started."""
    before = tree(sb.root)
    proc = sb.run(*args, code=code, **env)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert tree(sb.root) == before
    assert started(sb) == []
    return lines[0]


def on_bob(sb: Sandbox, retries: str = "1", **kw: object) -> subprocess.CompletedProcess[str]:
    """`run --slot bob --retry-on-limit N -- claude -p work` (`kw`: the exit code, env)."""
    args = ("run", "--slot", "bob", "--retry-on-limit", retries, "--", claude(sb), "-p", "work")
    return sb.run(*args, **kw)  # type: ignore[arg-type]


def test_run_starts_the_command_in_the_routed_slots_profile(sb: Sandbox) -> None:
    proc = sb.run("run", "--", claude(sb), "-p", "hi", code=0)

    [start] = started(sb)
    slot = Path(str(start["config"])).name
    assert start["config"] == profile(sb, slot) and slot in ("bob", "carol", "dave")
    assert start["argv"] == ["-p", "hi"]  # nothing added without --retry-on-limit
    assert proc.stdout.strip() == f"served from {slot}"
    assert f"on {slot}" in proc.stderr
    assert sb.live() == "alice"  # the live link is not the launcher's business


def test_run_passes_the_exit_status_through(sb: Sandbox) -> None:
    sb.run("run", "--slot", "carol", "--", claude(sb), code=7, FAKE_CLAUDE_EXIT="7")
    assert [s["config"] for s in started(sb)] == [profile(sb, "carol")]


def test_concurrent_launches_spread_over_the_profile_slots(sb: Sandbox) -> None:
    def env_once(_: int) -> str:
        out = sb.run("env", "--json", code=0).stdout
        return str(json.loads(out)["slot"])

    with ThreadPoolExecutor(12) as pool:
        slots = Counter(pool.map(env_once, range(12)))

    # each launch is recorded in the locked update that chose it: the twelve see each other,
    # and the best ranked slot takes one only while it carries at most one more than the least
    assert set(slots) == {"bob", "carol", "dave"}
    assert max(slots.values()) - min(slots.values()) <= 2, slots


def test_env_prints_exports_a_shell_can_eval(sb: Sandbox) -> None:
    out = sb.run("env", "--slot", "dave", code=0).stdout
    shell = subprocess.run(
        ["sh", "-c", out + '\nprintf %s "$CLAUDE_CONFIG_DIR"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout == profile(sb, "dave")
    assert out.startswith("# slot dave: dave as asked")


def test_a_resumed_session_goes_back_to_its_slot(sb: Sandbox) -> None:
    sb.run("run", "--", claude(sb), "-p", "one", "--session-id", "s-1", code=0)
    first = started(sb)[0]["config"]
    for _ in range(3):  # other launches in between: routing would spread them
        sb.run("run", "--", claude(sb), "-p", "other", code=0)

    sb.run("run", "--", claude(sb), "-p", "two", "--resume", "s-1", code=0)

    assert started(sb)[-1]["config"] == first


def test_retry_on_limit_resumes_the_session_on_another_slot(sb: Sandbox) -> None:
    proc = on_bob(
        sb,
        retries="1",
        code=0,
        FAKE_CLAUDE_LIMITED="bob",
    )

    first, second = started(sb)
    assert first["config"] == profile(sb, "bob")
    assert second["config"] in (profile(sb, "carol"), profile(sb, "dave"))
    session = first["argv"][1]  # type: ignore[index]
    assert first["argv"] == ["--session-id", session, "-p", "work"]
    assert second["argv"] == ["--resume", session, "-p", "work"]
    assert "hit its rate limit" in proc.stderr and f"resuming session {session}" in proc.stderr
    assert "rate_limit_error" in proc.stdout  # the failed run's output passed through
    assert sb.rotation()["limited"]["bob"] > 0


@pytest.mark.parametrize(
    "said",
    [
        # what Claude Code 2.1.330 prints on stdout for a refused turn in text output (the
        # default of `claude -p`), with nothing on stderr (tests/e2e/test_run_e2e.py)
        "You've hit your 5-hour limit \u00b7 resets 12:48pm (UTC)",
        "You've hit your weekly limit \u00b7 resets Dec 7, 9am (UTC)",
        "You've hit your Opus limit",
        "You've hit your session limit",
    ],
)
def test_retry_on_limit_knows_claude_codes_text_output(sb: Sandbox, said: str) -> None:
    proc = on_bob(
        sb,
        retries="1",
        code=0,
        FAKE_CLAUDE_LIMITED="bob",
        FAKE_CLAUDE_LIMIT_OUTPUT=said,
    )

    assert [Path(str(s["config"])).name != "bob" for s in started(sb)] == [False, True]
    assert "bob hit its rate limit" in proc.stderr and said in proc.stdout


def test_retry_on_limit_gives_a_piped_prompt_to_every_run(sb: Sandbox) -> None:
    """`claude -p` reads a piped stdin as (or after) the prompt; the resumed run needs it too
    (with none, Claude Code 2.1.330 ends it: "Provide a prompt to continue the conversation")."""
    sb.run(
        *("run", "--slot", "bob", "--retry-on-limit", "1", "--", claude(sb), "-p"),
        code=0,
        stdin="the task\n",
        FAKE_CLAUDE_LIMITED="bob",
        FAKE_CLAUDE_READ_STDIN="1",
    )

    assert [s["stdin"] for s in started(sb)] == ["the task\n", "the task\n"]


def test_an_interrupt_of_a_supervised_run_reaches_claude_code(sb: Sandbox) -> None:
    """SIGINT to `run --retry-on-limit` alone (a process manager's stop, or ^C) ends the run:
    forwarded like SIGTERM, the run's status is ours, nothing is retried or left running."""
    argv = ["run", "--slot", "bob", "--retry-on-limit", "1", "--", claude(sb), "-p", "x"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gptme_subscription_plugin", *argv],
        env={**sb.env, "FAKE_CLAUDE_WAIT": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not started(sb) and time.monotonic() < deadline:
            time.sleep(0.05)
        [run] = started(sb)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        for start in started(sb):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(str(start["pid"])), signal.SIGKILL)

    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert len(started(sb)) == 1


def test_retry_on_limit_stops_after_n_retries(sb: Sandbox) -> None:
    proc = on_bob(
        sb,
        retries="1",
        code=1,
        FAKE_CLAUDE_LIMITED="bob,carol,dave",
    )
    assert len(started(sb)) == 2
    assert "no retries left (--retry-on-limit 1)" in proc.stderr


@pytest.mark.parametrize("said", [REFUSED_TEXT, REFUSED_RESULT, REFUSED_STREAM])
def test_retry_on_limit_resumes_a_session_whose_login_was_refused(sb: Sandbox, said: str) -> None:
    """A revoked token (401) ends the run as a rate limit does: the slot cannot serve. It is
    recorded as rejected (never chosen again until its credential changes), and the session
    goes on elsewhere, in text, JSON and stream-JSON output alike."""
    proc = on_bob(
        sb,
        code=0,
        FAKE_CLAUDE_REFUSED="bob",
        FAKE_CLAUDE_REFUSED_OUTPUT=said,
    )

    first, second = started(sb)
    other = Path(str(second["config"])).name
    assert first["config"] == profile(sb, "bob") and other in ("carol", "dave")
    session = first["argv"][1]  # type: ignore[index]
    assert second["argv"] == ["--resume", session, "-p", "work"]
    assert f"bob's login was refused (reauth bob); resuming session {session} on {other}" in (
        proc.stderr
    )
    assert said in proc.stdout and f"served from {other}" in proc.stdout
    rotation = sb.rotation()
    assert rotation["rejected"]["bob"]["source"] == "run: authentication_failed"
    assert "bob" not in rotation.get("limited", {})
    assert [e["slot"] for e in sb.events("credential-rejected")] == ["bob"]
    # the next launch skips bob
    assert json.loads(sb.run("env", "--json", code=0).stdout)["slot"] != "bob"


@pytest.mark.parametrize(
    ("refused", "limited", "says"),
    [
        ("bob,carol,dave", "", "login was refused (reauth {other}); no retries left"),
        ("bob", "carol,dave", "{other} hit its rate limit; no retries left"),
    ],
)
def test_a_refused_login_counts_against_the_same_retries(
    sb: Sandbox, refused: str, limited: str, says: str
) -> None:
    proc = on_bob(
        sb,
        code=1,
        FAKE_CLAUDE_REFUSED=refused,
        FAKE_CLAUDE_REFUSED_OUTPUT=REFUSED_TEXT,
        FAKE_CLAUDE_LIMITED=limited,
    )

    first, second = started(sb)
    other = Path(str(second["config"])).name
    assert first["config"] == profile(sb, "bob") and other in ("carol", "dave")
    assert "bob's login was refused (reauth bob); resuming session" in proc.stderr
    assert says.format(other=other) + " (--retry-on-limit 1)" in proc.stderr


def test_a_rejection_our_hook_recorded_resumes_the_session(sb: Sandbox) -> None:
    """Our StopFailure hook records the refusal as Claude Code gives the turn up, whatever
    the run printed (here a credential refused for its organization, output we do not read):
    that record alone is enough, and it is not recorded twice."""
    proc = on_bob(
        sb,
        code=0,
        FAKE_CLAUDE_REFUSED="bob",
        FAKE_CLAUDE_REFUSED_OUTPUT="API Error: 403 this organization is not allowed",
        FAKE_CLAUDE_STOP_FAILURE="oauth_org_not_allowed",
    )

    assert [Path(str(s["config"])).name != "bob" for s in started(sb)] == [False, True]
    assert "bob's login was refused (reauth bob); resuming session" in proc.stderr
    assert sb.rotation()["rejected"]["bob"]["source"] == "StopFailure oauth_org_not_allowed"
    assert [e["slot"] for e in sb.events("credential-rejected")] == ["bob"]


@pytest.mark.parametrize(
    ("printed", "code"),
    [
        (REFUSED_TEXT, "0"),  # a run that succeeded, whatever it printed last
        (REFUSED_TEXT + "\nthen the answer", "3"),  # a 401 mentioned, not the run's last word
        ('{"type":"result","is_error":true,"api_error_status":500}', "3"),
    ],
)
def test_a_401_that_did_not_end_the_run_is_not_retried(
    sb: Sandbox, printed: str, code: str
) -> None:
    """A guard (it passes without the refused-login rule too): only the exact ending counts."""
    script = sb.root / "says.py"
    script.write_text(f"#!{sys.executable}\nimport sys\nprint({printed!r})\nsys.exit({code})\n")
    script.chmod(0o700)
    proc = sb.run(
        *("run", "--slot", "bob", "--retry-on-limit", "2", "--", str(script), "-p", "x"),
        code=int(code),
    )
    assert printed in proc.stdout and "resuming" not in proc.stderr
    assert sb.rotation().get("rejected", {}) == {}


def test_a_failure_that_is_not_a_limit_is_not_retried(sb: Sandbox) -> None:
    sb.run(
        "run", "--retry-on-limit", "3", "--", claude(sb), "-p", "x", code=5, FAKE_CLAUDE_EXIT="5"
    )
    assert len(started(sb)) == 1


def test_routing_never_starts_a_session_on_a_spent_slot(sb: Sandbox) -> None:
    sb.set_usage("bob", 100.0, 30.0)
    sb.set_usage("carol", 20.0, 100.0)
    sb.run("status", "--refresh", code=0)

    for _ in range(4):
        assert json.loads(sb.run("env", "--json", code=0).stdout)["slot"] == "dave"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("run", "--slot", "nosuch", "--", "claude"), "no slot named nosuch"),
        (("run", "--slot", "alice", "--", "claude"), "not in a profile"),
        (("run", "--slot", "../x", "--", "claude"), "slot name"),
        (("env", "--slot", "alice"), "not in a profile"),
    ],
)
def test_bad_slots_are_refused(sb: Sandbox, args: tuple[str, ...], says: str) -> None:
    assert says in refused(sb, *args)


def test_run_without_a_command_or_with_a_token_in_the_env_is_refused(sb: Sandbox) -> None:
    assert "needs the command" in refused(sb, "run", code=2)
    line = refused(sb, "run", "--", claude(sb), code=2, CLAUDE_CODE_OAUTH_TOKEN="x")
    assert "CLAUDE_CODE_OAUTH_TOKEN" in line and "x" not in line.split(":")[-1].split()
    assert "add -p" in refused(sb, "run", "--retry-on-limit", "1", "--", claude(sb), code=2)


@pytest.mark.parametrize("flag", ["-c", "--continue"])
def test_retry_on_limit_with_continue_is_refused(sb: Sandbox, flag: str) -> None:
    """It could only follow the run by adding `--session-id`, which Claude Code 2.1.330 refuses
    beside --continue ("--session-id with --continue or --resume also needs --fork-session")."""
    line = refused(sb, "run", "--retry-on-limit", "1", "--", claude(sb), flag, "-p", "x", code=2)
    assert "--resume" in line and flag in line


def test_no_slot_in_a_profile_is_a_clear_refusal(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, ("alice", "bob"))
    sandbox.run("slot", "list", code=0)  # the state dir settles first
    assert "profile enable" in refused(sandbox, "env")


def test_dry_run_reserves_nothing(sb: Sandbox) -> None:
    before = tree(sb.root)
    doc = json.loads(sb.run("run", "--dry-run", "--json", "--", claude(sb), "-p", "x").stdout)
    assert doc["env"] == {"CLAUDE_CONFIG_DIR": doc["config_dir"]}
    assert doc["argv"] == [claude(sb), "-p", "x"]

    def reserved(files: dict[str, object]) -> dict[str, object]:
        """What a launch records (usage polls are the cache's, taken by any look)."""
        return {k: v for k, v in files.items() if not k.startswith("state/usage")}

    assert reserved(tree(sb.root)) == reserved(before)
    assert started(sb) == []
    assert os.path.basename(doc["config_dir"]) == doc["slot"]
