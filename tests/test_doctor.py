"""`gptme-subscription doctor` as a person runs it: a real process on real files and modes."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from .support.credentials import credential_bytes
from .support.sandbox import Sandbox

SECRETS = ("sk-ant-api03-doctor-secret", "oauth-token-value-abc123", "bedrock-profile-secret")


class Doctor(Sandbox):
    """Slots alice (live) and bob, a project dir, and `doctor` as a process."""

    def __init__(self, tmp_path: Path):
        super().__init__(tmp_path, poll_timeout=None, lock_wait=None)
        self.project = tmp_path / "proj"
        self.project.mkdir()

    def doctor(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.run("doctor", "--project-dir", str(self.project), *args)
        for secret in SECRETS:
            assert secret not in proc.stdout + proc.stderr
        return proc

    def checks(self) -> tuple[int, list[dict]]:
        proc = self.doctor("--json")
        return proc.returncode, json.loads(proc.stdout)["checks"]


@pytest.fixture
def doctor(tmp_path) -> Doctor:
    return Doctor(tmp_path)


def write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_doctor_names_a_credential_in_settings_env_never_its_value(doctor):
    write_json(
        doctor.claude / "settings.json",
        {"env": {"ANTHROPIC_API_KEY": SECRETS[0], "ANTHROPIC_AUTH_TOKEN": "", "FOO": "bar"}},
    )
    write_json(
        doctor.project / ".claude/settings.local.json",
        {"env": {"CLAUDE_CODE_OAUTH_TOKEN": SECRETS[1], "CLAUDE_CODE_USE_BEDROCK": "1"}},
    )
    write_json(
        doctor.project / ".claude/settings.json",
        {"env": {"CLAUDE_CODE_USE_VERTEX": "0", "AWS_PROFILE": SECRETS[2]}},
    )
    _, checks = doctor.checks()
    found = [c for c in checks if c["name"].startswith("settings env")]
    assert [(c["status"], c["name"]) for c in found] == [
        ("WARN", "settings env (user)"),
        ("WARN", "settings env (local)"),
        ("WARN", "settings env (local)"),
    ]
    assert found[0]["detail"].startswith(
        f"env.ANTHROPIC_API_KEY in {doctor.claude / 'settings.json'} makes Claude Code bypass"
    )
    assert "env.CLAUDE_CODE_OAUTH_TOKEN in " in found[1]["detail"]
    assert "env.CLAUDE_CODE_USE_BEDROCK in " in found[2]["detail"]
    assert (
        found[0]["fix"] == f"remove ANTHROPIC_API_KEY from the env of {doctor.claude}/settings.json"
    )
    text = doctor.doctor().stdout
    assert "WARN settings env (user)" in text and "env.ANTHROPIC_API_KEY" in text


def test_doctor_reports_no_settings_env_override_when_there_is_none(doctor):
    write_json(doctor.claude / "settings.json", {"env": {"FOO": "bar"}})
    _, checks = doctor.checks()
    assert {"status": "OK", "name": "settings env"}.items() <= next(
        c for c in checks if c["name"].startswith("settings env")
    ).items()


def test_doctor_flags_credentials_and_dirs_that_others_can_reach_with_the_fix(doctor):
    bob = doctor.claude / ".credentials.json.bob"
    backups = doctor.claude / ".gptme-subscription-backups"
    backups.mkdir(mode=0o700)
    backup = backups / "bob.1.abc"
    backup.write_bytes(credential_bytes("bob"))
    bob.chmod(0o644)
    backup.chmod(0o640)
    doctor.claude.chmod(0o755)
    backups.chmod(0o770)
    code, checks = doctor.checks()
    perms = {c["detail"]: c for c in checks if c["name"] == "permissions"}
    assert code == 1
    assert perms[f"credential file {bob} is 0644: readable by group/others"]["fix"] == (
        f"chmod 600 {shlex.quote(str(bob))}"
    )
    assert perms[f"credential file {backup} is 0640: readable by group/others"]["status"] == "FAIL"
    claude_dir = perms[f"dir {doctor.claude} is 0755: readable by group/others"]
    assert claude_dir["status"] == "WARN" and claude_dir["fix"] == f"chmod 700 {doctor.claude}"
    shared = perms[f"dir {backups} is 0770: readable and writable by group/others"]
    assert shared["status"] == "FAIL" and shared["fix"] == f"chmod 700 {backups}"
    assert len(perms) == 4  # alice's slot, 0600, is fine
    text = doctor.doctor().stdout
    assert "FAIL permissions" in text and f"-> chmod 600 {bob}" in text
    for path, mode in ((bob, 0o600), (backup, 0o600), (doctor.claude, 0o700), (backups, 0o700)):
        path.chmod(mode)
    code, checks = doctor.checks()
    assert [c["status"] for c in checks if c["name"] == "permissions"] == ["OK"]


def test_doctor_checks_a_live_file_left_by_a_refresh(doctor):
    live = doctor.claude / ".credentials.json"
    live.unlink()
    live.write_bytes(credential_bytes("alice", generation=2))
    live.chmod(0o644)
    _, checks = doctor.checks()
    assert any(
        c["name"] == "permissions" and c["detail"].startswith(f"credential file {live} is 0644")
        for c in checks
    )


PLUGIN_ID = "gptme-subscription@gptme-subscription-plugin"
INSTALL_CLAUDE_CODE = "gptme-subscription install claude-code"


def hook_checks(checks: list[dict]) -> list[dict]:
    return [c for c in checks if c["name"] == "hooks" or c["name"].startswith("plugin")]


def test_doctor_counts_the_enabled_plugin_as_installed(doctor):
    write_json(doctor.claude / "settings.json", {"enabledPlugins": {PLUGIN_ID: True}})
    _, checks = doctor.checks()
    settings = doctor.claude / "settings.json"
    assert hook_checks(checks) == [
        {
            "status": "OK",
            "name": "plugin (user)",
            "detail": f"{settings}: {PLUGIN_ID} enabled",
            "fix": "",
        }
    ]


def test_doctor_warns_when_the_hooks_are_installed_twice(doctor):
    write_json(doctor.project / ".claude/settings.json", {"enabledPlugins": {PLUGIN_ID: True}})
    installed = subprocess.run(
        [sys.executable, "-m", "gptme_subscription_plugin", "install", "claude-code"],
        env=doctor.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert installed.returncode == 0, installed.stderr
    _, checks = doctor.checks()
    [twice] = [c for c in checks if c["name"] == "hooks"]
    assert twice["status"] == "WARN"
    assert twice["detail"] == (
        f"installed twice, as the plugin {PLUGIN_ID} (project) and in the settings of scope "
        "user: every hook runs twice"
    )
    assert twice["fix"] == "gptme-subscription uninstall claude-code --scope user"


@pytest.mark.parametrize("enabled", [None, {PLUGIN_ID: False}, {"other@market": True}])
def test_doctor_without_hooks_or_plugin_names_both_ways_to_install(doctor, enabled):
    if enabled is not None:
        write_json(doctor.claude / "settings.json", {"enabledPlugins": enabled})
    _, checks = doctor.checks()
    assert hook_checks(checks) == [
        {
            "status": "WARN",
            "name": "hooks",
            "detail": "not installed: neither in a Claude Code settings file nor as the plugin",
            "fix": f"claude plugin install {PLUGIN_ID} (or: {INSTALL_CLAUDE_CODE})",
        }
    ]


def test_doctor_knows_the_plugin_by_the_name_the_marketplace_lists():
    root = Path(__file__).resolve().parents[1] / ".claude-plugin"
    plugin = json.loads((root / "plugin.json").read_text())["name"]
    marketplace = json.loads((root / "marketplace.json").read_text())
    assert [p["name"] for p in marketplace["plugins"]] == [plugin]
    assert f"{plugin}@{marketplace['name']}" == PLUGIN_ID
    from gptme_subscription_plugin.claude_code.doctor import PLUGIN_INSTALL, PLUGIN_NAME

    assert (plugin, f"claude plugin install {PLUGIN_ID}") == (PLUGIN_NAME, PLUGIN_INSTALL)
