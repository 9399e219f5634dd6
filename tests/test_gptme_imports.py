"""Only the gptme surface imports gptme: not the core, the CLI, or any Claude Code hook.

Each check runs in a fresh interpreter (gptme may be installed in this venv) and lists the
gptme modules that ended up in `sys.modules`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HOOK_EVENTS = [
    "session-start",
    "user-prompt-submit",
    "pre-tool-use",
    "stop",
    "stop-failure",
    "stop-failure-worker",
    "session-end",
]
# The modules that exist to talk to gptme (and nothing else may import them).
GPTME_MODULES = {
    "gptme_subscription_plugin.gptme_plugin.tool",
    "gptme_subscription_plugin.gptme_plugin.hooks",
    "gptme_subscription_plugin.gptme_plugin.plugin",
    "gptme_subscription_plugin.gptme_plugin.plugins.subscription.tools.subscription",
    "gptme_subscription_plugin.gptme_plugin.plugins.subscription.hooks",
    "gptme_subscription_plugin.gptme_plugin.plugins.subscription.hooks.subscription",
}
FOUND = (
    "found = sorted(m for m in sys.modules if m.split('.')[0] == 'gptme')\n"
    "print('GPTME=' + json.dumps(found), file=sys.stderr)\n"
)


def run(code: str, tmp_path: Path, stdin: str = "") -> list[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "GPTME_SUBSCRIPTION_STATE_DIR": str(tmp_path / "state"),
        "GPTME_SUBSCRIPTION_API_BASE": "http://127.0.0.1:9",
        "GPTME_SUBSCRIPTION_POLL_TIMEOUT": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", "import json, sys\n" + code + FOUND],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [x for x in proc.stderr.splitlines() if x.startswith("GPTME=")]
    assert lines, proc.stderr
    return json.loads(lines[-1][len("GPTME=") :])


def test_importing_every_core_module_imports_no_gptme(tmp_path):
    code = (
        "import importlib, pathlib, gptme_subscription_plugin as pkg\n"
        f"skip = {sorted(GPTME_MODULES)!r}\n"
        "root = pathlib.Path(pkg.__file__).parent\n"  # walk files: walk_packages imports
        "names = ['.'.join(('gptme_subscription_plugin',) + p.relative_to(root).with_suffix('')"
        ".parts).removesuffix('.__init__') for p in sorted(root.rglob('*.py'))]\n"
        "names = [n for n in names if n not in skip and not n.endswith('__main__')]\n"
        "assert 'gptme_subscription_plugin.gptme_plugin.installer' in names\n"
        "assert 'gptme_subscription_plugin.manager' in names\n"
        "for n in names: importlib.import_module(n)\n"
        "import gptme_subscription_plugin.cli, gptme_subscription_plugin.entry\n"
    )
    assert run(code, tmp_path) == []


@pytest.mark.parametrize("event", HOOK_EVENTS)
def test_no_claude_code_hook_imports_gptme(tmp_path, event):
    code = f"from gptme_subscription_plugin.entry import main\nmain(['hook', {event!r}])\n"
    assert run(code, tmp_path, stdin=json.dumps({"session_id": "x"})) == []


def test_the_cli_installing_the_gptme_plugin_imports_no_gptme(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    code = (
        "from gptme_subscription_plugin.cli import main\n"
        f"assert main(['install', 'gptme', '--workspace', {str(ws)!r}]) == 0\n"
        f"assert main(['uninstall', 'gptme', '--workspace', {str(ws)!r}]) == 0\n"
        "assert main(['status', '--json']) in (0, 1)\n"
    )
    assert run(code, tmp_path) == []


def test_the_gptme_surface_does_import_gptme(tmp_path):
    pytest.importorskip("gptme")
    code = "import gptme_subscription_plugin.gptme_plugin.plugin\n"
    assert "gptme.tools.base" in run(code, tmp_path)
