"""The dashboard as users run it: `gptme-subscription dashboard` as a real process on a free
loopback port, over a sandbox's files; the tests talk to it over HTTP.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from .sandbox import Sandbox

_URL_LINE = re.compile(r"^dashboard: (http://\S+/)$")
_TOKEN_LINE = re.compile(r"^action token: (\S+)")


class DashboardProcess:
    """A running server: its URL, its action token (with --allow-actions), HTTP helpers."""

    def __init__(self, proc: subprocess.Popen[str], url: str, action_token: str | None) -> None:
        self.proc = proc
        self.url = url
        self.action_token = action_token

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request; HTTP errors are answers, not exceptions."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method)
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, path: str, **kw: Any) -> Any:
        status, _, body = self.request(path, **kw)
        assert status == 200, (status, body[:300])
        return json.loads(body)

    def action(self, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["X-Action-Token"] = token
        status, _, raw = self.request(path, method="POST", body=body or {}, headers=headers)
        return status, json.loads(raw) if raw else None


@contextmanager
def running_dashboard(
    sb: Sandbox, *args: str, timeout: float = 30.0, **env: str
) -> Iterator[DashboardProcess]:
    """`dashboard --port 0 ARGS` over `sb` until the block ends; waits for its URL line."""
    with serving_dashboard((), args, {**sb.env, **env}, timeout=timeout) as dash:
        yield dash


@contextmanager
def serving_dashboard(
    flags: Sequence[str], args: Sequence[str], env: Mapping[str, str], *, timeout: float = 30.0
) -> Iterator[DashboardProcess]:
    """`gptme-subscription FLAGS dashboard --port 0 ARGS` in `env` (config flags such as
    `demo --keep` prints go before the command) until the block ends."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gptme_subscription_plugin",
            *flags,
            "dashboard",
            "--port",
            "0",
            *args,
        ],
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url, token = _read_banner(proc, timeout)
        yield DashboardProcess(proc, url, token)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _read_banner(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str | None]:
    """The URL line (and the action-token line that follows it with --allow-actions), read by
    a thread so a server that prints nothing fails the test after `timeout`."""
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    stdout = proc.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)
        lines.put(None)  # end of output

    threading.Thread(target=pump, daemon=True).start()
    wants_token = "--allow-actions" in list(proc.args)  # type: ignore[arg-type]
    url: str | None = None
    while True:
        try:
            raw = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"dashboard printed no URL within {timeout}s") from None
        if raw is None:
            err = proc.stderr.read() if proc.stderr is not None else ""
            raise AssertionError(f"dashboard exited ({proc.wait(10)}): {err.strip()}")
        line = raw.strip()
        if url is None and (m := _URL_LINE.match(line)):
            url = m.group(1)
            if not wants_token:
                return url, None
        elif url is not None and (m := _TOKEN_LINE.match(line)):
            return url, m.group(1)
