"""The suite-wide secret and mode checks (tests/conftest.py) really catch what they look for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import _leaks_and_modes


def test_a_token_printed_by_our_command_fails_the_test():
    # argv mentions our package, so the wrapper treats it as ours and reads its output
    with pytest.raises(AssertionError, match="token printed"):
        subprocess.run(
            [sys.executable, "-c", "print('sk-ant-oat01-leak')", "gptme_subscription_plugin"],
            capture_output=True,
            text=True,
            check=True,
        )


@pytest.mark.planted_files
def test_tokens_and_loose_modes_in_state_are_found(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "events.jsonl").write_text('{"kind": "x", "token": "sk-ant-oat01-leak"}\n')
    (state / "events.jsonl").chmod(0o600)
    (state / "usage").mkdir(mode=0o755)
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups" / "a.1.sk-ant-oat01-leak").write_text("x")
    problems = _leaks_and_modes(tmp_path)
    assert any("events.jsonl: holds a token" in p for p in problems)
    assert any("usage: dir mode 0o755" in p for p in problems)
    assert any("a token in a file name" in p for p in problems)
    for path in (state / "events.jsonl", tmp_path / "backups" / "a.1.sk-ant-oat01-leak"):
        path.unlink()
    (state / "usage").chmod(0o700)


PROBE_PLUGIN = """
import subprocess
from pathlib import Path

STDLIB_RUN = subprocess.run  # a -p plugin loads before the conftest: the stdlib's own


def pytest_unconfigure(config):
    Path(config.getoption("basetemp")).with_name("after-session").write_text(
        str(subprocess.run is STDLIB_RUN)
    )
"""


def test_the_output_check_is_undone_when_the_session_ends(tmp_path):
    """The check wraps `subprocess.run` for the session only, not for the rest of the process."""
    (tmp_path / "probe_plugin.py").write_text(PROBE_PLUGIN)
    inner = f"{__file__}::test_a_token_printed_by_our_command_fails_the_test"
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "probe_plugin", "-p", "no:cacheprovider"]
        + ["--basetemp", str(tmp_path / "inner"), inner],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "after-session").read_text() == "True"
