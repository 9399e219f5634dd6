"""The CLI as a person installs it: from a built wheel into a clean venv, not editable.

`pipx install` and `uv tool install` both build a wheel and install it into a venv of its own;
this does the same with pip, offline: the wheel is built from a copy of the sources (the
build backend this test run has, `--no-build-isolation`), and the dependencies come from a
local wheelhouse packed from this test run's own installed distributions, so pip resolves
exactly what `pyproject.toml` declares and nothing is fetched. Then `gptme-subscription
--help` and `gptme-subscription demo` run from the venv, with the checkout out of reach.
The wheel holds the product only: no fake API, no conftest, no import of `tests`.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.wheel  # in the default run, as CI's; `-m "not wheel"` skips it

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "gptme_subscription_plugin"


def copy_sources(dest: Path) -> Path:
    """What the build reads (pyproject.toml, README.md, src/), without build leftovers."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(
        ROOT / "src",
        dest / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"),
    )
    return dest


def source_files(src: Path) -> set[str]:
    return {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}


def requirements(dist: importlib.metadata.Distribution) -> list[Requirement]:
    """A distribution's own requirements that apply here (no extras)."""
    found = [Requirement(text) for text in dist.requires or []]
    return [r for r in found if r.marker is None or r.marker.evaluate({"extra": ""})]


def repack(dist: importlib.metadata.Distribution, dest: Path) -> Path:
    """An installed distribution packed back into a wheel: its files as RECORD lists them."""
    tag = next(
        line.split(":", 1)[1].strip()
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag:")
    )
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()
    path = dest / f"{name}-{dist.version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        for file in dist.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # scripts pip writes outside site-packages; bytecode
            located = Path(str(file.locate()))
            if located.is_file():
                whl.write(located, file.as_posix())
    return path


def wheelhouse_for(wheel: Path, dest: Path) -> Path:
    """Wheels of every distribution `wheel` needs, recursively, from this test run's venv."""
    dest.mkdir()
    with zipfile.ZipFile(wheel) as whl:
        [meta] = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
        needed = [
            Requirement(value)
            for key, value in (
                line.split(": ", 1) for line in whl.read(meta).decode().splitlines() if ": " in line
            )
            if key == "Requires-Dist"
        ]
    needed = [r for r in needed if r.marker is None or r.marker.evaluate({"extra": ""})]
    seen: set[str] = set()
    while needed:
        req = needed.pop()
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen:
            continue
        seen.add(key)
        dist = importlib.metadata.distribution(req.name)
        assert dist.version in req.specifier, f"{req} but this venv has {dist.version}"
        repack(dist, dest)
        needed += requirements(dist)
    return dest


def clean_env(tmp_path: Path, bin_dir: Path) -> dict[str, str]:
    """No PYTHONPATH, no pip configuration of this machine, HOME and cwd in the temp dir."""
    return {
        "PATH": os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"]),
        "HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
    }


def imported_modules(source: str) -> set[str]:
    """Absolute imports of a module's source."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def run(argv: list[str | Path], env: dict[str, str], cwd: Path, timeout: float = 120):
    proc = subprocess.run(
        [str(a) for a in argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return proc


def test_the_cli_from_a_wheel_in_a_clean_venv(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    sources = copy_sources(tmp_path / "sources")
    modules = source_files(sources / "src")  # before the build writes its egg-info there
    dist = tmp_path / "dist"
    build_env = {**clean_env(tmp_path, Path(sys.executable).parent), "PIP_NO_INDEX": "1"}
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", dist, sources],
        build_env,
        tmp_path,
        timeout=180,
    )
    [wheel] = dist.glob("gptme_subscription_plugin-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        packed = {n for n in whl.namelist() if ".dist-info/" not in n}
        sources = {n: whl.read(n).decode() for n in packed if n.endswith(".py")}
    assert packed == modules  # every module and data file, nothing else
    assert f"{PACKAGE}/loopback.py" in packed  # the demo's usage server
    assert not [n for n in packed if Path(n).stem in {"fake_api", "conftest"}]
    for name, source in sources.items():
        from_tests = {m for m in imported_modules(source) if m.split(".")[0] == "tests"}
        assert not from_tests, f"{name} imports {sorted(from_tests)}"
    wheelhouse = wheelhouse_for(wheel, tmp_path / "wheelhouse")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], clean_env(tmp_path, venv / "bin"), tmp_path)
    env = clean_env(tmp_path, venv / "bin")
    run(
        [venv / "bin" / "pip", "install", "--no-index", "--find-links", wheelhouse, wheel],
        env,
        tmp_path,
        timeout=180,
    )

    where = run(
        [venv / "bin" / "python", "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"],
        env,
        tmp_path,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv / "lib")  # the installed copy, not the checkout
    helped = run([venv / "bin" / "gptme-subscription", "--help"], env, tmp_path)
    assert "usage: gptme-subscription" in helped.stdout
    demo = run([venv / "bin" / "gptme-subscription", "demo"], env, tmp_path, timeout=120)
    assert "refresh tokens lost: 0" in demo.stdout


@pytest.mark.parametrize("name", ["pydantic", "filelock", "tomli-w"])
def test_repack_keeps_every_file_of_an_installed_distribution(tmp_path: Path, name: str) -> None:
    dist = importlib.metadata.distribution(name)
    with zipfile.ZipFile(repack(dist, tmp_path)) as whl:
        packed = set(whl.namelist())
    listed = {f.as_posix() for f in dist.files or [] if f.parts[0] != ".."}
    assert {n for n in listed if "__pycache__" not in n} == packed
