"""The dashboard's JSON shapes: what `/api/snapshot` answers and the OpenAPI description says.

Pydantic models (a dependency already) so FastAPI describes the API from the same classes the
server fills; nothing here holds a token, only fingerprints.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class Window(BaseModel):
    """One quota window of one account."""

    name: str = Field(description='"five_hour", "seven_day" or "model:<name>"')
    utilization: float = Field(description="fraction used, 0..1")
    resets_at: float | None = Field(description="unix time of the reset, if known")
    pace: float | None = Field(description="fraction of the window elapsed: even use is here")
    burn_per_hour: float | None = Field(
        description="utilization gained per hour over the last samples (five-hour and weekly)"
    )


class TokenTotals(BaseModel):
    """Requests, tokens and list-price cost over a span, from the transcripts."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_requests: int = 0
    last_at: float | None = None


class Account(BaseModel):
    name: str
    live: bool
    home: str = Field(description="link, profile or ambiguous (two homes)")
    plan: str | None = Field(description="subscription type and rate-limit tier")
    health: str = Field(description="valid, expiring, stale, rejected, needs login, two homes")
    fix: str | None = Field(description="what to do about the health, if anything")
    fingerprint: str | None = Field(description="short fingerprint of the refresh token")
    written_at: float | None = Field(description="when the credential file was last written")
    written_by: str | None = Field(description="who wrote it last, as far as events tell")
    expires_at: float | None
    pressure: float | None
    limited_until: float | None
    windows: list[Window]
    usage_observed_at: float | None
    usage_stale: bool
    today: TokenTotals
    week: TokenTotals
    sessions: int = Field(description="live sessions on this account now")
    history: list[tuple[float, float | None, float | None]] = Field(
        description="[time, five-hour, weekly] utilization samples of the past 7 days"
    )


class Session(BaseModel):
    session_id: str
    slot: str | None
    home: str
    state: str = Field(description="mid-turn or idle")
    since: float
    last_seen: float
    project: str | None = None
    model: str | None = None
    last_turns: list[TokenTotals] = Field(default_factory=list)


class Event(BaseModel):
    ts: float
    kind: str
    slot: str | None
    text: str = Field(description="one line, redacted and capped")


class Pending(BaseModel):
    slot: str
    reason: str | None
    since: float | None


class Snapshot(BaseModel):
    now: float
    live: str | None
    verdict: str = Field(description="green, yellow or red (as `capacity`)")
    verdict_reason: str
    pending: Pending | None
    drift: str | None
    accounts: list[Account]
    sessions: list[Session]
    events: list[Event]
    notes: list[str]
    usage_note: str | None = Field(description="why usage figures are missing or partial")
    actions: bool = Field(description="the server takes switch and heal actions")


class UsageRowModel(BaseModel):
    """One group of `usage`: an account, a session, a model or a day."""

    key: str
    requests: int
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    tokens: int
    cost_usd: float = Field(description="list-price cost of the priced requests")
    unpriced_requests: int = Field(description="requests of models with no price")
    last_at: float | None
    models: list[str]


class UsageReportModel(BaseModel):
    """What `/api/usage` and `gptme-subscription usage --json` answer."""

    since: float
    until: float | None
    by: str
    rows: list[UsageRowModel]
    total: UsageRowModel
    unknown_models: list[str]
    prices_as_of: str


class ActionResult(BaseModel):
    ok: bool
    detail: str
