"""The repository as a Claude Code plugin marketplace, on the real Claude Code CLI.

A person installs the hook pack the way Claude Code installs plugins:

    claude plugin marketplace add <checkout>
    claude plugin install gptme-subscription@gptme-subscription-plugin

The checkout is a copy of the files a clone holds (tracked and not ignored; never `.venv`),
because Claude Code copies the whole plugin directory, untracked files included, into
`~/.claude/plugins/cache/`. Everything runs offline in the sandbox's HOME: the marketplace is a
local directory, the model is the fake API on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.fake_api import FakeAnthropicServer, bash, end_turn, make_usage_doc

from .claude_harness import REPO_ROOT, ClaudeSandbox

pytestmark = pytest.mark.e2e

# <plugin>@<marketplace>: the install line the README gives
PLUGIN_ID = "gptme-subscription@gptme-subscription-plugin"
TOK_A, TOK_B = "sk-ant-oat01-fake-plugin-a", "sk-ant-oat01-fake-plugin-b"


def clean_checkout(dest: Path) -> Path:
    """Copy what a fresh clone of this repository holds (tracked or new, never ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = REPO_ROOT / name
        if not src.is_file():  # deleted in the work tree, not yet committed
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


def claude(sandbox: ClaudeSandbox, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `claude <args>` (not a session) with the sandbox's HOME and offline environment."""
    return subprocess.run(
        [sandbox.claude_bin, *args],
        env=sandbox.env(),
        cwd=sandbox.project,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_the_marketplace_and_its_plugin_validate_without_warnings(
    claude_sandbox: ClaudeSandbox, tmp_path: Path
) -> None:
    checkout = clean_checkout(tmp_path / "checkout")

    proc = claude(claude_sandbox, "plugin", "validate", "--json", str(checkout))
    strict = claude(claude_sandbox, "plugin", "validate", "--strict", str(checkout))

    report = json.loads(proc.stdout)
    assert report["success"], proc.stdout
    assert report["manifest"]["type"] == "marketplace"
    for manifest in [report["manifest"], *report["contents"]]:
        assert (manifest["errors"], manifest["warnings"]) == ([], []), manifest
    assert report["advice"] == []  # the README has the install line
    assert not [f for f in report["directory"]["findings"] if f["blocking"]]
    assert strict.returncode == 0, strict.stdout + strict.stderr


def test_installed_from_the_marketplace_its_hooks_run_in_a_headless_session(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer, tmp_path: Path
) -> None:
    checkout = clean_checkout(tmp_path / "checkout")
    now = time.time()
    claude_sandbox.write_slot("a", TOK_A)
    claude_sandbox.write_slot("b", TOK_B)
    claude_sandbox.link_live("a")
    fake_api.set_usage(TOK_A, make_usage_doc(now, five_hour=10, seven_day=30))
    fake_api.set_usage(TOK_B, make_usage_doc(now, five_hour=5, seven_day=20))
    # mid-turn, the Bash tool shows the model what our hooks registered for this session
    fake_api.script_each_turn(
        bash('cat "$GPTME_SUBSCRIPTION_STATE_DIR"/sessions/*'), end_turn("ok")
    )

    added = claude(claude_sandbox, "plugin", "marketplace", "add", str(checkout))
    assert added.returncode == 0, added.stdout + added.stderr
    installed = claude(claude_sandbox, "plugin", "install", PLUGIN_ID)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    settings = claude_sandbox.read_settings()
    assert settings["enabledPlugins"] == {PLUGIN_ID: True}
    assert "hooks" not in settings  # every hook below comes from the plugin
    state = tmp_path / "state"
    run = claude_sandbox.run(
        "hello",
        env={
            "GPTME_SUBSCRIPTION_STATE_DIR": str(state),
            "GPTME_SUBSCRIPTION_API_BASE": fake_api.base_url,
            "GPTME_SUBSCRIPTION_POLL_TIMEOUT": "2",
            "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        },
        timeout=60,
    ).check()

    # SessionStart: its additionalContext reached the model in the first request
    first, second = fake_api.messages_calls(session_id=run.session_id)
    assert first.mentions("[subscription] live slot a: 5h 10%")
    assert first.token == TOK_A
    # UserPromptSubmit / PreToolUse: the session was registered busy while its tool ran
    assert second.mentions('"state": "busy"')
    # UserPromptSubmit and Stop each evaluated once and named the slot serving the session
    # (the usage ledger's attribution); SessionEnd unregistered the session
    events = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["decision", "turn", "turn", "decision"]
    turns = [(e["session"], e["slot"], e["phase"]) for e in events if e["kind"] == "turn"]
    assert turns == [(run.session_id, "a", "start"), (run.session_id, "a", "end")]
    assert not (state / "sessions" / f"{run.session_id}.json").exists()
