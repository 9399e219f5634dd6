"""`gptme-subscription install gptme` / `uninstall gptme` on real gptme.toml files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from gptme_subscription_plugin.claude_code.installer import InstallError
from gptme_subscription_plugin.gptme_plugin.installer import (
    count_comments,
    folder_plugin_dir,
    gptme_toml_path,
    install,
    uninstall,
)

from .support.sandbox import run_ours

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

PLUGIN_DIR = Path("/opt/site/gptme_subscription_plugin/gptme_plugin/plugins/subscription")
USER_DOC = {
    "files": ["README.md", "docs/*.md"],
    "context_cmd": "git status -s",
    "prompt": {"project": "a project with opinions"},
    "plugins": {"paths": ["./my-plugins"]},
    "plugin": {"retrieval": {"k": 5}, "subscription": {"turn_scope": "tool"}},
    "mcp": {"enabled": True, "servers": [{"name": "x", "command": "x-server", "args": ["-v"]}]},
}


def write(path: Path, doc: dict | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else tomli_w.dumps(doc))


def read(path: Path) -> dict:
    return tomllib.loads(path.read_text())


def env_with_home(tmp_path: Path, user_enabled: list[str] | None = None) -> dict[str, str]:
    home = tmp_path / "home"
    if user_enabled is not None:
        write(home / ".config/gptme/config.toml", {"plugins": {"enabled": user_enabled}})
    return {"HOME": str(home)}


def test_install_merges_keeps_every_key_and_is_idempotent(tmp_path):
    ws = tmp_path / "ws"
    path = ws / "gptme.toml"
    write(path, USER_DOC)
    path.chmod(0o664)
    first = install(ws, plugin_dir=PLUGIN_DIR, now=1000, env=env_with_home(tmp_path))
    assert first.changed
    assert first.backup == ws / "gptme.toml.bak-gptme-subscription-0001-19700101T001640Z"
    assert read(first.backup) == USER_DOC
    assert stat.S_IMODE(first.backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o664  # the user's mode is kept
    doc = read(path)
    assert doc["plugins"]["paths"] == ["./my-plugins", str(PLUGIN_DIR)]
    assert "enabled" not in doc["plugins"]  # no allowlist: every plugin already loads
    assert {k: v for k, v in doc.items() if k != "plugins"} == {
        k: v for k, v in USER_DOC.items() if k != "plugins"
    }
    assert "enables every plugin it finds" in first.notes[0]
    again = install(ws, plugin_dir=PLUGIN_DIR, now=2000, env=env_with_home(tmp_path))
    assert not again.changed and again.backup is None and read(path) == doc
    assert sorted(p.name for p in ws.iterdir()) == ["gptme.toml", first.backup.name]


def test_install_adds_to_an_existing_allowlist(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "gptme.toml", {"plugins": {"enabled": ["retrieval"]}})
    result = install(ws, plugin_dir=PLUGIN_DIR, env=env_with_home(tmp_path))
    assert read(ws / "gptme.toml")["plugins"] == {
        "enabled": ["retrieval", "subscription"],
        "paths": [str(PLUGIN_DIR)],
    }
    assert result.notes == []


def test_install_joins_a_user_level_allowlist(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    result = install(ws, plugin_dir=PLUGIN_DIR, env=env_with_home(tmp_path, ["retrieval"]))
    assert read(ws / "gptme.toml")["plugins"]["enabled"] == ["subscription"]
    assert result.backup is None  # a new file has nothing to back up
    assert stat.S_IMODE((ws / "gptme.toml").stat().st_mode) == 0o644
    assert "user config restricts plugins" in result.notes[0]


def test_reinstall_from_a_new_location_replaces_the_old_path(tmp_path):
    ws = tmp_path / "ws"
    old = "/old/venv/gptme_subscription_plugin/gptme_plugin/plugins/subscription"
    write(ws / "gptme.toml", {"plugins": {"paths": ["./mine", old], "enabled": ["subscription"]}})
    install(ws, plugin_dir=PLUGIN_DIR, env=env_with_home(tmp_path))
    assert read(ws / "gptme.toml")["plugins"] == {
        "paths": ["./mine", str(PLUGIN_DIR)],
        "enabled": ["subscription"],
    }


def test_uninstall_restores_the_users_file(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "gptme.toml", USER_DOC)
    install(ws, plugin_dir=PLUGIN_DIR, now=1000, env=env_with_home(tmp_path))
    result = uninstall(ws, now=2000)
    assert result.changed and read(ws / "gptme.toml") == USER_DOC
    assert result.backup == ws / "gptme.toml.bak-gptme-subscription-0002-19700101T003320Z"
    assert not uninstall(ws).changed


def test_uninstall_of_our_only_allowlist_entry_says_what_that_means(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "gptme.toml", {"plugins": {"enabled": ["subscription"]}, "files": ["a"]})
    result = uninstall(ws)
    assert read(ws / "gptme.toml") == {"files": ["a"]}
    assert "enables every plugin it finds" in result.notes[0]


def test_uninstall_never_creates_a_file(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    assert not uninstall(ws).changed and not (ws / "gptme.toml").exists()


def test_the_github_location_is_used_when_that_is_the_file_gptme_reads(tmp_path):
    ws = tmp_path / "ws"
    write(ws / ".github/gptme.toml", {"files": ["x"]})
    assert gptme_toml_path(ws) == ws / ".github/gptme.toml"
    install(ws, plugin_dir=PLUGIN_DIR, env=env_with_home(tmp_path))
    assert not (ws / "gptme.toml").exists()
    assert read(ws / ".github/gptme.toml")["plugins"]["paths"] == [str(PLUGIN_DIR)]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[plugins\npaths = 1\n", "is not valid TOML (Expected ']'"),
        ("plugins = 3\n", "[plugins] is not a table"),
        ('[plugins]\npaths = "/x"\n', "plugins.paths is not a list of strings"),
        ("[plugins]\nenabled = [1, 2]\n", "plugins.enabled is not a list of strings"),
        ("a = 1\na = 2\n", "is not valid TOML"),
    ],
)
def test_an_unusable_file_is_refused_and_left_untouched(tmp_path, text, why):
    ws = tmp_path / "ws"
    write(ws / "gptme.toml", text)
    for action in (install, uninstall):
        with pytest.raises(InstallError) as err:
            action(ws)
        assert why in str(err.value) and "nothing changed" in str(err.value)
        assert (ws / "gptme.toml").read_text() == text
        assert sorted(p.name for p in ws.iterdir()) == ["gptme.toml"]


def test_comments_are_reported_and_kept_in_the_backup(tmp_path):
    ws = tmp_path / "ws"
    text = '# my workspace\nfiles = ["a.md"]  # always in context\n\n[prompt]\nproject = "x#y"\n'
    write(ws / "gptme.toml", text)
    dry = install(ws, plugin_dir=PLUGIN_DIR, dry_run=True, env=env_with_home(tmp_path))
    assert dry.changed and dry.comments_dropped == 2 and dry.backup is None
    assert (ws / "gptme.toml").read_text() == text  # a dry run writes nothing
    assert "kept only in the original (dry run)" in dry.notes[-1]
    result = install(ws, plugin_dir=PLUGIN_DIR, now=5, env=env_with_home(tmp_path))
    assert result.comments_dropped == 2 and result.backup is not None
    assert result.backup.read_text() == text
    assert "had 2 comment(s)" in result.notes[-1] and str(result.backup) in result.notes[-1]
    assert read(ws / "gptme.toml")["prompt"] == {"project": "x#y"}


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("", 0),
        ("# a\n#b\n", 2),
        ('a = "# not"\n', 0),
        ("a = '# not' # yes\n", 1),
        ('a = """\n# not\n"""\n# yes\n', 1),
        ("a = '''\n# not\n'''\n", 0),
        ('a = "q\\"# not"\n', 0),
        ('a = """x""""  # yes\n', 1),
        ("[t] # yes\nb = [1, # yes\n 2]\n", 2),
    ],
)
def test_count_comments(text, n):
    tomllib.loads(text)
    assert count_comments(text) == n


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.one_of(st.text(max_size=20), st.integers(), st.lists(st.text(max_size=5), max_size=3)),
        max_size=5,
    )
)
def test_tomli_w_output_has_no_comments_and_one_more_line_counts(doc):
    text = tomli_w.dumps(doc)
    assert count_comments(text) == 0
    assert count_comments("# added\n" + text) == 1


def test_gptme_reads_what_the_installer_wrote(tmp_path):
    pytest.importorskip("gptme")
    from gptme.config import Config, UserConfig, get_project_config

    ws = tmp_path / "ws"
    write(ws / "gptme.toml", {"plugins": {"enabled": ["retrieval"]}})
    install(ws, env=env_with_home(tmp_path))
    config = Config(user=UserConfig(), project=get_project_config(ws, quiet=True))
    paths, enabled = config.get_plugin_config()
    assert paths == [folder_plugin_dir()] and folder_plugin_dir().is_dir()
    assert enabled == ["retrieval", "subscription"]


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "GPTME_SUBSCRIPTION_STATE_DIR": str(tmp_path / "state"),
    }
    return run_ours(args, env)


def test_cli_install_and_uninstall(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "gptme.toml", "# hello\nfiles = []\n")
    dry = run_cli(tmp_path, "install", "gptme", "--workspace", str(ws), "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith(f"dry run: would write {ws}/gptme.toml")
    assert str(folder_plugin_dir()) in dry.stdout and "comment" in dry.stdout
    out = run_cli(tmp_path, "install", "gptme", "--workspace", str(ws))
    assert out.returncode == 0 and out.stdout.startswith(f"installed into {ws}/gptme.toml")
    assert "(backup: " in out.stdout and "note: gptme.toml had 1 comment(s)" in out.stdout
    again = run_cli(tmp_path, "install", "gptme", "--workspace", str(ws), "--json")
    assert json.loads(again.stdout)["changed"] is False
    gone = run_cli(tmp_path, "uninstall", "gptme", "--workspace", str(ws))
    assert gone.returncode == 0 and gone.stdout.startswith("removed from")
    assert read(ws / "gptme.toml") == {"files": []}
    events = [json.loads(x) for x in (tmp_path / "state/events.jsonl").read_text().splitlines()]
    logged = [(e["kind"], e["target"], e["dry_run"], e["changed"]) for e in events]
    assert logged == [
        ("install", "gptme", True, True),
        ("install", "gptme", False, True),
        ("install", "gptme", False, False),
        ("uninstall", "gptme", False, True),
    ]


def test_cli_refuses_an_unparsable_file_with_one_line(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "gptme.toml", "[plugins\n")
    out = run_cli(tmp_path, "install", "gptme", "--workspace", str(ws))
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("gptme-subscription: ") and "not valid TOML" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert (ws / "gptme.toml").read_text() == "[plugins\n"


def test_cli_refuses_a_missing_workspace(tmp_path):
    out = run_cli(tmp_path, "install", "gptme", "--workspace", str(tmp_path / "nope"))
    assert out.returncode == 2 and "is not a directory" in out.stderr


@pytest.mark.parametrize(
    "theirs",
    [
        "./vendor/gptme_subscription_plugin/gptme_plugin/plugins/subscription",  # relative
        "/home/me/forks/gptme_plugin/plugins/subscription",  # not inside our package
        "~/gptme-subscription-extras/plugins",
    ],
)
def test_a_users_plugin_path_that_looks_like_ours_survives(tmp_path, theirs):
    ws = tmp_path / "ws"
    users = {"plugins": {"paths": [theirs], "enabled": ["retrieval"]}}
    write(ws / "gptme.toml", users)
    install(ws, plugin_dir=PLUGIN_DIR, env=env_with_home(tmp_path))
    assert read(ws / "gptme.toml")["plugins"]["paths"] == [theirs, str(PLUGIN_DIR)]
    uninstall(ws)
    assert read(ws / "gptme.toml") == users


def test_a_symlinked_gptme_toml_is_written_through_to_its_target(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    target = tmp_path / "dotfiles/gptme.toml"
    write(target, USER_DOC)
    (ws / "gptme.toml").symlink_to(target)
    result = install(ws, plugin_dir=PLUGIN_DIR, env=env_with_home(tmp_path))
    assert (ws / "gptme.toml").is_symlink()
    assert read(target)["plugins"]["paths"] == ["./my-plugins", str(PLUGIN_DIR)]
    assert result.backup is not None and result.backup.parent == ws
    uninstall(ws)
    assert (ws / "gptme.toml").is_symlink() and read(target) == USER_DOC


def test_backups_never_overwrite_each_other_and_the_newest_five_are_kept(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "gptme.toml", {"files": ["v0"]})
    contents = []
    for i in range(7):  # the same second every time
        contents.append((ws / "gptme.toml").read_text())
        action = install if i % 2 == 0 else uninstall
        kwargs = {"plugin_dir": PLUGIN_DIR, "env": env_with_home(tmp_path)} if i % 2 == 0 else {}
        assert action(ws, now=1000, **kwargs).changed
    backups = sorted(p for p in ws.iterdir() if ".bak-" in p.name)
    assert [p.read_text() for p in backups] == contents[-5:]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in backups)


def test_directories_the_installer_creates_are_0700_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        install(tmp_path / "new/ws", plugin_dir=PLUGIN_DIR, env=env_with_home(tmp_path))
    finally:
        os.umask(old)
    for directory in (tmp_path / "new", tmp_path / "new/ws"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new/ws/gptme.toml").stat().st_mode) == 0o644
