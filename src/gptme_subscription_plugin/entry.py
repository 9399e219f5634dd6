"""Console-script entry: route `hook <event>` before anything heavy is imported.

Claude Code runs `gptme-subscription hook pre-tool-use` on every tool call, so that path must
cost little more than starting Python: it skips argparse, pydantic and the CLI module.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["hook"]:
        from .claude_code.dispatch import main as hook_main

        return hook_main(args[1:])
    from .cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
