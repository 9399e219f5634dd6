"""0.1.0 command lines (gptme-contrib's gptme-subscription) run on ours, black box.

Every command runs as a user's shell runs it: `bash -c '<the line>'` with our console script
from this venv first on PATH, a temp HOME holding synthetic slots, and a usage script at
`~/bin/check-claude-usage.sh` that is a real executable printing 0.1.0's usage JSON. The
quickstart lines are those of the 0.1.0 README, character for character. What is asserted
is what a user sees: exit code, the live link, the slot files, nothing changed on a preview.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gptme_subscription_plugin.legacy_args import translate

from .support.credentials import (
    claude_code_refresh,
    credential_bytes,
    link_live,
    refresh_token,
    serve_profile,
    write_slot,
)
from .support.fake_api import FakeAnthropicServer
from .support.sandbox import Sandbox

BIN = Path(sys.executable).parent
CONSOLE_SCRIPT = BIN / "gptme-subscription"
SLOTS = ("bob", "alice", "erik")

# The "CLI quickstart" of the 0.1.0 README, as printed there.
README_STATUS = "gptme-subscription --slots bob,alice,erik --status"
README_CHECK_AUTH = "gptme-subscription --slots bob,alice,erik --check-auth"
README_PROBE = """gptme-subscription --slots bob,alice,erik \\
  --usage-script ~/bin/check-claude-usage.sh \\
  --check-auth --probe"""
README_REAUTH = "gptme-subscription --reauth-instructions alice"
README_EVALUATE = """gptme-subscription --slots bob,alice,erik \\
  --usage-script ~/bin/check-claude-usage.sh \\
  --execute"""
README_SWITCH = "gptme-subscription --slots bob,alice,erik --switch alice --execute"
# Its re-auth section, step 4.
README_BASELINE = "gptme-subscription --slots bob,alice,erik --baseline-identity alice"

# A usage script as 0.1.0 documents them: `--json [--no-cache]`, reads the live credential
# of its HOME (or the file our runner names), prints 0.1.0's shape (utilization 0-1,
# resets_in_seconds). It answers from a table the test writes and logs each call.
USAGE_SCRIPT = """#!{python}
import json, os, re, sys
from pathlib import Path

creds = os.environ.get("CLAUDE_USAGE_CREDS_FILE") or os.path.join(
    os.environ.get("CLAUDE_CONFIG_DIR") or os.path.expanduser("~/.claude"), ".credentials.json"
)
token = json.loads(Path(creds).read_text())["claudeAiOauth"]["accessToken"]
slot = re.search(r"-test-([a-z]+)-access-", token).group(1)
with open({log!r}, "a") as log:
    log.write(json.dumps({{"slot": slot, "argv": sys.argv[1:]}}) + "\\n")
answer = json.loads(Path({table!r}).read_text()).get(slot)
if answer is None:
    print("no usage for this account", file=sys.stderr)
    sys.exit(1)
print(json.dumps(answer))
"""


def window(utilization: float, resets_in: float | None = 3 * 86400) -> dict:
    doc: dict = {"utilization": utilization}
    if resets_in is not None:
        doc["resets_in_seconds"] = resets_in
    return doc


def reading(weekly: float, five_hour: float = 0.1, resets_in: float | None = 3 * 86400) -> dict:
    return {
        "five_hour": window(five_hour, 3600 if resets_in is not None else None),
        "seven_day": window(weekly, resets_in),
        "seven_day_sonnet": window(weekly, resets_in),
        "_pacing": {"actual_utilization": weekly, "target_utilization": 0.5, "status": "ok"},
    }


class Legacy(Sandbox):
    """A 0.1.0 user's machine: HOME with three slots (bob live), and their usage script."""

    def __init__(self, tmp_path: Path, server: FakeAnthropicServer):
        self.table = tmp_path / "usage-table.json"
        self.log = tmp_path / "usage-calls.jsonl"
        super().__init__(
            tmp_path,
            SLOTS,
            server=server,
            poll_timeout="5",
            lock_wait="1",
            env={"PATH": f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin"},
        )
        for name in SLOTS:
            serve_profile(server, name)  # profile lookups stay on loopback
        script = self.home / "bin" / "check-claude-usage.sh"
        script.parent.mkdir(mode=0o700)
        script.write_text(
            USAGE_SCRIPT.format(python=sys.executable, log=str(self.log), table=str(self.table))
        )
        script.chmod(0o700)
        self.set_readings(bob=reading(0.99), alice=reading(0.20), erik=reading(0.50))

    def set_readings(self, **readings: dict | None) -> None:
        self.table.write_text(json.dumps(readings))

    def sh(self, line: str, code: int | None = 0, **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["bash", "-c", line],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=90,
        )
        if code is not None:
            assert proc.returncode == code, (line, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def disk(self) -> dict[str, object]:
        """The credential side of the claude dir: the live link and every slot's bytes."""
        live = self.claude / ".credentials.json"
        files = {p.name: p.read_bytes() for p in self.claude.glob(".credentials.json.*")}
        return {"live": self.live_link(), "live_file": live.read_bytes(), "slots": files}

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def hold_a_lock(self, tmp_path: Path) -> str:
        """An agent lock file (0.1.0's --lock-glob) holding a live PID: this test's own."""
        locks = tmp_path / "locks"
        locks.mkdir(exist_ok=True)
        (locks / "agent.lock").write_text(str(os.getpid()))
        return str(locks / "*.lock")


@pytest.fixture
def legacy(tmp_path, fake_server) -> Legacy:
    assert CONSOLE_SCRIPT.exists(), f"install the package into this venv ({CONSOLE_SCRIPT})"
    return Legacy(tmp_path, fake_server)


# ---------------------------------------------------------------- the README quickstart


def test_readme_status(legacy):
    before = legacy.disk()
    out = legacy.sh(README_STATUS).stdout
    assert "* bob" in out and "alice" in out and "erik" in out
    assert legacy.disk() == before


def test_readme_check_auth(legacy):
    before = legacy.disk()
    out = legacy.sh(README_CHECK_AUTH).stdout
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["bob", "valid"],
        ["alice", "valid"],
        ["erik", "valid"],
    ]
    assert legacy.calls() == []  # file-based: no usage script, no network
    assert legacy.disk() == before
    # a slot that needs a login fails the check (exit 1) and names the way out, as 0.1.0 did
    write_slot(legacy.claude, "erik", credential_bytes("erik", refresh=False))
    proc = legacy.sh(README_CHECK_AUTH, code=1)
    assert "gptme-subscription reauth erik" in proc.stdout


def test_readme_check_auth_probe_runs_the_script_and_fails_with_it(legacy):
    before = legacy.disk()
    legacy.sh(README_PROBE)
    asked = [c for c in legacy.calls() if "--json" in c["argv"]]
    assert {c["slot"] for c in asked} == set(SLOTS)
    assert legacy.disk() == before
    legacy.set_readings(bob=reading(0.1), alice=None, erik=reading(0.1))  # alice's script fails
    proc = legacy.sh(README_PROBE, code=1, GPTME_SUBSCRIPTION_STATE_DIR=str(legacy.state) + "2")
    alice = next(line for line in proc.stdout.splitlines() if line.startswith("alice"))
    assert "exited with status 1" in alice
    assert legacy.disk() == before


def test_readme_reauth_instructions(legacy):
    before = legacy.disk()
    out = legacy.sh(README_REAUTH).stdout
    assert "Re-login for slot alice" in out
    assert "gptme-subscription slot add alice --from" in out
    assert legacy.disk() == before


def test_readme_evaluate_and_apply(legacy):
    """bob (live) has spent 99 % of its week: `--execute` moves to the slot with most room."""
    assert legacy.live_link() == ".credentials.json.bob"
    proc = legacy.sh(README_EVALUATE)
    assert legacy.live_link() == ".credentials.json.alice", proc.stdout
    assert "switched" in proc.stdout.lower()
    assert {c["slot"] for c in legacy.calls()} == set(SLOTS)


def test_readme_force_switch_is_an_operator_switch(legacy, tmp_path):
    """`--switch alice --execute` flips even while an agent holds its lock (0.1.0: force)."""
    glob = legacy.hold_a_lock(tmp_path)
    proc = legacy.sh(README_SWITCH, GPTME_SUBSCRIPTION_LOCK_GLOB=glob)
    assert legacy.live_link() == ".credentials.json.alice"
    note = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(note) == 1 and "gptme-subscription switch alice --force" in note[0]
    # the operator's choice holds: the next automated evaluation does not route away from it
    doc = json.loads(legacy.sh(README_EVALUATE.replace("--execute", "--execute --json")).stdout)
    assert doc["decision"]["mode"] == "manual-hold", doc
    assert legacy.live_link() == ".credentials.json.alice"


def test_readme_baseline_then_check_identity(legacy):
    line = "gptme-subscription --slots bob,alice,erik --check-identity"
    assert legacy.sh(line, code=2).returncode == 2  # no baseline yet: 2, as in 0.1.0
    for name in SLOTS:
        legacy.sh(README_BASELINE.removesuffix("alice") + name)
    before = legacy.disk()
    legacy.sh(line)  # every slot holds its own account
    assert legacy.disk() == before
    # a login of carol written into alice's slot: the account changed, exit 1
    write_slot(legacy.claude, "alice", credential_bytes("carol"))
    serve_profile(legacy.server, "carol")
    proc = legacy.sh(line, code=1)
    assert any(row.startswith("alice") and "changed" in row for row in proc.stdout.splitlines())


# ---------------------------------------------------------------- previews change nothing


@pytest.mark.parametrize(
    "line",
    [
        "gptme-subscription",  # the bare call: 0.1.0 previewed its decision
        "gptme-subscription --usage-script ~/bin/check-claude-usage.sh",
        "gptme-subscription --usage-script ~/bin/check-claude-usage.sh --execute --dry-run",
        "gptme-subscription --usage-script ~/bin/check-claude-usage.sh --execute -n",
        "gptme-subscription --switch alice",
        "gptme-subscription --switch alice --execute -n",
        "gptme-subscription --heal-drift",
    ],
)
def test_previews_change_nothing(legacy, line):
    before = legacy.disk()
    env = {
        "GPTME_SUBSCRIPTION_SLOTS": "bob,alice,erik",
        "GPTME_SUBSCRIPTION_USAGE_SCRIPT": str(legacy.home / "bin" / "check-claude-usage.sh"),
    }
    proc = legacy.sh(line, **env)
    assert legacy.disk() == before, proc.stdout
    if "--switch" in line:
        assert "would switch from bob to alice" in proc.stdout
    elif "--heal-drift" not in line:
        assert "switch" in proc.stdout and "alice" in proc.stdout  # what it would do
    # and nothing recorded that a later evaluation obeys: no manual hold, no pending switch
    doc = json.loads(legacy.sh("gptme-subscription --json", **env).stdout)
    assert doc["decision"]["mode"] != "manual-hold" and doc["outcome"] is None


def test_bare_call_is_a_preview_of_evaluate(legacy):
    proc = legacy.sh(
        "gptme-subscription --slots bob,alice,erik --usage-script ~/bin/check-claude-usage.sh"
    )
    assert "(dry run: add --execute to apply)" in proc.stdout
    assert legacy.live_link() == ".credentials.json.bob"


# ---------------------------------------------------------------- 0.1.0's CLI test scenarios


def test_json_execute_switches_and_reports_in_our_shape(legacy):
    """0.1.0 test_cmd_evaluate_json_execute_runs_post_switch_verification, black box."""
    proc = legacy.sh(README_EVALUATE + " --json")
    doc = json.loads(proc.stdout)
    assert doc["decision"]["action"] == "switch" and doc["decision"]["target"] == "alice"
    assert doc["outcome"]["status"] == "switched" and doc["outcome"]["previous"] == "bob"
    assert legacy.live_link() == ".credentials.json.alice"


def test_json_execute_fails_when_the_switch_is_refused(legacy):
    """0.1.0 test_cmd_evaluate_json_execute_returns_failure_on_switch_error: exit 1."""
    (legacy.claude / ".oauth_refresh.lock").mkdir()  # Claude Code is refreshing: no flip
    before = legacy.disk()
    proc = legacy.sh(README_EVALUATE + " --json", code=1)
    doc = json.loads(proc.stdout)
    assert doc["outcome"]["status"] == "refused"
    assert legacy.disk() == before


def test_a_held_agent_lock_defers_an_automated_switch(legacy, tmp_path):
    """0.1.0 test_execute_switch_decision_no_alert_on_deferred_switch: deferred, exit 0."""
    glob = legacy.hold_a_lock(tmp_path)
    line = README_EVALUATE + f" --lock-glob '{glob}' --json"
    doc = json.loads(legacy.sh(line).stdout)
    assert doc["outcome"]["status"] == "pending"
    assert legacy.live_link() == ".credentials.json.bob"


def test_switch_preview_under_an_agent_lock(legacy, tmp_path):
    """0.1.0's `--switch` previews the operator switch; our `switch --dry-run`, the plain one."""
    glob = legacy.hold_a_lock(tmp_path)
    before = legacy.disk()
    proc = legacy.sh("gptme-subscription --switch alice", GPTME_SUBSCRIPTION_LOCK_GLOB=glob)
    assert "would switch from bob to alice" in proc.stdout
    doc = json.loads(
        legacy.sh(f"gptme-subscription --lock-glob '{glob}' switch alice --dry-run --json").stdout
    )
    assert doc["status"] == "pending" and doc["dry_run"] and len(doc["blockers"]) == 1
    assert legacy.disk() == before
    rotation = legacy.state / "rotation.json"
    assert not rotation.exists() or json.loads(rotation.read_text()).get("pending") is None


def test_switch_to_an_unknown_slot_fails(legacy):
    """0.1.0 test_cmd_switch_unknown_slot_returns_error: exit 1, nothing switched or held."""
    before = legacy.disk()
    legacy.sh("gptme-subscription --slots bob,alice,erik --switch nobody --execute", code=1)
    legacy.sh("gptme-subscription --slots bob,alice,erik --switch nobody", code=1)
    assert legacy.disk() == before


def test_heal_drift_previews_then_heals(legacy):
    """Claude Code refreshed bob: the live path is a regular file holding bob's new token."""
    legacy.sh("gptme-subscription --baseline-identity bob")  # bob's account, as 0.1.0 advised
    serve_profile(legacy.server, "bob", 2)
    claude_code_refresh(legacy.claude, credential_bytes("bob", 2, expires_at=time.time() + 3600))
    before = legacy.disk()
    out = legacy.sh("gptme-subscription --heal-drift").stdout
    assert "regular file" in out and legacy.disk() == before
    legacy.sh("gptme-subscription --heal-drift --execute")
    assert legacy.live_link() == ".credentials.json.bob"
    slot = (legacy.claude / ".credentials.json.bob").read_text()
    assert refresh_token("bob", 2) in slot


def test_creds_dir_points_at_another_claude_dir(legacy, tmp_path):
    other = tmp_path / "other-claude"
    for name in ("bob", "alice"):
        write_slot(other, name, credential_bytes(name, expires_at=time.time() + 3600))
    link_live(other, "alice")
    doc = json.loads(legacy.sh(f"gptme-subscription --creds-dir {other} --status --json").stdout)
    assert doc["live"] == "alice" and {s["name"] for s in doc["slots"]} == {"bob", "alice"}
    legacy.sh(f"gptme-subscription --creds-dir {other} --switch bob --execute")
    assert os.readlink(other / ".credentials.json") == ".credentials.json.bob"
    assert legacy.live_link() == ".credentials.json.bob"  # ~/.claude untouched (bob was live)


def test_primary_is_preferred_where_readings_tie(legacy):
    """alice and erik read the same: 0.1.0's primary / slot order decides between them."""
    same = reading(0.30, resets_in=None)
    legacy.set_readings(bob=reading(0.99), alice=same, erik=same)
    line = "gptme-subscription --slots bob,alice,erik --usage-script ~/bin/check-claude-usage.sh"
    doc = json.loads(legacy.sh(line + " --primary erik --json").stdout)
    assert doc["decision"]["target"] == "erik", doc
    doc = json.loads(legacy.sh(line + " --json").stdout)
    assert doc["decision"]["target"] == "alice", doc
    doc = json.loads(legacy.sh(line.replace("bob,alice,erik", "bob,erik,alice") + " --json").stdout)
    assert doc["decision"]["target"] == "erik", doc


def test_env_slots_name_the_primary_before_env_fallbacks(legacy):
    """0.1.0 read its slots from $GPTME_SUBSCRIPTION_SLOTS when no --slots was given: the
    first is the primary, ahead of $GPTME_SUBSCRIPTION_FALLBACK_ORDER where readings tie."""
    same = reading(0.30, resets_in=None)
    legacy.set_readings(bob=reading(0.99), alice=same, erik=same)
    env = {
        "GPTME_SUBSCRIPTION_SLOTS": "erik,bob,alice",
        "GPTME_SUBSCRIPTION_FALLBACK_ORDER": "alice,bob",
    }
    line = "gptme-subscription --usage-script ~/bin/check-claude-usage.sh --json"
    doc = json.loads(legacy.sh(line, **env).stdout)
    assert doc["decision"]["target"] == "erik", doc
    legacy.sh(line.replace("--json", "--execute"), **env)
    assert legacy.live() == "erik"


# ---------------------------------------------------------------- --rate-limit-file

EVALUATE = "gptme-subscription --slots bob,alice,erik --usage-script ~/bin/check-claude-usage.sh"


def iso_in(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds, timezone.utc).isoformat()


def test_rate_limit_file_moves_off_the_live_slot_and_goes_after_the_switch(legacy):
    """0.1.0: while the file names a future time the live slot counts as exhausted, and a
    successful switch deletes the file (it was about the slot that was live)."""
    legacy.set_readings(bob=reading(0.20), alice=reading(0.20), erik=reading(0.50))
    limit = legacy.home / "rate-limited-until"
    doc = json.loads(legacy.sh(EVALUATE + " --rate-limit-file ~/rate-limited-until --json").stdout)
    assert doc["decision"]["action"] == "stay", doc  # no file: bob is healthy, bob stays
    limit.write_text(iso_in(3600) + "\n")
    before = legacy.disk()
    doc = json.loads(legacy.sh(EVALUATE + " --rate-limit-file ~/rate-limited-until --json").stdout)
    assert doc["decision"]["action"] == "switch" and doc["decision"]["target"] == "alice", doc
    assert legacy.disk() == before and limit.exists()  # a preview: no switch, file kept
    # recorded as a hook records Claude Code's own rate limit: `status` shows it
    until = datetime.fromisoformat(limit.read_text().strip()).timestamp()
    status = json.loads(legacy.sh("gptme-subscription status --json").stdout)
    bob = next(s for s in status["slots"] if s["name"] == "bob")
    assert bob["limited_until"] == pytest.approx(until)
    assert "limited 59m" in legacy.sh("gptme-subscription status").stdout
    proc = legacy.sh(EVALUATE + " --rate-limit-file=~/rate-limited-until --execute")
    assert legacy.live() == "alice", proc.stdout
    assert not limit.exists(), (proc.stdout, proc.stderr)


def test_rate_limit_file_in_the_past_or_not_a_time_changes_nothing(legacy):
    legacy.set_readings(bob=reading(0.20), alice=reading(0.20), erik=reading(0.50))
    limit = legacy.home / "rl"
    limit.write_text(iso_in(-60).replace("+00:00", ""))  # naive: UTC, as 0.1.0 read it
    proc = legacy.sh(EVALUATE + " --rate-limit-file ~/rl --execute --json")
    assert json.loads(proc.stdout)["decision"]["action"] == "stay"
    assert legacy.live() == "bob" and limit.exists()
    limit.write_text("soon")  # 0.1.0 ignored it; we say so
    proc = legacy.sh(EVALUATE + " --rate-limit-file ~/rl --execute --json")
    assert json.loads(proc.stdout)["decision"]["action"] == "stay"
    assert "does not hold an ISO-8601 time; ignored" in proc.stderr
    assert legacy.live() == "bob" and limit.read_text() == "soon"


@pytest.mark.parametrize("kind", ["fifo", "dir", "huge"])
def test_rate_limit_file_that_is_not_a_small_regular_file_is_refused(legacy, kind):
    """A FIFO would hang the cron job, a huge file feed it: one line, exit 2, nothing read
    (no usage script run) and nothing changed."""
    limit = legacy.home / "rl"
    if kind == "fifo":
        os.mkfifo(limit)
    elif kind == "dir":
        limit.mkdir()
    else:
        limit.write_text(iso_in(3600) + " " * 10_000)
    before = legacy.disk()
    proc = legacy.sh(EVALUATE + " --rate-limit-file ~/rl --execute", code=2)
    assert proc.stdout == "" and proc.stderr.count("\n") == 1
    assert "rate-limit file" in proc.stderr and str(limit) in proc.stderr
    assert legacy.disk() == before and legacy.calls() == [] and limit.exists()


def test_rate_limit_file_goes_after_an_operator_switch(legacy):
    """0.1.0's `--switch SLOT --execute` deleted the file too (every successful switch did)."""
    limit = legacy.home / "rl"
    limit.write_text(iso_in(3600))
    legacy.sh("gptme-subscription --switch nobody --execute --rate-limit-file ~/rl", code=1)
    assert limit.exists()  # refused: the file stays
    legacy.sh("gptme-subscription --switch alice --execute --rate-limit-file ~/rl")
    assert legacy.live() == "alice" and not limit.exists()


# ---------------------------------------------------------------- no equivalent: one line, exit 2


@pytest.mark.parametrize(
    ("line", "names"),
    [
        ("gptme-subscription --usage-script x --probe --execute", "check-auth --probe"),
        ("gptme-subscription --slots bob,alice --primary erik --execute", "not one of"),
        ("gptme-subscription --switch --execute", "--switch expects a value"),
    ],
)
def test_no_equivalent_is_one_line_and_exit_2(legacy, line, names):
    before = legacy.disk()
    proc = legacy.sh(line, code=2)
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and names in proc.stderr
    assert legacy.disk() == before
    assert not legacy.state.exists() and legacy.calls() == []


def test_help_shows_our_form(legacy):
    out = legacy.sh("gptme-subscription --help").stdout
    assert "COMMAND" in out and "evaluate" in out
    assert "--check-auth" not in out and "--rate-limit-file" not in out


# ---------------------------------------------------------------- the translation itself


def test_our_own_command_lines_pass_unchanged():
    for argv in (
        ["status", "--json"],
        ["--slots", "a,b", "evaluate", "--execute"],
        ["switch", "--help"],
        ["--help"],
        ["-h"],
        ["slot", "add", "x", "--from", "f"],
    ):
        result = translate(argv, {})
        assert result.argv == argv and not result.legacy and not result.notes


def test_translation_table():
    env: dict[str, str] = {}
    cases = {
        (): ["evaluate"],
        ("--check-identity", "--json"): ["identity", "check", "--json"],
        ("--baseline-identity", "alice"): ["identity", "baseline", "alice"],
        ("--heal-drift", "--execute"): ["heal"],
        ("--heal-drift",): ["heal", "--dry-run"],
        ("--switch=alice",): ["switch", "alice", "--force", "--dry-run"],
        ("--exec",): ["evaluate", "--execute"],  # argparse accepted unique prefixes
        ("--creds-dir", "/c", "--status"): ["--claude-dir", "/c", "status"],
        ("--lock-glob", "/l/*.lock", "--execute"): [
            "--lock-glob",
            "/l/*.lock",
            "evaluate",
            "--execute",
        ],
        ("--slots", "b,a", "--fallback-order", "a"): [
            "--slots",
            "b,a",
            "--fallback-order",
            "b,a",
            "evaluate",
        ],
    }
    for argv, expected in cases.items():
        assert translate(list(argv), env).argv == expected, argv
    # 0.1.0's fallbacks from its env, behind the primary
    out = translate(["--slots", "b,a,c"], {"GPTME_SUBSCRIPTION_FALLBACK_ORDER": "c,a"}).argv
    assert out == ["--slots", "b,a,c", "--fallback-order", "b,c,a", "evaluate"]
    # ... and the primary from its env slots when no --slots is given
    both_env = {"GPTME_SUBSCRIPTION_SLOTS": "b,a,c", "GPTME_SUBSCRIPTION_FALLBACK_ORDER": "c,a"}
    assert translate(["--status"], both_env).argv == ["--fallback-order", "b,c,a", "status"]
    assert translate([], {"GPTME_SUBSCRIPTION_SLOTS": "b,a"}).argv == [
        "--fallback-order",
        "b,a",
        "evaluate",
    ]
    # the rate-limit file is passed to our (hidden) global option
    assert translate(["--rate-limit-file=/r", "--execute"], env).argv == [
        "--rate-limit-file",
        "/r",
        "evaluate",
        "--execute",
    ]
    # two actions: the first in 0.1.0's order runs, and the other is named on stderr
    both = translate(["--switch", "a", "--execute", "--status"], env)
    assert both.argv == ["status"] and "--switch is ignored" in both.notes[0]
