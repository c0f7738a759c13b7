"""One run of the engine, shared by the console and headless mode.

:class:`ConsoleSession` builds the feed (in a worker thread: a replay parses
and checks every CSV row), opens the store, builds the engine, subscribes the
caller and starts it; :meth:`ConsoleSession.stop` stops the engine and closes
the store, once, however the run ended. A failure the person can fix (a bad
setting, a locked or foreign store, a replay older than the store) is a
:class:`StartError` carrying the exit code; nothing it opened is left open.

The engine and the store are imported when the session starts, not with this
module: the console draws its first frame before paying for those imports.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.exchange.live import LiveParts
    from engine.feeds.base import Feed
    from engine.models import EngineEvent
    from engine.runtime import Engine, Recovery
    from persistence.store import Store
    from tui.health import MetricsServer
    from tui.metrics import Metrics

log = logging.getLogger("cma.session")

#: Builds the feed the settings ask for (``engine.runtime.make_feed``); runs in a thread.
FeedFactory = Callable[["Settings"], "Feed"]

#: Exit code of a setting or input the person must fix (``tui.cli.EXIT_USAGE``).
_USAGE = 2
#: Exit code of a failure that is not the person's (``tui.cli.EXIT_FAIL``).
_FAIL = 1


class StartError(Exception):
    """The session could not start its engine; ``code`` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class ConsoleSession:
    """The feed, the store and the engine of one run, started and stopped together.

    ``feed`` is a ready feed (tests, benchmarks); without it ``feed_factory``
    (default :func:`engine.runtime.make_feed`) builds one in a worker thread, so the
    event loop keeps drawing and answering keys while a replay file is parsed.
    ``engine_clock`` times decisions (the console's tests fix it).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        feed: Feed | None = None,
        feed_factory: FeedFactory | None = None,
        engine_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.feed = feed
        self._feed_factory = feed_factory
        self._engine_clock = engine_clock
        self.engine: Engine | None = None
        #: Live: the exchange, feed, broker and gate opened together (closed on stop).
        self.live: LiveParts | None = None
        self.store: Store | None = None
        self.recovery: Recovery | None = None
        self._starting: asyncio.Task[Recovery] | None = None
        #: True while only the feed is being built: nothing is open yet to close.
        self._building_feed = False
        self._stopped = False
        self._unsubscribe: Callable[[], None] | None = None
        #: With ``[metrics] enabled``: the collectors and their HTTP server.
        self.metrics: Metrics | None = None
        self.metrics_server: MetricsServer | None = None
        self._closers: list[Callable[[], Awaitable[None] | None]] = []

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called (a start is never begun after it)."""
        return self._stopped

    @property
    def starting(self) -> asyncio.Task[Recovery] | None:
        """The start under way or done (None before :meth:`begin`)."""
        return self._starting

    def begin(
        self,
        subscriber: Callable[[EngineEvent], None] | None = None,
        *,
        paused_if_recovered: bool = True,
    ) -> asyncio.Task[Recovery]:
        """Start in a plain task (not a Textual worker: if the app closes meanwhile, the
        store is never left half-open) and return it; :meth:`stop` waits for it."""
        if self._starting is None:
            self._starting = asyncio.create_task(
                self._start(subscriber, paused_if_recovered), name="cma-start"
            )
        return self._starting

    async def start(
        self,
        subscriber: Callable[[EngineEvent], None] | None = None,
        *,
        paused_if_recovered: bool = True,
    ) -> Recovery:
        """Build the feed, open the store, build the engine and start it.

        ``subscriber`` hears every engine event from the first one the start stores.
        Raises :class:`StartError` on a failure the person can fix.
        """
        return await self.begin(subscriber, paused_if_recovered=paused_if_recovered)

    async def _start(
        self, subscriber: Callable[[EngineEvent], None] | None, paused_if_recovered: bool
    ) -> Recovery:
        from engine.runtime import Engine, StoreMismatchError, make_feed
        from persistence.errors import StoreFileError
        from persistence.store import Store

        settings = self.settings
        if settings.metrics.enabled:
            await self._start_metrics()
        live = None
        if self.feed is None and settings.broker.kind == "ccxt":
            # Live: one exchange instance for the feed and the broker, the keys checked.
            from engine.exchange.live import open_live

            self._building_feed = True
            try:
                live = self.live = await open_live(settings)
            except ConnectionError as exc:
                raise StartError(str(exc), _FAIL) from None
            except ValueError as exc:
                raise StartError(str(exc), _USAGE) from None
            finally:
                self._building_feed = False
            self.feed = live.feed
        if self.feed is None:
            self._building_feed = True
            try:
                self.feed = await asyncio.to_thread(self._feed_factory or make_feed, settings)
                await self.feed.prepare()  # an exchange feed checks its symbols here
            except ConnectionError as exc:  # the exchange cannot be reached
                raise StartError(str(exc), _FAIL) from None
            except (ValueError, OSError) as exc:
                raise StartError(str(exc), _USAGE) from None
            finally:
                self._building_feed = False
        try:
            store = await Store.open(settings.store.resolved_path(), settings.store.busy_timeout_ms)
        except StoreFileError as exc:  # locked (1), damaged (1), not a cma store (2)
            raise StartError(str(exc), exc.code) from None
        self.store = store
        try:
            engine = Engine(
                settings,
                store,
                self.feed,
                broker=None if live is None else live.broker,
                gate=None if live is None else live.gate,
                clock=self._engine_clock,
            )
        except ValueError as exc:
            raise StartError(str(exc), _USAGE) from None
        self.engine = engine
        if self.metrics is not None:
            self._closers.append(self.metrics.attach(engine))
        if subscriber is not None:
            self._unsubscribe = engine.subscribe(subscriber)
        try:
            self.recovery = await engine.start(paused_if_recovered=paused_if_recovered)
        except StoreMismatchError as exc:  # another currency, or a replay older than the store
            raise StartError(str(exc), _USAGE) from None
        except Exception as exc:
            if live is None:
                raise
            # Live reconciliation could not reach the exchange: nothing traded.
            from engine.exchange.errors import describe

            text = describe(exc, live.broker.secrets)
            raise StartError(f"could not reconcile with the exchange: {text}", _FAIL) from None
        return self.recovery

    async def _start_metrics(self) -> None:
        """Serve /metrics, /healthz and /readyz from the start (``[metrics]``); the
        engine's hooks count from now on."""
        from engine import observe
        from tui.health import MetricsServer
        from tui.metrics import Metrics

        m = self.settings.metrics
        metrics = self.metrics = Metrics()
        server = MetricsServer(metrics, m.host, m.port)
        try:
            await server.start()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StartError(
                f"metrics: cannot listen on {m.host}:{m.port} ({reason}); "
                "choose another with --metrics [HOST:]PORT or [metrics] port",
                _FAIL,
            ) from None
        self.metrics_server = server
        self._closers.append(server.stop)
        self._closers.append(observe.install(metrics))
        metrics.start_lag_probe()
        self._closers.append(metrics.stop)
        log.info("metrics on %s", server.url)

    @property
    def metrics_url(self) -> str | None:
        """Where /metrics answers, when metrics are on and served."""
        return None if self.metrics_server is None else self.metrics_server.url

    async def stop(self, close_positions: bool | None = False) -> None:
        """Stop the engine and close the store once (safe to call again and before a start).

        A start still building its feed is cancelled (nothing is open yet; the
        parsing thread finishes on its own). A start that has got further is waited
        for: stopping before the store finished opening would leave it open, and its
        thread would keep the process alive. ``close_positions`` None: as configured.
        """
        starting = self._starting
        if starting is not None and not starting.done():
            if self._building_feed:
                starting.cancel()
            await asyncio.wait([starting])
        if starting is not None and not starting.cancelled():
            starting.exception()  # retrieved: whoever awaited the start reported it
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.engine is not None:
                await self.engine.stop(close_positions=close_positions)
        finally:
            if self.live is not None:
                await self.live.close()
            if self._unsubscribe is not None:
                self._unsubscribe()
            if self.store is not None:
                store, self.store = self.store, None
                await store.close()
            # The metrics server answers until the end (/readyz says "stopped").
            while self._closers:
                done = self._closers.pop()()
                if done is not None:
                    await done
