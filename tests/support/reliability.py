"""Invariant checks shared by the crash, storm and fault tests.

After anything (a crash, a storm of hooks, a fault) these must hold: every slot parses, no
refresh token that was live is lost (it is in a slot, a backup or the live file), the events
log parses line by line, and once the next run has repaired what it can, the live path is a
link to a slot and nothing of ours (temp files, lock dirs, lock notes) is left behind.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from gptme_subscription_plugin.credentials import CredentialError, load_credential
from gptme_subscription_plugin.fsutil import TEMP_MARKER


def slot_files(claude_dir: Path) -> list[Path]:
    return sorted(p for p in claude_dir.glob(".credentials.json.*") if TEMP_MARKER not in p.name)


def backup_files(claude_dir: Path) -> list[Path]:
    d = claude_dir / ".gptme-subscription-backups"
    return sorted(p for p in d.iterdir() if TEMP_MARKER not in p.name) if d.exists() else []


def kept_refresh_tokens(claude_dir: Path) -> set[str]:
    """Refresh tokens held anywhere: slots, backups, the live path (file or link)."""
    kept = set()
    for path in [
        *slot_files(claude_dir),
        *backup_files(claude_dir),
        claude_dir / ".credentials.json",
    ]:
        try:
            token = load_credential(path).refresh_token
        except CredentialError:
            continue
        if token:
            kept.add(token)
    return kept


def check_always(claude_dir: Path, state_dir: Path, live_tokens: set[str]) -> None:
    """What must hold at every instant, even right after a SIGKILL."""
    for path in slot_files(claude_dir):
        load_credential(path)  # raises if a slot does not parse
    missing = live_tokens - kept_refresh_tokens(claude_dir)
    assert not missing, f"refresh tokens lost: {sorted(missing)}"
    events = state_dir / "events.jsonl"
    if events.exists():
        for line in events.read_text().splitlines():
            assert isinstance(json.loads(line), dict)


def check_repaired(claude_dir: Path, state_dir: Path, live_tokens: set[str]) -> None:
    """After the next run: a valid link, no leftovers, no lock held, private modes."""
    check_always(claude_dir, state_dir, live_tokens)
    live = claude_dir / ".credentials.json"
    assert live.is_symlink(), "live path is not a link"
    target = claude_dir / os.readlink(live)
    assert target in slot_files(claude_dir) and load_credential(target)
    leftovers = [
        p
        for d in (
            claude_dir,
            claude_dir / ".gptme-subscription-backups",
            state_dir,
            state_dir / "usage",
            state_dir / "sessions",
        )
        if d.exists()
        for p in d.iterdir()
        if TEMP_MARKER in p.name
    ]
    assert not leftovers, f"temp files left: {leftovers}"
    assert not (claude_dir / ".oauth_refresh.lock").exists()
    assert not Path(str(claude_dir) + ".lock").exists()
    assert not list(claude_dir.glob(".gsp-lock-*.json"))
    check_private(claude_dir, state_dir)


def check_private(claude_dir: Path, state_dir: Path) -> None:
    """Files we write are 0600, our directories 0700."""
    for path in [*slot_files(claude_dir), *backup_files(claude_dir)]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for d in (claude_dir / ".gptme-subscription-backups", state_dir):
        if d.exists():
            assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    if state_dir.exists():
        for path in state_dir.rglob("*"):
            if path.is_file() and not path.name.endswith(".lock"):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
