"""Shared fixtures: a real loopback fake Anthropic API per test, our CLI over two slots."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from .support.browser import chromium
from .support.credentials import serve_profile
from .support.fake_api import FakeAnthropicServer
from .support.sandbox import Cli


@pytest.fixture
def fake_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as server:
        yield server


@pytest.fixture
def cli(tmp_path, fake_server) -> Iterator[Cli]:
    """Our CLI over slots alice (live, weekly 50%) and bob (20%), both Sonnet 40%, whose
    accounts the profile endpoint knows; no command may ever print a token."""
    c = Cli(tmp_path, fake_server)
    for name, week in (("alice", 50), ("bob", 20)):
        serve_profile(fake_server, name)
        c.set_usage(name, five=10, week=week, scoped={"Sonnet": 40})
    yield c
    for text in c.outputs:
        assert "sk-ant" not in text


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's headless Chromium as a Selenium WebDriver with a fresh profile
    (tests/support/browser.py); skips without it, fails in CI (GPTME_SUBSCRIPTION_CI)."""
    with chromium() as driver:
        yield driver


# ---------------------------------------------------------------- secrets and modes, everywhere

SECRET_MARK = b"sk-ant-"  # every token in every fixture carries it
STATE_FILES = (
    "events.jsonl",
    "hook-status.json",
    "config-cache.json",
    "rotation.json",
    "slots.json",
)


def _our_state_dirs(root):
    return [d for d in root.rglob("state") if d.is_dir() and not d.is_symlink()]


def _leaks_and_modes(root):
    """Files our tool wrote that hold a token, or are not 0600 / 0700."""
    import stat as stat_mod

    problems = []
    for state in _our_state_dirs(root):
        for path in [state, *state.rglob("*")]:
            if path.is_symlink():
                continue
            mode = stat_mod.S_IMODE(path.lstat().st_mode)
            if path.is_dir() and mode != 0o700:
                problems.append(f"{path}: dir mode {oct(mode)}")
            elif path.is_file():
                if mode != 0o600:
                    problems.append(f"{path}: file mode {oct(mode)}")
                if SECRET_MARK in path.read_bytes():
                    problems.append(f"{path}: holds a token")
    for path in root.rglob("*"):
        if SECRET_MARK.decode() in path.name:
            problems.append(f"{path}: a token in a file name")
        if path.name in STATE_FILES and path.is_file() and SECRET_MARK in path.read_bytes():
            problems.append(f"{path}: holds a token")
    return sorted(set(problems))


@pytest.fixture(autouse=True)
def _no_leaks_no_loose_modes(request, tmp_path):
    """After every test: the state it left holds no token and is private (0600/0700)."""
    yield
    problems = _leaks_and_modes(tmp_path)
    if request.node.get_closest_marker("planted_files"):  # modes of its own files: theirs
        problems = [p for p in problems if "mode" not in p]
    assert not problems, "\n".join(problems[:20])


def _is_ours(cmd) -> bool:
    words = cmd if isinstance(cmd, (list, tuple)) else [cmd]
    return any(
        "gptme_subscription_plugin" in str(w) or "gptme-subscription" in str(w) for w in words
    )


@pytest.fixture(scope="session", autouse=True)
def _no_token_printed_by_our_commands() -> Iterator[None]:
    """Every run of our CLI or hooks through `subprocess.run`, in any test or fixture: stdout
    and stderr must hold no token. Session-wide, so that module-scoped fixtures running our
    CLI are checked too; `subprocess.run` is the stdlib's again once the session ends."""
    original = subprocess.run

    def checked_run(*args, **kwargs):
        result = original(*args, **kwargs)
        cmd = args[0] if args else kwargs.get("args")
        if _is_ours(cmd):
            for stream in (result.stdout, result.stderr):
                if stream is None:
                    continue
                text = stream if isinstance(stream, str) else stream.decode("utf-8", "replace")
                assert SECRET_MARK.decode() not in text, f"token printed by {cmd!r}"
        return result

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess, "run", checked_run)
        yield
