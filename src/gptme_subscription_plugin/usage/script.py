"""The upstream usage-script contract: `<script> --json [--no-cache]` for one slot.

gptme-contrib's `check-claude-usage.sh` (and any replacement a user writes) starts `claude`
from the user's own setup: it finds it under `$HOME/.local/bin`, and `claude` needs the
onboarding state in `.claude.json`. So the script runs in the user's real environment (HOME,
PATH, working directory); only what picks the credential differs per slot. For the live slot
that is nothing: Claude Code's own config dir already holds it. For any other slot it is
`CLAUDE_CONFIG_DIR`, pointed at a throwaway dir holding a link to the slot's file and a copy
of the user's `.claude.json`, so the live link is never touched. Output scale: utilization
0-1, `resets_in_seconds` relative to now. The contract as users see it is in the README
("Usage scripts").
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..bounds import RefusedFile, read_bounded, run_bounded
from ..fsutil import ForeignPathError, atomic_write_bytes, check_runnable
from ..overrides import OVERRIDE_ENV
from ..paths import INSIDE_USAGE_SCRIPT_ENV
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
OVERRIDING_ENV = frozenset(OVERRIDE_ENV)
# Told to the script: which slot it is asked about, and that slot's credential file (the
# second is the upstream script's own override, which keys its cache by that file).
SLOT_ENV = "GPTME_SUBSCRIPTION_SLOT"
# Point a tmux the script starts at the user's server; see _script_env.
TMUX_ENV = frozenset({"TMUX", "TMUX_PANE", "TMUX_TMPDIR"})
CREDS_ENV = "CLAUDE_USAGE_CREDS_FILE"
CONFIG_DIR_ENV = "CLAUDE_CONFIG_DIR"
# How long a script may take outside a hook (0.1.0 gave it as long); inside a hook, what is
# left of the hook's budget. 0.1.0's script scrapes Claude Code's /usage screen (~25 s).
MIN_TIME_LIMIT_S = 60.0
# A `claude` the script starts refreshes an access token about to expire. For a slot that is
# not live it would do so in the throwaway config dir, and the slot would keep a refresh
# token that is spent: such a slot is not handed to the script.
REFRESH_MARGIN_S = 600.0
MAX_GLOBAL_CONFIG_BYTES = 16 * 1024 * 1024


def time_limit(poll_timeout: float) -> float:
    """How long a usage script may run outside a hook."""
    return max(MIN_TIME_LIMIT_S, 4 * poll_timeout)


@dataclass(frozen=True)
class ScriptContext:
    """The user's own Claude Code setup, which the script runs in.

    `global_config` is the `.claude.json` Claude Code reads for `claude_dir`; `live` says
    whether the slot asked about is the one the live link in `claude_dir` points at.
    """

    home: Path
    claude_dir: Path
    global_config: Path
    live: bool

    @classmethod
    def from_env(cls) -> ScriptContext:
        """Defaults from the environment: ~/.claude (or $CLAUDE_CONFIG_DIR), a slot not live."""
        home = Path(os.environ.get("HOME") or Path.home())
        env_dir = os.environ.get(CONFIG_DIR_ENV)
        claude_dir = Path(env_dir) if env_dir else home / ".claude"
        config = claude_dir / ".claude.json" if env_dir else home / ".claude.json"
        return cls(home, claude_dir, config, live=False)


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


def _same_dir(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def _prepare_config_dir(config_dir: Path, credential_path: Path, global_config: Path) -> None:
    """A throwaway config dir for a slot that is not live: its credential, as a link, and a
    copy of the user's `.claude.json` (`claude` needs its onboarding state). A copy, so
    nothing the script's `claude` writes reaches the user's own file."""
    os.symlink(os.path.abspath(credential_path), config_dir / ".credentials.json")
    try:
        data = read_bounded(global_config, MAX_GLOBAL_CONFIG_BYTES)
    except (OSError, RefusedFile):
        return  # none yet (or not a file we copy): the script sees what a new user has
    atomic_write_bytes(config_dir / ".claude.json", data)


def _script_env(
    slot: str,
    credential_path: Path,
    context: ScriptContext,
    config_dir: Path | None,
    tmux_dir: Path,
) -> dict[str, str]:
    """The user's environment, less credentials that would outrank the slot's, plus where
    the slot's credential is. `config_dir` None: the slot is live in `context.claude_dir`.

    A tmux session started on a server that is already running (the user's, or the one a
    run for another slot started) gets that server's environment, not ours, so its `claude`
    would read whichever credential that server's environment names. The script's tmux is
    therefore never the user's: `TMUX` is dropped and `TMUX_TMPDIR` is this run's own dir.
    """
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDING_ENV | TMUX_ENV}
    env["TMUX_TMPDIR"] = str(tmux_dir)
    env["HOME"] = str(context.home)
    if config_dir is not None:
        env[CONFIG_DIR_ENV] = str(config_dir)
    elif env.get(CONFIG_DIR_ENV) and _same_dir(env[CONFIG_DIR_ENV], context.claude_dir):
        pass  # Claude Code finds its dir exactly as the user's sessions do
    elif _same_dir(context.claude_dir, context.home / ".claude"):
        env.pop(CONFIG_DIR_ENV, None)  # the default dir: unset, as for the user's sessions
    else:
        env[CONFIG_DIR_ENV] = str(context.claude_dir)
    env[CREDS_ENV] = os.path.abspath(credential_path)
    env[SLOT_ENV] = slot
    env[INSIDE_USAGE_SCRIPT_ENV] = "1"
    return env


def _run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, bytes, bytes]:
    """Run the script within `timeout` and MAX_OUTPUT_BYTES, in the caller's working
    directory; its process group ends with it."""
    try:
        done = run_bounded(argv, timeout=timeout, max_stdout=MAX_OUTPUT_BYTES, env=env)
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
    *,
    context: ScriptContext | None = None,
) -> UsageSnapshot:
    """Run the usage script about `credential_path`; UsageFetchError on any failure.

    Kinds: "script" (cannot start, non-zero exit), "timeout" (process group killed),
    "garbage" (output not the JSON contract, or larger than 1 MiB). The script's process
    group is killed when it is done: helpers it leaves behind do not outlive it.
    """
    try:
        check_runnable(script, "usage script")
    except ForeignPathError as exc:
        raise UsageFetchError("script", str(exc)) from None
    context = context or ScriptContext.from_env()
    argv = [str(script), "--json"] + (["--no-cache"] if no_cache else [])
    run_dir: Path | None = None
    try:
        try:
            run_dir = Path(tempfile.mkdtemp(prefix="gsp-usage-run-"))  # 0700
            (run_dir / "tmux").mkdir(mode=0o700)
            config_dir = None if context.live else run_dir / "config"
            if config_dir is not None:
                config_dir.mkdir(mode=0o700)
                _prepare_config_dir(config_dir, credential_path, context.global_config)
        except OSError as exc:
            detail = exc.strerror or type(exc).__name__
            raise UsageFetchError(
                "script", f"cannot prepare a private dir for the usage script: {detail}"
            ) from None
        env = _script_env(slot, credential_path, context, config_dir, run_dir / "tmux")
        code, out, err = _run(argv, env, timeout)
    finally:
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)
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
