"""A hook storm: many sessions firing every hook at once on one claude dir and state dir.

Used by tests/test_storm.py (invariants) and benchmarks/storm.py (p50/p99 hook time). Each
session runs Claude Code's real order of events, SessionStart, then turns of
UserPromptSubmit, a burst of concurrent PreToolUse, Stop, then SessionEnd, as real hook
processes. Meanwhile a stand-in for Claude Code refreshes the live token now and then, as the
real one does: under its lock protocol, at the token endpoint of the account-aware fake API
(a reused refresh token is `invalid_grant` and revokes the account's family), replacing the
link with a regular file, and never touching `~/.claude.json` `oauthAccount` (DESIGN.md fact
5: that still names whoever logged in last). The accounts are set up as a user does: `/login`
as each, `slot add`. The usage server makes slots run out and the policy switches.
Everything is bounded in count and time and talks to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from gptme_subscription_plugin.fsutil import atomic_write_bytes, ensure_private_dir

from .fake_api import FakeAnthropicServer, make_usage_doc

ACCOUNTS = ("a", "b", "c")
CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"  # Claude Code's, as it sends it
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def refresh_at(server: FakeAnthropicServer, refresh_token: str) -> tuple[int, dict]:
    """POST the refresh-token grant Claude Code sends; (status, JSON answer)."""
    body = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
    request = urllib.request.Request(
        server.base_url + "/v1/oauth/token",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with NO_PROXY.open(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"{}")


@dataclass
class StormResult:
    durations: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    refresh_tokens: set[str] = field(default_factory=set)
    current_tokens: dict[str, str] = field(default_factory=dict)
    refreshes: int = 0
    hooks_run: int = 0
    elapsed: float = 0.0

    def percentile(self, event: str | None, q: float) -> float:
        values = sorted(v for e, vs in self.durations.items() if event in (None, e) for v in vs)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q * len(values)))]

    def median(self, event: str | None = None) -> float:
        values = [v for e, vs in self.durations.items() if event in (None, e) for v in vs]
        return statistics.median(values) if values else float("nan")


class Storm:
    def __init__(
        self,
        root: Path,
        server: FakeAnthropicServer,
        sessions: int = 16,
        concurrency: int = 4,
        turns: int = 3,
        seconds: float = 60.0,
        refreshes_per_account: int = 3,
        seed: int = 7,
    ):
        self.root = root
        self.server = server
        self.sessions = sessions
        self.concurrency = concurrency
        self.turns = turns
        self.deadline = time.monotonic() + seconds
        self.refreshes_per_account = refreshes_per_account
        self.rng = random.Random(seed)
        self.home = ensure_private_dir(root / "home")
        self.claude = ensure_private_dir(self.home / ".claude")
        self.state = root / "state"
        self.result = StormResult()
        self._lock = threading.Lock()
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(root / "cfg"),
            "GPTME_SUBSCRIPTION_STATE_DIR": str(self.state),
            "GPTME_SUBSCRIPTION_API_BASE": server.base_url,
            "GPTME_SUBSCRIPTION_POLL_INTERVAL": "2",
            "GPTME_SUBSCRIPTION_POLL_TIMEOUT": "2",
            "GPTME_SUBSCRIPTION_LOCK_WAIT": "20",
            "GPTME_SUBSCRIPTION_MIN_DWELL": "0",
        }

    # ------------------------------------------------------------ setup

    def prepare(self) -> None:
        """A user's setup: `/login` as each account and `slot add` it; then `a` is made live.

        `oauthAccount` in `~/.claude.json` names the last login (c) from then on.
        """
        for name in ACCOUNTS:
            self.server.add_account(name, tag="storm")
            self._publish(name, weekly=self.rng.uniform(10, 60))
            self._login(name)
            self._cli("slot", "add", name)
        self._cli("switch", "a")
        self._cli("install", "claude-code")  # records the live slot, like a real install

    def _login(self, name: str) -> None:
        """What Claude Code's /login writes: the live path a file, oauthAccount naming it."""
        doc = self.server.credential_doc(name)
        atomic_write_bytes(self.claude / ".credentials.json", json.dumps(doc).encode())
        config: dict[str, object] = {"hasCompletedOnboarding": True}
        config["oauthAccount"] = self.server.account(name).oauth_account()
        atomic_write_bytes(self.home / ".claude.json", json.dumps(config).encode())

    def _publish(self, name: str, weekly: float) -> None:
        self.server.set_account_usage(
            name,
            make_usage_doc(
                time.time(),
                five_hour=weekly / 3,
                seven_day=weekly,
                seven_day_resets_in=(2 + ACCOUNTS.index(name)) * 86400,
            ),
        )
        token = self.server.current_tokens(name)[1]
        with self._lock:
            self.result.refresh_tokens.add(token)
            self.result.current_tokens[name] = token

    def _cli(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "gptme_subscription_plugin", *args],
            env=self.env,
            capture_output=True,
            timeout=60,
            check=True,
        )

    # ------------------------------------------------------------ the storm

    def hook(self, event: str, session: str, extra: dict | None = None) -> None:
        if time.monotonic() > self.deadline:
            return
        payload = {
            "session_id": session,
            "hook_event_name": event,
            "cwd": str(self.root),
            **(extra or {}),
        }
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "gptme_subscription_plugin", "hook", event],
            input=json.dumps(payload),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.perf_counter() - started
        with self._lock:
            self.result.durations.setdefault(event, []).append(took)
            self.result.hooks_run += 1
            if proc.returncode != 0:
                self.result.failures.append(f"{event}: exit {proc.returncode}")
            out = proc.stdout.strip()
            if out:
                try:
                    json.loads(out)
                except ValueError:
                    self.result.failures.append(f"{event}: stdout is not JSON: {out[:80]}")
            if "sk-ant" in proc.stdout + proc.stderr:
                self.result.failures.append(f"{event}: a token was printed")

    def session(self, index: int, pool: ThreadPoolExecutor) -> None:
        sid = f"storm-{index:02d}"
        self.hook("session-start", sid, {"source": "startup"})
        for _ in range(self.turns):
            self.hook("user-prompt-submit", sid, {"prompt": "go"})
            burst = [
                pool.submit(self.hook, "pre-tool-use", sid, {"tool_name": "Bash"})
                for _ in range(self.concurrency)
            ]
            for f in burst:
                f.result()
            self.hook("stop", sid, {"stop_hook_active": False})
        self.hook("session-end", sid, {"reason": "other"})

    def claude_code(self, stop: threading.Event) -> None:
        """Stand-in for Claude Code's token refresh: under its lock, link -> regular file.

        It refreshes whatever the live link holds, at most `refreshes_per_account` times per
        slot the link names.
        """
        budget = dict.fromkeys(ACCOUNTS, self.refreshes_per_account)
        while not stop.wait(self.rng.uniform(0.3, 0.8)):
            live = self.claude / ".credentials.json"
            if not live.is_symlink():
                continue
            name = os.readlink(live).rsplit(".", 1)[-1]
            if budget.get(name, 0) <= 0:
                continue
            if not self._with_claude_lock(lambda n=name: self._refresh(n)):
                continue
            budget[name] -= 1

    def _refresh(self, name: str) -> None:
        """Refresh what the live link holds, as Claude Code does, and write a regular file.

        `~/.claude.json` is left alone (fact 5). An `invalid_grant` ends Claude Code's session
        and leaves the live file with an empty refresh token, as the real one does.
        """
        live = self.claude / ".credentials.json"
        if not live.is_symlink() or os.readlink(live) != f".credentials.json.{name}":
            return
        doc = json.loads(live.read_bytes())
        oauth = doc["claudeAiOauth"]
        spent = oauth.get("refreshToken", "")
        status, answer = refresh_at(self.server, spent)
        if status != 200:
            oauth["refreshToken"] = ""
            atomic_write_bytes(live, json.dumps(doc).encode())  # replaces the link
            with self._lock:
                self.result.failures.append(
                    f"Claude Code's refresh of slot {name} got {answer.get('error', status)}: "
                    f"it held {self.server.describe_token(spent)}"
                )
            return
        oauth["accessToken"] = answer["access_token"]
        oauth["refreshToken"] = answer["refresh_token"]
        oauth["expiresAt"] = int((time.time() + answer["expires_in"]) * 1000)
        atomic_write_bytes(live, json.dumps(doc).encode())  # replaces the link
        owner = self.server.owner_of(answer["refresh_token"]) or name
        self._publish(owner, weekly=self.rng.choice([30.0, 97.0]))  # sometimes it ran out
        with self._lock:
            self.result.refreshes += 1

    def _with_claude_lock(self, action: Callable[[], None]) -> bool:
        """proper-lockfile as Claude Code does it: mkdir both dirs, give up after ~8 s."""
        primary = self.claude / ".oauth_refresh.lock"
        legacy = Path(str(self.claude) + ".lock")
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            try:
                os.mkdir(primary)
            except FileExistsError:
                time.sleep(0.05)
                continue
            try:
                os.mkdir(legacy)
            except FileExistsError:
                os.rmdir(primary)
                time.sleep(0.05)
                continue
            try:
                action()
                return True
            finally:
                os.rmdir(legacy)
                os.rmdir(primary)
        return False

    def run(self) -> StormResult:
        self.prepare()
        started = time.monotonic()
        stop = threading.Event()
        refresher = threading.Thread(target=self.claude_code, args=(stop,), daemon=True)
        refresher.start()
        workers = self.sessions * (self.concurrency + 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            sessions = [pool.submit(self.session, i, pool) for i in range(self.sessions)]
            for f in sessions:
                f.result()
        stop.set()
        refresher.join(15)
        self.result.elapsed = time.monotonic() - started
        self._cli("heal")  # the next boundary hook after the storm
        return self.result
