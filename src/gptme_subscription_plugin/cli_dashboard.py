"""`dashboard`: the command line's side of the web dashboard (flags in, one line out on error).

FastAPI and uvicorn come with the `dashboard` extra; without them the command says how to get
them in one line instead of failing on an import deep inside.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .cli_parser import EXIT_PROBLEM

if TYPE_CHECKING:
    from .manager import SubscriptionManager

INSTALL_HINT = (
    "the dashboard needs FastAPI and uvicorn: pip install 'gptme-subscription-plugin[dashboard]'"
)


def cmd_dashboard(m: SubscriptionManager, args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print(f"dashboard: {INSTALL_HINT}", file=sys.stderr)
        return EXIT_PROBLEM
    from .dashboard.server import DashboardError, ServeOptions, serve

    options = ServeOptions(
        host=args.host,
        port=args.port,
        open_browser=args.open,
        allow_actions=args.allow_actions,
        token=args.token,
        notify=args.notify,
    )
    try:
        return serve(m, options)
    except DashboardError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        return 0
