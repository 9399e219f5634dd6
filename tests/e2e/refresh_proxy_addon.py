"""mitmdump addon for the e2e RefreshProxy: answer everything on loopback, never upstream.

Loaded with `mitmdump -s refresh_proxy_addon.py --set fake_api_port=<port>` (and
`connection_strategy=lazy`, so a CONNECT does not dial the real host). Every intercepted
HTTP request, whatever host it names (api.anthropic.com, platform.claude.com, ...), is sent to
the FakeAnthropicServer on 127.0.0.1:<port> over plain HTTP, with the host it was meant for in
`x-e2e-original-host`. Any server connection to a non-loopback address is refused, so a bug
here fails a test instead of reaching the internet.
"""

from __future__ import annotations

from mitmproxy import ctx, http
from mitmproxy.proxy import server_hooks

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class ToFakeApi:
    def load(self, loader):  # type: ignore[no-untyped-def]
        loader.add_option("fake_api_port", int, 0, "port of the FakeAnthropicServer on 127.0.0.1")

    def request(self, flow: http.HTTPFlow) -> None:
        port = ctx.options.fake_api_port
        if not port:
            flow.response = http.Response.make(502, b"fake_api_port not set")
            return
        flow.request.headers["x-e2e-original-host"] = flow.request.pretty_host
        flow.request.scheme = "http"
        flow.request.host = "127.0.0.1"
        flow.request.port = port

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        address = data.server.address
        if address is None or address[0] not in LOOPBACK:
            data.server.error = f"e2e proxy: refusing upstream connection to {address}"


addons = [ToFakeApi()]
