"""`gptme-subscription run` on the real Claude Code: the launcher and `--retry-on-limit`.

Each test is what a user does: four accounts, dave live on the link and alice, bob and carol
moved into their profiles by `gptme-subscription profile enable`, then `gptme-subscription run
[...] -- claude -p ...` from the project dir, our CLI and Claude Code as subprocesses in the
sandbox's HOME. The fake API on 127.0.0.1 knows which account owns every token, so "which
account served this session" is read from the requests, and a SessionStart hook in the shared
settings.json writes down the config dir each session really ran in.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

from ..support.fake_api import (
    FakeAnthropicServer,
    Response,
    api_error,
    bash,
    end_turn,
    ratelimit_headers,
)
from ..support.sandbox import tree
from .claude_harness import ClaudeProcess, ClaudeRun, ClaudeSandbox
from .test_hook_pack import gptme_subscription, our_env

pytestmark = pytest.mark.e2e

LIVE = "dave"
PROFILED = ("alice", "bob", "carol")
RUN_TIMEOUT = 60.0

# SessionStart hook: one line per session start, "<source> <CLAUDE_CONFIG_DIR>", in a file named
# after the session.
WHERE = """
import json, os, sys
doc = json.load(sys.stdin)
with open(os.path.join(sys.argv[1], doc["session_id"]), "a") as fh:
    fh.write(f"{doc.get('source')} {os.environ.get('CLAUDE_CONFIG_DIR', '')}\\n")
"""


@pytest.fixture
def fleet(claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer) -> ClaudeSandbox:
    """dave live on the link; alice, bob and carol in their profiles; the SessionStart hook."""
    for name in (LIVE, *PROFILED):
        fake_api.add_account(name)
        claude_sandbox.write_account_slot(name)
    claude_sandbox.link_live(LIVE)
    where = claude_sandbox.root / "where"
    where.mkdir()
    script = claude_sandbox.root / "where.py"
    script.write_text(WHERE)
    claude_sandbox.add_hook("SessionStart", f"{sys.executable} {script} {where}")
    out = gptme_subscription(claude_sandbox, fake_api, "profile", "enable")
    for name in PROFILED:
        assert f"enabled {name}" in out, out
    return claude_sandbox


def start(
    sandbox: ClaudeSandbox, server: FakeAnthropicServer, *args: str, piped: str | None = None
) -> ClaudeProcess:
    """`gptme-subscription ARGS` started from the project dir, as the person types it (with
    `piped` on its stdin: `printf %s PIPED | gptme-subscription ARGS`)."""
    label = f"ours-{len(list(sandbox.logs.iterdir())):02d}"
    argv = [sys.executable, "-m", "gptme_subscription_plugin", *args]
    if piped is not None:
        argv = ["sh", "-c", 'printf %s "$0" | "$@"', piped, *argv]
    return ClaudeProcess(
        argv,
        env=sandbox.env(our_env(sandbox, server)),
        cwd=sandbox.project,
        session_id=label,
        log_stem=sandbox.logs / label,
        marker=sandbox.marker,
    )


def ours(
    sandbox: ClaudeSandbox, server: FakeAnthropicServer, *args: str, piped: str | None = None
) -> ClaudeRun:
    return start(sandbox, server, *args, piped=piped).finish(RUN_TIMEOUT)


def profile_dir(sandbox: ClaudeSandbox, slot: str) -> str:
    return str(sandbox.home / ".claude-profiles" / slot)


def started_in(sandbox: ClaudeSandbox, session_id: str) -> list[tuple[str, str]]:
    """(source, config dir) of each start of the session, from the SessionStart hook."""
    path = sandbox.root / "where" / session_id
    lines = path.read_text().splitlines() if path.exists() else []
    return [(source, directory) for source, _, directory in (x.partition(" ") for x in lines)]


def owners(server: FakeAnthropicServer, session_id: str) -> list[str | None]:
    """The account behind each request of the session, first to last (agent or not)."""
    return [
        server.owner_of(c.token) for c in server.messages_calls(session_id=session_id, agent=False)
    ]


def test_concurrent_launches_spread_and_each_session_keeps_its_slots_account(
    fleet: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    """Four `run -- claude -p` at once (each turn a tool call and an answer, so they overlap)."""
    fake_api.script_each_turn(bash("sleep 1"), end_turn("done"))
    argv = ["--output-format", "json", "--allowedTools", "Bash"]
    procs = [
        start(fleet, fake_api, "run", "--json", "--", fleet.claude_bin, "-p", f"task {i}", *argv)
        for i in range(4)
    ]
    runs = [proc.finish(RUN_TIMEOUT) for proc in procs]

    assert max(r.started_at for r in runs) < min(r.started_at + r.duration for r in runs)
    landed = []
    for run in runs:
        assert run.ok and not run.result["is_error"], run.describe()
        launch = json.loads(run.stderr.splitlines()[0])  # our line comes before Claude Code's
        session = run.result["session_id"]
        accounts = owners(fake_api, session)
        # one account from first to last, and it is the slot's whose profile the session ran in
        assert len(accounts) >= 2 and set(accounts) == {launch["slot"]}, (launch, accounts)
        assert started_in(fleet, session) == [("startup", profile_dir(fleet, launch["slot"]))]
        landed.append(launch["slot"])
    assert len(set(landed)) >= 2, landed
    assert set(landed) <= set(PROFILED)
    assert LIVE not in {fake_api.owner_of(c.token) for c in fake_api.messages_calls(agent=False)}


@pytest.mark.parametrize("output", ["text", "json", "piped"])
def test_retry_on_limit_resumes_the_session_on_another_slot(
    fleet: ClaudeSandbox, fake_api: FakeAnthropicServer, output: str
) -> None:
    """Claude Code ends a refused turn with exit 1; in text output (the default) all it says
    is "You've hit your 5-hour limit · resets ...", in JSON `api_error_status: 429`. A prompt
    piped in (`piped`) is given to the resumed run too."""
    rejected = ratelimit_headers(time.time(), five_hour=1.0, status="rejected")
    # alice's account runs dry mid-turn: a tool call is served, the next request is refused;
    # the session's next request (on another account) ends the turn
    fake_api.script_messages(
        bash("printf 'TOOL-%s' RAN"),
        api_error(429, "rate_limit_error", "limited", **rejected),
        end_turn("carried on"),
    )
    prompt = "remember PINEAPPLE-42"

    claude = [fleet.claude_bin, "-p"]
    if output != "piped":
        claude += [prompt, "--output-format", output]
    claude += ["--allowedTools", "Bash"]  # variadic: after the prompt

    run = ours(
        fleet,
        fake_api,
        *("run", "--slot", "alice", "--retry-on-limit", "1", "--", *claude),
        piped=prompt if output == "piped" else None,
    )

    assert run.returncode == 0, run.describe()
    said = re.search(r"alice hit its rate limit .*resuming session (\S+) on (\w+)", run.stderr)
    assert said, run.describe()
    session, other = said.groups()
    assert other in PROFILED and other != "alice"
    # both runs' own output passed through
    assert "You've hit your 5-hour limit" in run.stdout and "carried on" in run.stdout
    if output == "json":
        first, second = (json.loads(line) for line in run.stdout.splitlines())
        assert first["is_error"] and first["api_error_status"] == 429
        assert second["session_id"] == session and not second["is_error"]
    # the first run on alice up to the refusal, the resumed run on the other account throughout
    calls = fake_api.messages_calls(session_id=session, agent=False)
    accounts = [fake_api.owner_of(c.token) for c in calls]
    cut = accounts.index(other)
    assert set(accounts[:cut]) == {"alice"} and set(accounts[cut:]) == {other}, accounts
    assert [c.reply.status for c in calls[:cut] if isinstance(c.reply, Response)] == [429]
    assert started_in(fleet, session) == [
        ("startup", profile_dir(fleet, "alice")),
        ("resume", profile_dir(fleet, other)),
    ]
    # the resumed run carries the first run's turn: its prompt and its tool's output
    resumed = next(c for c in calls[cut:] if c.agent)
    assert resumed.mentions(prompt) and resumed.mentions("TOOL-RAN")
    (transcript,) = (fleet.claude_dir / "projects").glob(f"*/{session}.jsonl")
    text = transcript.read_text()
    assert prompt in text and "TOOL-RAN" in text and "carried on" in text


@pytest.mark.parametrize("output", ["text", "json"])
def test_retry_on_limit_resumes_a_session_whose_login_was_refused(
    fleet: ClaudeSandbox, fake_api: FakeAnthropicServer, output: str
) -> None:
    """alice's login is revoked server-side: the API answers her token 401 and her refresh
    `invalid_grant`. Claude Code gives the turn up with exit 1 ("Failed to authenticate. API
    Error: 401 ..."; in JSON `api_error_status: 401`); the session goes on on another slot,
    whose account serves every request of the resumed run, and alice is recorded as rejected."""
    fake_api.revoke("alice")
    fake_api.script_each_turn(end_turn("served elsewhere"))
    claude = [fleet.claude_bin, "-p", "do the work", "--output-format", output]

    run = ours(fleet, fake_api, *("run", "--slot", "alice", "--retry-on-limit", "1", "--"), *claude)

    assert run.returncode == 0, run.describe()
    said = re.search(
        r"alice's login was refused \(reauth alice\); resuming session (\S+) on (\w+)", run.stderr
    )
    assert said, run.describe()
    session, other = said.groups()
    assert other in PROFILED and other != "alice"
    assert (
        "Failed to authenticate. API Error: 401" in run.stdout and "served elsewhere" in run.stdout
    )
    if output == "json":
        first, second = (json.loads(line) for line in run.stdout.splitlines())
        assert first["is_error"] and first["api_error_status"] == 401
        assert second["session_id"] == session and not second["is_error"]
    calls = fake_api.messages_calls(session_id=session, agent=False)
    accounts = [fake_api.owner_of(c.token) for c in calls]
    cut = accounts.index(other)
    assert set(accounts[:cut]) == {"alice"} and set(accounts[cut:]) == {other}, accounts
    assert {c.reply.status for c in calls[:cut] if isinstance(c.reply, Response)} == {401}
    assert started_in(fleet, session) == [
        ("startup", profile_dir(fleet, "alice")),
        ("resume", profile_dir(fleet, other)),
    ]
    rotation = json.loads((fleet.root / "state" / "rotation.json").read_text())
    assert rotation["rejected"]["alice"]["source"] == "run: authentication_failed"


def test_run_on_a_bad_slot_is_one_line_and_changes_nothing(
    fleet: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    """No such slot, the live link's slot, a slot with two homes: exit 1 with one line, before
    any usage poll or Claude Code, and not a byte changed under HOME or in the state dir."""
    # carol with two homes: her profile's credential and a copy back in the main dir
    carol = Path(profile_dir(fleet, "carol")) / ".credentials.json"
    fleet.slot_path("carol").write_bytes(carol.read_bytes())
    fleet.slot_path("carol").chmod(0o600)
    home, state = tree(fleet.home), tree(fleet.root / "state")
    fake_api.reset_requests()

    for slot, says in [
        ("nosuch", "no slot named nosuch"),
        (LIVE, "not in a profile"),
        ("carol", "has two homes"),
    ]:
        run = ours(fleet, fake_api, "run", "--slot", slot, "--", fleet.claude_bin, "-p", "x")

        assert run.returncode == 1 and run.stdout == "", run.describe()
        (line,) = run.stderr.splitlines()
        assert line.startswith("gptme-subscription: ") and says in line, line

    assert fake_api.requests() == []  # no usage poll, no Claude Code
    assert fleet.running_processes() == []
    assert tree(fleet.home) == home and tree(fleet.root / "state") == state
