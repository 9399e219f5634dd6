"""A fake Anthropic API on loopback, for tests and the `demo` command.

A real `ThreadingHTTPServer` on 127.0.0.1 with an ephemeral port, so clients exercise their real
HTTP code (sockets, timeouts, proxies, broken bodies) without the network and without spending
anything. It serves `GET /api/oauth/usage` per bearer token from a mutable table, records every
request, and can be told to misbehave (429, 500, slow, non-JSON, truncated) for one token or
for all. More endpoints plug in with `add_route` (the next one will be `/v1/messages`).

    with FakeAnthropicServer() as srv:
        srv.set_usage("tok-a", make_usage_doc(now=time.time(), five_hour=20))
        fetch_oauth_usage(srv.base_url, "tok-a", "a", timeout=2, now=time.time())
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

USAGE_PATH = "/api/oauth/usage"
OAUTH_BETA = "oauth-2025-04-20"
NAMED_FAULTS = frozenset({"429", "500", "timeout", "garbage", "truncated"})
DEFAULT_HANG_S = 30.0
MAX_REQUEST_BODY = 16 * 1024 * 1024
_STATUS_FAULT = re.compile(r"^[45]\d\d$")  # any 4xx/5xx works as a fault kind too


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (header names lower-cased)."""

    method: str
    path: str  # as sent; an absolute URI when the server is used as an HTTP proxy
    headers: dict[str, str]
    token: str | None
    body: bytes = b""

    @property
    def route(self) -> str:
        """The path without query string or proxy-style scheme and host."""
        return urlsplit(self.path).path or "/"


@dataclass
class FakeResponse:
    """What to send back; `declared_length` lies about Content-Length, `hang` delays it."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    declared_length: int | None = None
    hang: float = 0.0

    @classmethod
    def json(cls, status: int, doc: Any, **headers: str) -> FakeResponse:
        body = json.dumps(doc).encode("utf-8")
        return cls(status, body, {"Content-Type": "application/json", **headers})


Handler = Callable[[RecordedRequest], FakeResponse]


@dataclass
class _Fault:
    kind: str
    retry_after: float | str | None
    remaining: int | None  # None: until cleared
    hang: float


def api_error(status: int, error_type: str, message: str, **headers: str) -> FakeResponse:
    """An error in the API's JSON shape: {"type": "error", "error": {"type", "message"}}."""
    doc = {"type": "error", "error": {"type": error_type, "message": message}}
    return FakeResponse.json(status, doc, **headers)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def make_usage_doc(
    now: float,
    five_hour: float | None = 10.0,
    seven_day: float | None = 40.0,
    five_hour_resets_in: float = 3 * 3600.0,
    seven_day_resets_in: float = 3 * 86400.0,
    sonnet: float | None = None,
    scoped: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """A realistic `/api/oauth/usage` answer (percentages 0-100) for tests and the demo."""

    def window(pct: float | None, resets_in: float) -> dict[str, Any] | None:
        return None if pct is None else {"utilization": pct, "resets_at": _iso(now + resets_in)}

    limits = [
        {
            "kind": "weekly_scoped",
            "group": "weekly",
            "percent": pct,
            "severity": "normal",
            "resets_at": _iso(now + seven_day_resets_in),
            "scope": {"model": {"id": None, "display_name": name}, "surface": None},
            "is_active": False,
        }
        for name, pct in (scoped or {}).items()
    ]
    return {
        "five_hour": window(five_hour, five_hour_resets_in),
        "seven_day": window(seven_day, seven_day_resets_in),
        "seven_day_opus": None,
        "seven_day_sonnet": window(sonnet, seven_day_resets_in),
        "seven_day_oauth_apps": None,
        "extra_usage": None,
        "limits": limits,
    }


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class _RequestHandler(BaseHTTPRequestHandler):
    """Hands every request to the owning FakeAnthropicServer; never logs (headers hold tokens)."""

    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 10.0  # an idle client must not pin a thread

    def _dispatch(self) -> None:
        self.server.app._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        return


class _HTTPServer(ThreadingHTTPServer):
    """Tracks connection threads and sockets so shutdown can cut them off and join them."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: FakeAnthropicServer) -> None:
        self.app = app
        self._conn_lock = threading.Lock()
        self._conns: dict[threading.Thread, socket.socket] = {}
        super().__init__(address, _RequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._run_connection,
            args=(request, client_address),
            name="fake-anthropic-conn",
            daemon=True,
        )
        with self._conn_lock:
            self._conns[thread] = request
        thread.start()

    def _run_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # a broken client must not print a traceback
            pass
        finally:
            self.shutdown_request(request)
            with self._conn_lock:
                self._conns.pop(threading.current_thread(), None)

    def abort_connections(self, join_timeout: float) -> None:
        with self._conn_lock:
            conns = list(self._conns.items())
        for _, sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread, _ in conns:
            thread.join(join_timeout)


class FakeAnthropicServer:
    """Loopback stand-in for api.anthropic.com; a context manager that starts and stops it."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, require_beta: bool = True
    ) -> None:
        self._address = (host, port)
        self.require_beta = require_beta  # the real endpoint rejects OAuth without it
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._usage: dict[str, bytes] = {}
        self._faults: dict[str | None, _Fault] = {}
        self._requests: list[RecordedRequest] = []
        self._routes: dict[tuple[str, str], Handler] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_route("GET", USAGE_PATH, self._usage_route)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeAnthropicServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(self._address, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-anthropic-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop promptly: wake hanging handlers, cut open connections, join every thread."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.abort_connections(join_timeout=5.0)
        httpd.server_close()
        if thread is not None:
            thread.join(5.0)
        self._httpd = self._thread = None

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeAnthropicServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    # ------------------------------------------------------------ configuration

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve `method path` (query string ignored) with `handler(request) -> FakeResponse`."""
        with self._lock:
            self._routes[(method.upper(), path)] = handler

    def set_usage(self, access_token: str, doc: Any) -> None:
        """What GET /api/oauth/usage answers for this bearer token (any JSON value)."""
        body = json.dumps(doc).encode("utf-8")
        with self._lock:
            self._usage[access_token] = body

    def remove_usage(self, access_token: str) -> None:
        with self._lock:
            self._usage.pop(access_token, None)

    def set_fault(
        self,
        kind: str,
        token: str | None = None,
        retry_after: float | str | None = None,
        count: int | None = None,
        hang: float = DEFAULT_HANG_S,
    ) -> None:
        """Misbehave for `token` (or every request when None), `count` times or until cleared.

        Kinds: "429" (Retry-After from `retry_after`: seconds or an HTTP-date string), "500"
        or any other 4xx/5xx, "timeout" (answer only after `hang` s, cut short by shutdown),
        "garbage" (200 with non-JSON), "truncated" (Content-Length larger than the body).
        A token-specific fault wins over the global one.
        """
        if kind not in NAMED_FAULTS and not _STATUS_FAULT.match(kind):
            raise ValueError(f"unknown fault kind {kind!r}")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (or None for until cleared)")
        with self._lock:
            self._faults[token] = _Fault(kind, retry_after, count, hang)

    def clear_fault(self, token: str | None = None) -> None:
        with self._lock:
            self._faults.pop(token, None)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # ------------------------------------------------------------ inspection

    def requests(self, token: str | None = None) -> list[RecordedRequest]:
        """Requests seen so far, oldest first; only those carrying `token` when given."""
        with self._lock:
            seen = list(self._requests)
        return seen if token is None else [r for r in seen if r.token == token]

    def request_count(self, token: str | None = None, path: str | None = None) -> int:
        return sum(1 for r in self.requests(token) if path is None or r.route == path)

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    # ------------------------------------------------------------ serving

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        request = self._read_request(handler)
        with self._lock:
            self._requests.append(request)
        response = self._respond(request)
        self._send(handler, response)

    def _read_request(self, handler: BaseHTTPRequestHandler) -> RecordedRequest:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        try:
            length = min(int(headers.get("content-length", "0")), MAX_REQUEST_BODY)
        except ValueError:
            length = 0
        body = handler.rfile.read(length) if length > 0 else b""
        return RecordedRequest(handler.command, handler.path, headers, _bearer(headers), body)

    def _take_fault(self, token: str | None) -> _Fault | None:
        with self._lock:
            key = token if token is not None and token in self._faults else None
            fault = self._faults.get(key)
            if fault is None:
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    del self._faults[key]
            return fault

    def _respond(self, request: RecordedRequest) -> FakeResponse:
        fault = self._take_fault(request.token)
        if fault is None:
            return self._route(request)
        return self._fault_response(fault, request)

    def _route(self, request: RecordedRequest) -> FakeResponse:
        with self._lock:
            handler = self._routes.get((request.method, request.route))
        if handler is None:
            return api_error(404, "not_found_error", f"no route {request.method} {request.route}")
        return handler(request)

    def _fault_response(self, fault: _Fault, request: RecordedRequest) -> FakeResponse:
        if fault.kind == "429":
            headers = (
                {} if fault.retry_after is None else {"Retry-After": _header(fault.retry_after)}
            )
            return api_error(
                429, "rate_limit_error", "Rate limited. Please try again later.", **headers
            )
        if fault.kind == "timeout":
            return replace(self._route(request), hang=fault.hang)
        if fault.kind == "garbage":
            body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            return FakeResponse(200, body, {"Content-Type": "text/html"})
        if fault.kind == "truncated":
            full = self._route(request)
            if len(full.body) < 2:
                full = FakeResponse.json(200, {"five_hour": {"utilization": 1, "resets_at": None}})
            return replace(
                full, body=full.body[: len(full.body) // 2], declared_length=len(full.body)
            )
        status = int(fault.kind)
        return api_error(status, "api_error" if status >= 500 else "invalid_request_error", "fault")

    def _usage_route(self, request: RecordedRequest) -> FakeResponse:
        if request.token is None:
            return api_error(401, "authentication_error", "missing bearer token")
        if self.require_beta and OAUTH_BETA not in request.headers.get("anthropic-beta", ""):
            return api_error(
                401, "authentication_error", "OAuth authentication is currently not supported."
            )
        with self._lock:
            body = self._usage.get(request.token)
        if body is None:
            return api_error(401, "authentication_error", "Invalid bearer token")
        return FakeResponse(200, body, {"Content-Type": "application/json"})

    def _send(self, handler: BaseHTTPRequestHandler, response: FakeResponse) -> None:
        if response.hang > 0 and self._stopping.wait(response.hang):
            handler.close_connection = True
            return  # shutting down: drop the connection without an answer
        length = (
            len(response.body) if response.declared_length is None else response.declared_length
        )
        try:
            handler.send_response(response.status)
            for name, value in response.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(length))
            handler.send_header("Connection", "close")
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(response.body)
            handler.wfile.flush()
        except OSError:
            pass  # the client gave up (timeout test): nothing to tell it
        handler.close_connection = True


def _header(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)
