"""List prices per model and token kind, dated, and the user's overrides from config.

Prices are USD per million tokens as Anthropic lists them for the API (a subscription pays a
flat fee; this is what the same tokens would cost at list prices, the figure people compare
plans by). Claude Code's model ids (`claude-opus-4-5-20251101`, `claude-3-7-sonnet-20250219`,
`claude-sonnet-4-5[1m]`) are reduced to a key such as `opus-4.5`; a key with no price is
"unknown": its requests are counted, not priced, and the report says so.

Not modelled: long-prompt price bands (Sonnet 4/4.5 above 200k input tokens, Haiku 5.5 above
100k), batch and fast-mode prices, data-residency multipliers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# Source: platform.claude.com/docs/en/about-claude/pricing ("Model pricing"), as read on
# PRICES_AS_OF; the Sonnet 5 / 5.5, Opus 5.5 and Haiku 4.5 / 5.5 rows from published tables
# that cite that page (the stored copy of the page cut off before them).
PRICES_AS_OF = "2026-10-24"
PRICE_KINDS = ("input", "output", "cache_write", "cache_write_1h", "cache_read")


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: float
    output: float
    cache_write: float  # 5-minute cache writes
    cache_read: float
    cache_write_1h: float | None = None  # None: twice the input price, as listed for each model

    @property
    def write_1h(self) -> float:
        return self.cache_write_1h if self.cache_write_1h is not None else 2 * self.input

    def cost(self, input: int, output: int, write_5m: int, write_1h: int, read: int) -> float:
        return (
            input * self.input
            + output * self.output
            + write_5m * self.cache_write
            + write_1h * self.write_1h
            + read * self.cache_read
        ) / 1_000_000


def _p(input: float, output: float, write: float, read: float) -> ModelPrice:
    return ModelPrice(input, output, write, read)


LIST_PRICES: dict[str, ModelPrice] = {
    "fable-5.1": _p(10, 50, 12.5, 0.25),
    "mythos-5.1": _p(10, 50, 12.5, 0.25),
    "fable-5": _p(10, 50, 12.5, 1.0),
    "mythos-5": _p(10, 50, 12.5, 1.0),
    "opus-5.5": _p(4, 20, 5, 0.2),
    "opus-5": _p(5, 25, 6.25, 0.5),
    "opus-4.8": _p(5, 25, 6.25, 0.5),
    "opus-4.7": _p(5, 25, 6.25, 0.5),
    "opus-4.6": _p(5, 25, 6.25, 0.5),
    "opus-4.5": _p(5, 25, 6.25, 0.5),
    "opus-4.1": _p(15, 75, 18.75, 1.5),
    "opus-4": _p(15, 75, 18.75, 1.5),
    "opus-3": _p(15, 75, 18.75, 1.5),
    "sonnet-5.5": _p(2, 10, 2.5, 0.1),
    "sonnet-5": _p(2, 10, 2.5, 0.2),
    "sonnet-4.6": _p(3, 15, 3.75, 0.3),
    "sonnet-4.5": _p(3, 15, 3.75, 0.3),
    "sonnet-4": _p(3, 15, 3.75, 0.3),
    "sonnet-3.7": _p(3, 15, 3.75, 0.3),
    "sonnet-3.5": _p(3, 15, 3.75, 0.3),
    "haiku-5.5": ModelPrice(0.1, 0.5, 0.125, 0.01, 0.2),
    "haiku-4.5": _p(1, 5, 1.25, 0.1),
    "haiku-3.5": _p(0.8, 4, 1, 0.08),
    "haiku-3": ModelPrice(0.25, 1.25, 0.3, 0.03, 0.5),
}

_NEW_STYLE = re.compile(r"claude-([a-z]+)-(\d+)(?:-(\d{1,2}))?(?:-|$|\[)")
_OLD_STYLE = re.compile(r"claude-(\d+)(?:-(\d{1,2}))?-([a-z]+)(?:-|$|\[)")


def price_key(model: str) -> str:
    """`opus-4.5` for `claude-opus-4-5-20251101`, `sonnet-3.7` for `claude-3-7-sonnet-...`;
    anything else lower-cased as it came (so a user can price it by that name)."""
    name = model.strip().lower()
    if m := _NEW_STYLE.match(name):
        family, major, minor = m.groups()
        return f"{family}-{major}.{minor}" if minor else f"{family}-{major}"
    if m := _OLD_STYLE.match(name):
        major, minor, family = m.groups()
        return f"{family}-{major}.{minor}" if minor else f"{family}-{major}"
    return name


class PriceTable:
    """List prices with the user's overrides (`prices` in config) on top."""

    def __init__(self, overrides: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self.prices = dict(LIST_PRICES)
        for key, values in (overrides or {}).items():
            self.prices[price_key(key) if key.startswith("claude-") else key] = price_from(values)

    def lookup(self, model: str) -> ModelPrice | None:
        return self.prices.get(price_key(model))


def price_from(values: Mapping[str, float]) -> ModelPrice:
    """A price from config: input, output, cache_write and cache_read required (USD/MTok);
    ValueError naming what is wrong."""
    unknown = set(values) - set(PRICE_KINDS)
    if unknown:
        kinds = ", ".join(PRICE_KINDS)
        raise ValueError(f"unknown price kind {sorted(unknown)[0]!r} (use {kinds})")
    missing = [k for k in PRICE_KINDS if k != "cache_write_1h" and k not in values]
    if missing:
        raise ValueError(f"price lacks {', '.join(missing)}")
    for kind, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{kind} must be a number of USD per million tokens, 0 or more")
    return ModelPrice(
        float(values["input"]),
        float(values["output"]),
        float(values["cache_write"]),
        float(values["cache_read"]),
        float(values["cache_write_1h"]) if "cache_write_1h" in values else None,
    )
