"""The upstream usage-script contract, run as a real executable in the user's own HOME."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptme_subscription_plugin.usage.oauth import UsageFetchError, UsageParseError
from gptme_subscription_plugin.usage.script import (
    ScriptContext,
    parse_script_usage,
    run_usage_script,
)
from gptme_subscription_plugin.usage.snapshot import FIVE_HOUR_S, SEVEN_DAY_S

TOKEN = "sk-ant-oat01-test-SECRET-script-token-0123456789abcdef"
NOW = 1_790_000_000.0

SUCCESS = """
import json, os, stat, sys
config_dir = os.environ["CLAUDE_CONFIG_DIR"]
link = os.path.join(config_dir, ".credentials.json")
report = {
    "argv": sys.argv[1:],
    "home": os.environ["HOME"],
    "config_dir": config_dir,
    "config_dir_mode": stat.S_IMODE(os.stat(config_dir).st_mode),
    "listing": sorted(os.listdir(config_dir)),
    "global_config": open(os.path.join(config_dir, ".claude.json")).read(),
    "is_link": os.path.islink(link),
    "target": os.readlink(link),
    "credential": open(link).read(),
    "creds_file": os.environ.get("CLAUDE_USAGE_CREDS_FILE"),
    "slot": os.environ.get("GPTME_SUBSCRIPTION_SLOT"),
    "api_key": os.environ.get("ANTHROPIC_API_KEY"),
    "cwd": os.getcwd(),
}
with open(os.environ["GSP_TEST_REPORT"], "w") as fh:
    json.dump(report, fh)
with open(os.path.join(config_dir, ".claude.json"), "w") as fh:
    fh.write("{}")  # what a `claude` it starts may do to its config
print(json.dumps({
    "five_hour": {"utilization": 0.25, "resets_in_seconds": 3600},
    "seven_day": {"utilization": 0.5, "resets_in_seconds": 86400},
    "seven_day_sonnet": {"utilization": 1.2, "resets_in_seconds": None},
    "_pacing": {"actual_utilization": 0.5, "target_utilization": 0.4, "status": "overusing"},
}))
"""

# Like 0.1.0's check-claude-usage.sh, which runs `claude` from ~/.local/bin and needs the
# onboarding state of the `.claude.json` Claude Code reads: fails without the user's HOME.
NEEDS_HOME = """
import json, os, sys
home = os.environ["HOME"]
config_dir = os.environ.get("CLAUDE_CONFIG_DIR")
if not os.access(os.path.join(home, ".local", "bin", "claude"), os.X_OK):
    sys.exit("claude: command not found")
with open(os.path.join(config_dir or home, ".claude.json")) as fh:
    if json.load(fh).get("hasCompletedOnboarding") is not True:
        sys.exit("claude: onboarding not complete")
keys = ["HOME", "CLAUDE_CONFIG_DIR", "CLAUDE_USAGE_CREDS_FILE", "GPTME_SUBSCRIPTION_SLOT"]
with open(os.environ["GSP_TEST_REPORT"], "w") as fh:
    json.dump({k: os.environ.get(k) for k in keys}, fh)
print(json.dumps({"seven_day": {"utilization": 0.4, "resets_in_seconds": 7200}}))
"""

HANGS = """
import os, subprocess, time
child = subprocess.Popen(["sleep", "30"])
with open(os.environ["GSP_TEST_REPORT"], "w") as fh:
    fh.write(str(child.pid))
time.sleep(30)
"""

FAILS = f"""
import sys
print("starting", file=sys.stderr)
print("boom: credential {TOKEN} rejected", file=sys.stderr)
sys.exit(3)
"""

GARBAGE = """
print("Usage: 5h 25% / 7d 50%")
"""

NO_WINDOWS = """
import json
print(json.dumps({"_ok": True}))
"""


def make_script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "check-usage.py"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o700)
    return path


@pytest.fixture
def credential(tmp_path: Path) -> Path:
    path = tmp_path / "claude" / ".credentials.json.work"
    path.parent.mkdir(mode=0o700)
    path.write_text(json.dumps({"claudeAiOauth": {"accessToken": TOKEN}}))
    path.chmod(0o600)
    return path


@pytest.fixture
def report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "report.json"
    monkeypatch.setenv("GSP_TEST_REPORT", str(path))
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's HOME, set up as Claude Code leaves it, and the caller's working dir."""
    path = tmp_path / "home"
    (path / ".local" / "bin").mkdir(parents=True)
    claude = path / ".local" / "bin" / "claude"
    claude.write_text("#!/bin/sh\n")
    claude.chmod(0o755)
    (path / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True}))
    monkeypatch.setenv("HOME", str(path))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    return path


def context(home: Path, live: bool, claude_dir: Path | None = None) -> ScriptContext:
    claude_dir = claude_dir or home / ".claude"
    return ScriptContext(home, claude_dir, home / ".claude.json", live)


def test_a_slot_not_live_gets_a_throwaway_config_dir_and_nothing_else(
    tmp_path: Path, credential: Path, report: Path, home: Path, monkeypatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-would-override-the-slot")
    user_config = (home / ".claude.json").read_text()
    script = make_script(tmp_path, SUCCESS)
    snap = run_usage_script(
        script, "work", credential, timeout=10.0, now=NOW, context=context(home, live=False)
    )
    assert (snap.slot, snap.source, snap.observed_at) == ("work", "script", NOW)
    assert snap.five_hour is not None and snap.seven_day is not None
    assert snap.five_hour.utilization == pytest.approx(0.25)
    assert snap.five_hour.resets_at == NOW + 3600
    assert snap.five_hour.window_seconds == FIVE_HOUR_S
    assert snap.seven_day.resets_at == NOW + 86400
    sonnet = snap.models["sonnet"]
    assert (sonnet.utilization, sonnet.resets_at, sonnet.window_seconds) == (1.0, None, SEVEN_DAY_S)

    seen = json.loads(report.read_text())
    assert seen["argv"] == ["--json"]
    assert seen["home"] == str(home) and seen["cwd"] == str(tmp_path)  # the user's own
    assert seen["config_dir_mode"] == 0o700 and not seen["config_dir"].startswith(str(home))
    assert seen["listing"] == [".claude.json", ".credentials.json"]
    assert seen["global_config"] == user_config  # a copy of the user's
    assert seen["is_link"] and seen["target"] == str(credential)
    assert TOKEN in seen["credential"]
    assert (seen["creds_file"], seen["slot"]) == (str(credential), "work")
    assert seen["api_key"] is None
    assert not Path(seen["config_dir"]).exists()  # the throwaway dir is gone
    assert (home / ".claude.json").read_text() == user_config  # the copy took the write
    assert credential.read_text()  # and the slot file untouched


@pytest.mark.parametrize("live", [True, False])
def test_a_script_that_needs_the_users_home_succeeds(
    tmp_path: Path, credential: Path, report: Path, home: Path, live: bool
) -> None:
    script = make_script(tmp_path, NEEDS_HOME)
    snap = run_usage_script(
        script, "work", credential, timeout=10.0, now=NOW, context=context(home, live=live)
    )
    assert snap.seven_day is not None and snap.seven_day.utilization == pytest.approx(0.4)
    seen = json.loads(report.read_text())
    assert seen["HOME"] == str(home)
    assert (seen["CLAUDE_CONFIG_DIR"] is None) == live  # live: ~/.claude, as Claude Code's own


def test_the_live_slot_runs_in_the_claude_dir_this_tool_manages(
    tmp_path: Path, credential: Path, report: Path, home: Path, monkeypatch
) -> None:
    script = make_script(tmp_path, NEEDS_HOME)
    custom = tmp_path / "custom-claude"
    custom.mkdir(mode=0o700)
    (custom / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True}))
    ctx = context(home, live=True, claude_dir=custom)
    run_usage_script(script, "work", credential, timeout=10.0, now=NOW, context=ctx)
    assert json.loads(report.read_text())["CLAUDE_CONFIG_DIR"] == str(custom)
    # `--claude-dir ~/.claude` while the environment names another dir: Claude Code's default
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(custom))
    run_usage_script(script, "work", credential, 10.0, NOW, context=context(home, live=True))
    assert json.loads(report.read_text())["CLAUDE_CONFIG_DIR"] is None


def test_without_a_claude_json_the_throwaway_dir_has_none_either(
    tmp_path: Path, credential: Path, report: Path, home: Path
) -> None:
    (home / ".claude.json").unlink()
    script = make_script(tmp_path, NEEDS_HOME)
    with pytest.raises(UsageFetchError) as info:
        run_usage_script(script, "work", credential, 10.0, NOW, context=context(home, False))
    assert info.value.kind == "script" and "No such file" in str(info.value)


def test_no_cache_flag(tmp_path: Path, credential: Path, report: Path, home: Path) -> None:
    script = make_script(tmp_path, SUCCESS)
    run_usage_script(script, "work", credential, timeout=10.0, now=NOW, no_cache=True)
    assert json.loads(report.read_text())["argv"] == ["--json", "--no-cache"]


def test_non_zero_exit(tmp_path: Path, credential: Path) -> None:
    script = make_script(tmp_path, FAILS)
    with pytest.raises(UsageFetchError) as info:
        run_usage_script(script, "work", credential, timeout=10.0, now=NOW)
    err = info.value
    assert err.kind == "script"
    assert "status 3" in str(err) and "boom" in str(err)
    assert TOKEN not in str(err) and TOKEN not in repr(err)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has no life left
    except FileNotFoundError:
        return True


def test_timeout_kills_the_process_group(tmp_path: Path, credential: Path, report: Path) -> None:
    script = make_script(tmp_path, HANGS)
    started = time.monotonic()
    with pytest.raises(UsageFetchError) as info:
        run_usage_script(script, "work", credential, timeout=1.0, now=NOW)
    assert info.value.kind == "timeout"
    assert time.monotonic() - started < 5.0
    child = int(report.read_text())
    deadline = time.monotonic() + 3.0
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)


@pytest.mark.parametrize("body", [GARBAGE, NO_WINDOWS])
def test_garbage_output(tmp_path: Path, credential: Path, body: str) -> None:
    script = make_script(tmp_path, body)
    with pytest.raises(UsageFetchError) as info:
        run_usage_script(script, "work", credential, timeout=10.0, now=NOW)
    assert info.value.kind == "garbage"


def test_missing_script(tmp_path: Path, credential: Path) -> None:
    with pytest.raises(UsageFetchError) as info:
        run_usage_script(tmp_path / "nope.sh", "work", credential, timeout=5.0, now=NOW)
    assert info.value.kind == "script"


def test_parse_skips_bad_windows() -> None:
    doc = {
        "five_hour": {"utilization": "0.5", "resets_in_seconds": 10},
        "seven_day": {"utilization": -0.2, "resets_in_seconds": -50},
    }
    snap = parse_script_usage(doc, "a", NOW)
    assert snap.five_hour is None
    assert snap.seven_day is not None
    assert (snap.seven_day.utilization, snap.seven_day.resets_at) == (0.0, NOW)


@pytest.mark.parametrize("doc", [None, [], {}, {"five_hour": None}, {"seven_day": {"x": 1}}])
def test_parse_garbage(doc: object) -> None:
    with pytest.raises(UsageParseError):
        parse_script_usage(doc, "a", NOW)


_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.just(10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
_window = st.fixed_dictionaries({}, optional={"utilization": _leaf, "resets_in_seconds": _leaf})
_doc = st.fixed_dictionaries(
    {},
    optional={
        "five_hour": _window | _leaf,
        "seven_day": _window | _leaf,
        "seven_day_sonnet": _window | _leaf,
    },
) | st.recursive(_leaf, lambda inner: st.lists(inner, max_size=3), max_leaves=6)


@settings(max_examples=200, deadline=None)
@given(_doc)
def test_parse_only_raises_parse_error_and_clamps(doc: object) -> None:
    try:
        snap = parse_script_usage(doc, "a", NOW)
    except UsageParseError:
        return
    for window in (snap.five_hour, snap.seven_day, *snap.models.values()):
        if window is not None:
            assert 0.0 <= window.utilization <= 1.0
            assert window.resets_at is None or window.resets_at >= NOW
