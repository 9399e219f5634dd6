"""`run --retry-on-limit N`: a headless `claude -p` that ends because its slot cannot serve
(a rate limit, or a refused login) goes on elsewhere.

A session in a profile never changes account while it runs. When its slot runs dry or
Anthropic refuses its credential the run ends (Claude Code gives the turn up: StopFailure
`rate_limit` or `authentication_failed`, exit 1); the supervisor then resumes the same session
(`--resume ID`, the transcript is shared through `projects/`) in the profile of another slot the
launch rule picks, at most N times in all, and says so on stderr.

"Ended on a rate limit" is read from two places, either enough: the run's own output (its last
64 KiB, which the supervisor passes through unchanged) names a rate limit or a 429 (JSON
output) or says "You've hit your ... limit" (text output), or the rotation state holds a limit
on the slot recorded since the run started (our StopFailure hook records it when the hook pack
is installed).

"Ended on a refused login" is read the same two ways, both exact: the last line of the run's
stdout is Claude Code's own last word for a 401 (text output: "Failed to authenticate. API
Error: 401 ..."; JSON and stream-JSON: the result object with `api_error_status` 401), or our
StopFailure hook recorded a rejection of the slot since the run started. The slot is then
recorded as rejected (the launch rule skips it until its credential changes), and the failed
run counts against the same N. Any other failure is the run's own and ends the supervision
with its exit status. The resumed run is the same command line, with the same piped stdin when
there was one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from .launcher import Launch, Launcher

if TYPE_CHECKING:
    from .manager import SubscriptionManager

TAIL_BYTES = 64 * 1024
# `-p --output-format json` names the error (`rate_limit_error`, 429); the default text output
# only says "You've hit your 5-hour limit · resets 12:48pm (UTC)" (weekly, Opus, session ...).
LIMIT_MARKERS = re.compile(
    rb"rate[_ ]limit|usage limit|\b429\b|too many requests|limit reached"
    rb"|you(?:'|\xe2\x80\x99)ve hit your [^\n]{0,40}limit",
    re.IGNORECASE,
)
# Claude Code 2.1.330 `-p` after a 401 (authentication_error: a revoked or dead token), exit 1:
# text output prints just this line, JSON output ends on the result object carrying
# `"api_error_status":401` (its `result` is the same line).
REFUSED_TEXT = re.compile(rb"Failed to authenticate\. API Error: 401\b")
REFUSED_STATUS = 401
REJECTION_SOURCE = "run: authentication_failed"
PRINT_FLAGS = ("-p", "--print")
RESUME_FLAGS = ("-r", "--resume")
CONTINUE_FLAGS = ("-c", "--continue")
SESSION_FLAG = "--session-id"
# Claude Code -p waits this long for the first byte of a piped stdin, then goes on without it.
STDIN_WAIT = 3.0


@dataclass
class SessionArgs:
    """A Claude Code command line, and the session it starts or resumes."""

    argv: list[str]
    session: str | None = None  # --session-id or --resume value
    resuming: bool = False
    headless: bool = False
    continuing: str | None = None  # the --continue flag as given: the session is not named

    @classmethod
    def parse(cls, argv: Sequence[str]) -> SessionArgs:
        out = cls(list(argv))
        args = out.argv[1:]
        for i, arg in enumerate(args):
            name, eq, value = arg.partition("=")
            if arg in PRINT_FLAGS:
                out.headless = True
            if arg in CONTINUE_FLAGS:
                out.continuing = arg
            if name in RESUME_FLAGS + (SESSION_FLAG,):
                if not eq:
                    value = args[i + 1] if i + 1 < len(args) else ""
                if value and not value.startswith("-"):
                    out.session = value
                    out.resuming = name in RESUME_FLAGS
        return out

    def with_session(self) -> SessionArgs:
        """This command line with a session id of our own when it has none (to resume it)."""
        if self.session is not None:
            return self
        session = str(uuid.uuid4())
        argv = [self.argv[0], SESSION_FLAG, session, *self.argv[1:]]
        return SessionArgs(argv, session, False, self.headless, self.continuing)

    def resumed(self) -> list[str]:
        """The command line that resumes this session: `--session-id X` becomes `--resume X`
        (Claude Code refuses both together), an existing `--resume X` stays."""
        if self.resuming or self.session is None:
            return list(self.argv)
        out, skip = [self.argv[0]], False
        for i, arg in enumerate(self.argv[1:], start=1):
            if skip:
                skip = False
                continue
            if arg == SESSION_FLAG:
                skip = i + 1 < len(self.argv)
                continue
            if arg.startswith(SESSION_FLAG + "="):
                continue
            out.append(arg)
        return [out[0], "--resume", self.session, *out[1:]]


@dataclass
class Attempt:
    slot: str
    code: int
    limited: bool
    tail: bytes = field(default=b"", repr=False)
    refused: bool = False  # the slot's login was refused


def run_with_retries(
    m: SubscriptionManager,
    args: SessionArgs,
    first: Launch,
    retries: int,
    env: Mapping[str, str],
    *,
    say: Callable[[str], None],
    spawn: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
    stdin: IO[bytes] | None = None,
) -> tuple[int, list[Attempt]]:
    """Run `args` on `first`; after a run that ended on a rate limit or a refused login,
    resume the session on another slot, at most `retries` times in all. The last run's exit
    status, and every attempt.

    A piped `stdin` (ours by default) is part of the prompt for `claude -p`: it is read once
    and every attempt gets the same bytes; a terminal is shared as it is."""
    launcher = Launcher(m)
    launch, attempts = first, []
    argv = args.argv
    feed = _piped_input(getattr(sys.stdin, "buffer", None) if stdin is None else stdin)
    while True:
        started = m.clock()
        code, out, err = _run_once(argv, {**env, **launch.env}, spawn, feed)
        tail = out + b"\n" + err
        slot = launch.slot
        refused = code != 0 and (
            _refused_login(out) or _recorded_since(m, "credential-rejected", slot, started)
        )
        limited = (
            code != 0
            and not refused
            and (
                bool(LIMIT_MARKERS.search(tail))
                or _recorded_since(m, "rate-limited", slot, started)
            )
        )
        attempts.append(Attempt(slot, code, limited, tail, refused))
        if not (limited or refused):
            return code, attempts
        if refused:
            _record_rejection(m, slot, started)
            why = detail = f"{slot}'s login was refused (reauth {slot})"
        else:
            until = _record_limit(m, slot)
            why = f"{slot} hit its rate limit"
            detail = f"{why} (limited for {until:.0f} s)"
        if len(attempts) > retries:
            say(f"{why}; no retries left (--retry-on-limit {retries})")
            return code, attempts
        try:
            [launch] = launcher.plan(resume=args.session, session=args.session)
        except Exception as exc:  # no slot can serve: the run's own failure stands
            say(f"{why}; not resumed: {exc}")
            return code, attempts
        argv = args.resumed()
        say(
            f"{detail}; resuming session {args.session} on {launch.slot} "
            f"(retry {len(attempts)} of {retries}): {launch.reason}"
        )


def _piped_input(stream: IO[bytes] | None) -> bytes | None:
    """All of a piped or redirected stdin, as Claude Code -p would read it (nothing when no
    byte comes within STDIN_WAIT); None for a terminal or no stdin at all."""
    if stream is None:
        return None
    try:
        fd = stream.fileno()
        if os.isatty(fd):
            return None
        ready, _, _ = select.select([fd], [], [], STDIN_WAIT)
    except (OSError, ValueError):
        return None
    if not ready:
        return b""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _run_once(
    argv: Sequence[str],
    env: Mapping[str, str],
    spawn: Callable[..., subprocess.Popen[bytes]],
    feed: bytes | None = None,
) -> tuple[int, bytes, bytes]:
    """Run one attempt, passing its output through (and `feed` in, when given); its exit
    status and the tails of its stdout and stderr."""
    proc = spawn(
        list(argv),
        env=dict(env),
        stdin=None if feed is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    if feed is not None:
        threading.Thread(target=_feed, args=(proc.stdin, feed), daemon=True).start()
    tails: list[bytearray] = []
    pumps = []
    for source, sink in ((proc.stdout, sys.stdout.buffer), (proc.stderr, sys.stderr.buffer)):
        tail = bytearray()
        tails.append(tail)
        pump = threading.Thread(target=_pump, args=(source, sink, tail), daemon=True)
        pump.start()
        pumps.append(pump)
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for pump in pumps:
        pump.join()
    return code, bytes(tails[0]), bytes(tails[1])


def _feed(sink: IO[bytes] | None, data: bytes) -> None:
    """Write the attempt's stdin, then close it (EOF); a run that stops reading is fine."""
    if sink is None:
        return
    with contextlib.suppress(BrokenPipeError):
        sink.write(data)
    with contextlib.suppress(BrokenPipeError):
        sink.close()


def _pump(source: IO[bytes] | None, sink: IO[bytes], tail: bytearray) -> None:
    if source is None:
        return
    while chunk := os.read(source.fileno(), 65536):
        sink.write(chunk)
        sink.flush()
        tail.extend(chunk)
        del tail[:-TAIL_BYTES]
    source.close()


def _recorded_since(m: SubscriptionManager, kind: str, slot: str, started: float) -> bool:
    """An event of `kind` about `slot` since `started`: our StopFailure hook's record of a
    limit (`rate-limited`) or of a refused credential (`credential-rejected`)."""
    events = m.events.tail(50, kinds={kind})
    return any(e.get("slot") == slot and float(e.get("ts", 0)) >= started for e in events)


def _record_limit(m: SubscriptionManager, slot: str) -> float:
    """Keep the slot out of the next choice: the limit a hook recorded, else our own for
    `unknown_reset_wait`. How long from now it lasts."""
    now = m.clock()
    until = m.rotation().limited.get(slot)
    if until is None or until <= now:
        until = now + m.config.unknown_reset_wait
        m.record_rate_limit(slot, until)
    return until - now


def _refused_login(out: bytes) -> bool:
    """The run's stdout ends the way Claude Code ends a turn on a refused credential: the
    401 line (text output), or a result object with `api_error_status` 401 (JSON output)."""
    lines = out.strip().splitlines()
    if not lines:
        return False
    last = lines[-1].strip()
    if REFUSED_TEXT.match(last):
        return True
    try:
        doc = json.loads(last)
    except ValueError:
        return False
    return (
        isinstance(doc, dict)
        and doc.get("type") == "result"
        and doc.get("is_error") is True
        and doc.get("api_error_status") == REFUSED_STATUS
    )


def _record_rejection(m: SubscriptionManager, slot: str, started: float) -> None:
    """Keep the slot out of the next choice until its credential changes: the rejection a
    hook recorded during the run, else our own."""
    entry = m.rotation().rejected.get(slot)
    if entry is None or entry.at is None or entry.at < started:
        m.record_rejection(slot, REJECTION_SOURCE)
