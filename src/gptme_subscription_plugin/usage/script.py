"""The upstream usage-script contract: `<script> --json [--no-cache]` for one slot.

gptme-contrib's `check-claude-usage.sh` (and any replacement a user writes) reads the credential
at `$HOME/.claude/.credentials.json`. To ask about a slot that is not live, the script runs in a
throwaway HOME whose credential file is a symlink to the slot's file, so the live link is never
touched. Output scale: utilization 0-1, `resets_in_seconds` relative to now.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..bounds import run_bounded
from ..fsutil import ForeignPathError, check_runnable, ensure_private_dir
from ..redact import clean_external
from .oauth import UsageFetchError, UsageParseError, json_number
from .snapshot import (
    FIVE_HOUR,
    FIVE_HOUR_S,
    SEVEN_DAY,
    SEVEN_DAY_S,
    UsageSnapshot,
    UsageWindow,
    clamp_fraction,
)

SOURCE = "script"
MAX_OUTPUT_BYTES = 1024 * 1024
# Script keys for per-model weeklies and the model key each one fills.
SCRIPT_MODEL_WINDOWS = {"seven_day_sonnet": "sonnet", "seven_day_opus": "opus"}
# Environment credentials outrank the credential file and would make the script report the
# wrong account (reference/claude-code.md section 0, finding 8).
OVERRIDING_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")


def _script_window(raw: object, what: str, seconds: int, now: float) -> UsageWindow:
    if not isinstance(raw, dict):
        raise UsageParseError(f"{what} is not an object")
    fraction = json_number(raw.get("utilization"), f"{what}.utilization")
    resets_in = raw.get("resets_in_seconds")
    resets_at = None
    if resets_in is not None:
        resets_at = now + max(0.0, json_number(resets_in, f"{what}.resets_in_seconds"))
    return UsageWindow(clamp_fraction(fraction), resets_at, seconds)


def parse_script_usage(doc: object, slot: str, now: float) -> UsageSnapshot:
    """The script's JSON -> UsageSnapshot (source "script").

    Bad windows are skipped; a document without any usable window is an error.
    """
    if not isinstance(doc, dict):
        raise UsageParseError("usage script output is not a JSON object")
    named: dict[str, UsageWindow] = {}
    models: dict[str, UsageWindow] = {}
    problem: str | None = None
    wanted = [(FIVE_HOUR, FIVE_HOUR_S, named, FIVE_HOUR)]
    wanted += [(SEVEN_DAY, SEVEN_DAY_S, named, SEVEN_DAY)]
    wanted += [(key, SEVEN_DAY_S, models, name) for key, name in SCRIPT_MODEL_WINDOWS.items()]
    for key, seconds, target, name in wanted:
        raw = doc.get(key)
        if raw is None:
            continue
        try:
            target[name] = _script_window(raw, key, seconds, now)
        except UsageParseError as exc:
            problem = problem or str(exc)
    if not named and not models:
        detail = f" ({problem})" if problem else ""
        raise UsageParseError(f"usage script output has no usable window{detail}")
    return UsageSnapshot(
        slot=slot,
        source=SOURCE,
        observed_at=now,
        five_hour=named.get(FIVE_HOUR),
        seven_day=named.get(SEVEN_DAY),
        models=models,
    )


def _redact(text: str) -> str:
    """Last stderr line, shortened, with anything token-shaped blanked out."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return clean_external(last, 160)


def _prepare_home(home: Path, credential_path: Path) -> None:
    """Give the throwaway HOME a `.claude/.credentials.json` linking to the slot's credential."""
    claude_dir = ensure_private_dir(home / ".claude")
    os.symlink(os.path.abspath(credential_path), claude_dir / ".credentials.json")


def _script_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDING_ENV}
    claude_dir = home / ".claude"
    env["HOME"] = str(home)
    env["CLAUDE_CONFIG_DIR"] = str(claude_dir)
    # the upstream script also honours this explicit override; point it at the same link
    env["CLAUDE_USAGE_CREDS_FILE"] = str(claude_dir / ".credentials.json")
    return env


def _run(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> tuple[int, bytes, bytes]:
    """Run the script within `timeout` and MAX_OUTPUT_BYTES; its process group ends with it."""
    try:
        done = run_bounded(argv, timeout=timeout, max_stdout=MAX_OUTPUT_BYTES, env=env, cwd=cwd)
    except OSError as exc:
        detail = exc.strerror or type(exc).__name__
        raise UsageFetchError("script", f"cannot run usage script {argv[0]}: {detail}") from None
    if done.timed_out:
        raise UsageFetchError(
            "timeout", f"usage script timed out after {timeout:g}s (its process group was killed)"
        )
    if done.overflow or done.returncode is None:
        raise UsageFetchError("garbage", "usage script output larger than 1 MiB")
    return done.returncode, done.stdout, done.stderr


def run_usage_script(
    script: Path,
    slot: str,
    credential_path: Path,
    timeout: float,
    now: float,
    no_cache: bool = False,
) -> UsageSnapshot:
    """Run the usage script against `credential_path`; UsageFetchError on any failure.

    Kinds: "script" (cannot start, non-zero exit), "timeout" (process group killed),
    "garbage" (output not the JSON contract, or larger than 1 MiB). The script's process
    group is killed when it is done: helpers it leaves behind do not outlive it.
    """
    try:
        check_runnable(script, "usage script")
    except ForeignPathError as exc:
        raise UsageFetchError("script", str(exc)) from None
    argv = [str(script), "--json"] + (["--no-cache"] if no_cache else [])
    try:
        home = Path(tempfile.mkdtemp(prefix="gsp-usage-home-"))  # created 0700
    except OSError as exc:
        raise UsageFetchError("script", f"cannot create a temp HOME: {exc.strerror}") from None
    try:
        try:
            _prepare_home(home, credential_path)
        except OSError as exc:
            raise UsageFetchError("script", f"cannot prepare a temp HOME: {exc.strerror}") from None
        code, out, err = _run(argv, _script_env(home), home, timeout)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if code != 0:
        detail = _redact(err.decode("utf-8", "replace"))
        suffix = f": {detail}" if detail else ""
        raise UsageFetchError("script", f"usage script exited with status {code}{suffix}")
    try:
        doc = json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UsageFetchError("garbage", "usage script printed non-JSON output") from None
    try:
        return parse_script_usage(doc, slot, now)
    except UsageParseError as exc:
        raise UsageFetchError("garbage", f"usage script output unusable: {exc}") from None
