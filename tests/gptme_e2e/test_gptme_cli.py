"""End to end: the real `gptme` CLI (0.35.1), offline, with the plugin our installer enabled.

gptme runs non-interactively with its built-in `mock/echo` model (it echoes each prompt, so a
prompt holding a ```subscription block makes the "assistant" call the tool), in a temp HOME
with real slot files, usage served by the loopback fake API, every proxy variable pointing at
a closed loopback port, and always under a timeout. The test reads gptme's own conversation
log afterwards.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gptme_subscription_plugin.gptme_plugin.answers import SWITCH_REASON
from gptme_subscription_plugin.gptme_plugin.installer import folder_plugin_dir

from ..support.sandbox import GptmeSandbox

GPTME = Path(sys.executable).parent / "gptme"
TIMEOUT_S = 120
pytestmark = pytest.mark.skipif(not GPTME.exists(), reason="gptme is not installed (gptme extra)")

PROBE = f"""\
import json, subprocess, sys
cli = [{sys.executable!r}, "-m", "gptme_subscription_plugin"]
out = subprocess.run(cli + ["status", "--json"], capture_output=True, text=True).stdout
status = json.loads(out)
print("MIDTURN=" + json.dumps(sorted(status["sessions_mid_turn"])))
end = json.dumps({{"session_id": "cc-other", "hook_event_name": "SessionEnd"}})
subprocess.run(cli + ["hook", "session-end"], input=end, text=True, check=True)
"""


@pytest.fixture
def sb(tmp_path: Path, fake_server) -> GptmeSandbox:
    return GptmeSandbox(tmp_path, fake_server)


def prompt(block: str) -> str:
    # mock/echo answers "Echo: <prompt>": the fence must start its own line to be a tool call
    return f"run:\n{block}\n"


def run_gptme(
    sb: GptmeSandbox, prompts: list[str], name: str = "e2e", **extra_env: str
) -> list[dict]:
    env = {
        **sb.env,
        **extra_env,
        "PATH": f"{GPTME.parent}:{sb.env['PATH']}",
        "GPTME_MAX_STEPS": "2",
        "GPTME_TIKTOKEN_TIMEOUT": "0",
        "GPTME_LOGS_HOME": str(sb.root / "logs"),
    }
    argv = [str(GPTME), "-n", "--model", "mock/echo", "--name", name]
    for i, text in enumerate(prompts):
        argv += (["-"] if i else []) + [text]
    proc = subprocess.run(
        argv,
        cwd=sb.ws,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    log = sb.root / "logs" / name / "conversation.jsonl"
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for text in (proc.stdout, proc.stderr, log.read_text()):
        assert "sk-ant" not in text
    assert "not active in this session" not in proc.stdout + log.read_text()
    return [json.loads(line) for line in log.read_text().splitlines()]


def system_texts(log: list[dict], start: str) -> list[str]:
    return [m["content"] for m in log if m["role"] == "system" and m["content"].startswith(start)]


def json_block(text: str) -> dict:
    match = re.search(r"\n```json\n(.*)\n```$", text)
    assert match, text
    return json.loads(match.group(1))


def test_gptme_session_with_the_installed_plugin(sb):
    toml = "# my workspace\n[plugin.subscription]\nturn_scope = 'turn'\n"
    (sb.ws / "gptme.toml").write_text(toml)
    (sb.ws / "probe.py").write_text(PROBE)
    installed = subprocess.run(
        [sys.executable, "-m", "gptme_subscription_plugin", "install", "gptme"],
        cwd=sb.ws,
        env=sb.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert installed.returncode == 0, installed.stderr
    assert "had 1 comment(s)" in installed.stdout
    assert str(folder_plugin_dir()) in (sb.ws / "gptme.toml").read_text()
    sb.registry().mark_busy("cc-other", time.time())  # a Claude Code session mid-turn

    started = time.monotonic()
    log = run_gptme(
        sb,
        [
            prompt("```subscription status\n```"),
            prompt("```subscription switch bob\n```"),
            prompt(f"```shell\n{sys.executable} probe.py\n```"),
            prompt("```subscription explain\n```"),
        ],
    )
    took = time.monotonic() - started

    # session.start: the pressure summary is in the initial context, hidden from the person
    first_user = next(i for i, m in enumerate(log) if m["role"] == "user")
    (summary,) = [m for m in log[:first_user] if "[subscription]" in m["content"]]
    assert summary["role"] == "system" and summary.get("hide") is True
    assert summary["content"].startswith("[subscription] live slot alice: 5h 10% (resets in ")
    assert "next: bob" in summary["content"]

    # the tool's answer: plain text first, then the JSON block
    status = system_texts(log, "subscription status: ")[0]
    assert status.startswith("subscription status: live alice; 2 slot(s); no pending switch; ")
    assert "1 other session(s) mid-turn" in status
    data = json_block(status)
    assert data["live"] == "alice" and [s["name"] for s in data["slots"]] == ["alice", "bob"]
    assert data["sessions_mid_turn"] == ["cc-other"]  # its own session is not "other"

    # switch while another session is mid-turn: pending, and it says so
    switch = system_texts(log, "subscription switch: ")[0]
    assert switch.startswith("subscription switch: NOT switched yet: switch to bob pending")
    assert json_block(switch)["status"] == "pending"

    # a process the gptme turn starts sees the gptme session mid-turn
    shell = [m["content"] for m in log if m["role"] == "system" and "MIDTURN=" in m["content"]]
    assert 'MIDTURN=["cc-other", "gptme-e2e"]' in shell[0]

    # the other session ended; at gptme's next boundary the pending switch landed
    landed = system_texts(log, "subscription: switched alice -> bob")
    assert landed and SWITCH_REASON in landed[0]
    assert sb.live() == "bob"
    explain = system_texts(log, "subscription explain: live bob")[0]
    assert "pending: -> bob [manual]" in explain and "switch: alice -> bob [manual]" in explain

    # the session left the registry when gptme exited
    sessions = sb.state / "sessions"
    assert not sessions.exists() or sorted(p.name for p in sessions.iterdir()) == []
    kinds = [e["kind"] for e in sb.events()]
    assert kinds.count("switch") == 1 and "pending" in kinds
    assert took < TIMEOUT_S


def test_the_entry_point_alone_brings_the_hooks_but_not_the_tool_in_non_interactive_mode(sb):
    """`[plugins] enabled = ["subscription"]` without the folder path: the entry point only.

    gptme 0.35.1 builds the non-interactive tool list (`setup_config_from_cli` ->
    `get_toolchain(None)`) before it discovers entry-point plugins, so their tools never load
    with `-n` while their hooks do. The folder path our installer writes avoids that. If this
    test fails after a gptme upgrade, the entry point alone is enough: update the README.
    """
    (sb.ws / "gptme.toml").write_text('[plugins]\nenabled = ["subscription"]\n')
    log = run_gptme(sb, [prompt("```subscription status\n```")], name="ep")
    (summary,) = [m for m in log if m.get("hide") and "[subscription]" in m["content"]]
    assert summary["content"].startswith("[subscription] live slot alice")
    assert "Call the `subscription` tool" not in summary["content"]  # no tool in this session
    assert system_texts(log, "subscription status: ") == []
