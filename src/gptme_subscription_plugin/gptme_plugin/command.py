"""The `subscription` tool's protocol: a call parsed into a `Command`, an `Answer` sent back.

No gptme import. A call comes in any of gptme's formats (markdown, XML, native tool calls);
an answer is a short plain-text summary, then one compact JSON block, scrubbed of anything
shaped like a token. The pieces every answer renders (a decision, the pending switch) are here
too. `answers.py` runs the actions and re-exports these names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import redact
from ..policy import Decision, format_duration

ACTIONS = ("status", "recommend", "switch", "check", "explain", "assign")
USAGE = (
    "status | recommend [model=NAME] [work=SIZE] | switch SLOT | check | explain [N] | assign [K]"
)
MAX_ASSIGN = 24
WORK_SIZES = {"small": 0.05, "medium": 0.15, "large": 0.40}
MAX_EXPLAIN = 50
_KEYS = {"action", "slot", "model", "work", "count", "n"}


class CommandError(ValueError):
    """A call the tool cannot understand; the message says how to call it."""


@dataclass(frozen=True)
class Command:
    action: str
    slot: str | None = None
    model: str | None = None
    work: float | None = None
    count: int | None = None


@dataclass(frozen=True)
class Answer:
    action: str
    ok: bool
    text: str
    data: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        """Plain text first, then one compact JSON block; token-shaped strings scrubbed."""
        doc = {"action": self.action, "ok": self.ok, **self.data}
        blob = json.dumps(doc, separators=(",", ":"), sort_keys=True, default=str)
        return scrub(f"{self.text.rstrip()}\n\n```json\n{blob}\n```")


def scrub(text: str) -> str:
    return redact.scrub(text)


def parse_command(
    code: str | None, args: Sequence[str] | None, kwargs: Mapping[str, Any] | None
) -> Command:
    """One call in any of gptme's formats.

    markdown: ```subscription switch bob``` gives args ["switch", "bob"]; xml:
    <subscription args="switch bob"/> gives args ["switch bob"]; native tool calls give kwargs
    {"action": "switch", "slot": "bob"}. A block body may hold more words or a JSON object.
    """
    named: dict[str, Any] = {}
    tokens: list[str] = []
    for key, value in (kwargs or {}).items():
        if value is None or value == "":
            continue
        if key == "action":
            tokens[:0] = str(value).split()
        elif key in _KEYS:
            named["count" if key == "n" else key] = value
        else:
            raise CommandError(f"unknown parameter {key!r}; use: {USAGE}")
    for arg in args or []:
        tokens += str(arg).split()
    body = (code or "").strip()
    if body.startswith("{"):
        try:
            doc = json.loads(body)
        except ValueError:
            raise CommandError("the block body is not valid JSON; use: " + USAGE) from None
        if not isinstance(doc, dict):
            raise CommandError("the block body must be a JSON object; use: " + USAGE)
        return parse_command(None, tokens, {**doc, **named})
    tokens += body.split()
    return _from_tokens(tokens, named)


def _from_tokens(tokens: list[str], named: dict[str, Any]) -> Command:
    positional: list[str] = []
    words = iter(tokens)
    for word in words:
        if word.startswith("--"):
            key, eq, value = word[2:].partition("=")
            if not eq:
                value = next(words, "")
            _set_named(named, key, value)
        elif "=" in word and not word.startswith("="):
            key, _, value = word.partition("=")
            _set_named(named, key, value)
        else:
            positional.append(word)
    action = (positional.pop(0) if positional else "status").lower()
    if action not in ACTIONS:
        raise CommandError(f"unknown action {action[:40]!r}; use: {USAGE}")
    slot = named.get("slot")
    model = named.get("model")
    work = named.get("work")
    count = named.get("count")
    if action == "switch":
        if slot is None and positional:
            slot = positional.pop(0)
        if not slot:
            raise CommandError("switch needs a slot name: switch SLOT")
    elif action == "recommend":
        for word in positional:
            if _looks_like_work(word):
                work = word
            else:
                model = word
        positional = []
    elif action in ("explain", "assign") and positional:
        count = positional.pop(0)
    if positional:
        raise CommandError(f"unexpected {' '.join(positional)[:60]!r} after {action}; use: {USAGE}")
    return Command(
        action,
        slot=str(slot) if slot is not None else None,
        model=str(model) if model else None,
        work=parse_work(work) if work is not None else None,
        count=_parse_count(count, action) if count is not None else None,
    )


def _set_named(named: dict[str, Any], key: str, value: str) -> None:
    key = "count" if key == "n" else key
    if key not in _KEYS - {"action", "n"}:
        raise CommandError(f"unknown option {key[:30]!r}; use: {USAGE}")
    named[key] = value


def _looks_like_work(word: str) -> bool:
    try:
        parse_work(word)
    except CommandError:
        return False
    return True


def parse_work(value: Any) -> float:
    """Expected share of one slot's 5-hour window: 0.25, 25%, 25, or small/medium/large."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in WORK_SIZES:
            return WORK_SIZES[text]
        percent = text.endswith("%")
        try:
            number = float(text.rstrip("%"))
        except ValueError:
            raise CommandError(
                f"work {value[:20]!r}: use a share of a 5-hour window (0.25 or 25%) "
                "or small/medium/large"
            ) from None
        if percent:
            number /= 100
        elif number > 1:
            number /= 100  # "25" means 25 %
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if number > 1:
            number /= 100
    else:
        raise CommandError("work: use a number (0.25 or 25%) or small/medium/large")
    if not 0 < number <= 1:
        raise CommandError("work must be more than 0 and at most 100% of a 5-hour window")
    return number


def _parse_count(value: Any, action: str) -> int:
    """explain N (at most MAX_EXPLAIN events) or assign K (at most MAX_ASSIGN workers)."""
    letter = "K" if action == "assign" else "N"
    try:
        count = int(value)
    except (TypeError, ValueError):
        shown = str(value)[:20]
        raise CommandError(
            f"{action} {letter}: {letter} must be a whole number (got {shown!r})"
        ) from None
    return max(1, min(MAX_ASSIGN if action == "assign" else MAX_EXPLAIN, count))


def decision_data(decision: Decision) -> dict[str, Any]:
    """A policy decision as an answer's JSON shows it."""
    return {
        "action": decision.action,
        "target": decision.target,
        "mode": decision.mode,
        "reason": decision.reason,
        "urgent": decision.urgent,
        "retry_at": decision.retry_at,
    }


def pending_line(pending: Mapping[str, Any] | None, now: float) -> str:
    """The pending switch (or its absence) as one line of an answer."""
    if not pending:
        return "pending switch: none"
    since = pending.get("since")
    ago = format_duration(now - since) if isinstance(since, (int, float)) else "?"
    return (
        f"pending switch: -> {pending.get('slot')} ({pending.get('mode')}, {ago} ago): "
        f"{pending.get('reason')}; it lands at the next turn boundary with every session idle"
    )


def error_answer(message: str) -> Answer:
    """The answer to a call the tool could not run: the message and how to call it."""
    data = {"error": message, "usage": USAGE}
    return Answer("error", False, f"subscription error: {message}", data)
