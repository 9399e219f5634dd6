"""Nothing foreign is trusted: dirs and files another user could write are refused whole.

We run as root in CI, so "another user" is uid 65534 (nobody) via os.chown, and "writable by
others" is a chmod. Every refusal is one line, non-zero for the CLI, exit 0 for hooks, and
leaves every file as it was.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gptme_subscription_plugin import fsutil

from .support.sandbox import Sandbox, hook_payload, tree

NOBODY = 65534


def one_line_refusal(stderr: str, needle: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert needle in lines[0] and "refusing" in lines[0], stderr
    assert "Traceback" not in stderr


# ---------------------------------------------------------------- the one check


def test_check_private_refuses_another_owner_and_loose_modes(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    fsutil.check_private(mine, "state dir")
    fsutil.check_private(tmp_path / "missing", "state dir")  # we create it ourselves, 0700

    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(fsutil.ForeignPathError, match="owned by uid 65534"):
        fsutil.check_private(theirs, "state dir")

    for mode in (0o777, 0o757, 0o702):
        loose = tmp_path / f"loose-{mode:o}"
        loose.mkdir()
        loose.chmod(mode)
        with pytest.raises(fsutil.ForeignPathError, match="writable by others"):
            fsutil.check_private(loose, "state dir")

    group = tmp_path / "group"
    group.mkdir()
    os.chown(group, -1, NOBODY)  # a group we are not the only member of
    group.chmod(0o770)
    with pytest.raises(fsutil.ForeignPathError, match="writable by others"):
        fsutil.check_private(group, "state dir")


def test_ensure_private_dir_refuses_rather_than_repairs(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    with pytest.raises(fsutil.ForeignPathError):
        fsutil.ensure_private_dir(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o777  # refused, not quietly changed


def test_read_private_bytes_refuses_a_file_of_another_user(tmp_path):
    path = tmp_path / "rotation.json"
    path.write_text("{}")
    path.chmod(0o600)
    assert fsutil.read_private_bytes(path) == b"{}"
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(fsutil.ForeignPathError, match="owned by uid 65534"):
        fsutil.read_private_bytes(path)
    assert fsutil.read_private_bytes(tmp_path / "absent") is None


# ---------------------------------------------------------------- the CLI


@pytest.mark.planted_files  # the loose modes are the point
@pytest.mark.parametrize("how", ["owner", "mode"])
def test_cli_refuses_a_foreign_state_dir(cli, how):  # noqa: F811
    cli.state.mkdir(mode=0o700)
    if how == "owner":
        os.chown(cli.state, NOBODY, NOBODY)
    else:
        cli.state.chmod(0o757)
    before, claude_before = tree(cli.state), tree(cli.claude)
    proc = cli.run("status", code=1)
    one_line_refusal(proc.stderr, f"state dir {cli.state}")
    assert tree(cli.state) == before and tree(cli.claude) == claude_before
    proc = cli.run("switch", "bob", "--force", code=1)
    one_line_refusal(proc.stderr, f"state dir {cli.state}")
    assert tree(cli.state) == before and tree(cli.claude) == claude_before


@pytest.mark.planted_files
@pytest.mark.parametrize("how", ["owner", "mode"])
def test_cli_refuses_a_foreign_claude_dir(cli, how):  # noqa: F811
    if how == "owner":
        os.chown(cli.claude, NOBODY, NOBODY)
    else:
        cli.claude.chmod(0o777)
    before = tree(cli.claude)
    proc = cli.run("switch", "bob", "--force", code=1)
    one_line_refusal(proc.stderr, f"claude dir {cli.claude}")
    assert tree(cli.claude) == before
    assert not cli.state.exists()  # refused before the state dir was even created


def test_cli_refuses_a_state_file_of_another_user(cli):  # noqa: F811
    cli.run("switch", "bob", "--force")
    rotation = cli.state / "rotation.json"
    os.chown(rotation, NOBODY, NOBODY)
    before, claude_before = tree(cli.state), tree(cli.claude)
    proc = cli.run("switch", "alice", "--force", code=1)
    one_line_refusal(proc.stderr, f"state document {rotation}")
    assert tree(cli.state) == before and tree(cli.claude) == claude_before


# ---------------------------------------------------------------- the hooks


@pytest.fixture
def sb(tmp_path, fake_server):
    return Sandbox(tmp_path, server=fake_server, usage=(10, 30))


@pytest.mark.planted_files
@pytest.mark.parametrize(
    "event", ["session-start", "user-prompt-submit", "pre-tool-use", "stop", "session-end"]
)
def test_hooks_do_nothing_in_a_foreign_state_dir(sb, event):
    sb.state.mkdir(mode=0o700)
    os.chown(sb.state, NOBODY, NOBODY)
    sb.set_usage("alice", five=20, week=99)  # Stop would switch to bob if it acted
    before, claude_before = tree(sb.state), tree(sb.claude)
    out, err = sb.hook(event, hook_payload("X"))
    assert out is None
    one_line_refusal(err, f"state dir {sb.state}")
    assert tree(sb.state) == before and tree(sb.claude) == claude_before


@pytest.mark.planted_files
def test_hooks_do_nothing_with_a_claude_dir_others_can_write(sb):
    sb.claude.chmod(0o757)
    sb.set_usage("alice", five=20, week=99)
    before = tree(sb.claude)
    out, err = sb.hook("stop", hook_payload("Stop"))
    assert out is None
    one_line_refusal(err, f"claude dir {sb.claude}")
    assert tree(sb.claude) == before and sb.live() == "alice"


# ---------------------------------------------------------------- config-cache.json


def forge_cache(state: Path, **values: object) -> dict:
    """Rewrite the cache's values, keeping its key: what anyone who can compute the key does."""
    path = state / "config-cache.json"
    doc = json.loads(path.read_text())
    doc["values"].update(values)
    fsutil.atomic_write_text(path, json.dumps(doc))
    return doc


def marker_script(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "script-ran"
    script = tmp_path / "evil-usage.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\necho '{{}}'\n")
    script.chmod(0o700)
    return script, marker


@pytest.mark.parametrize("planted_as", ["file", "symlink"])
def test_a_forged_config_cache_runs_no_script(sb, tmp_path, planted_as):
    script, marker = marker_script(tmp_path)
    fast = {"GPTME_SUBSCRIPTION_POLL_INTERVAL": "0"}  # every hook may poll: a script would run
    out, _ = sb.hook("session-start", hook_payload("SessionStart"), **fast)
    assert out is not None
    cache = sb.state / "config-cache.json"
    doc = forge_cache(
        sb.state, usage_script=str(script), api_base="http://127.0.0.1:9", lock_glob="/x"
    )
    if planted_as == "symlink":
        elsewhere = tmp_path / "planted-cache.json"
        elsewhere.write_text(json.dumps(doc))
        cache.unlink()
        cache.symlink_to(elsewhere)
    for event in ("session-start", "stop", "session-start"):
        out, err = sb.hook(event, hook_payload(event), **fast)
        assert not marker.exists(), f"{event} ran the planted usage_script"
    assert out is not None and "live slot alice" in out["hookSpecificOutput"]["additionalContext"]
    assert not cache.is_symlink()  # replaced by what the sources say
    assert json.loads(cache.read_text())["values"]["usage_script"] is None


def test_a_cache_hit_still_answers_what_the_sources_say(tmp_path):
    """Reuse without pydantic only when every cached value equals a fresh parse of the sources."""
    state = tmp_path / "state"
    cfg = tmp_path / "cfg" / "gptme-subscription"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text('poll_interval = 77\nlock_glob = "/run/agents/*.lock"\n')
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "GPTME_SUBSCRIPTION_STATE_DIR": str(state),
        "GPTME_SUBSCRIPTION_API_BASE": "http://127.0.0.1:8/",
    }
    code = (
        "import json, sys\n"
        "from gptme_subscription_plugin.config import load_config\n"
        "c = load_config(use_cache=True)\n"
        "print(json.dumps([c.to_json(), 'pydantic' in sys.modules]))\n"
    )

    def run() -> tuple[dict, bool]:
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        values, imported = json.loads(proc.stdout)
        return values, imported

    truth, imported = run()
    assert imported and truth["api_base"] == "http://127.0.0.1:8"
    assert run() == (truth, False)  # an honest cache is reused without pydantic
    for field, forged in [
        ("usage_script", str(tmp_path / "x.sh")),
        ("api_base", "http://127.0.0.1:9"),
        ("lock_glob", "/tmp/*"),
        ("state_dir", str(tmp_path / "other")),
        ("claude_dir", str(tmp_path / "other")),
        ("poll_interval", 1.0),
        ("slots", ["mallory"]),
    ]:
        forge_cache(state, **{field: forged})
        assert run() == (truth, True), field  # refused: validated afresh, then reused again
        assert run() == (truth, False), field


# ---------------------------------------------------------------- planted symlinks


@pytest.fixture
def victim(tmp_path) -> Path:
    """A dir of someone else's files that a planted link points into."""
    d = tmp_path / "victim"
    d.mkdir()
    (d / "precious").write_text("precious\n")
    (d / "X.json").write_text('{"session_id": "X", "state": "busy", "since": 1, "last_seen": 1}')
    (d / "X").write_text("alice:1")
    (d / "alice.1.abc").write_text("not a backup")
    dead = d / f"x{fsutil.TEMP_MARKER}999999999-abcd"  # looks like our temp file, writer dead
    dead.write_text("theirs")
    os.utime(dead, (1000, 1000))
    return d


def test_a_planted_events_log_link_is_never_appended_to(cli, victim):  # noqa: F811
    cli.state.mkdir(mode=0o700)
    (cli.state / "events.jsonl").symlink_to(victim / "precious")
    before, claude_before = tree(victim), tree(cli.claude)
    proc = cli.run("switch", "bob", "--force", code=None)
    assert tree(victim) == before and tree(cli.claude) == claude_before  # no flip either
    assert proc.returncode == 1
    one_line_refusal(proc.stderr, f"event log {cli.state / 'events.jsonl'} is a symlink")
    proc = cli.run("status", code=1)
    one_line_refusal(proc.stderr, "is a symlink")


def test_a_planted_lock_link_is_never_truncated(cli, victim):  # noqa: F811
    cli.state.mkdir(mode=0o700)
    (cli.state / "rotation.json.lock").symlink_to(victim / "precious")
    before = tree(victim)
    cli.run("switch", "bob", "--force", code=None)
    assert tree(victim) == before


@pytest.mark.parametrize("event", ["pre-tool-use", "user-prompt-submit", "session-end", "stop"])
def test_a_planted_sessions_link_is_never_written_through(sb, victim, event):
    sb.state.mkdir(mode=0o700)
    (sb.state / "sessions").symlink_to(victim)
    before, claude_before = tree(victim), tree(sb.claude)
    out, err = sb.hook(event, hook_payload(event, session="X"))
    assert tree(victim) == before and tree(sb.claude) == claude_before
    assert out is None
    one_line_refusal(err, f"directory {sb.state / 'sessions'} is a symlink")


@pytest.mark.parametrize("event", ["pre-tool-use", "session-end", "stop"])
def test_a_planted_warned_link_is_never_written_through(sb, victim, event):
    from gptme_subscription_plugin.hookstatus import write_hook_status

    write_hook_status(sb.state, {"level": 2, "live": "alice", "text": "alice at 91%"})
    (sb.state / "warned").symlink_to(victim)
    before = tree(victim)
    out, err = sb.hook(event, hook_payload(event, session="X"))
    assert tree(victim) == before
    assert out is None
    one_line_refusal(err, f"directory {sb.state / 'warned'} is a symlink")


def test_a_planted_usage_link_is_never_written_through(sb, victim):
    sb.state.mkdir(mode=0o700)
    (sb.state / "usage").symlink_to(victim)
    before = tree(victim)
    out, err = sb.hook("session-start", hook_payload("SessionStart"))
    assert tree(victim) == before
    assert out is None
    one_line_refusal(err, f"directory {sb.state / 'usage'} is a symlink")


def test_a_planted_backup_dir_link_is_never_written_through(cli, victim, tmp_path):  # noqa: F811
    backups = cli.claude / ".gptme-subscription-backups"
    backups.symlink_to(victim)
    src = tmp_path / "alice-again.json"
    src.write_bytes(b'{"claudeAiOauth": {"accessToken": "a", "refreshToken": "r"}}')
    before, claude_before = tree(victim), tree(cli.claude)
    proc = cli.run("slot", "add", "alice", "--from", str(src), "--force", code=None)
    assert tree(victim) == before and tree(cli.claude) == claude_before
    assert proc.returncode == 1
    one_line_refusal(proc.stderr, f"{backups} is a symlink")


# ---------------------------------------------------------------- reauth


def test_reauth_logs_in_under_a_fresh_private_dir_each_time(cli, tmp_path):  # noqa: F811
    tmp = tmp_path / "tmp"
    tmp.mkdir(mode=0o700)
    planted = tmp / "gptme-subscription-reauth-bob"  # where a fixed path would have been
    planted.symlink_to(tmp_path / "attacker")
    dirs = []
    for _ in range(2):
        out = cli.run("reauth", "bob", TMPDIR=str(tmp)).stdout
        named = set(re.findall(r"CLAUDE_CONFIG_DIR=(\S+)", out))
        assert len(named) == 1, out
        login_dir = Path(named.pop())
        assert f"--from {login_dir}/.credentials.json" in out
        assert f"rm -rf {login_dir}" in out and "mkdir" not in out
        dirs.append(login_dir)
    assert dirs[0] != dirs[1] and planted not in dirs
    for login_dir in dirs:
        st = login_dir.lstat()
        assert login_dir.parent == tmp and stat.S_ISDIR(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
    assert not (tmp_path / "attacker").exists()


# ---------------------------------------------------------------- relative paths in config.toml


def test_relative_dirs_in_config_toml_are_relative_to_the_file_not_the_cwd(sb, tmp_path):
    cfg = tmp_path / "cfg" / "gptme-subscription"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text('state_dir = "state"\nclaude_dir = "../../home/.claude"\n')
    env = {k: v for k, v in sb.env.items() if k != "GPTME_SUBSCRIPTION_STATE_DIR"}
    cwds = [tmp_path / "w1", tmp_path / "w2" / "deeper" / "still"]
    for n, cwd in enumerate(cwds):
        cwd.mkdir(parents=True)
        for event in ("session-start", "pre-tool-use"):
            proc = subprocess.run(
                [sys.executable, "-m", "gptme_subscription_plugin", "hook", event],
                input=json.dumps(hook_payload(event, session=f"s{n}")),
                env=env,
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode == 0 and not proc.stderr, proc.stderr
            if event == "session-start":
                context = json.loads(proc.stdout)["hookSpecificOutput"]["additionalContext"]
                assert "live slot alice" in context  # the claude dir was found from here too
        assert list(cwd.iterdir()) == []  # nothing made relative to the hook's cwd
    sessions = cfg / "state" / "sessions"
    assert sorted(p.name for p in sessions.iterdir()) == ["s0.json", "s1.json"]
    assert (cfg / "state" / "config-cache.json").exists()


def test_relative_dirs_in_config_toml_resolve_alike_in_core_and_fast_path(tmp_path, monkeypatch):
    from gptme_subscription_plugin.config import load_config
    from gptme_subscription_plugin.paths import resolve_claude_dir, resolve_state_dir

    cfg = tmp_path / "cfg" / "gptme-subscription"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text(
        'state_dir = "state"\nclaude_dir = "../claude"\nusage_script = "bin/usage"\n'
    )
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    monkeypatch.chdir(tmp_path)
    config = load_config(env=env)
    assert config.state_dir == resolve_state_dir(env) == cfg / "state"
    assert config.claude_dir == resolve_claude_dir(env) == cfg / ".." / "claude"
    assert config.usage_script == cfg / "bin" / "usage"


# ---------------------------------------------------------------- programs we run


@pytest.mark.parametrize("how", ["world-writable", "other-owner", "loose-dir"])
def test_a_usage_script_others_could_replace_is_never_run(cli, tmp_path, how):  # noqa: F811
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(mode=0o700)
    script, marker = marker_script(bin_dir)
    if how == "world-writable":
        script.chmod(0o777)
    elif how == "other-owner":
        os.chown(script, NOBODY, NOBODY)
    else:
        bin_dir.chmod(0o777)  # anyone may rename another script over ours
    linked = tmp_path / "usage.sh"  # named through a link, as dotfiles do: the target counts
    linked.symlink_to(script)
    env = {"GPTME_SUBSCRIPTION_USAGE_SCRIPT": str(linked)}
    status = json.loads(cli.run("status", "--refresh", "--json", code=None, **env).stdout)
    assert not marker.exists()
    errors = [slot["poll"].get("last_error") for slot in status["slots"]]
    assert errors and all("refusing to run it" in (e or "") for e in errors), errors


def test_a_usage_script_of_ours_in_a_sticky_dir_runs(cli, tmp_path):  # noqa: F811
    sticky = tmp_path / "shared-tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    script, marker = marker_script(sticky)
    cli.run("status", "--refresh", "--json", code=None, GPTME_SUBSCRIPTION_USAGE_SCRIPT=str(script))
    assert marker.exists()


def test_a_planted_pending_login_link_is_never_taken(cli, tmp_path):  # noqa: F811
    """A link in the pending-login place would make `slot add` import a file we never kept."""
    victim = tmp_path / "someone-elses.json"
    victim.write_bytes(b'{"claudeAiOauth": {"accessToken": "x", "refreshToken": "y"}}')
    (cli.claude / ".gptme-subscription-pending-login").symlink_to(victim)
    before = tree(cli.claude)
    proc = cli.run("slot", "add", "mallory", code=1)
    assert tree(cli.claude) == before
    one_line_refusal(proc.stderr, "pending-login")
