"""The simulator's ground truth: what Anthropic counts for each account, and what its usage
endpoint answers about it.

`Account` holds one account's windows (5-hour, weekly, per-model weekly), its broken-at time and
its live access token's expiry; the policy never sees it. The usage endpoint's documents are
built from it (`endpoint_document`) in the shape production's parser reads.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ..usage.snapshot import FIVE_HOUR, SEVEN_DAY
from .fleet import FleetAccount
from .model import FIVE_HOURS, HOUR, WEEK

TOKEN_LIFETIME = 8 * HOUR  # Claude Code's OAuth access tokens (reference: ~8 h)
REFRESH_BUFFER = 300.0  # Claude Code refreshes when a token expires within 5 minutes
ENDPOINT_RETRY_AFTER = 3600.0  # the usage endpoint's Retry-After when it rate-limits


class Account:
    """Ground truth of one account (never shown to the policy)."""

    __slots__ = (
        "spec",
        "name",
        "c5",
        "c7",
        "caps",
        "week_end",
        "week_used",
        "week_useful",
        "model_used",
        "five_until",
        "five_used",
        "broken_at",
        "token_exp",
        "closed",
    )

    def __init__(self, spec: FleetAccount):
        self.spec = spec
        self.name = spec.name
        self.c5 = spec.five_hour_cap
        self.c7 = spec.weekly_cap
        self.caps = dict(spec.model_caps)
        self.week_end = spec.first_reset
        self.week_used = self.week_useful = spec.initial_weekly * self.c7
        initial = dict(spec.initial_models)
        self.model_used = {m: initial.get(m, 0.0) * cap for m, cap in self.caps.items()}
        self.five_until: float | None = None
        self.five_used = 0.0
        self.broken_at = spec.broken_at
        self.token_exp = spec.token_expires_at
        self.closed: list[tuple[float, float, float, float]] = []  # end, useful, used, cap

    def roll(self, t: float, horizon: float) -> None:
        """Advance the windows to `t`: close a 5-hour window, close weekly windows."""
        if self.five_until is not None and t >= self.five_until:
            self.five_until = None
            self.five_used = 0.0
        while t >= self.week_end:
            if self.week_end <= horizon:
                self.closed.append((self.week_end, self.week_useful, self.week_used, self.c7))
            self.week_used = self.week_useful = 0.0
            for m in self.model_used:
                self.model_used[m] = 0.0
            self.week_end += WEEK

    def broken(self, t: float) -> bool:
        return self.broken_at is not None and t >= self.broken_at

    def admits(self, model: str) -> str | None:
        """None while every window that applies is under 100%, else the spent window.

        A request admitted under the limit completes and is charged in full, so use can end
        slightly above 100% (the endpoint reports such values); capture is capped at 100%.
        """
        if self.five_used >= self.c5:
            return FIVE_HOUR
        if self.week_used >= self.c7:
            return SEVEN_DAY
        cap = self.caps.get(model)
        if cap is not None and self.model_used[model] >= cap:
            return f"seven_day_{model}"
        return None

    def charge(self, t: float, cost: float, useful: float, model: str) -> None:
        if self.five_until is None:
            self.five_until = t + FIVE_HOURS
        self.five_used += cost
        self.week_used += cost
        self.week_useful += useful
        if model in self.model_used:
            self.model_used[model] += cost

    def fractions(self) -> tuple[float, float | None, float, float]:
        """(5h use, 5h reset or None, weekly use, weekly reset) as headers would say."""
        u5 = self.five_used / self.c5 if self.five_until is not None else 0.0
        return u5, self.five_until, self.week_used / self.c7, self.week_end


def endpoint_fractions(a: Account) -> dict[str, tuple[float, float | None]]:
    """Each window's (use fraction, reset) as the usage endpoint reports it for `a`."""
    u5, r5, u7, r7 = a.fractions()
    fractions: dict[str, tuple[float, float | None]] = {
        FIVE_HOUR: (u5, r5),
        SEVEN_DAY: (u7, r7),
    }
    for model, cap in a.caps.items():
        fractions[model] = (a.model_used[model] / cap, r7)
    return fractions


_ISO: dict[float, str] = {}


def _iso(ts: float) -> str:
    text = _ISO.get(ts)
    if text is None:
        if len(_ISO) > 100_000:
            _ISO.clear()
        text = _ISO[ts] = datetime.fromtimestamp(ts, timezone.utc).isoformat()
    return text


def endpoint_percent(fraction: float) -> float:
    """A window's utilization as the usage endpoint shows it (0-100, to 0.1)."""
    return round(fraction * 100.0, 1)


def endpoint_document(
    acct: FleetAccount, fractions: dict[str, tuple[float, float | None]]
) -> dict[str, Any]:
    """What `/api/oauth/usage` answers for the windows given as (fraction, reset)."""

    def window(key: str) -> dict[str, Any] | None:
        if key not in fractions:
            return None
        frac, reset = fractions[key]
        return {
            "utilization": endpoint_percent(frac),
            "resets_at": None if reset is None else _iso(reset),
        }

    doc: dict[str, Any] = {
        "five_hour": window(FIVE_HOUR),
        "seven_day": window(SEVEN_DAY),
        "seven_day_opus": window("opus"),
        "seven_day_sonnet": window("sonnet"),
        "seven_day_oauth_apps": None,
        "extra_usage": None,
        "limits": [],
    }
    for model, _ in acct.model_caps:
        if model in ("opus", "sonnet"):
            continue
        frac, reset = fractions[model]
        doc["limits"].append(
            {
                "kind": "weekly_scoped",
                "group": "weekly",
                "percent": round(frac * 100.0),
                "resets_at": None if reset is None else _iso(reset),
                "scope": {"model": {"id": None, "display_name": model.title()}},
                "is_active": False,
            }
        )
    return doc
