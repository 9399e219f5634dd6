"""The gptme session in the core's turn registry, and what happens at gptme's turn boundaries.

No gptme import: `hooks.py` calls these with the values gptme hands its hooks.

gptme never reads the Claude credential file itself (its own model calls use an API key); a
flip reaches the Claude Code processes a gptme turn starts (through the shell, tmux, a
Claude Code tool plugin, subagents). So the gptme session registers as one more session in
the turn registry, under `gptme-<conversation name>`:

- `session.start`: registered idle, drift healed, the pressure summary added to the initial
  context (hidden from the person);
- `turn.pre` (the safe boundary), like Claude Code's UserPromptSubmit: when every *other*
  session is idle, a pending switch lands and the policy decides on cached usage; then the
  session is marked busy;
- `step.pre` and tool hooks never flip;
- `turn.post`: marked idle, then decided like Claude Code's Stop hook (usage refreshed within
  the shared poll budget; switch now when everyone else is idle, else pending);
- `session.end` (and process exit): unregistered.

While busy, a heartbeat thread refreshes the entry, because a single tool call can run a
Claude Code process for longer than `session_ttl` without gptme firing any hook; if gptme dies,
the heartbeat dies with it and the entry expires after `session_ttl` like any silent session.

`turn_scope` (from `[plugin.subscription]`) chooses how long the session counts as mid-turn:
"turn" (default: turn.pre to turn.post), "tool" (only while a tool runs, which is where a
synchronous Claude Code subprocess lives; lets other sessions' switches land during gptme's own
model calls in long autonomous turns), "off" (never registers; for sessions that start no Claude
Code process).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from ..boundary_runner import BoundaryRunner, publish_summary
from ..config import Config
from ..manager import SubscriptionManager
from ..turns import TurnRegistry
from .settings import PluginSettings

log = logging.getLogger(__name__)

Loader = Callable[[Path | None], tuple[Config, PluginSettings]]
TOOL_HINT = (
    "Call the `subscription` tool for details or to act: status | recommend [model=NAME] "
    "[work=SIZE] | switch SLOT | check | explain."
)
HEARTBEAT_MAX_S = 60.0
HEARTBEAT_MIN_S = 0.5


@dataclass(frozen=True)
class Note:
    """A message for the conversation; `hide` keeps it from the person (the model sees it)."""

    text: str
    hide: bool = False


def session_id_for(logdir: Path | None) -> str:
    """The registry id of a gptme conversation: stable across resumes of the same log."""
    if logdir is not None and Path(logdir).name:
        return f"gptme-{Path(logdir).name}"
    return f"gptme-pid{os.getpid()}"


class Heartbeat:
    """Keeps a busy entry fresh while a turn (or a tool call) runs; stops on `stop()`."""

    def __init__(
        self,
        registry: TurnRegistry,
        session_id: str,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.session_id = session_id
        self.interval = interval
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"gptme-subscription-heartbeat-{session_id}", daemon=True
        )

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.registry.mark_busy(self.session_id, self.clock(), os.getpid())
            except OSError as exc:  # a full disk must not kill gptme; the entry just ages
                log.warning("subscription heartbeat for %s: %s", self.session_id, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


@dataclass
class OpenSession:
    session_id: str
    workspace: Path | None
    registry: TurnRegistry
    scope: str
    ttl: float
    busy: bool = False
    heartbeat: Heartbeat | None = field(default=None, repr=False)
    told: tuple[str | None, int] | None = None  # (live slot, pressure level) the model last saw


class Lifecycle:
    """Every gptme session this process runs (subagents in threads have their own)."""

    def __init__(
        self,
        load: Loader,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.load = load
        self.env = os.environ if env is None else env
        self.clock = clock
        self._sessions: dict[str, OpenSession] = {}
        self._lock = threading.Lock()
        self._current: ContextVar[str | None] = ContextVar(
            "gptme_subscription_session", default=None
        )
        self._atexit_registered = False

    # ------------------------------------------------------------ sessions

    def current_session(self) -> OpenSession | None:
        """The session of this context (the chat loop that runs the tool), else the only one."""
        sid = self._current.get()
        with self._lock:
            if sid is not None and sid in self._sessions:
                return self._sessions[sid]
            if len(self._sessions) == 1:
                return next(iter(self._sessions.values()))
        return None

    def sessions(self) -> list[OpenSession]:
        with self._lock:
            return list(self._sessions.values())

    def _open(
        self, logdir: Path | None, workspace: Path | None, config: Config, settings: PluginSettings
    ) -> OpenSession:
        sid = session_id_for(logdir)
        with self._lock:
            sess = self._sessions.get(sid)
            if sess is None:
                sess = OpenSession(
                    sid,
                    workspace,
                    TurnRegistry(config.state_dir),
                    settings.turn_scope,
                    config.session_ttl,
                )
                self._sessions[sid] = sess
            else:  # settings may have changed between turns; keep the busy state
                sess.registry = TurnRegistry(config.state_dir)
                sess.scope = settings.turn_scope
                sess.ttl = config.session_ttl
                sess.workspace = workspace or sess.workspace
            if not self._atexit_registered:
                atexit.register(self.close_all)
                self._atexit_registered = True
        self._current.set(sid)
        return sess

    def _manager(
        self, logdir: Path | None, workspace: Path | None = None
    ) -> tuple[SubscriptionManager, OpenSession]:
        known = self._known(logdir)
        ws = workspace if workspace is not None else (known.workspace if known else None)
        config, settings = self.load(ws)
        sess = self._open(logdir, ws, config, settings)
        return SubscriptionManager(config, clock=self.clock), sess

    def _known(self, logdir: Path | None) -> OpenSession | None:
        with self._lock:
            return self._sessions.get(session_id_for(logdir))

    # ------------------------------------------------------------ busy / idle

    def _mark_busy(self, sess: OpenSession) -> None:
        sess.registry.mark_busy(sess.session_id, self.clock(), os.getpid())
        sess.busy = True
        if sess.heartbeat is None or not sess.heartbeat.alive:
            interval = max(HEARTBEAT_MIN_S, min(HEARTBEAT_MAX_S, sess.ttl / 4))
            sess.heartbeat = Heartbeat(sess.registry, sess.session_id, interval, self.clock).start()

    def _mark_idle(self, sess: OpenSession) -> None:
        self._stop_heartbeat(sess)
        if sess.scope != "off" or sess.busy:
            sess.registry.mark_idle(sess.session_id, self.clock())
        sess.busy = False

    @staticmethod
    def _stop_heartbeat(sess: OpenSession) -> None:
        if sess.heartbeat is not None:
            sess.heartbeat.stop()
            sess.heartbeat = None

    # ------------------------------------------------------------ boundaries

    def session_start(
        self, logdir: Path | None, workspace: Path | None, tool_loaded: bool = True
    ) -> list[Note]:
        from ..overrides import override_warnings
        from .answers import override_problem

        m, sess = self._manager(logdir, workspace)
        now = m.clock()
        m.turns.sweep(now, m.config.session_ttl)
        if sess.scope != "off":
            sess.registry.mark_idle(sess.session_id, now)
        result = BoundaryRunner(m).session_start()
        visible = [Note(result.heal)] if result.heal else []
        payload = {"cwd": str(workspace)} if workspace is not None else {}
        overrides = override_warnings(self.env, payload, m.config.claude_dir)
        summary = result.summary
        assert summary is not None
        # gptme drops session.start messages when it resumes a log: tell at the first turn.pre
        resumed = logdir is not None and (Path(logdir) / "conversation.jsonl").is_file()
        sess.told = None if resumed else (summary.live, summary.level)
        lines = [f"subscription WARNING: {override_problem(item)}" for item in overrides]
        visible += [Note(line) for line in lines]
        lines.append(summary.text)
        if tool_loaded:
            lines.append(TOOL_HINT)
        return [Note("\n".join(lines), hide=True), *visible]

    def turn_pre(self, logdir: Path | None) -> list[Note]:
        """The safe boundary (boundary.py decides what happens there), then go busy."""
        m, sess = self._manager(logdir)
        notes: list[Note] = []
        try:
            result = BoundaryRunner(m).prompt_submit(sess.session_id)
            notes += [Note(line) for line in (result.heal, result.switched_line()) if line]
            notes += self._pressure_news(m, sess)
        finally:
            if sess.scope == "turn":
                self._mark_busy(sess)
        return notes

    @staticmethod
    def _pressure_news(m: SubscriptionManager, sess: OpenSession) -> list[Note]:
        """The summary again (hidden) when the live slot changed or crossed a pressure level.

        Cached usage only (turn.post refreshes it): one note per crossing, like the
        PreToolUse warnings Claude Code sessions get.
        """
        summary = publish_summary(m)
        told_live, told_level = sess.told if sess.told is not None else (None, 0)
        sess.told = (summary.live, summary.level)
        if summary.live != told_live or summary.level > told_level:
            return [Note(summary.text, hide=True)]
        return []

    def step_pre(self, logdir: Path | None) -> list[Note]:
        """Between model calls inside a turn: never flips; keeps the registry entry honest."""
        sess = self._known(logdir)
        if sess is None:
            return []
        if sess.scope == "turn" and sess.busy:
            sess.registry.mark_busy(sess.session_id, self.clock(), os.getpid())
        elif sess.scope == "tool" and sess.busy:
            self._mark_idle(sess)  # a tool that raised skipped tool.execute.post
        return []

    def tool_pre(self, logdir: Path | None) -> list[Note]:
        sess = self._known(logdir) or self.current_session()
        if sess is not None and sess.scope == "tool":
            self._mark_busy(sess)
        return []

    def tool_post(self, logdir: Path | None) -> list[Note]:
        sess = self._known(logdir) or self.current_session()
        if sess is not None and sess.scope == "tool" and sess.busy:
            self._mark_idle(sess)
        return []

    def turn_post(self, logdir: Path | None) -> list[Note]:
        """The turn is over: idle, then decide like Claude Code's Stop hook. gptme's own
        model calls do not use the slot, so the turn says nothing of the live slot serving."""
        m, sess = self._manager(logdir)
        self._mark_idle(sess)
        result = BoundaryRunner(m).stop(sess.session_id, answered_on_live=False)
        line = result.stop_line("; it lands when they are between turns")
        return [Note(text) for text in (result.heal, line) if text]

    def session_end(self, logdir: Path | None) -> list[Note]:
        sid = session_id_for(logdir)
        with self._lock:
            sess = self._sessions.pop(sid, None)
        if sess is not None:
            self._close(sess)
        return []

    def close_all(self) -> None:
        """Process exit without session.end (a crash, an exception): leave no busy entry."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for sess in sessions:
            self._close(sess)

    def _close(self, sess: OpenSession) -> None:
        self._stop_heartbeat(sess)
        try:
            sess.registry.unregister(sess.session_id)
        except OSError as exc:
            log.warning("subscription: could not unregister %s: %s", sess.session_id, exc)


__all__ = ["Heartbeat", "Lifecycle", "Note", "OpenSession", "session_id_for"]
