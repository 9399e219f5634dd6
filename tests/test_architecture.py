"""Dependencies point one way: the surfaces depend on the core, never on each other.

Every module under src/gptme_subscription_plugin is parsed with `ast` (imports inside functions
and `if TYPE_CHECKING:` blocks count too). The layers:

- surfaces: `claude_code/` (the Claude Code hook pack), `gptme_plugin/` (the gptme tool and
  hooks) and `dashboard/` (the web dashboard). A surface imports the core and itself, never
  the other surfaces nor an outer module;
- outer modules: the surfaces, `sim/`, `cli.py`, `cli_dashboard.py`, `__main__.py`, `demo*.py`
  and `entry.py` (the console script, which routes `hook ...` to the Claude Code surface and
  the rest to the CLI). They may import anything but a surface may not import them;
- the core: everything else. It imports no outer module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import gptme_subscription_plugin

PACKAGE = "gptme_subscription_plugin"
ROOT = Path(gptme_subscription_plugin.__file__).parent
SURFACES = ("claude_code", "gptme_plugin", "dashboard")
OUTER = (
    *SURFACES,
    "sim",
    "cli",
    "cli_dashboard",
    "__main__",
    "demo",
    "demo_keep",
    "demo_transcripts",
    "entry",
)


def module_name(root: Path, package: str, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def imports(root: Path, package: str, path: Path) -> Iterator[tuple[str, str, int]]:
    """(imported module, imported name or "", line) of every import in `path`, made absolute;
    `from pkg import sub` names the submodule when `sub` is one."""
    name = module_name(root, package, path)
    base = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, "", node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{anchor}.{node.module}" if node.module else anchor
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                rel = sub.split(".")[1:]
                if sub.startswith(package + ".") and (
                    root.joinpath(*rel).with_suffix(".py").is_file()
                    or (root.joinpath(*rel) / "__init__.py").is_file()
                ):
                    yield sub, "", node.lineno
                else:
                    yield target, alias.name, node.lineno


def layer(package: str, module: str) -> str | None:
    """The outer part (a surface, sim, cli, ...) `module` belongs to; None for the core and
    for anything outside the package."""
    parts = module.split(".")
    if parts[0] != package:
        return None
    if len(parts) > 1 and parts[1] in OUTER:
        return parts[1]
    return None


def violations(root: Path, package: str) -> list[str]:
    """Every import that breaks the layering, as `module:line imports target`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(root, package, path)
        own = layer(package, importer)
        if importer == package:
            continue  # the package's lazy exports name modules as strings, not imports
        for target, name, line in imports(root, package, path):
            theirs = layer(package, target)
            if theirs is None or theirs == own:
                continue
            if own is not None and own not in SURFACES:
                continue  # an outer module (CLI, simulator, demo, entry) may use a surface
            what = f"{target}.{name}" if name else target
            kind = "surface" if own in SURFACES else "core module"
            found.append(f"{kind} {importer}:{line} imports {what}")
    return found


def test_no_surface_imports_another_and_the_core_imports_no_surface() -> None:
    assert violations(ROOT, PACKAGE) == []


def test_the_check_catches_each_kind_of_violation(tmp_path: Path) -> None:
    """A planted package with one import of each forbidden kind: every one is reported."""
    root = tmp_path / "pkg"
    files = {
        "__init__.py": "",
        "core.py": "from .claude_code import hooks\n",  # core -> surface, relative
        "other.py": "def f():\n    import pkg.sim.engine\n",  # core -> outer, absolute, lazy
        "fine.py": "from . import core\nimport json\n",
        "claude_code/__init__.py": "",
        "claude_code/hooks.py": "from ..core import x\nfrom .. import cli\n",  # -> outer
        "gptme_plugin/__init__.py": "",
        "gptme_plugin/life.py": "from pkg.claude_code.hooks import y\n",  # surface -> surface
        "sim/__init__.py": "",
        "sim/engine.py": "from ..claude_code import hooks\n",  # outer: allowed
        "cli.py": "from .gptme_plugin import life\n",  # outer: allowed
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    assert violations(root, "pkg") == [
        "surface pkg.claude_code.hooks:2 imports pkg.cli",
        "core module pkg.core:1 imports pkg.claude_code.hooks",
        "surface pkg.gptme_plugin.life:1 imports pkg.claude_code.hooks.y",
        "core module pkg.other:2 imports pkg.sim.engine",
    ]
