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

from .support.fake_api import (
    FakeAnthropicServer,
    FakeResponse,
    RecordedRequest,
    api_error,
    bash,
    end_turn,
    make_profile_doc,
    make_usage_doc,
    ratelimit_headers,
    tool_use,
    turn_step,
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


# ---------------------------------------------------------------- /v1/messages and friends

SESSION = "3f0c2a52-0000-4000-8000-000000000001"


def post(
    srv: FakeAnthropicServer,
    path: str,
    doc: Any,
    token: str | None = TOKEN,
    session_id: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "anthropic-beta": "oauth-2025-04-20"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if session_id:
        headers["X-Claude-Code-Session-Id"] = session_id
    request = urllib.request.Request(
        srv.base_url + path, data=json.dumps(doc).encode(), headers=headers, method="POST"
    )
    try:
        with NO_PROXY.open(request, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def conversation(*assistant_turns: int, prompt: str = "hi") -> dict[str, Any]:
    """A Claude Code-like body: a prompt, then per number n, n tool round trips."""
    messages: list[dict[str, Any]] = []
    for rounds in assistant_turns or (0,):
        messages.append({"role": "user", "content": [{"type": "text", "text": prompt}]})
        messages.append({"role": "system", "content": "# Environment"})
        for i in range(rounds):
            messages.append(
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": f"t{i}", "name": "Bash", "input": {}}],
                }
            )
            messages.append(
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": f"t{i}", "content": "ok"},
                        {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                    ],
                }
            )
    return {
        "model": "claude-test",
        "stream": True,
        "messages": messages,
        "tools": [{"name": "Bash"}, {"name": "Read"}],
    }


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for chunk in raw.decode().split("\n\n"):
        if not chunk.strip():
            continue
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        data = json.loads(lines["data"])
        assert data["type"] == lines["event"]
        events.append((lines["event"], data))
    return events


def assemble(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Rebuild the message the way an SDK client does from the stream."""
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    for name, data in events:
        if name == "message_start":
            message = data["message"]
        elif name == "content_block_start":
            message["content"].append(data["content_block"])
        elif name == "content_block_delta":
            delta, block = data["delta"], message["content"][data["index"]]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "content_block_stop" and data["index"] in partial:
            message["content"][data["index"]]["input"] = json.loads(partial[data["index"]])
        elif name == "message_delta":
            message["stop_reason"] = data["delta"]["stop_reason"]
    return message


def test_turn_step_counts_assistant_messages_since_the_prompt() -> None:
    assert turn_step(conversation()) == 0
    assert turn_step(conversation(1)) == 1
    assert turn_step(conversation(3)) == 3
    assert turn_step(conversation(2, 0)) == 0  # a second turn starts over
    assert turn_step(conversation(2, 1)) == 1
    string_prompt = {"messages": [{"role": "user", "content": "hi"}]}
    assert turn_step(string_prompt) == 0
    assert turn_step({}) == 0 and turn_step({"messages": "junk"}) == 0
    assert turn_step({"messages": [None, 3, {"role": "assistant"}]}) == 1


def test_messages_stream_is_well_formed_sse(fake_server: FakeAnthropicServer) -> None:
    fake_server.script_messages(tool_use("Bash", {"command": "echo hi"}, text="Running."))
    status, headers, raw = post(fake_server, "/v1/messages?beta=true", conversation())
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = parse_sse(raw)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == [
        "message_delta",
        "message_stop",
    ]
    assert names.count("content_block_start") == names.count("content_block_stop") == 2
    message = assemble(events)
    assert message["role"] == "assistant" and message["model"] == "claude-test"
    assert message["stop_reason"] == "tool_use"
    text, call = message["content"]
    assert text == {"type": "text", "text": "Running."}
    assert call["type"] == "tool_use" and call["name"] == "Bash"
    assert call["input"] == {"command": "echo hi"} and call["id"].startswith("toolu_")

    status, _, raw = post(fake_server, "/v1/messages", conversation(1))
    message = assemble(parse_sse(raw))
    assert message["stop_reason"] == "end_turn"
    assert message["content"] == [{"type": "text", "text": "Done."}]  # the default reply


def test_messages_non_streaming_answer_is_one_message(fake_server: FakeAnthropicServer) -> None:
    fake_server.script_messages(bash("ls", description="list"))
    body = {**conversation(), "stream": False}
    status, headers, raw = post(fake_server, "/v1/messages", body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    message = json.loads(raw)
    assert message["type"] == "message" and message["stop_reason"] == "tool_use"
    (call,) = message["content"]
    assert call["input"] == {"command": "ls", "description": "list"}


def test_each_turn_script_follows_the_conversation(fake_server: FakeAnthropicServer) -> None:
    fake_server.script_each_turn(bash("sleep 2"), bash("echo hi"), end_turn("ok"))
    fake_server.default_reply = end_turn("past the script")

    def reply(body: dict[str, Any]) -> dict[str, Any]:
        return assemble(parse_sse(post(fake_server, "/v1/messages", body)[2]))

    # Any order, any session: the step comes from the conversation itself.
    assert reply(conversation(1))["content"][0]["input"]["command"] == "echo hi"
    assert reply(conversation())["content"][0]["input"]["command"] == "sleep 2"
    assert reply(conversation(2))["content"][0]["text"] == "ok"
    assert reply(conversation(3))["content"][0]["text"] == "past the script"
    assert reply(conversation(5, 0))["content"][0]["input"]["command"] == "sleep 2"
    assert [c.step for c in fake_server.messages_calls()] == [1, 0, 2, 3, 0]

    fake_server.clear_script()
    assert reply(conversation())["content"][0]["text"] == "past the script"


def test_queued_replies_go_first_per_session_then_global(fake_server: FakeAnthropicServer) -> None:
    fake_server.script_each_turn(end_turn("turn"))
    fake_server.script_messages(end_turn("global-1"), end_turn("global-2"))
    fake_server.script_messages(end_turn("mine"), session_id=SESSION)

    def text(session_id: str | None = None) -> str:
        raw = post(fake_server, "/v1/messages", conversation(), session_id=session_id)[2]
        return str(assemble(parse_sse(raw))["content"][0]["text"])

    assert text() == "global-1"
    assert text(SESSION) == "mine"
    assert text(SESSION) == "global-2"
    assert text() == "turn"
    assert [c.session_id for c in fake_server.messages_calls()] == [None, SESSION, SESSION, None]
    assert len(fake_server.messages_calls(session_id=SESSION)) == 2


def test_calls_without_tools_are_auxiliary_and_get_the_default(
    fake_server: FakeAnthropicServer,
) -> None:
    fake_server.script_messages(bash("echo never"))
    body = {**conversation(), "tools": []}
    message = assemble(parse_sse(post(fake_server, "/v1/messages", body)[2]))
    assert message["stop_reason"] == "end_turn"
    assert fake_server.messages_calls() == []  # agent calls only, by default
    (aux,) = fake_server.messages_calls(agent=False)
    assert not aux.agent and aux.tool_names == []
    assert post(fake_server, "/v1/messages", conversation())[0] == 200
    assert fake_server.messages_calls()[0].reply == bash("echo never")  # still queued


def test_messages_calls_record_token_session_body_and_time(
    fake_server: FakeAnthropicServer,
) -> None:
    before = time.time()
    post(fake_server, "/v1/messages?beta=true", conversation(prompt="MARKER-1"), session_id=SESSION)
    post(fake_server, "/v1/messages", conversation(1), token=OTHER)
    first, second = fake_server.messages_calls()
    assert (first.token, first.session_id, first.step) == (TOKEN, SESSION, 0)
    assert (second.token, second.session_id, second.step) == (OTHER, None, 1)
    assert before <= first.received_at <= second.received_at <= time.time()
    assert first.body["messages"][0]["content"][0]["text"] == "MARKER-1"
    assert first.mentions("MARKER-1") and not first.mentions("MARKER-2")
    assert first.tool_names == ["Bash", "Read"]
    assert first.request.session_id == SESSION and first.request.json() == first.body
    assert [c.token for c in fake_server.messages_calls(token=OTHER)] == [OTHER]
    fake_server.reset_requests()
    assert fake_server.messages_calls(agent=False) == []


def test_scripted_error_and_bad_bodies(fake_server: FakeAnthropicServer) -> None:
    limit = ratelimit_headers(1_000_000.0, five_hour=1.0, status="rejected")
    fake_server.script_messages(api_error(429, "rate_limit_error", "limited", **limit))
    status, headers, body = post(fake_server, "/v1/messages", conversation())
    assert status == 429 and json.loads(body)["error"]["type"] == "rate_limit_error"
    assert headers["anthropic-ratelimit-unified-status"] == "rejected"
    assert post(fake_server, "/v1/messages", conversation())[0] == 200

    for raw in (b"not json", b"[1, 2]"):
        request = urllib.request.Request(
            fake_server.base_url + "/v1/messages", data=raw, method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            NO_PROXY.open(request, timeout=5)
        with err.value as exc:
            assert exc.code == 400


def test_ratelimit_headers_per_token(fake_server: FakeAnthropicServer) -> None:
    now = 1_800_000_000.0
    everyone = ratelimit_headers(now, five_hour=0.25, seven_day=0.5)
    assert everyone["anthropic-ratelimit-unified-5h-utilization"] == "0.25"
    assert everyone["anthropic-ratelimit-unified-5h-reset"] == str(int(now + 3 * 3600))
    assert everyone["anthropic-ratelimit-unified-7d-reset"] == str(int(now + 3 * 86400))
    assert everyone["anthropic-ratelimit-unified-representative-claim"] == "seven_day"
    fake_server.set_ratelimit_headers(everyone)
    fake_server.set_ratelimit_headers(ratelimit_headers(now, five_hour=0.9), token=OTHER)

    def util(token: str) -> str | None:
        headers = post(fake_server, "/v1/messages", conversation(), token=token)[1]
        return headers.get("anthropic-ratelimit-unified-5h-utilization")

    assert util(TOKEN) == "0.25" and util(OTHER) == "0.9"
    fake_server.set_ratelimit_headers(None, token=OTHER)
    assert util(OTHER) == "0.25"
    fake_server.set_ratelimit_headers(None)
    assert util(TOKEN) is None


def test_reply_delay_holds_the_answer(fake_server: FakeAnthropicServer) -> None:
    fake_server.script_messages(end_turn("slow", delay=0.3))
    started = time.monotonic()
    assert post(fake_server, "/v1/messages", conversation())[0] == 200
    assert time.monotonic() - started >= 0.3


def test_refresh_grants_are_single_use(fake_server: FakeAnthropicServer) -> None:
    fake_server.add_refresh_grant("rt-1", "at-2", "rt-2", expires_in=600)
    grant = {"grant_type": "refresh_token", "refresh_token": "rt-1", "client_id": "x"}
    status, _, body = post(fake_server, "/v1/oauth/token", grant, token=None)
    doc = json.loads(body)
    assert status == 200
    assert (doc["access_token"], doc["refresh_token"], doc["expires_in"]) == ("at-2", "rt-2", 600)
    status, _, body = post(fake_server, "/v1/oauth/token", grant, token=None)
    assert status == 400 and json.loads(body)["error"] == "invalid_grant"  # reused

    minted = {"grant_type": "refresh_token", "refresh_token": "rt-unknown"}
    doc = json.loads(post(fake_server, "/v1/oauth/token", minted, token=None)[2])
    assert doc["access_token"] != doc["refresh_token"] and doc["refresh_token"] != "rt-unknown"
    refreshes = fake_server.token_refreshes()
    assert [(r.old_refresh_token, r.refresh_token) for r in refreshes] == [
        ("rt-1", "rt-2"),
        ("rt-unknown", doc["refresh_token"]),
    ]
    assert post(fake_server, "/v1/oauth/token", {"grant_type": "password"}, token=None)[0] == 400
    assert (
        post(fake_server, "/v1/oauth/token", {"grant_type": "refresh_token"}, token=None)[0] == 400
    )


def test_profile_and_startup_endpoints(fake_server: FakeAnthropicServer) -> None:
    alice = make_profile_doc("alice@example.invalid")
    assert alice["account"]["uuid"] == make_profile_doc("alice@example.invalid")["account"]["uuid"]
    fake_server.set_profile(TOKEN, alice)
    assert json.loads(get(fake_server, "/api/oauth/profile")[2]) == alice
    other = json.loads(get(fake_server, "/api/oauth/profile", token=OTHER)[2])
    assert other["account"]["email"].endswith("@example.invalid")
    assert other["account"]["uuid"] != alice["account"]["uuid"]
    assert get(fake_server, "/api/oauth/profile", token=None)[0] == 401
    assert get(fake_server, "/api/hello")[0] == 200
    status, _, body = post(fake_server, "/v1/messages/count_tokens", conversation())
    assert status == 200 and json.loads(body)["input_tokens"] > 0


def test_connect_is_refused_and_recorded(fake_server: FakeAnthropicServer) -> None:
    raw = raw_exchange(
        fake_server,
        b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 403")
    assert fake_server.connect_attempts() == ["api.anthropic.com:443"]
    assert fake_server.requests()[0].route == "api.anthropic.com:443"


# ---------------------------------------------------------------- accounts and token families


def refresh(srv: FakeAnthropicServer, refresh_token: str) -> tuple[int, dict[str, Any]]:
    grant = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "x"}
    status, _, body = post(srv, "/v1/oauth/token", grant, token=None)
    return status, json.loads(body)


def test_an_account_family_rotates_and_every_generation_answers_as_its_account(
    fake_server: FakeAnthropicServer,
) -> None:
    alice = fake_server.add_account("alice", plan="pro")
    bob = fake_server.add_account("bob")
    access_1, refresh_1 = fake_server.current_tokens("alice")
    assert (access_1, refresh_1) == ("sk-ant-oat01-fake-alice-1", "sk-ant-ort01-fake-alice-1")
    fake_server.set_account_usage("alice", make_usage_doc(time.time(), five_hour=42))

    status, doc = refresh(fake_server, refresh_1)

    assert status == 200
    access_2, refresh_2 = doc["access_token"], doc["refresh_token"]
    assert (access_2, refresh_2) == fake_server.current_tokens("alice")
    assert {access_2, refresh_2}.isdisjoint({access_1, refresh_1})
    assert doc["account"] == {"uuid": alice.account_uuid, "email_address": alice.email}
    assert doc["organization"] == {"uuid": alice.organization_uuid}
    assert doc["expires_in"] == 8 * 3600
    assert {fake_server.owner_of(t) for t in (access_1, refresh_1, access_2, refresh_2)} == {
        "alice"
    }
    assert fake_server.owner_of(fake_server.current_tokens("bob")[1]) == "bob"
    assert fake_server.owner_of("sk-ant-ort01-nobody") is None
    assert fake_server.is_current_refresh_token(refresh_2)
    assert not fake_server.is_current_refresh_token(refresh_1)
    assert fake_server.describe_token(refresh_1) == "alice's refresh token #1 of 2 (spent)"
    assert fake_server.describe_token(refresh_2) == "alice's refresh token #2 of 2 (current)"
    (rotation,) = fake_server.token_refreshes()
    assert (rotation.account, rotation.old_refresh_token) == ("alice", refresh_1)
    # profile and usage follow the account, whichever generation the bearer token is
    for token in (access_1, access_2):
        profile = json.loads(get(fake_server, "/api/oauth/profile", token=token)[2])
        assert profile["account"]["uuid"] == alice.account_uuid
        assert profile["account"]["email_address"] == "alice@example.invalid"
        assert profile["organization"]["uuid"] == alice.organization_uuid
        assert profile["organization"]["organization_type"] == "claude_pro"
        usage = json.loads(get(fake_server, token=token)[2])
        assert usage["five_hour"]["utilization"] == 42
    bob_profile = json.loads(
        get(fake_server, "/api/oauth/profile", token=bob_access(fake_server))[2]
    )
    assert bob_profile["account"]["uuid"] == bob.account_uuid != alice.account_uuid
    assert fake_server.invalid_grants() == 0


def bob_access(srv: FakeAnthropicServer) -> str:
    return srv.current_tokens("bob")[0]


def test_a_reused_refresh_token_revokes_the_whole_family(
    fake_server: FakeAnthropicServer,
) -> None:
    fake_server.add_account("alice")
    fake_server.add_account("bob")
    access_1, refresh_1 = fake_server.current_tokens("alice")
    status, doc = refresh(fake_server, refresh_1)
    assert status == 200
    access_2, refresh_2 = doc["access_token"], doc["refresh_token"]

    status, doc = refresh(fake_server, refresh_1)  # a stale copy of the spent token

    assert status == 400 and doc["error"] == "invalid_grant"
    assert fake_server.is_revoked("alice") and not fake_server.is_revoked("bob")
    assert not fake_server.is_current_refresh_token(refresh_2)
    status, doc = refresh(fake_server, refresh_2)  # even the newest one is dead now
    assert status == 400 and doc["error"] == "invalid_grant"
    for token in (access_1, access_2):
        assert get(fake_server, token=token)[0] == 401
        assert get(fake_server, "/api/oauth/profile", token=token)[0] == 401
        assert post(fake_server, "/v1/messages", conversation(), token=token)[0] == 401
    assert "revoked" in fake_server.describe_token(refresh_2)
    reasons = [(g.account, g.reason, g.generation) for g in fake_server.invalid_grant_events()]
    assert reasons == [("alice", "reused", 1), ("alice", "revoked", 2)]
    assert fake_server.invalid_grants("alice") == 2 and fake_server.invalid_grants("bob") == 0
    # bob's family is untouched
    assert (
        post(fake_server, "/v1/messages", conversation(), token=bob_access(fake_server))[0] == 200
    )
    assert refresh(fake_server, fake_server.current_tokens("bob")[1])[0] == 200


def test_with_accounts_an_unknown_refresh_token_is_invalid_grant(
    fake_server: FakeAnthropicServer,
) -> None:
    fake_server.add_account("alice")
    fake_server.add_refresh_grant("rt-legacy", "at-legacy-2", "rt-legacy-2")

    status, doc = refresh(fake_server, "sk-ant-ort01-made-up")
    assert status == 400 and doc["error"] == "invalid_grant"
    status, doc = refresh(fake_server, fake_server.current_tokens("alice")[0])  # an access token
    assert status == 400 and doc["error"] == "invalid_grant"
    assert [g.reason for g in fake_server.invalid_grant_events()] == ["unknown", "unknown"]
    assert fake_server.invalid_grants() == 2 and fake_server.invalid_grants("alice") == 0
    assert not fake_server.is_revoked("alice")
    assert refresh(fake_server, "rt-legacy")[1]["refresh_token"] == "rt-legacy-2"  # still works


def test_a_slow_token_endpoint_has_rotated_while_the_answer_is_in_flight(
    fake_server: FakeAnthropicServer,
) -> None:
    fake_server.add_account("alice")
    _, refresh_1 = fake_server.current_tokens("alice")
    fake_server.set_token_delay(1.0)
    answer: list[tuple[int, dict[str, Any]]] = []
    started = time.monotonic()
    client = threading.Thread(target=lambda: answer.append(refresh(fake_server, refresh_1)))
    client.start()
    deadline = time.monotonic() + 5
    while fake_server.refreshes_in_flight() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    assert fake_server.refreshes_in_flight() == 1 and not answer
    assert not fake_server.is_current_refresh_token(refresh_1)  # decided, not yet told
    client.join(5)
    assert answer[0][0] == 200 and time.monotonic() - started >= 1.0
    assert fake_server.is_current_refresh_token(answer[0][1]["refresh_token"])
    assert fake_server.refreshes_in_flight() == 0
    with pytest.raises(ValueError):
        fake_server.set_token_delay(-1)


def test_account_credential_doc_and_bad_account_arguments(
    fake_server: FakeAnthropicServer,
) -> None:
    alice = fake_server.add_account("alice", "a@example.invalid", plan="max5", tag="e2e")
    oauth = fake_server.credential_doc("alice", expires_at_ms=123)["claudeAiOauth"]
    assert oauth["accessToken"] == "sk-ant-oat01-e2e-alice-1"
    assert oauth["refreshToken"] == "sk-ant-ort01-e2e-alice-1"
    assert oauth["expiresAt"] == 123
    assert (oauth["subscriptionType"], oauth["rateLimitTier"]) == ("max", "default_claude_max_5x")
    later = fake_server.credential_doc("alice")["claudeAiOauth"]["expiresAt"]
    assert later > (time.time() + 7 * 3600) * 1000
    assert alice.oauth_account()["accountUuid"] == alice.account_uuid
    assert alice.oauth_account()["emailAddress"] == "a@example.invalid"
    assert fake_server.account("alice") == alice and fake_server.accounts() == [alice]
    with pytest.raises(ValueError):
        fake_server.add_account("alice")
    with pytest.raises(ValueError):
        fake_server.add_account("zed", plan="ultra")
    with pytest.raises(KeyError):
        fake_server.current_tokens("zed")


def test_an_expired_access_token_is_refused_until_the_family_refreshes(
    fake_server: FakeAnthropicServer,
) -> None:
    fake_server.add_account("alice")
    fake_server.expire("alice")
    access_1, refresh_1 = fake_server.current_tokens("alice")
    expires_at = fake_server.credential_doc("alice")["claudeAiOauth"]["expiresAt"]
    assert expires_at < time.time() * 1000  # the file says so too: Claude Code will refresh

    for path in ("/api/oauth/usage", "/api/oauth/profile"):
        status, _, body = get(fake_server, path, token=access_1)
        assert status == 401 and "expired" in json.loads(body)["error"]["message"]
    assert post(fake_server, "/v1/messages", conversation(), token=access_1)[0] == 401
    status, doc = refresh(fake_server, refresh_1)

    assert status == 200 and get(fake_server, token=doc["access_token"])[0] == 200
    assert fake_server.invalid_grants() == 0 and not fake_server.is_revoked("alice")
