"""Credentials that outrank the slot files, so a flip of the live link would change nothing.

Claude Code prefers an API key or OAuth token in its environment, or an `apiKeyHelper` in a
settings file, over `~/.claude/.credentials.json`. Every surface warns about them (the Claude
Code hooks and doctor, the gptme hooks and tool), so the check lives in the core.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .bounds import RefusedFile, read_bounded

MAX_SETTINGS_BYTES = 1 << 20  # a settings.json is a few KB; a bigger one is not read
OVERRIDE_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")


def env_overrides(env: Mapping[str, str]) -> list[str]:
    """Names (never values) of the environment's credentials that Claude Code would use."""
    return [name for name in OVERRIDE_ENV if env.get(name)]


def override_warnings(
    env: Mapping[str, str], payload: Mapping[str, Any], claude_dir: Path
) -> list[str]:
    """Credentials that outrank the slot files, so a flip would change nothing."""
    found = env_overrides(env)
    cwd = payload.get("cwd") if isinstance(payload.get("cwd"), str) else None
    settings = [claude_dir / "settings.json"]
    if cwd:
        settings += [Path(cwd) / ".claude/settings.json", Path(cwd) / ".claude/settings.local.json"]
    for path in settings:
        try:  # a project's file: bounded, and only a regular file
            doc = json.loads(read_bounded(path, MAX_SETTINGS_BYTES).decode("utf-8"))
        except (OSError, ValueError, RefusedFile):
            continue
        if isinstance(doc, dict) and doc.get("apiKeyHelper"):
            found.append(f"apiKeyHelper in {path}")
    return found
