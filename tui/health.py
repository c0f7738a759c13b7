"""The metrics server: ``/metrics``, ``/healthz`` and ``/readyz`` on the running event loop.

An aiohttp app (never prometheus-client's ``start_http_server``, which binds every
interface and runs a thread) bound to ``[metrics] host`` (127.0.0.1 unless configured)
and ``port``:

- ``/metrics``: the registry of :class:`tui.metrics.Metrics` in Prometheus's text
  format, through ``prometheus_client.aiohttp.make_aiohttp_handler``;
- ``/healthz``: 200 ``ok`` while the process answers at all;
- ``/readyz``: 200 ``{"ready": true}`` when the feed is fresh, the store's last
  transaction did not fail and no circuit breaker is open (and the engine runs);
  else 503 ``{"ready": false, "reasons": [...]}``.

Handlers run on the engine's own event loop, so they read the engine between two of
its steps, never halfway through one.
"""

from __future__ import annotations

import socket

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from tui.metrics import Metrics

__all__ = ["MetricsServer"]


class MetricsServer:
    """The HTTP side of :class:`Metrics`; :meth:`start` binds, :meth:`stop` closes."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Where ``/metrics`` answers (the bound port, once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", make_aiohttp_handler(self.metrics.registry))
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        reasons = self.metrics.not_ready()
        if reasons:
            return web.json_response({"ready": False, "reasons": reasons}, status=503)
        return web.json_response({"ready": True})

    async def start(self) -> None:
        """Bind and serve; OSError (the port is taken, the address is not this
        machine's) when it cannot. Port 0 takes a free one (:attr:`port` tells which)."""
        sock = _listen(self.host, self.port)
        # A scrape in flight at the stop gets a second to finish, not the default minute.
        runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self.port = sock.getsockname()[1]
        self._runner = runner

    async def stop(self) -> None:
        """Stop answering and free the port (safe to call twice)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host`` only (its first address), not every interface."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
