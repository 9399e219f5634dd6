"""0.1.0's console entry point: the `gptme-subscription` command of gptme-subscription-plugin."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from gptme_subscription_plugin.entry import main as entry_main

    return entry_main(argv)


__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover - `python -m gptme_subscription.cli`
    sys.exit(main())
