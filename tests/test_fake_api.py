"""The fake Anthropic API: real loopback HTTP, per-token answers, faults, prompt shutdown."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from gptme_subscription_plugin.fake_api import (
    FakeAnthropicServer,
    FakeResponse,
    RecordedRequest,
    make_usage_doc,
)

TOKEN = "tok-alice"
OTHER = "tok-bob"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(
    srv: FakeAnthropicServer,
    path: str = "/api/oauth/usage",
    token: str | None = TOKEN,
    beta: bool = True,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if beta:
        headers["anthropic-beta"] = "oauth-2025-04-20"
    request = urllib.request.Request(srv.base_url + path, headers=headers)
    try:
        with NO_PROXY.open(request, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def raw_exchange(srv: FakeAnthropicServer, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_serves_usage_per_token(fake_server: FakeAnthropicServer) -> None:
    assert fake_server.base_url.startswith("http://127.0.0.1:") and fake_server.port > 0
    alice = make_usage_doc(time.time(), five_hour=12)
    fake_server.set_usage(TOKEN, alice)
    fake_server.set_usage(OTHER, {"five_hour": None})
    status, headers, body = get(fake_server)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == alice
    assert json.loads(get(fake_server, token=OTHER)[2]) == {"five_hour": None}

    alice["five_hour"] = None  # the table holds a copy; set_usage again to change it
    assert json.loads(get(fake_server)[2])["five_hour"] is not None
    fake_server.set_usage(TOKEN, alice)
    assert json.loads(get(fake_server)[2])["five_hour"] is None


def test_auth_failures_are_401_json(fake_server: FakeAnthropicServer) -> None:
    fake_server.set_usage(TOKEN, {})
    for kwargs in ({"token": "tok-unknown"}, {"token": None}, {"beta": False}):
        status, _, body = get(fake_server, **kwargs)
        assert status == 401
        assert json.loads(body)["error"]["type"] == "authentication_error"


def test_records_requests_per_token(fake_server: FakeAnthropicServer) -> None:
    fake_server.set_usage(TOKEN, {})
    get(fake_server)
    get(fake_server, path="/api/oauth/usage?x=1")
    get(fake_server, token=OTHER)
    assert fake_server.request_count(TOKEN) == 2
    assert fake_server.request_count(OTHER) == 1
    assert fake_server.request_count() == 3
    assert fake_server.request_count(TOKEN, path="/api/oauth/usage") == 2
    first = fake_server.requests(TOKEN)[0]
    assert (first.method, first.path, first.route) == (
        "GET",
        "/api/oauth/usage",
        "/api/oauth/usage",
    )
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert fake_server.requests(TOKEN)[1].route == "/api/oauth/usage"
    fake_server.reset_requests()
    assert fake_server.request_count() == 0


def test_fault_count_and_token_precedence(fake_server: FakeAnthropicServer) -> None:
    fake_server.set_usage(TOKEN, {})
    fake_server.set_usage(OTHER, {})
    fake_server.set_fault("500")
    fake_server.set_fault("429", token=TOKEN, count=2)
    assert [get(fake_server)[0] for _ in range(3)] == [429, 429, 500]
    assert get(fake_server, token=OTHER)[0] == 500
    fake_server.clear_fault()
    assert get(fake_server)[0] == 200
    fake_server.set_fault("503", token=OTHER)
    assert get(fake_server, token=OTHER)[0] == 503
    fake_server.clear_faults()
    assert get(fake_server, token=OTHER)[0] == 200


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(None, None), (120, "120"), (1.5, "1.5"), ("Wed, 21 Oct 2026 07:28:00 GMT", None)],
)
def test_429_retry_after(fake_server: FakeAnthropicServer, retry_after: Any, header: Any) -> None:
    fake_server.set_usage(TOKEN, {})
    fake_server.set_fault("429", retry_after=retry_after)
    status, headers, body = get(fake_server)
    assert status == 429 and json.loads(body)["error"]["type"] == "rate_limit_error"
    expected = retry_after if isinstance(retry_after, str) else header
    assert headers.get("Retry-After") == expected


def test_garbage_and_truncated(fake_server: FakeAnthropicServer) -> None:
    fake_server.set_usage(TOKEN, make_usage_doc(time.time()))
    fake_server.set_fault("garbage", count=1)
    status, _, body = get(fake_server)
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(body)

    fake_server.set_fault("truncated", count=1)
    raw = raw_exchange(
        fake_server,
        b"GET /api/oauth/usage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-alice\r\n"
        b"anthropic-beta: oauth-2025-04-20\r\n\r\n",
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    declared = int(lengths[0].split(b":")[1])
    assert declared > len(body) > 0


def test_unknown_route_and_extension(fake_server: FakeAnthropicServer) -> None:
    assert get(fake_server, path="/v1/messages")[0] == 404

    def messages(request: RecordedRequest) -> FakeResponse:
        return FakeResponse.json(200, {"echo": json.loads(request.body), "token": request.token})

    fake_server.add_route("POST", "/v1/messages", messages)
    request = urllib.request.Request(
        fake_server.base_url + "/v1/messages?beta=true",
        data=json.dumps({"model": "x"}).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with NO_PROXY.open(request, timeout=5) as resp:
        assert json.loads(resp.read()) == {"echo": {"model": "x"}, "token": TOKEN}
    assert fake_server.request_count(TOKEN, path="/v1/messages") == 2  # the 404 GET counts too
    assert [r.method for r in fake_server.requests(TOKEN)] == ["GET", "POST"]


def test_proxy_style_absolute_uri_is_routed(fake_server: FakeAnthropicServer) -> None:
    fake_server.set_usage(TOKEN, {"ok": 1})
    raw = raw_exchange(
        fake_server,
        b"GET http://api.example.invalid/api/oauth/usage HTTP/1.1\r\nHost: api.example.invalid\r\n"
        b"Authorization: Bearer tok-alice\r\nanthropic-beta: oauth-2025-04-20\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b'{"ok": 1}')


def test_bad_fault_arguments(fake_server: FakeAnthropicServer) -> None:
    with pytest.raises(ValueError):
        fake_server.set_fault("explode")
    with pytest.raises(ValueError):
        fake_server.set_fault("500", count=0)


def _server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fake-anthropic")]


def test_shutdown_is_prompt_with_a_hanging_request_and_leaves_no_threads() -> None:
    before = set(_server_threads())
    srv = FakeAnthropicServer().start()
    port = srv.port
    srv.set_usage(TOKEN, {})
    srv.set_fault("timeout")  # the handler sleeps 30 s unless told to stop
    outcome: list[object] = []

    def client() -> None:
        try:
            outcome.append(get(srv, timeout=20))
        except Exception as exc:  # the dropped connection surfaces as some error
            outcome.append(exc)

    idle = socket.create_connection(("127.0.0.1", port))  # a client that never speaks
    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 5
    while srv.request_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    srv.close()
    assert time.monotonic() - started < 2.0
    thread.join(5)
    idle.close()
    assert outcome and not thread.is_alive()
    assert set(_server_threads()) == before
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    srv.close()  # idempotent
