"""Rendering for people: bars, the status table and the capacity verdict."""

from __future__ import annotations

from dataclasses import dataclass, field

from gptme_subscription_plugin.credentials import CredentialInfo, Health
from gptme_subscription_plugin.policy import PolicyView, SlotView
from gptme_subscription_plugin.render import bar, capacity, status_table
from gptme_subscription_plugin.thresholds import Thresholds
from gptme_subscription_plugin.usage.snapshot import (
    UsageSnapshot,
)

from .support.usage import NOW, H, snapshot


def snap(name: str, five: float, week: float, reset_in: float = 48 * H) -> UsageSnapshot:
    return snapshot(
        name,
        five,
        week,
        source="t",
        five_reset_in=H,
        week_reset_in=reset_in,
        models={"sonnet": 0.4},
    )


def test_bar():
    assert bar(0.5) == "[#####-----]  50%"
    assert bar(1.3).startswith("[##########]")
    assert "?" in bar(None)


@dataclass
class Row:
    name: str
    live: bool
    credential: CredentialInfo
    usage: UsageSnapshot | None
    pressure: float | None
    limited_until: float | None = None
    rejected: dict | None = None
    limited_models: dict = field(default_factory=dict)
    home: str = "link"


def test_status_table_shows_everything_a_person_needs():
    rows = [
        Row(
            "alice", True, CredentialInfo("p", Health.VALID, "valid"), snap("alice", 0.2, 0.5), 0.52
        ),
        Row("bob", False, CredentialInfo("p", Health.MALFORMED, "bad"), None, None, NOW + 600),
        Row(
            "carol",
            False,
            CredentialInfo("p", Health.VALID, "valid"),
            None,
            None,
            rejected={"at": NOW - 60, "source": "StopFailure authentication_failed"},
        ),
        Row(
            "dave",
            False,
            CredentialInfo("p", Health.VALID, "valid"),
            None,
            None,
            limited_models={"opus": NOW + 2 * 3600},
        ),
    ]
    text = status_table(
        rows, NOW, {"slot": "bob", "mode": "manual", "since": NOW - 60, "reason": "by hand"}, ["s1"]
    )
    assert "* alice" in text and "  bob" in text
    assert "REJECTED (StopFailure authentication_failed): reauth" in text
    assert "1h00m" in text and "2d00h" in text  # reset countdowns
    assert "sonnet" in text and "52%" in text
    assert "malformed, limited 10m, no usage data" in text
    assert "valid, opus limited 2h00m, no usage data" in text
    assert "pending switch: -> bob (manual, 1m ago): by hand" in text
    assert "sessions mid-turn: 1 (s1)" in text


def test_capacity_verdicts():
    t = Thresholds()
    green = PolicyView(
        "a", (SlotView("a", usage=snap("a", 0.1, 0.2)), SlotView("b", usage=snap("b", 0.1, 0.3)))
    )
    assert capacity(green, t, NOW).verdict == "green"
    thin = PolicyView(
        "a",
        (
            SlotView("a", usage=snap("a", 0.1, 0.2)),
            SlotView("b", usable=False, usage=snap("b", 0.1, 0.3)),
        ),
    )
    assert capacity(thin, t, NOW).exit_code == 10
    red = PolicyView("a", (SlotView("a", usage=snap("a", 0.1, 0.99, reset_in=2 * H)),))
    verdict = capacity(red, t, NOW)
    assert verdict.exit_code == 20 and verdict.soonest_reset == NOW + 2 * H
