"""The dashboard's web app: one page, a JSON API described by OpenAPI, two guarded actions.

FastAPI (on Starlette, with the pydantic models of `schema.py`) because it derives the OpenAPI
description from the very models the API returns, and gptme already brings it and uvicorn.

Guards, in the order a request meets them:
- the Host header must name this server (a page on another site that rebinds a DNS name to
  127.0.0.1 is refused);
- with `--token`, every request must carry it (the `Authorization: Bearer` header, or the
  cookie that `/?token=...` sets);
- a POST must be JSON, come from this origin (`Origin` / `Sec-Fetch-Site`), and carry the
  per-run action token in `X-Action-Token`; without `--allow-actions` there is no POST at all.
One manager serves every request, under one lock: the manager is not meant for threads, and
a snapshot takes milliseconds.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel

from ..accounting.ledger import parse_since
from ..redact import clean_external
from .schema import ActionResult, Snapshot, UsageReportModel
from .snapshot import Ledger, build_snapshot

if TYPE_CHECKING:
    from ..manager import SubscriptionManager

SNAPSHOT_MAX_AGE = 0.5
TOKEN_COOKIE = "gptme_subscription_dashboard"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_ASSETS = {
    "/": ("page.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}


@dataclass
class DashboardOptions:
    """How the server was started (the CLI's flags)."""

    allowed_hosts: frozenset[str]  # Host header values that name this server
    access_token: str | None = None  # --token: required on every request
    action_token: str | None = None  # --allow-actions: required on every POST
    ledger: Ledger | None = None
    usage_note: Callable[[], str | None] = field(default=lambda: None)


class SwitchRequest(BaseModel):
    slot: str


class Dashboard:
    """The shared state of one server: the manager, its lock, the last snapshot."""

    def __init__(self, m: SubscriptionManager, options: DashboardOptions) -> None:
        self.m = m
        self.options = options
        self.lock = threading.Lock()
        self._cached: tuple[float, Snapshot] | None = None

    def snapshot(self) -> Snapshot:
        with self.lock:
            cached = self._cached
            if cached is not None and 0 <= time.monotonic() - cached[0] < SNAPSHOT_MAX_AGE:
                return cached[1]
            snap = build_snapshot(
                self.m,
                ledger=self.options.ledger,
                usage_note=self.options.usage_note(),
                actions=self.options.action_token is not None,
            )
            self._cached = (time.monotonic(), snap)
            return snap

    def forget(self) -> None:
        with self.lock:
            self._cached = None


def create_app(m: SubscriptionManager, options: DashboardOptions) -> FastAPI:
    board = Dashboard(m, options)
    app = FastAPI(
        title="gptme-subscription dashboard",
        description="The fleet at a glance: accounts, sessions, events, usage (read-only "
        "unless started with --allow-actions). No token ever appears here: fingerprints only.",
        version="1",
        docs_url=None,  # the interactive docs load scripts from a CDN; the spec is enough
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.board = board

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        refusal = _refusal(request, options)
        if refusal is not None:
            return refusal
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/api/snapshot", response_model=Snapshot)
    def api_snapshot() -> Snapshot:
        """Everything the page shows, read once."""
        return board.snapshot()

    @app.get("/api/usage", response_model=UsageReportModel)
    def api_usage(since: str = "7d", by: str = "account") -> Any:
        """Requests, tokens and cost from the transcripts (as `gptme-subscription usage`)."""
        if options.ledger is None:
            return JSONResponse({"detail": "usage ledger unavailable"}, status_code=503)
        try:
            start = parse_since(since, time.time())
        except ValueError as exc:
            return JSONResponse({"detail": clean_external(str(exc))}, status_code=400)
        if by not in ("account", "session", "model", "day"):
            return JSONResponse({"detail": f"unknown grouping {by!r}"}, status_code=400)
        with board.lock:
            return options.ledger.report(since=start, by=by).to_dict()

    if options.action_token is not None:

        @app.post("/api/actions/switch", response_model=ActionResult)
        def api_switch(body: SwitchRequest) -> ActionResult:
            """Switch the live link to a slot, as `gptme-subscription switch` does (it waits
            for a turn boundary while a session is mid-turn)."""
            with board.lock:
                try:
                    outcome = m.switch_to(
                        body.slot, reason="switched from the dashboard", mode="manual"
                    )
                except Exception as exc:  # a bad slot name: one line, nothing changed
                    return ActionResult(ok=False, detail=clean_external(str(exc), 240))
            board.forget()
            return ActionResult(
                ok=outcome.status != "refused", detail=clean_external(outcome.detail, 240)
            )

        @app.post("/api/actions/heal", response_model=ActionResult)
        def api_heal() -> ActionResult:
            """Repair a drifted live link, as `gptme-subscription heal` does."""
            with board.lock:
                result = m.heal()
            board.forget()
            return ActionResult(ok=True, detail=clean_external(result.detail, 240))

    for path, (name, media) in _ASSETS.items():
        app.add_api_route(path, _asset(name, media), methods=["GET"], include_in_schema=False)
    return app


def _asset(name: str, media: str) -> Callable[[Request], Response]:
    body = resources.files(__package__).joinpath(name).read_bytes()

    def serve(request: Request) -> Response:
        return Response(body, media_type=media)

    return serve


def _refusal(request: Request, options: DashboardOptions) -> Response | None:
    """Why this request is refused, as a response; None lets it through."""
    host = request.headers.get("host", "")
    # With a token, a rebound DNS name gains nothing (the page elsewhere lacks the token);
    # without one, only the names of this very server are answered.
    if options.access_token is None and host not in options.allowed_hosts:
        return JSONResponse({"detail": "unknown Host header"}, status_code=421)
    if options.access_token is not None and not _has_access(request, options.access_token):
        if request.url.path == "/" and _same(
            request.query_params.get("token"), options.access_token
        ):
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(
                TOKEN_COOKIE, options.access_token, httponly=True, samesite="strict"
            )
            return response
        return JSONResponse({"detail": "the dashboard token is required"}, status_code=401)
    if request.method not in ("GET", "HEAD"):
        return _action_refusal(request, options)
    return None


def _action_refusal(request: Request, options: DashboardOptions) -> Response | None:
    if options.action_token is None:
        return JSONResponse({"detail": "read-only (start with --allow-actions)"}, status_code=405)
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    site = request.headers.get("sec-fetch-site")
    if (origin is not None and origin != own) or site not in (None, "same-origin", "none"):
        return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
    if not _same(request.headers.get("x-action-token"), options.action_token):
        return JSONResponse({"detail": "missing or wrong X-Action-Token"}, status_code=403)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return JSONResponse({"detail": "actions take application/json"}, status_code=415)
    return None


def _has_access(request: Request, token: str) -> bool:
    bearer = request.headers.get("authorization", "")
    given = bearer[7:] if bearer.lower().startswith("bearer ") else None
    return _same(given, token) or _same(request.cookies.get(TOKEN_COOKIE), token)


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
