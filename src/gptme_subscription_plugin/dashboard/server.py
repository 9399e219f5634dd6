"""Start the dashboard: bind, say where, serve until interrupted; background work beside it.

The socket is bound here, before uvicorn starts, so a port in use is one line and exit 1
instead of a traceback, and `--port 0` can report the port it got. Beside the server one
thread feeds the usage cache through the shared poll budget (so the page stays current when
no session runs) and reads new transcript lines into the usage ledger.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import sys
import threading
import webbrowser
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .app import DashboardOptions, create_app
from .feeder import Feeder

if TYPE_CHECKING:
    from ..manager import SubscriptionManager


class DashboardError(Exception):
    """A one-line reason the dashboard cannot start."""


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    open_browser: bool = False
    allow_actions: bool = False
    token: str | None = None
    notify: bool = False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise DashboardError(f"port {port} is out of range (0-65535)")
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family, reuse_port=False)
    except OSError as exc:
        if exc.errno == 98:  # EADDRINUSE
            raise DashboardError(
                f"port {port} on {host} is in use; pick another with --port"
            ) from None
        raise DashboardError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    names = {host, f"[{host}]" if ":" in host else host}
    if is_loopback(host):
        names |= {"localhost", "127.0.0.1", "[::1]"}
    return frozenset(f"{n}:{port}" for n in names)


def serve(m: SubscriptionManager, opts: ServeOptions) -> int:
    import uvicorn

    if not is_loopback(opts.host) and not opts.token:
        raise DashboardError(
            f"{opts.host} is not a loopback address: anyone who reaches it could read the "
            "dashboard; pass --token SECRET (or bind 127.0.0.1)"
        )
    sock = bind(opts.host, opts.port)
    port = sock.getsockname()[1]
    action_token = secrets.token_urlsafe(18) if opts.allow_actions else None
    feeder = Feeder(m)
    options = DashboardOptions(
        allowed_hosts=allowed_hosts(opts.host, port),
        access_token=opts.token,
        action_token=action_token,
        ledger=feeder.ledger,
        usage_note=feeder.note,
    )
    app = create_app(m, options)
    shown_host = f"[{opts.host}]" if ":" in opts.host else opts.host
    url = f"http://{shown_host}:{port}/"
    print(f"dashboard: {url}", flush=True)
    if action_token is not None:
        print(f"action token: {action_token} (or open {url}#action={action_token})", flush=True)
    if opts.notify:
        print(feeder.enable_notifications(), flush=True)
    feeder.start()
    if opts.open_browser:
        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        feeder.stop()
        sock.close()
    print("dashboard: stopped", file=sys.stderr)
    return 0
