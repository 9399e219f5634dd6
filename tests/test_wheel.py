"""The wheel ships the product and nothing of the test suite: built as a user would get it.

The build runs on a clean copy of the sources, since setuptools also packs stale files that
an earlier in-tree build left under `build/`. The demo then runs from the unpacked wheel,
where `tests` is not importable: what it needs is in the package.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("gptme_subscription_plugin/", "gptme_subscription/")


def build_wheel(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    ignore = shutil.ignore_patterns("*.egg-info", "__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src", tree / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    out = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(tree), "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = out.glob("*.whl")
    return wheel


def imported_modules(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_wheel_ships_no_test_support_and_the_demo_runs_from_it(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        sources = {n: zf.read(n).decode("utf-8") for n in names if n.endswith(".py")}
        unpacked = tmp_path / "unpacked"
        zf.extractall(unpacked)
    stray = [n for n in names if not n.startswith(PRODUCT) and ".dist-info/" not in n]
    assert stray == []
    assert not [n for n in names if Path(n).stem in {"fake_api", "conftest"}]
    assert "gptme_subscription_plugin/loopback.py" in names
    for name, source in sources.items():
        test_imports = {m for m in imported_modules(source) if m.split(".")[0] == "tests"}
        assert not test_imports, f"{name} imports {sorted(test_imports)}"

    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    where = subprocess.run(
        [sys.executable, "-c", "import gptme_subscription_plugin as p; print(p.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.stdout.startswith(str(unpacked)), where.stdout + where.stderr
    demo = subprocess.run(
        [sys.executable, "-m", "gptme_subscription_plugin", "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    assert "refresh tokens lost: 0" in demo.stdout
