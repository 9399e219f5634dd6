"""The CLI as a person runs it: a real process, real files, a loopback usage endpoint."""

from __future__ import annotations

import json
import os
import time

from .support.credentials import (
    account_email,
    credential_bytes,
    serve_profile,
    write_oauth_account,
)
from .support.usage import iso


def test_status_table_and_json(cli):
    out = cli.run("status", "--refresh").stdout
    assert "* alice" in out and "bob" in out and "sonnet" in out
    assert "pending switch: none" in out and "sessions mid-turn: 0" in out
    doc = cli.json("status")
    assert doc["live"] == "alice" and {s["name"] for s in doc["slots"]} == {"alice", "bob"}
    alice = next(s for s in doc["slots"] if s["name"] == "alice")
    assert alice["usage"]["seven_day"]["utilization"] == 0.5
    assert alice["usage"]["models"]["sonnet"]["utilization"] == 0.4


def test_switch_evaluate_and_heal(cli):
    assert cli.json("switch", "bob")["status"] == "switched"
    assert os.readlink(cli.claude / ".credentials.json") == ".credentials.json.bob"
    assert cli.run("switch", "nobody", code=1).stdout.startswith("no slot named")
    doc = cli.json("evaluate")
    assert doc["decision"]["action"] == "hold" and doc["decision"]["mode"] == "manual-hold"
    live = cli.claude / ".credentials.json"
    live.unlink()
    serve_profile(cli.server, "bob", 2)  # Claude Code refreshed bob: the account's new token
    live.write_bytes(credential_bytes("bob", 2))
    assert "copied live credential into bob" in cli.run("heal").stdout
    assert live.is_symlink()


def test_slot_add_list_remove(cli, tmp_path):
    src = tmp_path / "carol.json"
    src.write_bytes(credential_bytes("carol"))
    assert cli.json("slot", "add", "carol", "--from", str(src))["health"] == "valid"
    listed = cli.json("slot", "list")["slots"]
    assert [s["slot"] for s in listed] == ["alice", "bob", "carol"]
    assert "is live" in cli.run("slot", "remove", "alice", code=1).stderr
    assert cli.run("slot", "add", "../x", "--from", str(src), code=1).stderr.count("\n") == 1
    cli.run("slot", "remove", "carol")
    assert not (cli.claude / ".credentials.json.carol").exists()


def test_capacity_verdicts(cli, fake_server):
    assert cli.json("capacity")["verdict"] == "green"
    now = time.time()
    for name in ("alice", "bob"):
        fake_server.set_usage(
            f"sk-ant-oat01-test-{name}-access-1",
            {"seven_day": {"utilization": 99, "resets_at": iso(now + 7200)}},
        )
    cli.run("status")  # nothing polls inside the interval: use a fresh state dir
    proc = cli.run("capacity", "--json", code=20, GPTME_SUBSCRIPTION_STATE_DIR=str(cli.state) + "2")
    doc = json.loads(proc.stdout)
    assert doc["verdict"] == "red" and doc["soonest_reset_in_s"] > 0


def test_identity_baseline_and_check(cli):
    assert cli.run("identity", "check", code=2).returncode == 2
    write_oauth_account(cli.home, "bob")  # stale: names another account than the live one
    rows = cli.json("identity", "baseline")["slots"]
    assert {r["slot"]: r["account"] for r in rows} == {
        "alice": account_email("alice"),
        "bob": account_email("bob"),
    }
    assert cli.json("identity", "check")["exit_code"] == 0
    # a login of another account lands in bob's slot
    (cli.claude / ".credentials.json.bob").write_bytes(
        credential_bytes("mallory", expires_at=time.time() + 3600)
    )
    serve_profile(cli.server, "mallory")
    rows = cli.json("identity", "check", code=1)["slots"]
    assert {r["slot"]: r["status"] for r in rows}["bob"] == "changed"


def test_identity_baseline_on_a_malformed_slot_is_one_row_not_a_traceback(cli):
    (cli.claude / ".credentials.json.bob").write_text("{")
    proc = cli.run("identity", "baseline", code=1)
    assert "Traceback" not in proc.stderr
    assert "bob" in proc.stdout and "unreadable" in proc.stdout
    assert "alice" in proc.stdout and account_email("alice") in proc.stdout


def test_slot_add_takes_a_login_kept_aside(cli):
    now = time.time()
    serve_profile(cli.server, "carol")
    live = cli.claude / ".credentials.json"
    live.unlink()
    live.write_bytes(credential_bytes("carol", expires_at=now + 3600))  # /login as carol
    live.chmod(0o600)
    out = cli.run("heal", code=1).stdout
    assert "kept aside" in out and "slot add NAME" in out
    status = cli.json("status")
    assert status["pending_login"]["health"] == "valid"
    added = cli.json("slot", "add", "carol")
    assert added["account"] == account_email("carol") and added["live"] == "carol"
    assert cli.json("status")["pending_login"] is None


def test_check_auth_and_probe(cli):
    assert cli.json("check-auth", "--probe")["ok"] is True
    (cli.claude / ".credentials.json.bob").write_text("{")
    out = cli.run("check-auth", code=1).stdout
    assert "malformed" in out and "reauth bob" in out


def test_reauth_instructions_never_touch_the_live_path(cli, tmp_path):
    out = cli.run("reauth", "bob", TMPDIR=str(tmp_path)).stdout
    assert "CLAUDE_CONFIG_DIR=" in out and "slot add bob --from" in out
    assert cli.run("reauth", "../x", code=2).stderr


def test_bad_config_is_one_line_and_exit_2(cli):
    proc = cli.run("status", code=2, GPTME_SUBSCRIPTION_POLL_INTERVAL="often")
    assert proc.stderr.count("\n") == 1 and "GPTME_SUBSCRIPTION_POLL_INTERVAL" in proc.stderr


def test_lock_held_by_claude_code_refuses_the_switch(cli):
    (cli.claude / ".oauth_refresh.lock").mkdir()
    proc = cli.run("switch", "bob", code=1)
    assert "busy" in proc.stdout
    assert os.readlink(cli.claude / ".credentials.json") == ".credentials.json.alice"


def test_help_documents_exit_codes(cli):
    out = cli.run("--help").stdout
    assert "exit codes" in out and "20  capacity: red" in out


def test_demo_runs_and_loses_nothing(cli):
    proc = cli.run("demo")
    assert "refresh tokens lost: 0" in proc.stdout and "drift left: none" in proc.stdout
    doc = cli.json("demo")
    assert doc["summary"]["refresh_tokens_lost"] == 0 and doc["summary"]["switches"] >= 4


# ---------------------------------------------------------------- install prints no settings


SETTINGS_SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-settings-secret",
    "ANTHROPIC_AUTH_TOKEN": "auth-token-value-9f8e7d",
}


def test_install_and_uninstall_print_what_changed_never_settings_values(cli):
    settings = cli.claude / "settings.json"
    settings.write_text(
        json.dumps(
            {
                "env": {**SETTINGS_SECRETS, "FOO": "plain-user-value"},
                "statusLine": {"type": "command", "command": "my-line --token=line-secret-42"},
            }
        )
    )
    runs = [
        cli.run("install", "claude-code", "--dry-run"),
        cli.run("install", "claude-code", "--dry-run", "--json"),
        cli.run("install", "claude-code", "--json"),
        cli.run("install", "claude-code"),
        cli.run("uninstall", "claude-code", "--dry-run"),
        cli.run("uninstall", "claude-code", "--json"),
    ]
    for proc in runs:
        for secret in [*SETTINGS_SECRETS.values(), "plain-user-value", "line-secret-42"]:
            assert secret not in proc.stdout + proc.stderr, proc.args
    dry = runs[0].stdout
    assert dry.startswith(f"dry run: would write {settings}:")
    assert "+ hooks.Stop: " in dry and " hook stop\n" in dry
    assert "+ statusLine (wrapping your statusline)" in dry
    installed = json.loads(runs[2].stdout)
    assert "settings" not in installed and installed["changed"] is True
    assert {c["entry"] for c in installed["changes"]} == {
        "hooks.SessionStart",
        "hooks.UserPromptSubmit",
        "hooks.PreToolUse",
        "hooks.Stop",
        "hooks.StopFailure",
        "hooks.SessionEnd",
        "statusLine",
    }
    assert all(c["change"] == "added" for c in installed["changes"])
    removed = json.loads(runs[5].stdout)
    assert {c["change"] for c in removed["changes"]} == {"removed"}
    assert json.loads(settings.read_text())["env"]["ANTHROPIC_API_KEY"].startswith("sk-ant-api03")


def test_install_gptme_prints_no_value_of_the_workspace_file(cli, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "gptme.toml").write_text(
        '[env]\nOPENAI_API_KEY = "sk-openai-secret-77"\n\n[plugins]\npaths = ["./mine"]\n'
    )
    outputs = [
        cli.run("install", "gptme", "--workspace", str(ws), "--dry-run").stdout,
        cli.run("install", "gptme", "--workspace", str(ws), "--json").stdout,
        cli.run("uninstall", "gptme", "--workspace", str(ws), "--json").stdout,
    ]
    assert all("sk-openai-secret-77" not in out and "./mine" not in out for out in outputs)
    assert "+ plugins.paths: " in outputs[0]
    assert json.loads(outputs[1])["changes"][0]["change"] == "added"
    assert json.loads(outputs[2])["changes"][0]["change"] == "removed"


def test_an_implausible_expiry_in_one_slot_stops_nothing_else(cli):
    doc = json.loads(credential_bytes("bob"))
    raw = json.dumps(doc).replace(str(doc["claudeAiOauth"]["expiresAt"]), "1e400")
    (cli.claude / ".credentials.json.bob").write_text(raw)
    for args in (("status",), ("evaluate",), ("identity", "baseline"), ("check-auth",)):
        proc = cli.run(*args, code=None)
        assert "Traceback" not in proc.stderr and proc.returncode in (0, 1), (args, proc.stderr)
    rows = {r["slot"]: r for r in cli.json("check-auth", code=1)["slots"]}
    assert rows["bob"]["health"] == "malformed" and rows["alice"]["health"] == "valid"
    assert cli.json("switch", "bob", code=1)["status"] == "refused"


def test_status_says_what_it_did_not_believe_and_which_polls_failed(cli):
    now = time.time()
    cli.server.set_usage(
        "sk-ant-oat01-test-alice-access-1",
        {
            "five_hour": {"utilization": 30, "resets_at": iso(now + 10 * 365 * 86400)},
            "seven_day": {"utilization": 50, "resets_at": iso(now + 3 * 86400)},
        },
    )
    cli.server.set_fault("500", token="sk-ant-oat01-test-bob-access-1")
    out = cli.run("status", "--refresh").stdout
    assert "note: alice: reset of five_hour ignored: further ahead than the window is long" in out
    assert "note: bob: last usage poll failed" in out and "500" in out
    notes = cli.json("status")["notes"]
    assert len(notes) == 2

    state = cli.state / "rotation.json"
    doc = json.loads(state.read_text()) if state.exists() else {}
    doc["last_switch_at"] = now + 10 * 365 * 86400  # left by a clock that stepped back
    state.write_text(json.dumps(doc))
    state.chmod(0o600)
    cli.run("evaluate", code=None)  # the first to decide clamps it
    out = cli.run("status").stdout
    assert "note: rotation: last_switch_at lay in the future (the clock stepped back)" in out
