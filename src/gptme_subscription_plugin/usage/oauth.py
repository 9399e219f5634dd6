"""The OAuth usage endpoint: `GET {api_base}/api/oauth/usage`, parsed into a UsageSnapshot.

The endpoint is undocumented and rate-limited (about 30 requests per hour per account), so this
module only knows how to ask once and how to read the answer; the poll budget lives in cache.py.
Reading the answer is `oauth_document.py`'s part (its names are re-exported here).
Errors carry a `kind` the cache can act on; no message ever contains the bearer token.
The HTTP stack is imported on first fetch, so parsing stays cheap for the statusline path.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import Callable
from datetime import timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import socket
    import urllib.error
    import urllib.request
    from http.client import HTTPResponse

from .oauth_document import (
    LIMIT_KIND_FALLBACK,
    NAMED_MODEL_WINDOWS,
    SOURCE,
    UsageParseError,
    json_number,
    parse_iso8601,
    parse_oauth_usage,
)
from .snapshot import UsageSnapshot

USAGE_PATH = "/api/oauth/usage"
OAUTH_BETA = "oauth-2025-04-20"
MAX_BODY_BYTES = 1024 * 1024

FETCH_ERROR_KINDS = frozenset(
    {"rate_limited", "auth", "rejected", "server", "timeout", "network", "garbage", "script"}
)


class SourceBusy(Exception):
    """The usage source is serving another poll; nothing was asked, so nothing failed."""


class UsageFetchError(Exception):
    """Asking a usage source failed; `kind` tells the cache how to back off."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        if kind not in FETCH_ERROR_KINDS:
            raise ValueError(f"unknown usage fetch error kind {kind!r}")
        one_line = " ".join(message.split())
        super().__init__(one_line)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.message = one_line

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only fields would otherwise be lost crossing a process boundary
        return (_rebuild_fetch_error, (self.kind, self.message, self.status, self.retry_after))


def _rebuild_fetch_error(
    kind: str, message: str, status: int | None, retry_after: float | None
) -> UsageFetchError:
    return UsageFetchError(kind, message, status=status, retry_after=retry_after)


# ---------------------------------------------------------------- fetching


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from `now`: delta-seconds or an HTTP-date; None when absent/bad."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    import email.utils

    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return max(0.0, moment.timestamp() - now)
    except (OverflowError, ValueError):
        return None


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.0/8, ::1 and localhost: traffic that must never go through a proxy."""
    if not host:
        return False
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=1)
def user_agent() -> str:
    """A custom User-Agent: the endpoint has answered 403 to empty or library defaults."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"gptme-subscription-plugin/{version('gptme-subscription-plugin')}"
        except PackageNotFoundError:
            pass
    except ImportError:  # pragma: no cover - stdlib always has it on 3.10+
        pass
    return "gptme-subscription-plugin/0"


class TotalDeadline:
    """One request's whole time, connect, TLS, headers and body together.

    A per-read socket timeout is not enough: a server that trickles one byte every 0.2 s never
    trips it, and http.client reads headers line by line and bodies in large blocks. When the
    time is up, a timer shuts down every socket of the request, which wakes a blocked read at
    once; connects are bounded by the time left when they start.
    """

    def __init__(self, seconds: float) -> None:
        import threading

        self.at = time.monotonic() + max(0.0, seconds)
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> TotalDeadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def left(self) -> float:
        return self.at - time.monotonic()

    def _expire(self) -> None:
        import socket

        with self._lock:
            self.expired = True
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def connect(
        self, address: tuple[str, int], timeout: object = None, source_address: object = None
    ) -> socket.socket:
        """`socket.create_connection` whose sockets this deadline can shut down."""
        import socket

        host, port = address
        error: OSError = TimeoutError("no time left to connect")
        for family, kind, proto, _, addr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
            left = self.left()
            if left <= 0:
                break
            sock = socket.socket(family, kind, proto)
            with self._lock:
                if self.expired:
                    sock.close()
                    break
                self._sockets.append(sock)
            try:
                sock.settimeout(left)
                if source_address is not None:
                    sock.bind(source_address)  # type: ignore[arg-type]
                sock.connect(addr)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        raise error

    def connection(self, http_class: Any) -> Callable[..., Any]:
        """A factory for urllib's `do_open`: `http_class` connections that connect through us."""

        def make(host: str, **kwargs: Any) -> Any:
            conn = http_class(host, **kwargs)
            conn._create_connection = self.connect
            return conn

        return make


def build_opener(
    host: str | None, deadline: TotalDeadline | None = None
) -> urllib.request.OpenerDirector:
    """Loopback bypasses HTTP(S)_PROXY (the fake server, local tunnels); other hosts honour it.

    Redirects are refused: urllib would carry the bearer token to the new URL. With a
    `deadline`, every connection (to the server or a proxy) is bounded by it.
    """
    import urllib.request

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    if is_loopback_host(host):
        proxies = urllib.request.ProxyHandler({})
    else:
        proxies = urllib.request.ProxyHandler()  # reads *_proxy / no_proxy from the environment
    handlers: list[Any] = [proxies, _NoRedirect()]
    if deadline is not None:
        guard = deadline

        class _HTTP(urllib.request.HTTPHandler):
            def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
                return super().do_open(guard.connection(http_class), req, **kwargs)

        class _HTTPS(urllib.request.HTTPSHandler):
            def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
                return super().do_open(guard.connection(http_class), req, **kwargs)

        handlers += [_HTTP(), _HTTPS()]
    return urllib.request.build_opener(*handlers)


def usage_request(api_base: str, access_token: str) -> urllib.request.Request:
    """The GET request with the headers the endpoint requires for OAuth tokens."""
    return bearer_request(api_base, USAGE_PATH, access_token)


def bearer_request(api_base: str, path: str, access_token: str) -> urllib.request.Request:
    """A GET of an `/api/oauth/...` endpoint with the credential's own access token."""
    import urllib.request

    if not access_token or any(c in access_token for c in "\r\n\0 "):
        raise UsageFetchError("auth", "no usable access token for the usage endpoint")
    url = api_base.rstrip("/") + path
    if urlsplit(url).scheme not in ("http", "https"):
        raise UsageFetchError("network", "api_base must be an http(s) URL")
    headers = {
        "Authorization": f"Bearer {access_token}",
        "anthropic-beta": OAUTH_BETA,
        "User-Agent": user_agent(),
        "Accept": "application/json",
    }
    return urllib.request.Request(url, headers=headers, method="GET")


def _http_error(exc: urllib.error.HTTPError, now: float) -> UsageFetchError:
    status = exc.code
    retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None, now)
    exc.close()
    if status == 429:
        shown = "" if retry_after is None else f", retry after {retry_after:.0f}s"
        return UsageFetchError(
            "rate_limited",
            f"usage endpoint rate limited (HTTP 429{shown})",
            status=status,
            retry_after=retry_after,
        )
    if status == 401:
        # only unexpired tokens are sent (never a refresh to look at usage), so a 401 means
        # the credential itself is refused: revoked, signed out, or replaced by a newer login
        return UsageFetchError(
            "rejected",
            "usage endpoint refused the token (HTTP 401: revoked or signed out)",
            status=status,
        )
    if status == 403:
        return UsageFetchError(
            "auth",
            "usage endpoint refused the token (HTTP 403: missing the user:profile scope)",
            status=status,
        )
    return UsageFetchError(
        "server", f"usage endpoint answered HTTP {status}", status=status, retry_after=retry_after
    )


def _read_body(resp: HTTPResponse) -> bytes:
    """Read at most MAX_BODY_BYTES; a short body means the transfer broke."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = resp.read(min(64 * 1024, MAX_BODY_BYTES + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise UsageFetchError("garbage", "usage endpoint response larger than 1 MiB")
    declared = resp.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > total:
        raise UsageFetchError("network", "usage endpoint response truncated")
    return b"".join(chunks)


def _decode(body: bytes, slot: str, now: float) -> UsageSnapshot:
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise UsageFetchError("garbage", "usage endpoint answered non-JSON") from None
    try:
        return parse_oauth_usage(doc, slot, now)
    except UsageParseError as exc:
        raise UsageFetchError("garbage", f"usage endpoint answer unusable: {exc}") from None


def _is_timeout(reason: object) -> bool:
    return isinstance(reason, TimeoutError)


def fetch_oauth_usage(
    api_base: str, access_token: str, slot: str, timeout: float, now: float
) -> UsageSnapshot:
    """Ask the usage endpoint once for `slot`; UsageFetchError (with a kind) on any failure.

    `timeout` bounds the whole exchange (connect, headers and body), not each read.
    Redirects are refused so the token never leaves `api_base`.
    """
    try:
        request = usage_request(api_base, access_token)
    except ValueError:
        raise UsageFetchError("network", "usage endpoint URL is not usable") from None
    return _decode(fetch_body(request, timeout, now), slot, now)


def fetch_body(request: urllib.request.Request, timeout: float, now: float) -> bytes:
    """The whole body of `request` within `timeout` overall; UsageFetchError otherwise."""
    try:
        host = urlsplit(request.full_url).hostname
    except ValueError:
        raise UsageFetchError("network", "usage endpoint URL is not usable") from None
    with TotalDeadline(timeout) as deadline:
        try:
            body = _exchange(request, host, deadline, timeout, now)
        except UsageFetchError:
            if deadline.expired:  # whatever broke, it broke because we cut it off
                raise _too_slow(host, timeout) from None
            raise
        if deadline.expired:
            raise _too_slow(host, timeout)
    return body


def _too_slow(host: str | None, timeout: float) -> UsageFetchError:
    return UsageFetchError("timeout", f"usage endpoint {host} did not answer within {timeout:g}s")


def _exchange(
    request: urllib.request.Request,
    host: str | None,
    deadline: TotalDeadline,
    timeout: float,
    now: float,
) -> bytes:
    """The request and its whole body, every failure as a UsageFetchError."""
    import urllib.error
    from http.client import HTTPException

    opener = build_opener(host, deadline)
    try:
        with opener.open(request, timeout=max(0.01, timeout)) as resp:
            return _read_body(resp)
    except UsageFetchError:
        raise
    except urllib.error.HTTPError as exc:
        raise _http_error(exc, now) from None
    except urllib.error.URLError as exc:
        if _is_timeout(exc.reason):
            raise UsageFetchError("timeout", f"usage endpoint {host} timed out") from None
        detail = getattr(exc.reason, "strerror", None) or type(exc.reason).__name__
        raise UsageFetchError("network", f"cannot reach usage endpoint {host}: {detail}") from None
    except TimeoutError:
        raise UsageFetchError("timeout", f"usage endpoint {host} timed out") from None
    except OSError as exc:
        detail = exc.strerror or type(exc).__name__
        raise UsageFetchError(
            "network", f"usage endpoint {host} connection failed: {detail}"
        ) from None
    except HTTPException as exc:
        raise UsageFetchError(
            "garbage", f"usage endpoint {host} sent a broken HTTP answer ({type(exc).__name__})"
        ) from None
    except ValueError:  # a URL urllib cannot use (bad port, bad IPv6 literal)
        raise UsageFetchError("network", "usage endpoint URL is not usable") from None


__all__ = [
    "FETCH_ERROR_KINDS",
    "LIMIT_KIND_FALLBACK",
    "MAX_BODY_BYTES",
    "NAMED_MODEL_WINDOWS",
    "OAUTH_BETA",
    "SOURCE",
    "USAGE_PATH",
    "SourceBusy",
    "TotalDeadline",
    "UsageFetchError",
    "UsageParseError",
    "bearer_request",
    "build_opener",
    "fetch_body",
    "fetch_oauth_usage",
    "is_loopback_host",
    "json_number",
    "parse_iso8601",
    "parse_oauth_usage",
    "parse_retry_after",
    "usage_request",
    "user_agent",
]
