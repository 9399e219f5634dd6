"""The settings.json installer, the plugin layout and doctor, on real files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gptme_subscription_plugin.claude_code.installer import (
    HOOK_SPECS,
    InstallError,
    hook_command,
    install,
    installed_events,
    settings_path,
    uninstall,
)

from .support.sandbox import Sandbox, run_ours

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "/opt/bin/gptme-subscription"
USER_DOC = {
    "model": "opus",
    "permissions": {"allow": ["Bash(ls:*)"]},
    "statusLine": {"type": "command", "command": "echo 'my line'", "padding": 1},
    "hooks": {
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
        "PreToolUse": [{"matcher": "Write", "hooks": [{"type": "command", "command": "fmt"}]}],
    },
}


def write(path: Path, doc) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))


def test_install_merges_keeps_everything_and_is_idempotent(tmp_path):
    path = tmp_path / "settings.json"
    write(path, USER_DOC)
    path.chmod(0o644)
    first = install(path, PREFIX, now=1000)
    assert first.changed and first.backup is not None
    assert json.loads(first.backup.read_text()) == USER_DOC
    assert stat.S_IMODE(first.backup.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert doc["model"] == "opus" and doc["permissions"] == USER_DOC["permissions"]
    assert installed_events(doc) == {e for e, *_ in HOOK_SPECS}
    assert {"type": "command", "command": "notify-send done"} in doc["hooks"]["Stop"][0]["hooks"]
    assert doc["hooks"]["PreToolUse"][0]["matcher"] == "Write"
    assert doc["hooks"]["StopFailure"][0]["matcher"] == (
        "rate_limit|authentication_failed|oauth_org_not_allowed"
    )
    assert (
        doc["statusLine"]["command"] == f"{PREFIX} statusline --wrap 'echo '\"'\"'my line'\"'\"''"
    )
    assert doc["statusLine"]["padding"] == 1
    again = install(path, PREFIX, now=2000)
    assert not again.changed and again.backup is None
    assert json.loads(path.read_text()) == doc


def test_reinstall_with_a_new_path_replaces_our_entries(tmp_path):
    path = tmp_path / "settings.json"
    install(path, "/old/gptme-subscription")
    install(path, PREFIX)
    text = path.read_text()
    assert "/old/" not in text and text.count(f'{PREFIX} hook stop"') == 1


def test_uninstall_restores_the_users_file(tmp_path):
    path = tmp_path / "settings.json"
    write(path, USER_DOC)
    install(path, PREFIX)
    result = uninstall(path)
    assert result.changed and json.loads(path.read_text()) == USER_DOC
    assert not uninstall(path).changed


def test_uninstall_of_a_fresh_install_leaves_an_empty_object(tmp_path):
    path = tmp_path / "settings.json"
    install(path, PREFIX)
    uninstall(path)
    assert json.loads(path.read_text()) == {}


@pytest.mark.parametrize("content", ['{"hooks": [', "[1, 2]", '{"hooks": "yes"}'])
def test_invalid_settings_are_refused_and_untouched(tmp_path, content):
    path = tmp_path / "settings.json"
    write(path, content)
    with pytest.raises(InstallError, match="nothing changed"):
        install(path, PREFIX)
    assert path.read_text() == content
    assert list(tmp_path.iterdir()) == [path]


def test_dry_run_writes_nothing(tmp_path):
    path = tmp_path / "settings.json"
    result = install(path, PREFIX, dry_run=True)
    assert result.changed and not path.exists()


def test_scopes(tmp_path):
    assert settings_path("user", tmp_path / "c", tmp_path / "p") == tmp_path / "c/settings.json"
    assert (
        settings_path("project", tmp_path, tmp_path / "p") == tmp_path / "p/.claude/settings.json"
    )
    assert settings_path("local", tmp_path, tmp_path / "p").name == "settings.local.json"
    with pytest.raises(InstallError):
        settings_path("global", tmp_path, tmp_path)


def test_plugin_hooks_json_matches_the_installer():
    doc = json.loads((ROOT / "hooks" / "hooks.json").read_text())
    for event, matcher, name, timeout in HOOK_SPECS:
        [group] = doc["hooks"][event]
        assert group.get("matcher") == matcher
        [handler] = group["hooks"]
        assert handler["command"] == hook_command('"${CLAUDE_PLUGIN_ROOT}/hooks/run"', name)
        assert handler["timeout"] == timeout
    assert set(doc["hooks"]) == {e for e, *_ in HOOK_SPECS}
    assert os.access(ROOT / "hooks" / "run", os.X_OK)
    assert json.loads((ROOT / ".claude-plugin" / "plugin.json").read_text())["name"]


def run_cli(env: dict, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return run_ours(args, env, stdin=stdin)


@pytest.fixture
def cli_env(tmp_path):
    """The env of our CLI over slots alice (live) and bob, usage unreachable."""
    return Sandbox(tmp_path, poll_timeout=None, lock_wait=None).env


def test_cli_install_project_scope_and_doctor(cli_env, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    doctor = json.loads(run_cli(cli_env, "doctor", "--json", "--project-dir", str(project)).stdout)
    assert any(c["name"] == "hooks" and c["status"] == "WARN" for c in doctor["checks"])
    proc = run_cli(
        cli_env, "install", "claude-code", "--scope", "project", "--project-dir", str(project)
    )
    assert proc.returncode == 0, proc.stderr
    assert installed_events(json.loads((project / ".claude/settings.json").read_text()))
    doctor = json.loads(run_cli(cli_env, "doctor", "--json", "--project-dir", str(project)).stdout)
    by_name = {c["name"]: c for c in doctor["checks"]}
    assert by_name["hooks (project)"]["status"] == "OK" and doctor["ok"] is True
    (Path(cli_env["HOME"]) / ".claude/.credentials.json.bob").write_text("{")
    proc = run_cli(cli_env, "doctor", "--project-dir", str(project))
    assert proc.returncode == 1 and "FAIL slot bob" in proc.stdout and "reauth bob" in proc.stdout


def test_cli_install_refuses_corrupt_settings(cli_env):
    settings = Path(cli_env["HOME"]) / ".claude/settings.json"
    settings.write_text("{oops")
    proc = run_cli(cli_env, "install", "claude-code")
    assert proc.returncode == 1 and "not valid JSON" in proc.stderr
    assert settings.read_text() == "{oops"


def test_statusline_records_rate_limits_and_wraps(cli_env):
    now = time.time()
    stdin = json.dumps(
        {
            "session_id": "s",
            "model": {"id": "claude-opus-4"},
            "rate_limits": {
                "five_hour": {"used_percentage": 42, "resets_at": now + 3600},
                "seven_day": {"used_percentage": 61, "resets_at": now + 3 * 86400},
            },
        }
    )
    proc = run_cli(cli_env, "statusline", "--wrap", "echo theirs; echo second", stdin=stdin)
    assert proc.returncode == 0
    assert proc.stdout.startswith("theirs | slot alice 5h 42% ")
    assert "7d 61%" in proc.stdout
    cached = json.loads(
        (Path(cli_env["GPTME_SUBSCRIPTION_STATE_DIR"]) / "usage/alice.json").read_text()
    )
    assert "statusline" in json.dumps(cached)
    broken = run_cli(cli_env, "statusline", stdin="{nope")
    assert broken.returncode == 0 and broken.stdout.strip() == "slot ?"


def test_doctor_flags_a_hook_command_that_no_longer_exists(cli_env, tmp_path):
    settings = Path(cli_env["HOME"]) / ".claude/settings.json"
    install(settings, "/gone/bin/gptme-subscription")
    proc = run_cli(cli_env, "doctor", "--project-dir", str(tmp_path))
    assert proc.returncode == 1
    assert "not executable: /gone/bin/gptme-subscription" in proc.stdout


# ---------------------------------------------------------------- ours is what we wrote

USERS_LOOKALIKES = {
    "statusLine": {"type": "command", "command": "~/bin/gptme-subscription-status.sh"},
    "hooks": {
        "Stop": [{"hooks": [{"type": "command", "command": "~/bin/gptme-subscription-audit.sh"}]}],
        "PreToolUse": [
            {
                "matcher": "Bash",
                "hooks": [
                    {"type": "command", "command": "python3 -m gptme_subscription_plugin_audit"},
                    {"type": "command", "command": "/usr/local/bin/gptme-subscription status"},
                ],
            }
        ],
        # our own command, but under an event we never install it in: the user put it there
        "SubagentStop": [{"hooks": [{"type": "command", "command": f"{PREFIX} hook stop"}]}],
        "Notification": [],
    },
}


def test_a_users_hooks_that_mention_our_name_survive_install_reinstall_uninstall(tmp_path):
    path = tmp_path / "settings.json"
    write(path, USERS_LOOKALIKES)
    install(path, PREFIX)
    doc = json.loads(path.read_text())
    stop_commands = [h["command"] for g in doc["hooks"]["Stop"] for h in g["hooks"]]
    assert stop_commands == ["~/bin/gptme-subscription-audit.sh", f"{PREFIX} hook stop"]
    assert doc["hooks"]["PreToolUse"][0] == USERS_LOOKALIKES["hooks"]["PreToolUse"][0]
    assert doc["hooks"]["SubagentStop"] == USERS_LOOKALIKES["hooks"]["SubagentStop"]
    assert doc["statusLine"]["command"] == (
        f"{PREFIX} statusline --wrap '~/bin/gptme-subscription-status.sh'"
    )
    install(path, "/new/bin/gptme-subscription")
    assert not install(path, "/new/bin/gptme-subscription").changed
    doc = json.loads(path.read_text())
    assert [h["command"] for g in doc["hooks"]["Stop"] for h in g["hooks"]] == [
        "~/bin/gptme-subscription-audit.sh",
        "/new/bin/gptme-subscription hook stop",
    ]
    uninstall(path)
    assert json.loads(path.read_text()) == USERS_LOOKALIKES


def test_what_the_previous_installer_wrote_is_still_ours(tmp_path):
    """Before the signal shield, StopFailure ran the bare command with matcher rate_limit;
    the python -m prefix is what a run without the console script writes."""
    old_prefix = "/old/venv/bin/python3 -m gptme_subscription_plugin"
    previous = {
        "hooks": {
            **{
                event: [{"hooks": [{"type": "command", "command": f"{old_prefix} hook {name}"}]}]
                for event, _, name, _ in HOOK_SPECS
            },
            "Stop": [
                {"hooks": [{"type": "command", "command": "~/bin/gptme-subscription-audit.sh"}]},
                {"hooks": [{"type": "command", "command": f"{old_prefix} hook stop"}]},
            ],
        },
        "statusLine": {"type": "command", "command": f"{old_prefix} statusline --wrap 'echo hi'"},
    }
    previous["hooks"]["StopFailure"][0]["matcher"] = "rate_limit"
    path = tmp_path / "settings.json"
    write(path, previous)
    install(path, PREFIX)
    doc = json.loads(path.read_text())
    assert "/old/" not in path.read_text()
    assert [len(doc["hooks"][event]) for event, *_ in HOOK_SPECS] == [1, 1, 1, 2, 1, 1]
    assert doc["statusLine"]["command"] == f"{PREFIX} statusline --wrap 'echo hi'"
    write(path, previous)
    uninstall(path)
    assert json.loads(path.read_text()) == {
        "hooks": {
            "Stop": [
                {"hooks": [{"type": "command", "command": "~/bin/gptme-subscription-audit.sh"}]}
            ]
        },
        "statusLine": {"type": "command", "command": "echo hi"},
    }


@pytest.mark.parametrize(
    "command",
    [
        f"{PREFIX} hook stop --verbose",
        f"{PREFIX} hook stop; ~/bin/gptme-subscription-audit.sh",
        f"{PREFIX}-audit hook stop",
        "gptme-subscription hook stop",  # not the absolute path we write
        f"'{PREFIX}' hook stop",  # quoted differently from how we write it
        f"{PREFIX} hook session-end",  # our command, but for another event
    ],
)
def test_only_the_exact_command_we_write_is_ours(tmp_path, command):
    path = tmp_path / "settings.json"
    users = {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": command}]}]}}
    write(path, users)
    assert installed_events(users) == set()
    install(path, PREFIX)
    uninstall(path)
    assert json.loads(path.read_text()) == users


def test_doctor_ignores_a_users_missing_script_that_mentions_our_name(cli_env, tmp_path):
    settings = Path(cli_env["HOME"]) / ".claude/settings.json"
    install(settings, f"{sys.executable} -m gptme_subscription_plugin")
    doc = json.loads(settings.read_text())
    doc["hooks"]["Stop"] += USERS_LOOKALIKES["hooks"]["Stop"]
    write(settings, doc)
    proc = run_cli(cli_env, "doctor", "--json", "--project-dir", str(tmp_path))
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert "hook command (user)" not in checks, checks.get("hook command (user)")
    assert checks["hooks (user)"]["status"] == "OK"


# ---------------------------------------------------------------- a symlinked settings.json


def test_a_symlinked_settings_json_is_written_through_to_its_target(tmp_path):
    dotfiles = tmp_path / "dotfiles"
    target = dotfiles / "claude-settings.json"
    write(target, USER_DOC)
    target.chmod(0o640)
    claude = tmp_path / "home/.claude"
    claude.mkdir(parents=True)
    link = claude / "settings.json"
    link.symlink_to("../../dotfiles/claude-settings.json")
    result = install(link, PREFIX)
    assert link.is_symlink() and os.readlink(link) == "../../dotfiles/claude-settings.json"
    assert installed_events(json.loads(target.read_text())) == {e for e, *_ in HOOK_SPECS}
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert result.backup is not None and result.backup.parent == claude
    assert json.loads(result.backup.read_text()) == USER_DOC
    assert sorted(p.name for p in dotfiles.iterdir()) == ["claude-settings.json"]
    uninstall(link)
    assert link.is_symlink() and json.loads(target.read_text()) == USER_DOC


def test_a_dangling_settings_link_gets_its_target_created(tmp_path):
    (tmp_path / "dotfiles").mkdir()
    link = tmp_path / "settings.json"
    link.symlink_to(tmp_path / "dotfiles/claude-settings.json")
    install(link, PREFIX)
    assert link.is_symlink()
    assert installed_events(json.loads((tmp_path / "dotfiles/claude-settings.json").read_text()))


def test_a_link_into_a_missing_directory_is_refused(tmp_path):
    link = tmp_path / "settings.json"
    link.symlink_to(tmp_path / "gone/claude-settings.json")
    with pytest.raises(InstallError, match="does not exist; nothing changed"):
        install(link, PREFIX)
    assert link.is_symlink() and not (tmp_path / "gone").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"]


# ---------------------------------------------------------------- backups


def backups(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if ".bak-gptme-subscription-" in p.name)


def test_backups_are_unique_numbered_private_and_pruned_to_five(tmp_path):
    path = tmp_path / "settings.json"
    write(path, USER_DOC)
    path.chmod(0o644)
    mine = tmp_path / "settings.json.bak-mine"
    mine.write_text("my own copy")
    contents = []
    for i in range(8):  # all in the same second: a name from the time alone would collide
        contents.append(path.read_text())
        result = (
            install(path, f"/v{i}/gptme-subscription", now=1000)
            if i % 2 == 0
            else uninstall(path, now=1000)
        )
        assert result.changed and result.backup is not None
    kept = backups(tmp_path)
    assert [p.name for p in kept] == [
        f"settings.json.bak-gptme-subscription-{n:04d}-19700101T001640Z" for n in range(4, 9)
    ]
    assert [p.read_text() for p in kept] == contents[-5:]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in kept)
    assert mine.read_text() == "my own copy"


def test_pruning_follows_the_sequence_not_the_clock(tmp_path):
    """A clock that stepped back, and backups an earlier version named by time (even a time
    in the future): the copies made last are the ones kept."""
    path = tmp_path / "settings.json"
    write(path, USER_DOC)
    legacy = tmp_path / "settings.json.bak-gptme-subscription-9999999999"
    legacy.write_text("{}")
    contents = []
    for i, now in enumerate([5000, 4000, 3000, 2000, 1000, 500]):
        contents.append(path.read_text())
        install(path, f"/v{i}/gptme-subscription", now=now)
    kept = backups(tmp_path)
    assert not legacy.exists()
    assert [p.read_text() for p in kept] == contents[-5:]
    assert kept[-1].name.startswith("settings.json.bak-gptme-subscription-0006-")


# ---------------------------------------------------------------- directories we create


@pytest.fixture
def umask_000():
    old = os.umask(0)
    yield
    os.umask(old)


def test_directories_the_installer_creates_are_0700_whatever_the_umask(tmp_path, umask_000):
    project = tmp_path / "proj"
    project.mkdir(mode=0o755)
    path = settings_path("project", tmp_path / "claude", project / "sub")
    install(path, PREFIX)
    assert stat.S_IMODE((project / "sub").stat().st_mode) == 0o700
    assert stat.S_IMODE((project / "sub/.claude").stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(project.stat().st_mode) == 0o755  # it existed: the user's


def test_cli_install_under_umask_000_creates_a_private_claude_dir(cli_env, tmp_path):
    home = Path(cli_env["HOME"])
    env = {**cli_env, "CLAUDE_CONFIG_DIR": str(home / "fresh/.claude")}
    proc = subprocess.run(
        [
            "sh",
            "-c",
            'umask 000 && exec "$0" -m gptme_subscription_plugin install claude-code',
            sys.executable,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for directory in (home / "fresh", home / "fresh/.claude"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert stat.S_IMODE((home / "fresh/.claude/settings.json").stat().st_mode) == 0o600


def test_the_prefix_this_install_writes_is_recognised_as_ours(tmp_path, monkeypatch):
    """Through a console script that is a link to a file of another name, too: a reinstall
    must replace what the install wrote, never add a second set."""
    from gptme_subscription_plugin.claude_code import installer

    real = tmp_path / "store/console-entry"
    real.parent.mkdir()
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "gptme-subscription").symlink_to(real)
    for path_env in (str(bindir), str(tmp_path / "empty")):
        monkeypatch.setenv("PATH", path_env)
        prefix = installer.our_command_prefix()
        settings = tmp_path / "settings.json"
        install(settings)
        install(settings)
        doc = json.loads(settings.read_text())
        assert installed_events(doc) == {e for e, *_ in HOOK_SPECS}
        assert doc["hooks"]["Stop"] == [
            {"hooks": [{"type": "command", "command": f"{prefix} hook stop", "timeout": 30}]}
        ]
        settings.unlink()


def test_statusline_inside_a_usage_script_records_nothing(cli_env):
    """A usage script's `claude` shows its own account's rate_limits: not the live slot's."""
    stdin = json.dumps({"session_id": "s", "rate_limits": {"five_hour": {"used_percentage": 99}}})
    env = {**cli_env, "GPTME_SUBSCRIPTION_INSIDE_USAGE_SCRIPT": "1"}
    proc = run_cli(env, "statusline", "--wrap", "echo theirs", stdin=stdin)
    assert proc.returncode == 0 and proc.stdout.strip() == "theirs"
    state = Path(cli_env["GPTME_SUBSCRIPTION_STATE_DIR"])
    assert not (state / "usage/alice.json").exists()
    assert not (state / "hook-status.json").exists()
