"""The ``ccxt`` feed: an exchange's public candles, history first, then live.

:meth:`CcxtFeed.prepare` loads the exchange's markets and checks ``feed.symbols`` and
``feed.timeframe`` against them (the console calls it before the engine starts, so a
symbol the exchange does not list is a setting to fix, exit 2). :meth:`CcxtFeed.batches`
then yields:

1. **Warm-up**: the last ``warmup_candles`` closed candles of every symbol, fetched
   page by page through REST (``fetch_ohlcv``), as history (:attr:`warmup_batches`,
   :meth:`is_live` False): the agents are warm when the market goes live.
2. **Live**: candles from the exchange's websocket (``ccxt.pro``'s ``watch_ohlcv``, one
   task per symbol on the exchange's shared connection) where it has one, else REST
   polling every :func:`poll_seconds` of the timeframe.

Closed candles only, each once, in order. A symbol's candle counts as closed when a
newer candle of that symbol arrives on the websocket, or when REST shows it before the
exchange's clock (``fetch_time``) passed its close. The websocket settles a symbol only
up to a contiguous run; anything it cannot vouch for (the first candle after a
(re)connect, a jump over a timestamp) is settled through REST, which is also the only
way a timestamp is declared missing: a *gap* (``gaps``/``on_gap``) is a candle REST
confirms the exchange does not have.

Batches: timestamp ``T``'s batch goes out once every symbol has settled ``T``. When
some have and others lag for :func:`grace_seconds`, the laggards are fetched through
REST, which settles them either way. A batch is *live* (the engine may propose on it)
when it is the newest closed timestamp at the time it goes out; warm-up and the
catch-up after a reconnect are history.

Disconnects: a websocket error drops that symbol's forming candle (its last update may
be lost), logs the error redacted on the ``cma.feed`` logger, and waits an exponential
backoff with jitter before subscribing again; meanwhile REST keeps the candles coming
and fills the hole, so none is missed or doubled. :meth:`staleness` says how long the
exchange has been silent once that passes ``stale_seconds`` (plus one timeframe when
polling); :meth:`last_candle_age` is the age of the last candle by the exchange's clock.

ccxt is imported only through :mod:`engine.exchange.session`, inside functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from engine import observe
from engine.feeds.base import Feed, GapCallback
from engine.models import Candle
from engine.timeframes import candle_index, candle_open

if TYPE_CHECKING:
    from engine.config import Settings

log = logging.getLogger("cma.feed")

T = TypeVar("T")

#: Longest wait between two websocket reconnects.
BACKOFF_CAP_S = 30.0
#: First wait after a websocket error (doubled per failure in a row, jittered).
BACKOFF_BASE_S = 0.5
#: Page size for exchanges that do not say theirs (ccxt's ``features``).
DEFAULT_PAGE = 500


def poll_seconds(timeframe_ms: int) -> float:
    """How often the REST fallback polls: a twelfth of the timeframe, from 1 s to 10 s."""
    return min(10.0, max(1.0, timeframe_ms / 12_000))


def grace_seconds(timeframe_ms: int) -> float:
    """How long a batch waits for lagging symbols before REST settles them: 2 s, or a
    tenth of a shorter timeframe."""
    return min(2.0, timeframe_ms / 10_000)


class FeedSetupError(ValueError):
    """The feed cannot run as configured; the message starts with the setting to change."""


class FeedUnavailable(ConnectionError):
    """The exchange could not be reached at start (after retries); the message is redacted."""


class CcxtFeed(Feed):
    """Closed candles of ``symbols`` from a ccxt exchange (see the module docstring).

    ``exchange`` is an async ccxt exchange (:func:`engine.exchange.session.open_exchange`),
    possibly shared with the broker; the feed closes it only with ``owns_exchange``.
    ``websocket`` None streams where the exchange has ``watchOHLCV``, False polls REST.
    ``poll``, ``grace`` (seconds) default to :func:`poll_seconds` and :func:`grace_seconds`;
    ``read_attempts`` is how often a REST read is tried (:func:`retry_read`) before the
    feed backs off (live) or gives up (at start); ``backoff`` is the first wait and the
    longest after a websocket or REST failure in a row (seconds, jittered).
    """

    name = "ccxt"

    def __init__(
        self,
        exchange: Any,
        symbols: Sequence[str],
        timeframe: str,
        *,
        owns_exchange: bool = False,
        warmup_candles: int = 300,
        stale_seconds: float = 30.0,
        websocket: bool | None = None,
        poll: float | None = None,
        grace: float | None = None,
        on_gap: GapCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        read_attempts: int = 5,
        backoff: tuple[float, float] = (BACKOFF_BASE_S, BACKOFF_CAP_S),
    ) -> None:
        super().__init__(symbols, timeframe, on_gap=on_gap)
        from engine.exchange.session import has_websocket

        self.exchange = exchange
        self._owns = owns_exchange
        self._warmup = warmup_candles
        self._stale_s = stale_seconds
        self.websocket = has_websocket(exchange) if websocket is None else websocket
        self._poll_s = poll_seconds(self.timeframe_ms) if poll is None else poll
        self._grace_s = grace_seconds(self.timeframe_ms) if grace is None else grace
        self._clock = clock
        self._rng = rng or random.Random()
        self._attempts = read_attempts
        self._backoff_base, self._backoff_cap = backoff
        self._prepared = False
        self._exchange_closed = False
        #: Per symbol: every timestamp up to this one is settled (a candle or a gap).
        self._settled: dict[str, int | None] = dict.fromkeys(self.symbols)
        #: Per symbol: closed candles not yet in a batch, by timestamp.
        self._pending: dict[str, dict[int, Candle]] = {s: {} for s in self.symbols}
        #: Per symbol: the forming candle the websocket last showed ([ts, o, h, l, c, v]).
        self._forming: dict[str, list[float] | None] = dict.fromkeys(self.symbols)
        self._seen: dict[str, bool] = dict.fromkeys(self.symbols, False)
        self._gap_runs: dict[str, tuple[int, int]] = {}
        self._next_ts: int | None = None
        self._rest_needed: set[str] = set()
        self._lag_since: float | None = None
        self._rest_after = 0.0  # no REST catch-up before this (backoff after a failure)
        self._rest_failures = 0
        self._last_rest = -float("inf")
        self._heard: float | None = None
        self._server: tuple[int, float] | None = None  # (exchange ms, our clock) at a fetch_time
        self._newest_forming = 0
        self._live_batch: list[Candle] | None = None
        self._last_emitted: int | None = None
        self._phase = "new"
        #: Websocket errors so far (each followed by a reconnect).
        self.reconnects = 0
        #: REST catch-ups that brought in candles the websocket had not.
        self.rest_fills = 0
        self._tasks: list[asyncio.Task[Any]] = []

    @classmethod
    def from_settings(cls, settings: Settings, exchange: Any | None = None) -> CcxtFeed:
        """The feed of ``[feed]`` on ``exchange``, or on one opened from ``[exchange]``
        (public: no keys), which the feed then owns and closes."""
        f = settings.feed
        owns = exchange is None
        if exchange is None:
            from engine.exchange.session import open_exchange, spec_of

            exchange = open_exchange(spec_of(settings.exchange))
        return cls(
            exchange,
            f.symbols,
            f.timeframe,
            owns_exchange=owns,
            warmup_candles=f.warmup_candles,
            stale_seconds=f.stale_seconds,
        )

    # --- what the engine and the console read ----------------------------------------

    def is_live(self, batch: Sequence[Candle]) -> bool:
        return batch is self._live_batch

    def staleness(self) -> float | None:
        if self._heard is None or self._closed:
            return None
        age = self._clock() - self._heard
        limit = self._stale_s + (0.0 if self.websocket else self.timeframe_ms / 1000)
        return age if age > limit else None

    def last_candle_age(self) -> float | None:
        """Seconds from the close of the last candle yielded to now by the exchange's
        clock (estimated from its last ``fetch_time`` and the newest candle it streamed);
        None before the first candle."""
        if self._last_emitted is None:
            return None
        close = self._after(self._last_emitted)
        return max(0.0, (self._server_now_estimate() - close) / 1000)

    # --- start ------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Load the markets and check the symbols and the timeframe. Idempotent.

        Raises :class:`FeedSetupError` naming ``feed.symbols``/``feed.timeframe``, and
        :class:`FeedUnavailable` (redacted) when the exchange cannot be reached.
        """
        if self._prepared:
            return
        ex = self.exchange
        markets = await self._read(lambda: ex.load_markets(), "markets")
        missing = [s for s in self.symbols if s not in markets]
        if missing:
            raise FeedSetupError(
                f"feed.symbols: {ex.id} does not list {', '.join(missing)} "
                f"(symbols are BASE/QUOTE as the exchange spells them, e.g. BTC/USDT)"
            )
        if not ex.has.get("fetchOHLCV"):
            raise FeedSetupError(f"exchange.id: {ex.id} offers no candles through ccxt")
        timeframes = ex.timeframes or {}
        if timeframes and self.timeframe not in timeframes:
            raise FeedSetupError(
                f"feed.timeframe: {ex.id} has no {self.timeframe} candles; "
                f"it has {', '.join(timeframes)}"
            )
        self._prepared = True

    async def batches(self) -> AsyncIterator[list[Candle]]:
        """Warm-up history, then live candles, until :meth:`close` (see the module)."""
        if self._closed:
            return
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        try:
            await self.prepare()
            self._phase = "warmup"
            await self._warm_up()
            warm = self._ready_batches()
            self.warmup_batches = len(warm)
            for batch in warm:
                if self._closed:
                    return
                yield batch
            self._phase = "live"
            if self.websocket:
                self._tasks = [
                    asyncio.create_task(self._watch(s), name=f"cma-feed-{s}") for s in self.symbols
                ]
            async with contextlib.aclosing(self._live()) as live:
                async for batch in live:
                    yield batch
        finally:
            await self.aclose()
            self._loop = self._wake = None

    async def aclose(self) -> None:
        """Stop the background tasks and close the exchange if the feed owns it.
        Idempotent; :meth:`batches` calls it when it ends."""
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns and not self._exchange_closed:
            self._exchange_closed = True
            from engine.exchange.session import close_exchange

            # Best effort: the feed is over, and a session that failed to close is
            # nothing it could act on (ccxt itself warns about what stays open).
            with contextlib.suppress(Exception):
                await close_exchange(self.exchange)

    # --- warm-up and REST -------------------------------------------------------------

    async def _warm_up(self) -> None:
        now = await self._server_now()
        newest = self._newest_closed(now)
        start = candle_open(candle_index(newest, self.timeframe) - self._warmup + 1, self.timeframe)
        for symbol in self.symbols:
            self._settled[symbol] = self._before(start)
            await self._fetch_closed(symbol, now)
        self._next_ts = start

    async def _fetch_closed(self, symbol: str, now: int) -> bool:
        """Fetch ``symbol``'s closed candles after its settled one up to ``now`` (exchange
        ms); settle it through the newest closed. True when candles came in."""
        ex, tf = self.exchange, self.timeframe
        newest = self._newest_closed(now)
        settled = self._settled[symbol]
        assert settled is not None
        limit = int(ex.feature_value(symbol, "fetchOHLCV", "limit", DEFAULT_PAGE) or DEFAULT_PAGE)
        cursor = self._after(settled)
        got = False
        while cursor <= newest:
            since = cursor
            fetch = functools.partial(ex.fetch_ohlcv, symbol, tf, since=since, limit=limit)
            rows = await self._read(fetch, f"{symbol} candles")
            last = None
            for row in rows:
                ts = int(row[0])
                if since <= ts <= newest:
                    self._pending[symbol][ts] = _candle(symbol, row)
                    last, got = ts, True
            if last is None or len(rows) < limit:
                break
            cursor = self._after(last)
        self._settle(symbol, newest)
        forming = self._forming[symbol]
        if forming is not None and forming[0] <= newest:
            self._forming[symbol] = None
        if got:
            self._heard = self._clock()
        return got

    async def _catch_up(self, symbols: set[str]) -> None:
        """One REST round for ``symbols`` (the loop starts it as a task)."""
        try:
            now = await self._server_now()
            got = False
            for symbol in self.symbols:
                if symbol in symbols:
                    got = await self._fetch_closed(symbol, now) or got
            if got and self._phase == "live":
                self.rest_fills += 1
            self._rest_failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._rest_needed |= symbols
            self._rest_failures += 1
            delay = self._backoff(self._rest_failures)
            self._rest_after = self._clock() + delay
            log.warning(
                "%s: fetching candles failed (%s); again in %.1f s",
                self.exchange.id,
                _describe(self.exchange, exc),
                delay,
            )
        finally:
            self._last_rest = self._clock()
            self._poke()

    async def _server_now(self) -> int:
        """The exchange's clock in ms (``fetch_time`` where it has one, else ours)."""
        ex = self.exchange
        if ex.has.get("fetchTime"):
            now = int(await self._read(lambda: ex.fetch_time(), "time"))
        else:
            now = int(ex.milliseconds())
        self._server = (now, self._clock())
        return now

    def _server_now_estimate(self) -> int:
        estimate = self._newest_forming
        if self._server is not None:
            at, when = self._server
            estimate = max(estimate, at + round((self._clock() - when) * 1000))
        return estimate

    async def _read(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """``call()`` with :func:`retry_read`'s retries. Before the feed is live a failure
        that outlasts them is a :class:`FeedUnavailable` with a redacted message; once
        live, the caller backs off and tries again."""
        from engine.exchange.errors import retry_read

        ex = self.exchange
        try:
            return await retry_read(
                call, what=f"{ex.id} {what}", attempts=self._attempts, rng=self._rng, exchange=ex
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._phase == "live" or not _is_ccxt_error(exc):
                raise
            raise FeedUnavailable(f"cannot get {ex.id}'s {what}: {_describe(ex, exc)}") from None

    # --- websocket --------------------------------------------------------------------

    async def _watch(self, symbol: str) -> None:
        """Stream ``symbol``'s candles; on an error, back off and subscribe again."""
        ex, failures = self.exchange, 0
        while not self._closed:
            try:
                rows = await ex.watch_ohlcv(symbol, self.timeframe)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closed:
                    return
                failures += 1
                self.reconnects += 1
                from engine.exchange.errors import classify

                observe.current().exchange_error(type(exc).__name__, classify(exc))
                # Its last update may be lost with the connection: REST settles it.
                self._forming[symbol] = None
                self._rest_needed.add(symbol)
                self._poke()
                delay = self._backoff(failures)
                log.warning(
                    "%s %s: websocket lost (%s); reconnecting in %.1f s",
                    ex.id,
                    symbol,
                    _describe(ex, exc),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            if failures:
                log.info("%s %s: websocket back after %d failures", ex.id, symbol, failures)
                failures = 0
            self._heard = self._clock()
            for row in rows:
                self._on_update(symbol, list(row))
            self._poke()

    def _on_update(self, symbol: str, row: list[float]) -> None:
        """One websocket update of ``symbol``'s candle ``row[0]``."""
        ts = int(row[0])
        settled = self._settled[symbol]
        if settled is None or ts <= settled:
            return  # history already settled (through REST)
        self._newest_forming = max(self._newest_forming, ts)
        forming = self._forming[symbol]
        if forming is None or ts == forming[0]:
            if forming is None and ts != self._after(settled):
                self._rest_needed.add(symbol)  # candles closed while we were not listening
            self._forming[symbol] = row
            return
        if ts < forming[0]:
            return  # an old update arriving late
        # A newer candle: the forming one is closed, with the values of its last update.
        closed = int(forming[0])
        self._pending[symbol][closed] = _candle(symbol, forming)
        self._forming[symbol] = row
        if closed == self._after(settled):
            self._settle(symbol, closed)
        if ts != self._after(closed) or self._settled[symbol] != closed:
            self._rest_needed.add(symbol)  # a jump: REST says whether those are gaps

    # --- settling and batching --------------------------------------------------------

    def _settle(self, symbol: str, ts: int) -> None:
        settled = self._settled[symbol]
        if settled is None or ts > settled:
            self._settled[symbol] = ts

    def _ready_batches(self) -> list[list[Candle]]:
        """Every batch that can go out now, oldest first; the newest of them is live when
        it is the newest closed timestamp and the warm-up is over."""
        out: list[list[Candle]] = []
        if self._next_ts is None:
            return out
        floor = min((s for s in self._settled.values() if s is not None), default=None)
        if floor is None or None in self._settled.values():
            return out
        newest = max(s for s in self._settled.values() if s is not None)
        ts, batch_ts = self._next_ts, None
        while ts <= floor:
            batch: list[Candle] = []
            for symbol in self.symbols:
                candle = self._pending[symbol].pop(ts, None)
                if candle is not None:
                    batch.append(candle)
                    self._seen[symbol] = True
                    self._end_gap(symbol)
                elif self._seen[symbol]:
                    first, n = self._gap_runs.get(symbol, (ts, 0))
                    self._gap_runs[symbol] = (first, n + 1)
            if batch:
                out.append(batch)
                batch_ts = ts
            ts = self._after(ts)
        self._next_ts = ts
        if out:
            self._last_emitted = batch_ts
            self._lag_since = None
            if self._phase == "live" and batch_ts == newest:
                self._live_batch = out[-1]
        return out

    def _end_gap(self, symbol: str) -> None:
        run = self._gap_runs.pop(symbol, None)
        if run is not None:
            self._gap(symbol, *run)

    # --- the live loop ----------------------------------------------------------------

    async def _live(self) -> AsyncGenerator[list[Candle], None]:
        rest: asyncio.Task[None] | None = None
        next_poll = self._clock()
        while not self._closed:
            for batch in self._ready_batches():
                if self._closed:
                    break
                yield batch
            if self._closed:
                break
            now = self._clock()
            wait = self._poll_s
            if not self.websocket:
                if now >= next_poll:
                    self._rest_needed.update(self.symbols)
                    next_poll = now + self._poll_s
                wait = next_poll - now
            else:
                wait = min(wait, self._check_lag(now), self._check_quiet(now))
            if self._rest_needed and (rest is None or rest.done()):
                if now >= self._rest_after:
                    symbols, self._rest_needed = set(self._rest_needed), set()
                    rest = asyncio.create_task(self._catch_up(symbols), name="cma-feed-rest")
                    self._tasks = [t for t in self._tasks if not t.done()] + [rest]
                else:
                    wait = min(wait, self._rest_after - now)
            await self._sleep(max(0.0, wait))
        if rest is not None:
            rest.cancel()

    def _check_lag(self, now: float) -> float:
        """Start the grace clock when some symbols settled the next batch and some did
        not; past it, REST settles the laggards. Returns how long until it is due."""
        next_ts = self._next_ts
        assert next_ts is not None
        lagging = {s for s, ts in self._settled.items() if ts is None or ts < next_ts}
        if not lagging or len(lagging) == len(self.symbols):
            self._lag_since = None
            return self._poll_s
        if self._lag_since is None:
            self._lag_since = now
        due = self._lag_since + self._grace_s
        if now >= due:
            self._rest_needed |= lagging
            self._lag_since = now  # again after another grace, if REST did not settle them
            return self._grace_s
        return due - now

    def _check_quiet(self, now: float) -> float:
        """A websocket silent for ``stale_seconds``: ask REST what closed meanwhile."""
        heard = self._heard if self._heard is not None else now
        due = max(heard, self._last_rest) + self._stale_s
        if now >= due:
            self._rest_needed.update(self.symbols)
            self._last_rest = now
            return self._stale_s
        return due - now

    async def _sleep(self, seconds: float) -> None:
        wake = self._wake
        assert wake is not None
        wake.clear()
        if self._closed:
            return
        # asyncio.wait's timeout cancels nothing: no cancellation of this task to tell
        # apart from a real one (the engine's stop, Ctrl-C).
        waiter = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=seconds)
        finally:
            waiter.cancel()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _backoff(self, failures: int) -> float:
        """Exponential backoff with jitter: half to all of ``base * 2**(failures-1)``,
        at most the cap."""
        ceiling = min(self._backoff_cap, self._backoff_base * 2.0 ** min(failures - 1, 16))
        return ceiling * (0.5 + 0.5 * self._rng.random())

    # --- timestamps -------------------------------------------------------------------

    def _after(self, ts: int) -> int:
        return candle_open(candle_index(ts, self.timeframe) + 1, self.timeframe)

    def _before(self, ts: int) -> int:
        return candle_open(candle_index(ts, self.timeframe) - 1, self.timeframe)

    def _newest_closed(self, now: int) -> int:
        """The open time of the newest candle closed at exchange time ``now``."""
        return self._before(now)


def _candle(symbol: str, row: Sequence[Any]) -> Candle:
    return Candle(
        symbol,
        int(row[0]),
        float(row[1]),
        float(row[2]),
        float(row[3]),
        float(row[4]),
        float(row[5] or 0.0),
    )


def _is_ccxt_error(exc: BaseException) -> bool:
    import ccxt

    return isinstance(exc, ccxt.BaseError)


def _describe(exchange: Any, exc: BaseException) -> str:
    """One redacted line for the log: the exchange's keys never reach it."""
    from engine.exchange.errors import describe

    secrets = [s for s in (exchange.apiKey, exchange.secret, exchange.password) if s]
    return describe(exc, secrets)
