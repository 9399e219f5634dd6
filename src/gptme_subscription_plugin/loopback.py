"""A loopback stand-in for the two Anthropic account endpoints, for `gptme-subscription demo`.

A real `ThreadingHTTPServer` on 127.0.0.1 with an ephemeral port, so the demo runs the real
HTTP client code (sockets, timeouts, status codes) without the network and without any
account. It answers `GET /api/oauth/usage` and `GET /api/oauth/profile` per bearer token from
tables the caller fills, can refuse a token with an error status (a 429 with Retry-After) for
a number of requests, and records every request.

    with LoopbackAPI() as api:
        api.set_usage("tok-a", {"five_hour": {"utilization": 20, "resets_at": None}})
        fetch_oauth_usage(api.base_url, "tok-a", "a", timeout=2, now=time.time())

The full fake Anthropic API of the test suite (messages, the token endpoint, accounts with
token families, more faults) builds on this class in `tests/support/fake_api.py`, which the
wheel does not ship.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import urlsplit

USAGE_PATH = "/api/oauth/usage"
PROFILE_PATH = "/api/oauth/profile"
OAUTH_BETA = "oauth-2025-04-20"
MAX_REQUEST_BODY = 16 * 1024 * 1024
STATUS_FAULT = re.compile(r"^[45]\d\d$")  # a fault kind that is an HTTP error status
_Server = TypeVar("_Server", bound="LoopbackAPI")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (header names lower-cased)."""

    method: str
    path: str  # as sent; an absolute URI when the server is used as an HTTP proxy
    headers: dict[str, str]
    token: str | None
    body: bytes = b""
    received_at: float = 0.0  # time.time() when the request was read

    @property
    def route(self) -> str:
        """The path without query string or proxy-style scheme and host (CONNECT: host:port)."""
        if self.method == "CONNECT":
            return self.path
        return urlsplit(self.path).path or "/"

    @property
    def session_id(self) -> str | None:
        """Claude Code's `x-claude-code-session-id` header, when sent."""
        return self.headers.get("x-claude-code-session-id")

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError when it is not)."""
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    """What to send back."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, doc: Any, **headers: str) -> Response:
        body = json.dumps(doc).encode("utf-8")
        return cls(status, body, {"Content-Type": "application/json", **headers})


Handler = Callable[[RecordedRequest], Response]


@dataclass
class Fault:
    """A misbehaviour for one token (or all): its kind, and how many requests it has left."""

    kind: str
    retry_after: float | str | None
    remaining: int | None  # None: until cleared


def api_error(status: int, error_type: str, message: str, **headers: str) -> Response:
    """An error in the API's JSON shape: {"type": "error", "error": {"type", "message"}}."""
    doc = {"type": "error", "error": {"type": error_type, "message": message}}
    return Response.json(status, doc, **headers)


def make_profile_doc(
    email: str,
    account_uuid: str | None = None,
    organization_uuid: str | None = None,
    organization_type: str = "claude_max",
    rate_limit_tier: str = "default_claude_max_20x",
) -> dict[str, Any]:
    """A realistic `/api/oauth/profile` answer; uuids derive from the email when not given."""
    account_uuid = account_uuid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"account:{email}"))
    organization_uuid = organization_uuid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"org:{email}"))
    return {
        "account": {
            "uuid": account_uuid,
            "email": email,
            "email_address": email,
            "full_name": "Fake User",
            "display_name": "Fake",
            "has_claude_max": organization_type == "claude_max",
            "has_claude_pro": organization_type == "claude_pro",
            "created_at": "2026-01-01T00:00:00Z",
        },
        "organization": {
            "uuid": organization_uuid,
            "name": f"{email}'s Organization",
            "organization_type": organization_type,
            "billing_type": "stripe_subscription",
            "rate_limit_tier": rate_limit_tier,
            "has_extra_usage_enabled": False,
            "subscription_created_at": "2026-01-01T00:00:00Z",
        },
    }


def bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class _RequestHandler(BaseHTTPRequestHandler):
    """Hands every request to the owning LoopbackAPI; never logs (headers hold tokens)."""

    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 10.0  # an idle client must not pin a thread

    def _dispatch(self) -> None:
        self.server.app._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_CONNECT = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        return


class _HTTPServer(ThreadingHTTPServer):
    """Tracks connection threads and sockets so shutdown can cut them off and join them."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: LoopbackAPI) -> None:
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


class LoopbackAPI:
    """Loopback usage and profile endpoints; a context manager that starts and stops them."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, require_beta: bool = True
    ) -> None:
        self._address = (host, port)
        self.require_beta = require_beta  # the real endpoint rejects OAuth without it
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._usage: dict[str, bytes] = {}
        self._profiles: dict[str, Any] = {}
        self._faults: dict[str | None, Fault] = {}
        self._requests: list[RecordedRequest] = []
        self._routes: dict[tuple[str, str], Handler] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_route("GET", USAGE_PATH, self._usage_route)
        self.add_route("GET", PROFILE_PATH, self._profile_route)

    # ------------------------------------------------------------ lifecycle

    def start(self: _Server) -> _Server:
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
        """Stop promptly: wake waiting handlers, cut open connections, join every thread."""
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

    def __enter__(self: _Server) -> _Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._address[0]}:{self.port}"

    # ------------------------------------------------------------ configuration

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve `method path` (query string ignored) with `handler(request) -> Response`."""
        with self._lock:
            self._routes[(method.upper(), path)] = handler

    def set_usage(self, access_token: str, doc: Any) -> None:
        """What GET /api/oauth/usage answers for this bearer token (any JSON value)."""
        body = json.dumps(doc).encode("utf-8")
        with self._lock:
            self._usage[access_token] = body

    def set_profile(self, access_token: str, doc: Any) -> None:
        """What GET /api/oauth/profile answers for this bearer token."""
        with self._lock:
            self._profiles[access_token] = doc

    def set_fault(
        self,
        kind: str,
        token: str | None = None,
        retry_after: float | str | None = None,
        count: int | None = None,
    ) -> None:
        """Answer requests of `token` (every request when None) with an error status.

        `kind` is the status as a string: "429" (with Retry-After from `retry_after`:
        seconds or an HTTP-date string) or any other 4xx/5xx; for `count` requests or until
        cleared. A token-specific fault wins over the global one.
        """
        self._check_fault_kind(kind)
        self._put_fault(token, Fault(kind, retry_after, count))

    def _check_fault_kind(self, kind: str) -> None:
        if not STATUS_FAULT.match(kind):
            raise ValueError(f"unknown fault kind {kind!r}")

    def _put_fault(self, token: str | None, fault: Fault) -> None:
        if fault.remaining is not None and fault.remaining < 1:
            raise ValueError("count must be at least 1 (or None for until cleared)")
        with self._lock:
            self._faults[token] = fault

    # ------------------------------------------------------------ inspection

    def requests(self, token: str | None = None) -> list[RecordedRequest]:
        """Requests seen so far, oldest first; only those carrying `token` when given."""
        with self._lock:
            seen = list(self._requests)
        return seen if token is None else [r for r in seen if r.token == token]

    def request_count(self, token: str | None = None, path: str | None = None) -> int:
        return sum(1 for r in self.requests(token) if path is None or r.route == path)

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
        return RecordedRequest(
            handler.command, handler.path, headers, bearer(headers), body, time.time()
        )

    def _take_fault(self, token: str | None) -> Fault | None:
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

    def _respond(self, request: RecordedRequest) -> Response:
        fault = self._take_fault(request.token)
        if fault is None:
            return self._route(request)
        return self._fault_response(fault, request)

    def _route(self, request: RecordedRequest) -> Response:
        with self._lock:
            handler = self._routes.get((request.method, request.route))
        if handler is None:
            return api_error(404, "not_found_error", f"no route {request.method} {request.route}")
        return handler(request)

    def _fault_response(self, fault: Fault, request: RecordedRequest) -> Response:
        status = int(fault.kind)
        if status == 429:
            headers = (
                {} if fault.retry_after is None else {"Retry-After": _header(fault.retry_after)}
            )
            return api_error(
                429, "rate_limit_error", "Rate limited. Please try again later.", **headers
            )
        return api_error(status, "api_error" if status >= 500 else "invalid_request_error", "fault")

    def _refuse_oauth(self, request: RecordedRequest) -> Response | None:
        """The 401 of a request without a bearer token, or without the OAuth beta header."""
        if request.token is None:
            return api_error(401, "authentication_error", "missing bearer token")
        if self.require_beta and OAUTH_BETA not in request.headers.get("anthropic-beta", ""):
            return api_error(
                401, "authentication_error", "OAuth authentication is currently not supported."
            )
        return None

    def _usage_route(self, request: RecordedRequest) -> Response:
        refused = self._refuse_oauth(request)
        if refused is not None:
            return refused
        with self._lock:
            body = self._usage.get(request.token or "")
        if body is None:
            return api_error(401, "authentication_error", "Invalid bearer token")
        return Response(200, body, {"Content-Type": "application/json"})

    def _profile_route(self, request: RecordedRequest) -> Response:
        if request.token is None:
            return api_error(401, "authentication_error", "missing bearer token")
        with self._lock:
            doc = self._profiles.get(request.token)
        if doc is None:
            return api_error(401, "authentication_error", "Invalid bearer token")
        return Response.json(200, doc)

    def _send(self, handler: BaseHTTPRequestHandler, response: Response) -> None:
        self._write(handler, response, len(response.body))

    def _write(self, handler: BaseHTTPRequestHandler, response: Response, length: int) -> None:
        """The status line, headers (Content-Length: `length`) and body; then close."""
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
            pass  # the client gave up: nothing to tell it
        handler.close_connection = True


def _header(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)
