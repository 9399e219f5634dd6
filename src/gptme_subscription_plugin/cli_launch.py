"""`run` and `env`: start a new Claude Code session in the profile of the slot routing picks.

Kept apart from cli.py (its own job: turning a launch into a process or a shell's exports).
The choice and its reservation are launcher.py's; `--retry-on-limit` is supervisor.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import TYPE_CHECKING

from .cli_parser import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from .launcher import Launch, Launcher, LaunchError
from .overrides import env_overrides
from .supervisor import SessionArgs, run_with_retries

if TYPE_CHECKING:
    from .manager import SubscriptionManager

EXIT_NOT_FOUND = 127  # as a shell says of a command it cannot find


def _fail(message: str, code: int = EXIT_PROBLEM) -> int:
    print(f"gptme-subscription: {message}", file=sys.stderr)
    return code


def cmd_run(m: SubscriptionManager, args: argparse.Namespace) -> int:
    command = list(args.claude_argv)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        return _fail("run needs the command to start: run [--slot S] -- claude ARGS...", EXIT_USAGE)
    overrides = env_overrides(os.environ)
    if overrides:
        return _fail(
            f"{', '.join(overrides)} set: Claude Code would use it, not the slot's login; "
            "unset it to run on a slot",
            EXIT_USAGE,
        )
    session_args = SessionArgs.parse(command)
    if args.retry_on_limit:
        if not session_args.headless:
            return _fail("--retry-on-limit supervises a headless run: add -p", EXIT_USAGE)
        if session_args.continuing:
            return _fail(
                f"--retry-on-limit follows a session by its id: use --resume ID, not "
                f"{session_args.continuing}",
                EXIT_USAGE,
            )
        session_args = session_args.with_session()
    try:
        [launch] = Launcher(m).plan(
            slot=args.slot,
            session=None if session_args.resuming else session_args.session,
            resume=session_args.session if session_args.resuming else None,
            record=not args.dry_run,
        )
    except LaunchError as exc:
        return _fail(str(exc))
    if args.dry_run:
        if args.json:
            print(json.dumps({**launch.to_dict(), "argv": session_args.argv}, indent=2))
        else:
            print(f"would start on {launch.slot}: {launch.reason}")
            print(f"  {_exports(launch)} {shlex.join(session_args.argv)}")
        return EXIT_OK
    _announce(launch, args.json)
    env = {**os.environ, **launch.env}
    if not args.retry_on_limit:
        try:
            os.execvpe(session_args.argv[0], session_args.argv, env)
        except OSError as exc:
            return _fail(f"{session_args.argv[0]}: {exc.strerror}", EXIT_NOT_FOUND)
    try:
        code, _ = run_with_retries(
            m,
            session_args,
            launch,
            args.retry_on_limit,
            os.environ,
            say=lambda line: print(f"gptme-subscription: {line}", file=sys.stderr),
        )
    except OSError as exc:
        return _fail(f"{session_args.argv[0]}: {exc.strerror}", EXIT_NOT_FOUND)
    return code


def cmd_env(m: SubscriptionManager, args: argparse.Namespace) -> int:
    try:
        [launch] = Launcher(m).plan(slot=args.slot, record=not args.dry_run)
    except LaunchError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps(launch.to_dict(), indent=2))
    else:
        print(f"# slot {launch.slot}: {launch.reason}")
        print(f"export {_exports(launch)}")
    return EXIT_OK


def _exports(launch: Launch) -> str:
    return " ".join(f"{key}={shlex.quote(value)}" for key, value in launch.env.items())


def _announce(launch: Launch, as_json: bool) -> None:
    """Which slot and why, on stderr (stdout is the session's)."""
    if as_json:
        print(json.dumps(launch.to_dict()), file=sys.stderr)
    else:
        print(f"gptme-subscription: on {launch.slot}: {launch.reason}", file=sys.stderr)
