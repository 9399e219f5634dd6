"""`hooks/run`, the Claude Code plugin's hook command, run as Claude Code runs it.

A real subprocess whose PATH decides what the script finds: the installed `gptme-subscription`,
a `python3` that can run this checkout's sources, a `python3` without the dependencies (a
fresh venv), or no `python3` at all. Without the package SessionStart says in one line how
to install it and every other hook does nothing, silently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "hooks" / "run"
# what the script needs from PATH besides python3 (`command`, `cd`, `printf` are builtins)
SHELL_TOOLS = ("dirname", "sed", "cat")
OTHER_EVENTS = ("user-prompt-submit", "pre-tool-use", "stop", "stop-failure", "session-end")


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin dir of a fresh venv: a python3 with none of the package's dependencies."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    assert subprocess.run([venv / "bin" / "python3", "-c", "import pydantic"]).returncode != 0
    return venv / "bin"


def tools_dir(tmp_path: Path) -> Path:
    """A bin dir with only the shell tools the script uses: no python3, no gptme-subscription."""
    bin_dir = tmp_path / "tools"
    bin_dir.mkdir(exist_ok=True)
    for tool in SHELL_TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return bin_dir


def python_with_the_dependencies(tmp_path: Path) -> Path:
    """A bin dir whose python3 is this test run's interpreter (pydantic and all)."""
    bin_dir = tmp_path / "py"
    bin_dir.mkdir()
    wrapper = bin_dir / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return bin_dir


def run_hook(tmp_path: Path, path: list[Path], event: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.pathsep.join(map(str, path)),
        "HOME": str(tmp_path / "home"),
        "GPTME_SUBSCRIPTION_STATE_DIR": str(tmp_path / "state"),
        "LANG": "C.UTF-8",
    }
    payload = {"session_id": "p1", "hook_event_name": event, "cwd": str(tmp_path)}
    return subprocess.run(
        [str(RUN), "hook", event],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )


@pytest.mark.parametrize("python", ["without-dependencies", "none"])
def test_without_the_package_session_start_says_in_one_line_how_to_install_it(
    tmp_path: Path, bare_python: Path, python: str
) -> None:
    path = [tools_dir(tmp_path)] + ([bare_python] if python != "none" else [])

    proc = run_hook(tmp_path, path, "session-start")

    assert (proc.returncode, proc.stderr) == (0, "")
    [line] = proc.stdout.splitlines()
    out = json.loads(line)
    context = out["hookSpecificOutput"]
    assert context["hookEventName"] == "SessionStart"
    assert context["additionalContext"] == out["systemMessage"]
    hint = out["systemMessage"]
    assert "\n" not in hint and hint.startswith("gptme-subscription is not installed")
    assert f"pipx install '{ROOT}'" in hint and f"uv tool install '{ROOT}'" in hint
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("event", OTHER_EVENTS)
def test_without_the_package_every_other_hook_does_nothing(
    tmp_path: Path, bare_python: Path, event: str
) -> None:
    proc = run_hook(tmp_path, [tools_dir(tmp_path), bare_python], event)

    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("route", ["installed-cli", "checkout-sources"])
def test_with_the_package_the_hook_runs(tmp_path: Path, route: str) -> None:
    if route == "installed-cli":
        bin_dir = Path(sys.executable).parent
        assert (bin_dir / "gptme-subscription").exists()
    else:
        bin_dir = python_with_the_dependencies(tmp_path)

    proc = run_hook(tmp_path, [bin_dir, tools_dir(tmp_path)], "pre-tool-use")

    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "state" / "sessions" / "p1.json").read_text())["state"] == "busy"


def test_the_script_looks_for_every_dependency_of_the_package() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    modules = {re.match(r"[A-Za-z0-9_.-]+", dep).group(0).replace("-", "_") for dep in deps}
    looked_for = set(re.findall(r'"([a-z_]+)"', RUN.read_text()))
    assert modules <= looked_for
