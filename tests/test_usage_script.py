"""The upstream usage-script contract, run as a real executable in a throwaway HOME."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptme_subscription_plugin.usage.oauth import UsageFetchError, UsageParseError
from gptme_subscription_plugin.usage.script import parse_script_usage, run_usage_script
from gptme_subscription_plugin.usage.snapshot import FIVE_HOUR_S, SEVEN_DAY_S

TOKEN = "sk-ant-oat01-test-SECRET-script-token-0123456789abcdef"
NOW = 1_790_000_000.0

SUCCESS = """
import json, os, stat, sys
home = os.environ["HOME"]
link = os.path.join(home, ".claude", ".credentials.json")
report = {
    "argv": sys.argv[1:],
    "home": home,
    "home_mode": stat.S_IMODE(os.stat(home).st_mode),
    "config_dir": os.environ.get("CLAUDE_CONFIG_DIR"),
    "is_link": os.path.islink(link),
    "target": os.readlink(link),
    "credential": open(link).read(),
    "api_key": os.environ.get("ANTHROPIC_API_KEY"),
    "cwd": os.getcwd(),
}
with open(os.environ["GSP_TEST_REPORT"], "w") as fh:
    json.dump(report, fh)
print(json.dumps({
    "five_hour": {"utilization": 0.25, "resets_in_seconds": 3600},
    "seven_day": {"utilization": 0.5, "resets_in_seconds": 86400},
    "seven_day_sonnet": {"utilization": 1.2, "resets_in_seconds": None},
    "_pacing": {"actual_utilization": 0.5, "target_utilization": 0.4, "status": "overusing"},
}))
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


def test_success_in_a_throwaway_home(tmp_path: Path, credential: Path, report: Path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-would-override-the-slot")
    script = make_script(tmp_path, SUCCESS)
    snap = run_usage_script(script, "work", credential, timeout=10.0, now=NOW)
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
    assert seen["home_mode"] == 0o700
    assert seen["config_dir"] == os.path.join(seen["home"], ".claude")
    assert seen["is_link"] and seen["target"] == str(credential)
    assert TOKEN in seen["credential"]
    assert seen["api_key"] is None
    assert seen["cwd"] == seen["home"]
    assert not Path(seen["home"]).exists()  # the throwaway HOME is gone
    assert credential.read_text()  # and the slot file untouched


def test_no_cache_flag(tmp_path: Path, credential: Path, report: Path) -> None:
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
