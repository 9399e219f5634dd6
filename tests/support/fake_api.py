"""A fake Anthropic API on loopback, for the tests, the benchmarks and the end-to-end harness.

Test support, not product: the wheel does not ship it. It extends the package's `LoopbackAPI`
(the usage and profile endpoints `gptme-subscription demo` runs against) with everything only
the tests use. A real `ThreadingHTTPServer` on 127.0.0.1 with an ephemeral port, so clients
exercise their real HTTP code (sockets, timeouts, proxies, broken bodies) without the network
and without spending anything. It serves `GET /api/oauth/usage` per bearer token from a
mutable table, records every request, and can be told to misbehave (429, 500, slow, non-JSON,
truncated) for one token or for all. More endpoints plug in with `add_route`.

    with FakeAnthropicServer() as srv:
        srv.set_usage("tok-a", make_usage_doc(now=time.time(), five_hour=20))
        fetch_oauth_usage(srv.base_url, "tok-a", "a", timeout=2, now=time.time())

For the real Claude Code CLI (tests/e2e) it also answers what `claude -p` sends:

- `POST /v1/messages` (streaming SSE or plain JSON) from a script of replies: `end_turn(text)`
  or `bash(command)` (a `tool_use` of the Bash tool), or any `FakeResponse` such as a 429.
  `script_each_turn(bash("sleep 2"), end_turn("ok"))` answers every turn of every session the
  same way (the step is read from the conversation, so concurrent sessions do not interfere);
  `script_messages(...)` queues replies for the next requests (of one session, or of any);
  past the script, `default_reply` (an `end_turn`). Every call is kept as a `MessagesCall`
  (token, `x-claude-code-session-id`, JSON body, time, the reply given).
- Optional `anthropic-ratelimit-unified-*` response headers per token (`ratelimit_headers`).
- `POST /v1/oauth/token` (refresh-token grant, single use, as the real one), `GET
  /api/oauth/profile`, `POST /v1/messages/count_tokens`, `HEAD|GET /api/hello`.
- Accounts (`add_account("alice")`), as Anthropic keeps them: each account has one token
  family; the token endpoint rotates its access and refresh token; a refresh token used a
  second time is answered 400 `invalid_grant` and revokes the whole family (every token of it
  then gets 401 everywhere, as does an access token past its expiry, see `expire`); the
  profile and usage endpoints answer for the account that owns the bearer token, whichever
  generation it is. `owner_of(token)`,
  `is_current_refresh_token(token)`, `invalid_grants(name)` tell a test who holds what.
  `set_token_delay(s)` holds token answers back, so a refresh can be caught in flight.
- `CONNECT` (the server used as `HTTPS_PROXY`) is recorded and refused with 403: a trap that
  keeps a client's stray HTTPS traffic on loopback and shows where it tried to go.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler
from typing import Any

from gptme_subscription_plugin import loopback
from gptme_subscription_plugin.loopback import (
    OAUTH_BETA,
    PROFILE_PATH,
    USAGE_PATH,
    Fault,
    LoopbackAPI,
    RecordedRequest,
    Response,
    make_profile_doc,
)

from .usage import make_usage_doc

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
TOKEN_PATH = "/v1/oauth/token"
HELLO_PATH = "/api/hello"
NAMED_FAULTS = frozenset({"429", "500", "timeout", "garbage", "truncated"})
DEFAULT_HANG_S = 30.0

__all__ = [  # with the names of the package's LoopbackAPI the tests use from here
    "COUNT_TOKENS_PATH",
    "CREDENTIAL_SCOPES",
    "HELLO_PATH",
    "MESSAGES_PATH",
    "OAUTH_BETA",
    "PLANS",
    "PROFILE_PATH",
    "TOKEN_PATH",
    "USAGE_PATH",
    "FakeAccount",
    "FakeAnthropicServer",
    "FakeResponse",
    "InvalidGrant",
    "MessagesCall",
    "RecordedRequest",
    "Reply",
    "ScriptItem",
    "TokenRefresh",
    "api_error",
    "bash",
    "end_turn",
    "make_profile_doc",
    "make_usage_doc",
    "message_json",
    "message_sse",
    "ratelimit_headers",
    "tool_use",
    "turn_step",
]


@dataclass
class FakeResponse(Response):
    """A response that may misbehave: `declared_length` lies about Content-Length, `hang`
    delays it."""

    declared_length: int | None = None
    hang: float = 0.0

    @classmethod
    def of(cls, response: Response, **changes: Any) -> FakeResponse:
        """`response` as a FakeResponse (with `changes` applied)."""
        if isinstance(response, FakeResponse):
            return replace(response, **changes)
        return cls(response.status, response.body, dict(response.headers), **changes)


@dataclass
class _TimedFault(Fault):
    hang: float = DEFAULT_HANG_S


def api_error(status: int, error_type: str, message: str, **headers: str) -> FakeResponse:
    """An error in the API's JSON shape: {"type": "error", "error": {"type", "message"}}."""
    return FakeResponse.of(loopback.api_error(status, error_type, message, **headers))


@dataclass(frozen=True)
class Reply:
    """One scripted assistant message of POST /v1/messages.

    `text` becomes a text block; `tool` (with `tool_input`) a tool_use block after it, which
    makes the stop reason `tool_use` instead of `end_turn`. `delay` holds the answer back.
    """

    text: str = ""
    tool: str | None = None
    tool_input: Mapping[str, Any] = field(default_factory=dict)
    delay: float = 0.0

    @property
    def stop_reason(self) -> str:
        return "tool_use" if self.tool else "end_turn"


ScriptItem = Reply | Response


def end_turn(text: str = "Done.", delay: float = 0.0) -> Reply:
    """A final text answer: the turn ends."""
    return Reply(text=text, delay=delay)


def tool_use(name: str, tool_input: Mapping[str, Any], text: str = "") -> Reply:
    """A call of tool `name`; Claude Code runs it and sends the result in its next request."""
    return Reply(text=text, tool=name, tool_input=dict(tool_input))


def bash(command: str, description: str = "Run a command") -> Reply:
    """A call of Claude Code's Bash tool with `command` (e.g. "sleep 2")."""
    return tool_use("Bash", {"command": command, "description": description})


def _message_blocks(reply: Reply, id_suffix: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.text or not reply.tool:
        blocks.append({"type": "text", "text": reply.text})
    if reply.tool:
        blocks.append(
            {
                "type": "tool_use",
                "id": f"toolu_fake_{id_suffix}",
                "name": reply.tool,
                "input": dict(reply.tool_input),
            }
        )
    return blocks


def _usage(output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": 10,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def message_json(reply: Reply, model: str, id_suffix: str) -> dict[str, Any]:
    """The non-streaming answer: one `message` object."""
    return {
        "id": f"msg_fake_{id_suffix}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _message_blocks(reply, id_suffix),
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": _usage(5),
    }


def message_sse(reply: Reply, model: str, id_suffix: str) -> bytes:
    """The streaming answer as Anthropic SSE events, as the real API sends them.

    message_start, ping, per block content_block_start / _delta / _stop (text_delta or
    input_json_delta), message_delta with the stop reason, message_stop.
    """
    start = message_json(reply, model, id_suffix)
    blocks = start.pop("content")
    start.update(content=[], stop_reason=None, usage=_usage(1))
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "ping"},
    ]
    for index, block in enumerate(blocks):
        empty: dict[str, Any]
        if block["type"] == "text":
            empty = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            empty = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events += [
            {"type": "content_block_start", "index": index, "content_block": empty},
            {"type": "content_block_delta", "index": index, "delta": delta},
            {"type": "content_block_stop", "index": index},
        ]
    events += [
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": 5},
        },
        {"type": "message_stop"},
    ]
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


def turn_step(body: Mapping[str, Any]) -> int:
    """How many assistant messages the current turn already has (0 for its first request).

    The turn starts at the last user message that is a prompt: one carrying no tool_result
    (tool results come back as user messages too). Claude Code's inline `system` messages
    are ignored.
    """
    step = 0
    messages = body.get("messages")
    for message in reversed(messages if isinstance(messages, list) else []):
        if not isinstance(message, Mapping):
            continue
        role = message.get("role")
        if role == "assistant":
            step += 1
        elif role == "user" and not _has_tool_result(message.get("content")):
            break
    return step


def _has_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(block, Mapping) and block.get("type") == "tool_result" for block in content
    )


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@dataclass(frozen=True)
class MessagesCall:
    """One POST /v1/messages as answered: the request, its JSON body, and the reply given."""

    request: RecordedRequest
    body: dict[str, Any]
    step: int  # assistant messages already in the turn (0: the turn's first request)
    agent: bool  # it offered tools: the agent loop, not an auxiliary call (title, probe)
    reply: ScriptItem

    @property
    def token(self) -> str | None:
        return self.request.token

    @property
    def session_id(self) -> str | None:
        return self.request.session_id

    @property
    def received_at(self) -> float:
        return self.request.received_at

    @property
    def tool_names(self) -> list[str]:
        tools = self.body.get("tools")
        return [t.get("name", "") for t in tools if isinstance(t, Mapping)] if tools else []

    def mentions(self, needle: str) -> bool:
        """Whether any string in the body (system, messages, tool results) contains `needle`."""
        return any(needle in text for text in _strings(self.body))


@dataclass(frozen=True)
class TokenRefresh:
    """One refresh-token grant the token endpoint honored."""

    old_refresh_token: str
    access_token: str
    refresh_token: str
    expires_in: int
    received_at: float
    account: str | None = None  # the account whose family rotated (None: a legacy grant)


PLANS: dict[str, tuple[str, str, str]] = {
    # plan: (organization_type, rate_limit_tier, the credential's subscriptionType)
    "max": ("claude_max", "default_claude_max_20x", "max"),
    "max5": ("claude_max", "default_claude_max_5x", "max"),
    "pro": ("claude_pro", "default_claude_ai", "pro"),
}
CREDENTIAL_SCOPES = (
    "user:file_upload",
    "user:inference",
    "user:mcp_servers",
    "user:profile",
    "user:sessions:claude_code",
)


@dataclass(frozen=True)
class FakeAccount:
    """One Anthropic account: the identity the profile endpoint names for its tokens."""

    name: str
    email: str
    account_uuid: str
    organization_uuid: str
    plan: str = "max"

    @property
    def organization_type(self) -> str:
        return PLANS[self.plan][0]

    @property
    def rate_limit_tier(self) -> str:
        return PLANS[self.plan][1]

    @property
    def subscription_type(self) -> str:
        return PLANS[self.plan][2]

    def profile_doc(self) -> dict[str, Any]:
        """What GET /api/oauth/profile answers for any live token of this account."""
        return make_profile_doc(
            self.email,
            self.account_uuid,
            self.organization_uuid,
            self.organization_type,
            self.rate_limit_tier,
        )

    def oauth_account(self) -> dict[str, Any]:
        """`oauthAccount` as Claude Code's /login writes it into `~/.claude.json`."""
        return {
            "accountUuid": self.account_uuid,
            "emailAddress": self.email,
            "organizationUuid": self.organization_uuid,
            "organizationName": f"{self.email}'s Organization",
            "organizationRole": "admin",
            "workspaceRole": None,
            "displayName": self.name.capitalize(),
            "hasExtraUsageEnabled": False,
            "billingType": "stripe_subscription",
            "accountCreatedAt": "2026-01-01T00:00:00Z",
            "subscriptionCreatedAt": "2026-01-01T00:00:00Z",
        }


@dataclass
class _Family:
    """One account's token family: every pair it was issued, the newest last."""

    account: FakeAccount
    tag: str
    expires_in: int
    access_tokens: list[str] = field(default_factory=list)
    refresh_tokens: list[str] = field(default_factory=list)
    access_expiry: dict[str, float] = field(default_factory=dict)  # token -> Unix s
    revoked_at: float | None = None
    usage: bytes | None = None

    @property
    def current_access(self) -> str:
        return self.access_tokens[-1]

    @property
    def current_refresh(self) -> str:
        return self.refresh_tokens[-1]

    def issue(self, now: float) -> tuple[str, str]:
        """Mint the next pair (generation = how many pairs there are)."""
        gen = len(self.refresh_tokens) + 1
        pair = (
            f"sk-ant-oat01-{self.tag}-{self.account.name}-{gen}",
            f"sk-ant-ort01-{self.tag}-{self.account.name}-{gen}",
        )
        self.access_tokens.append(pair[0])
        self.refresh_tokens.append(pair[1])
        self.access_expiry[pair[0]] = now + self.expires_in
        return pair

    def refusal(self, token: str | None, now: float) -> FakeResponse | None:
        """The 401 a bearer token of this family gets (revoked, or an expired access token)."""
        if self.revoked_at is not None:
            return _revoked()
        if self.access_expiry.get(token or "", float("inf")) <= now:
            return api_error(401, "authentication_error", "OAuth token has expired.")
        return None


@dataclass(frozen=True)
class InvalidGrant:
    """One refresh the token endpoint refused with `invalid_grant`, and why."""

    account: str | None  # None: not a token of any account
    reason: str  # reused (this revoked the family) | revoked | unknown
    generation: int | None  # which of the account's refresh tokens was sent (1 = first)
    received_at: float


def ratelimit_headers(
    now: float,
    five_hour: float = 0.1,
    seven_day: float = 0.4,
    five_hour_resets_in: float = 3 * 3600.0,
    seven_day_resets_in: float = 3 * 86400.0,
    status: str = "allowed",
) -> dict[str, str]:
    """The `anthropic-ratelimit-unified-*` headers of a /v1/messages answer (0-1, Unix s)."""
    five_reset = int(now + five_hour_resets_in)
    week_reset = int(now + seven_day_resets_in)
    five_binds = five_hour >= seven_day
    claim, reset = ("five_hour", five_reset) if five_binds else ("seven_day", week_reset)
    return {
        "anthropic-ratelimit-unified-status": status,
        "anthropic-ratelimit-unified-reset": str(reset),
        "anthropic-ratelimit-unified-representative-claim": claim,
        "anthropic-ratelimit-unified-fallback": "available",
        "anthropic-ratelimit-unified-5h-status": status,
        "anthropic-ratelimit-unified-5h-utilization": f"{five_hour:g}",
        "anthropic-ratelimit-unified-5h-reset": str(five_reset),
        "anthropic-ratelimit-unified-7d-status": status,
        "anthropic-ratelimit-unified-7d-utilization": f"{seven_day:g}",
        "anthropic-ratelimit-unified-7d-reset": str(week_reset),
    }


class FakeAnthropicServer(LoopbackAPI):
    """Loopback stand-in for api.anthropic.com; a context manager that starts and stops it."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, require_beta: bool = True
    ) -> None:
        super().__init__(host, port, require_beta=require_beta)
        # /v1/messages
        self.default_reply: ScriptItem = end_turn()
        self._queue: deque[ScriptItem] = deque()
        self._session_queues: dict[str, deque[ScriptItem]] = {}
        self._each_turn: tuple[ScriptItem, ...] = ()
        self._calls: list[MessagesCall] = []
        self._ratelimit: dict[str | None, dict[str, str]] = {}
        self._ids = itertools.count(1)
        # OAuth
        self._grants: dict[str, tuple[str, str, int]] = {}
        self._spent: set[str] = set()
        self._refreshes: list[TokenRefresh] = []
        self._families: dict[str, _Family] = {}  # by account name
        self._family_of: dict[str, _Family] = {}  # by any token it ever issued
        self._invalid_grants: list[InvalidGrant] = []
        self._token_delay = 0.0
        self._in_flight = 0
        self.add_route("POST", MESSAGES_PATH, self._messages_route)
        self.add_route("POST", COUNT_TOKENS_PATH, self._count_tokens_route)
        self.add_route("POST", TOKEN_PATH, self._token_route)
        for method in ("GET", "HEAD"):
            self.add_route(method, HELLO_PATH, lambda _: FakeResponse.json(200, {}))

    # ------------------------------------------------------------ configuration

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
        if kind not in NAMED_FAULTS:
            self._check_fault_kind(kind)
        self._put_fault(token, _TimedFault(kind, retry_after, count, hang))

    def clear_fault(self, token: str | None = None) -> None:
        with self._lock:
            self._faults.pop(token, None)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def script_each_turn(self, *replies: ScriptItem) -> None:
        """Answer step k of every turn (of every session) with `replies[k]`.

        The step is the number of assistant messages since the turn's prompt, read from the
        request itself, so `script_each_turn(bash("echo hi"), end_turn("ok"))` gives each
        new conversation, and each later turn, one tool call and then a final answer.
        Steps past the end get `default_reply`. Queued replies (`script_messages`) go first.
        """
        with self._lock:
            self._each_turn = tuple(replies)

    def script_messages(self, *replies: ScriptItem, session_id: str | None = None) -> None:
        """Queue replies for the next agent requests, in order (of one session when given)."""
        with self._lock:
            if session_id is None:
                self._queue.extend(replies)
            else:
                self._session_queues.setdefault(session_id, deque()).extend(replies)

    def clear_script(self) -> None:
        with self._lock:
            self._queue.clear()
            self._session_queues.clear()
            self._each_turn = ()

    def set_ratelimit_headers(
        self, headers: Mapping[str, str] | None, token: str | None = None
    ) -> None:
        """Headers added to every /v1/messages answer for `token` (None: for any token).

        Build them with `ratelimit_headers(now, five_hour=0.3, ...)`; None removes them.
        """
        with self._lock:
            if headers is None:
                self._ratelimit.pop(token, None)
            else:
                self._ratelimit[token] = dict(headers)

    def add_refresh_grant(
        self,
        refresh_token: str,
        access_token: str,
        new_refresh_token: str,
        expires_in: int = 8 * 3600,
    ) -> None:
        """Make POST /v1/oauth/token trade `refresh_token` (once) for this new pair.

        A refresh token that was never granted gets a minted pair; one already spent gets
        400 invalid_grant, as the real endpoint does for a reused refresh token.
        """
        with self._lock:
            self._grants[refresh_token] = (access_token, new_refresh_token, expires_in)

    # ------------------------------------------------------------ accounts

    def add_account(
        self,
        name: str,
        email: str | None = None,
        *,
        plan: str = "max",
        account_uuid: str | None = None,
        organization_uuid: str | None = None,
        expires_in: int = 8 * 3600,
        tag: str = "fake",
    ) -> FakeAccount:
        """Register an account with a token family issued its first pair.

        Tokens read `sk-ant-oat01-<tag>-<name>-<generation>` (refresh: `ort01`). Once any
        account exists, the token endpoint refuses a refresh token nobody issued with
        `invalid_grant` instead of minting a pair for it (add_refresh_grant still works).
        """
        if plan not in PLANS:
            raise ValueError(f"unknown plan {plan!r} (one of {', '.join(PLANS)})")
        email = email or f"{name}@example.invalid"
        account = FakeAccount(
            name=name,
            email=email,
            account_uuid=account_uuid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"account:{email}")),
            organization_uuid=organization_uuid
            or str(uuid.uuid5(uuid.NAMESPACE_URL, f"org:{email}")),
            plan=plan,
        )
        family = _Family(account, tag, expires_in)
        with self._lock:
            if name in self._families:
                raise ValueError(f"account {name!r} already exists")
            self._families[name] = family
            for token in family.issue(time.time()):
                self._family_of[token] = family
        return account

    def account(self, name: str) -> FakeAccount:
        with self._lock:
            return self._family(name).account

    def accounts(self) -> list[FakeAccount]:
        with self._lock:
            return [f.account for f in self._families.values()]

    def current_tokens(self, name: str) -> tuple[str, str]:
        """The account's newest (access token, refresh token)."""
        with self._lock:
            family = self._family(name)
            return family.current_access, family.current_refresh

    def credential_doc(self, name: str, expires_at_ms: int | None = None) -> dict[str, Any]:
        """The credential file Claude Code writes for the account's newest pair.

        `expires_at_ms` defaults to when the server lets the access token expire (see
        `expire`); in the past, Claude Code refreshes before its first request.
        """
        with self._lock:
            family = self._family(name)
            access, refresh = family.current_access, family.current_refresh
            expires_at = family.access_expiry[access]
        account = family.account
        if expires_at_ms is None:
            expires_at_ms = int(expires_at * 1000)
        return {
            "claudeAiOauth": {
                "accessToken": access,
                "refreshToken": refresh,
                "expiresAt": expires_at_ms,
                "scopes": list(CREDENTIAL_SCOPES),
                "subscriptionType": account.subscription_type,
                "rateLimitTier": account.rate_limit_tier,
            }
        }

    def set_account_usage(self, name: str, doc: Any) -> None:
        """What GET /api/oauth/usage answers for every live token of the account."""
        body = json.dumps(doc).encode("utf-8")
        with self._lock:
            self._family(name).usage = body

    def expire(self, name: str, ago: float = 60.0) -> None:
        """Let the account's newest access token have expired `ago` s ago (a login of last
        night): the API answers it 401 and `credential_doc` dates it so; its refresh token is
        still good."""
        with self._lock:
            family = self._family(name)
            family.access_expiry[family.current_access] = time.time() - ago

    def revoke(self, name: str) -> None:
        """Revoke the account's family, as Anthropic does on a reused refresh token."""
        with self._lock:
            family = self._family(name)
            if family.revoked_at is None:
                family.revoked_at = time.time()

    def set_token_delay(self, seconds: float) -> None:
        """Hold every token-endpoint answer back `seconds` (the grant is decided first).

        While it waits the family has already rotated but the client has not written the new
        pair: the window in which a refresh is in flight (`refreshes_in_flight()`).
        """
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        with self._lock:
            self._token_delay = float(seconds)

    def _family(self, name: str) -> _Family:
        """Caller holds the lock."""
        try:
            return self._families[name]
        except KeyError:
            raise KeyError(f"no account {name!r}") from None

    # ------------------------------------------------------------ inspection

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()
            self._calls.clear()
            self._refreshes.clear()

    def messages_calls(
        self, token: str | None = None, session_id: str | None = None, *, agent: bool = True
    ) -> list[MessagesCall]:
        """POST /v1/messages calls so far, oldest first (agent-loop calls only by default)."""
        with self._lock:
            calls = list(self._calls)
        return [
            c
            for c in calls
            if (token is None or c.token == token)
            and (session_id is None or c.session_id == session_id)
            and (c.agent or not agent)
        ]

    def token_refreshes(self) -> list[TokenRefresh]:
        """Refresh-token grants honored so far, oldest first."""
        with self._lock:
            return list(self._refreshes)

    def owner_of(self, token: str | None) -> str | None:
        """The account that was issued this access or refresh token (None: nobody)."""
        with self._lock:
            family = self._family_of.get(token or "")
            return None if family is None else family.account.name

    def is_current_refresh_token(self, token: str | None) -> bool:
        """Whether `token` is the refresh token its family would honor now (unspent, live)."""
        with self._lock:
            family = self._family_of.get(token or "")
            return (
                family is not None and family.revoked_at is None and token == family.current_refresh
            )

    def is_revoked(self, name: str) -> bool:
        with self._lock:
            return self._family(name).revoked_at is not None

    def describe_token(self, token: str | None) -> str:
        """Whose token this is and what state it is in, for assertion messages."""
        with self._lock:
            family = self._family_of.get(token or "")
            if family is None:
                return "a token no account was issued"
            name = family.account.name
            kind = "refresh" if token in family.refresh_tokens else "access"
            tokens = family.refresh_tokens if kind == "refresh" else family.access_tokens
            gen, newest = tokens.index(token or "") + 1, len(tokens)
            if family.revoked_at is not None:
                state = "its family is revoked"
            elif gen == newest:
                state = "current"
            else:
                state = "spent" if kind == "refresh" else "superseded"
            return f"{name}'s {kind} token #{gen} of {newest} ({state})"

    def invalid_grants(self, name: str | None = None) -> int:
        """Refreshes refused with invalid_grant: of account `name`, or of anyone when None."""
        with self._lock:
            return sum(1 for g in self._invalid_grants if name is None or g.account == name)

    def invalid_grant_events(self) -> list[InvalidGrant]:
        with self._lock:
            return list(self._invalid_grants)

    def refreshes_in_flight(self) -> int:
        """Token requests decided but not yet answered (see set_token_delay)."""
        with self._lock:
            return self._in_flight

    def connect_attempts(self) -> list[str]:
        """`host:port` of every CONNECT (the server used as an HTTPS proxy), oldest first."""
        return [r.path for r in self.requests() if r.method == "CONNECT"]

    # ------------------------------------------------------------ serving

    def _route(self, request: RecordedRequest) -> Response:
        if request.method == "CONNECT":
            return api_error(403, "permission_error", "fake API: no tunnels, loopback only")
        return super()._route(request)

    def _fault_response(self, fault: Fault, request: RecordedRequest) -> Response:
        if fault.kind == "timeout":
            hang = fault.hang if isinstance(fault, _TimedFault) else DEFAULT_HANG_S
            return FakeResponse.of(self._route(request), hang=hang)
        if fault.kind == "garbage":
            body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            return FakeResponse(200, body, {"Content-Type": "text/html"})
        if fault.kind == "truncated":
            full = self._route(request)
            if len(full.body) < 2:
                full = FakeResponse.json(200, {"five_hour": {"utilization": 1, "resets_at": None}})
            return FakeResponse.of(
                full, body=full.body[: len(full.body) // 2], declared_length=len(full.body)
            )
        return super()._fault_response(fault, request)

    def _usage_route(self, request: RecordedRequest) -> Response:
        refused = self._refuse_oauth(request)
        if refused is not None:
            return refused
        with self._lock:
            family = self._family_of.get(request.token or "")
            body = self._usage.get(request.token or "")
            refusal = None if family is None else family.refusal(request.token, time.time())
            if body is None and family is not None:
                body = family.usage
        if refusal is not None:
            return refusal
        if body is None and family is not None:
            body = json.dumps(make_usage_doc(time.time())).encode("utf-8")
        if body is None:
            return api_error(401, "authentication_error", "Invalid bearer token")
        return FakeResponse(200, body, {"Content-Type": "application/json"})

    def _messages_route(self, request: RecordedRequest) -> Response:
        try:
            body = request.json()
        except ValueError:
            return api_error(400, "invalid_request_error", "body is not JSON")
        if not isinstance(body, dict):
            return api_error(400, "invalid_request_error", "body is not a JSON object")
        agent = bool(body.get("tools"))
        step = turn_step(body)
        with self._lock:
            family = self._family_of.get(request.token or "")
            refusal = None if family is None else family.refusal(request.token, time.time())
            reply: ScriptItem
            if refusal is not None:
                reply = refusal
            elif agent:
                reply = self._next_reply(request.session_id, step)
            else:
                reply = self.default_reply
            call = MessagesCall(request, body, step, agent, reply)
            self._calls.append(call)
            extra = self._ratelimit.get(request.token, self._ratelimit.get(None, {}))
            suffix = f"{next(self._ids):06d}"
        if isinstance(reply, Response):
            return reply
        model = str(body.get("model") or "claude-fake")
        headers = {"request-id": f"req_fake_{suffix}", **extra}
        if body.get("stream"):
            sse = message_sse(reply, model, suffix)
            headers["Content-Type"] = "text/event-stream; charset=utf-8"
            headers["Cache-Control"] = "no-cache"
            return FakeResponse(200, sse, headers, hang=reply.delay)
        doc = message_json(reply, model, suffix)
        return replace(FakeResponse.json(200, doc, **headers), hang=reply.delay)

    def _next_reply(self, session_id: str | None, step: int) -> ScriptItem:
        """Caller holds the lock: session queue, then global queue, then the turn script."""
        queue = self._session_queues.get(session_id or "")
        if queue:
            return queue.popleft()
        if self._queue:
            return self._queue.popleft()
        if step < len(self._each_turn):
            return self._each_turn[step]
        return self.default_reply

    def _count_tokens_route(self, request: RecordedRequest) -> FakeResponse:
        return FakeResponse.json(200, {"input_tokens": max(1, len(request.body) // 4)})

    def _profile_route(self, request: RecordedRequest) -> FakeResponse:
        if request.token is None:
            return api_error(401, "authentication_error", "missing bearer token")
        with self._lock:
            family = self._family_of.get(request.token or "")
            refusal = None if family is None else family.refusal(request.token, time.time())
            doc = self._profiles.get(request.token)
        if refusal is not None:
            return refusal
        if doc is None and family is not None:
            doc = family.account.profile_doc()
        if doc is None:
            digest = uuid.uuid5(uuid.NAMESPACE_URL, request.token).hex[:8]
            doc = make_profile_doc(f"user-{digest}@example.invalid")
        return FakeResponse.json(200, doc)

    def _token_route(self, request: RecordedRequest) -> FakeResponse:
        try:
            form = request.json()
        except ValueError:
            form = None
        if not isinstance(form, dict) or form.get("grant_type") != "refresh_token":
            return FakeResponse.json(400, {"error": "unsupported_grant_type"})
        old = form.get("refresh_token")
        if not isinstance(old, str) or not old:
            return FakeResponse.json(400, {"error": "invalid_request"})
        scope = form.get("scope") or "user:inference user:profile user:sessions:claude_code"
        with self._lock:
            response = self._grant(old, scope, request.received_at)
            delay = self._token_delay
            self._in_flight += 1
        try:
            if delay > 0:
                self._stopping.wait(delay)
        finally:
            with self._lock:
                self._in_flight -= 1
        return response

    def _grant(self, old: str, scope: str, received_at: float) -> FakeResponse:
        """Caller holds the lock: decide a refresh-token grant, account families first."""
        family = self._family_of.get(old)
        if family is not None and old in family.refresh_tokens:
            return self._grant_in_family(family, old, scope, received_at)
        if old in self._spent:
            self._invalid_grants.append(InvalidGrant(None, "reused", None, received_at))
            return _invalid_grant("refresh token reused")
        if old not in self._grants and self._families:
            self._invalid_grants.append(InvalidGrant(None, "unknown", None, received_at))
            return _invalid_grant("refresh token not found")
        self._spent.add(old)
        n = next(self._ids)
        access, new_refresh, expires_in = self._grants.pop(
            old, (f"sk-ant-oat01-fake-minted-{n}", f"sk-ant-ort01-fake-minted-{n}", 8 * 3600)
        )
        self._refreshes.append(TokenRefresh(old, access, new_refresh, expires_in, received_at))
        return _token_answer(access, new_refresh, expires_in, scope)

    def _grant_in_family(
        self, family: _Family, old: str, scope: str, received_at: float
    ) -> FakeResponse:
        """Caller holds the lock: rotate the pair, or refuse and revoke on a reuse."""
        name = family.account.name
        generation = family.refresh_tokens.index(old) + 1
        if family.revoked_at is not None:
            self._invalid_grants.append(InvalidGrant(name, "revoked", generation, received_at))
            return _invalid_grant("refresh token revoked")
        if old != family.current_refresh:
            # a spent refresh token came back: someone holds a copy; revoke the whole family
            family.revoked_at = received_at
            self._invalid_grants.append(InvalidGrant(name, "reused", generation, received_at))
            return _invalid_grant("refresh token reused; token family revoked")
        access, new_refresh = family.issue(received_at)
        self._family_of[access] = self._family_of[new_refresh] = family
        self._refreshes.append(
            TokenRefresh(old, access, new_refresh, family.expires_in, received_at, name)
        )
        return _token_answer(access, new_refresh, family.expires_in, scope, family.account)

    def _send(self, handler: BaseHTTPRequestHandler, response: Response) -> None:
        if not isinstance(response, FakeResponse):
            return super()._send(handler, response)
        if response.hang > 0 and self._stopping.wait(response.hang):
            handler.close_connection = True
            return None  # shutting down: drop the connection without an answer
        length = (
            len(response.body) if response.declared_length is None else response.declared_length
        )
        return self._write(handler, response, length)


def _revoked() -> FakeResponse:
    return api_error(401, "authentication_error", "OAuth token has been revoked.")


def _invalid_grant(description: str) -> FakeResponse:
    return FakeResponse.json(400, {"error": "invalid_grant", "error_description": description})


def _token_answer(
    access: str,
    refresh: str,
    expires_in: int,
    scope: str,
    account: FakeAccount | None = None,
) -> FakeResponse:
    """A token-endpoint answer; with the account and organization as the real one sends."""
    doc: dict[str, Any] = {
        "token_type": "Bearer",
        "access_token": access,
        "refresh_token": refresh,
        "expires_in": expires_in,
        "scope": scope,
    }
    if account is not None:
        doc["account"] = {"uuid": account.account_uuid, "email_address": account.email}
        doc["organization"] = {"uuid": account.organization_uuid}
    return FakeResponse.json(200, doc)
