"""Fixtures for the end-to-end tests on the real Claude Code CLI (marker `e2e`).

`claude_bin` installs the CLI from npm once per session (cached between runs, see
scripts/install-claude-code.sh): the pinned version, or `$CLAUDE_CODE_VERSION` when set (CI
runs the suite a second time on the newest release). The tests are skipped only when npm
itself is missing; a failed install is an error. `refresh_proxy` needs mitmproxy (the `e2e`
extra).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.fake_api import FakeAnthropicServer
from .claude_harness import (
    PINNED_CLAUDE_CODE_VERSION,
    ClaudeSandbox,
    Fleet,
    RefreshProxy,
    claude_code_version,
    install_claude_code,
    mitmdump_path,
)

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def pytest_report_header() -> str:
    try:
        version = claude_code_version()
    except ValueError as exc:
        return f"claude code: {exc}"
    pinned = " (pinned)" if version == PINNED_CLAUDE_CODE_VERSION else " ($CLAUDE_CODE_VERSION)"
    return f"claude code: {version}{pinned}"


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    version = claude_code_version()  # a malformed $CLAUDE_CODE_VERSION is an error, not a skip
    if shutil.which("npm") is None:
        pytest.skip(f"npm not found: cannot install Claude Code {version} for e2e")
    return install_claude_code(version)


@pytest.fixture
def fake_api() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as server:
        yield server


@pytest.fixture
def claude_sandbox(
    tmp_path: Path, fake_api: FakeAnthropicServer, claude_bin: Path
) -> Iterator[ClaudeSandbox]:
    with ClaudeSandbox(tmp_path, fake_api, claude_bin) as sandbox:
        yield sandbox


@pytest.fixture
def refresh_proxy(tmp_path: Path, fake_api: FakeAnthropicServer) -> Iterator[RefreshProxy]:
    mitmdump = mitmdump_path()
    if mitmdump is None:
        pytest.skip("mitmdump not found: install the e2e extra (pip install -e '.[e2e]')")
    with RefreshProxy(fake_api, tmp_path / "proxy", mitmdump) as proxy:
        yield proxy


@pytest.fixture
def fleet(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer, refresh_proxy: RefreshProxy
) -> Fleet:
    """A user of several accounts whose Claude Code refreshes through the proxy."""
    claude_sandbox.use_proxy(refresh_proxy)  # real hostnames: Claude Code refreshes
    return Fleet(claude_sandbox, fake_api)
