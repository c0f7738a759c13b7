"""The one interface every market feed offers, and pacing for local feeds.

A feed yields *batches*: all candles that closed at one timestamp, in the
order of :attr:`Feed.symbols`. A feed that knows a candle is missing yields
nothing for it (never a zero or a forward-filled candle), counts it in
:attr:`Feed.gaps` and tells the optional ``on_gap`` callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

from engine.models import Candle
from engine.timeframes import timeframe_ms

#: ``on_gap(symbol, first_missing_ts, missing)``: called once per run of missing candles.
GapCallback = Callable[[str, int, int], None]

#: Unpaced feeds hand the event loop a turn after about this many candles.
YIELD_EVERY_CANDLES = 256

# A consumer that fell this far behind the pacing deadline (a stalled UI, a
# debugger) resumes at the set speed instead of bursting to catch up.
_MAX_LAG_S = 1.0


def check_speed(speed: float | None) -> float | None:
    """Return ``speed`` if it is None or a finite number above zero, else raise ValueError."""
    if speed is not None and not (speed > 0 and math.isfinite(speed)):
        raise ValueError(f"speed must be a finite number above 0 or None, got {speed!r}")
    return speed


class Feed(ABC):
    """A source of closed candles for a fixed set of symbols and one timeframe.

    ``batches()`` is an async generator; each item holds every candle that
    closed at one timestamp, in :attr:`symbols` order (a symbol with no candle
    at that timestamp is absent). ``close()`` makes it finish promptly.
    """

    name: str = "feed"
    symbols: tuple[str, ...]
    timeframe: str

    def __init__(
        self,
        symbols: Sequence[str],
        timeframe: str,
        *,
        speed: float | None = None,
        on_gap: GapCallback | None = None,
    ) -> None:
        self.symbols = tuple(symbols)
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"symbols must be unique, got {self.symbols}")
        self.timeframe = timeframe
        self.timeframe_ms = timeframe_ms(timeframe)
        self._speed = check_speed(speed)
        self.gaps: Counter[str] = Counter()
        self._on_gap = on_gap
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        #: The first batches play unpaced, as history to warm indicators up (a live
        #: demo starts with agents ready); the engine proposes nothing from them.
        self.warmup_batches = 0
        #: The last candle's timestamp, where a feed knows it before it plays (a replay).
        self.last_ts: int | None = None

    @property
    def speed(self) -> float | None:
        """Market time per wall time (60 plays an hour of candles a minute); None: no pacing.

        It may be changed while ``batches()`` runs; the next pause uses the new value.
        """
        return self._speed

    @speed.setter
    def speed(self, value: float | None) -> None:
        self._speed = check_speed(value)
        self._wake_up()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @abstractmethod
    def batches(self) -> AsyncIterator[list[Candle]]:
        """Yield, as an async generator, each timestamp's closed candles in symbol order."""

    async def prepare(self) -> None:
        """Check the feed against its source before the engine starts (an exchange feed
        loads the markets and checks its symbols). Raises ValueError naming the setting
        to fix, or ConnectionError when the source cannot be reached. Local feeds
        check everything when they are built."""
        return None

    def is_live(self, batch: Sequence[Candle]) -> bool:
        """Whether ``batch`` is the market as it is now, so the engine may propose on it.

        False for history a feed catches up on (an exchange feed's warm-up and the
        candles it fills in after a reconnect): stale data makes no proposals.
        """
        return True

    def staleness(self) -> float | None:
        """Seconds since the feed last heard from its market, when that is long enough to
        call the feed stale (the console shows it); None while it is fresh. Local feeds
        are never stale."""
        return None

    def last_candle_age(self) -> float | None:
        """Seconds since the last candle yielded closed, by the market's clock, where the
        feed knows it (an exchange feed; the console shows it beside a stale feed)."""
        return None

    def close(self) -> None:
        """Stop the feed: a running ``batches()`` finishes promptly. Idempotent.

        Safe to call from the event loop's thread or any other.
        """
        self._closed = True
        self._wake_up()

    def _wake_up(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        # The loop may close between the check and the call.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake.set)

    def _gap(self, symbol: str, first_ts: int, missing: int) -> None:
        """Record ``missing`` candles of ``symbol`` from ``first_ts`` on."""
        self.gaps[symbol] += missing
        if self._on_gap is not None:
            self._on_gap(symbol, first_ts, missing)


class SyncFeed(Feed):
    """A feed whose candles come from a plain iterator (the demo market, replays).

    Backtests drive :meth:`iter_batches` at interpreter speed; the console
    awaits :meth:`batches`, which paces the same batches by :attr:`speed`.
    """

    @abstractmethod
    def iter_batches(self) -> Iterator[list[Candle]]:
        """Yield each timestamp's candles without pacing; every call starts a fresh pass.

        A fresh pass resets :attr:`gaps`; the iterator stops once :meth:`close` is called.
        """

    async def batches(self) -> AsyncIterator[list[Candle]]:
        """Yield :meth:`iter_batches`, paced by :attr:`speed`.

        With a speed, batches are ``timeframe / speed`` apart on a monotonic
        deadline, so time spent by the consumer does not add up into drift.
        Without one, the event loop still gets a turn every
        :data:`YIELD_EVERY_CANDLES` candles so a UI in the same loop stays live.
        Each batch is one timeframe of market time, so a stretch that no
        symbol traded is not waited out. One consumer at a time.
        """
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        self._loop, self._wake = loop, asyncio.Event()
        batches = self.iter_batches()
        try:
            anchor: float | None = None  # when the previous batch was due
            since_turn = 0
            for index, batch in enumerate(batches):
                if self._closed:
                    return
                if anchor is None or index < self.warmup_batches or self._speed is None:
                    anchor = loop.time()  # what _pace returns without a speed, minus an await
                else:
                    anchor = await self._pace(anchor)
                if self._closed:
                    return
                since_turn += len(batch)
                if since_turn >= YIELD_EVERY_CANDLES:
                    since_turn = 0
                    await asyncio.sleep(0)
                    if self._closed:
                        return
                yield batch
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
            self._loop = self._wake = None

    async def _pace(self, anchor: float) -> float:
        """Wait until one timeframe at the current speed after ``anchor``; return when that was.

        Returns early when the feed is closed. A change of speed while waiting
        re-times the wait.
        """
        loop = asyncio.get_running_loop()
        while True:
            speed = self._speed
            now = loop.time()
            if speed is None:
                return now
            due = anchor + self.timeframe_ms / speed / 1000
            if due <= now:
                return due if now - due <= _MAX_LAG_S else now
            if not await self._sleep_until(due) or self._closed:
                return due

    async def _sleep_until(self, deadline: float) -> bool:
        """Sleep until loop time ``deadline``; return True if woken early by close or speed."""
        wake = self._wake
        assert wake is not None
        wake.clear()
        try:
            async with asyncio.timeout_at(deadline):
                await wake.wait()
        except TimeoutError:
            return False
        return True
