"""The correlation tracker: bounded windows of closes per symbol, and their returns' correlation.

**Gaps.** Returns are taken between consecutive timestamps at which *both*
symbols have a close, so a missing candle is skipped, never a zero return, and
both returns of a pair always span the same interval. A correlation needs at
least ``min_samples`` aligned returns; with fewer it is unknown (None).

The coefficient is :func:`statistics.correlation` (Pearson's). A flat series
moves with nothing: where it raises for a constant input, the answer is 0.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from itertools import pairwise

from engine.risk._inputs import require_float, require_int, require_text, require_ts


def pearson(xs: list[float], ys: list[float]) -> float:
    """Pearson's correlation of two equally long series, in [-1, 1]; 0 when one is flat."""
    try:
        corr = statistics.correlation(xs, ys)
    except statistics.StatisticsError:
        return 0.0  # a constant series (or a variance that underflowed to 0)
    return max(-1.0, min(1.0, corr))


class CorrelationTracker:
    """The last closes of each symbol, enough for ``window`` aligned returns.

    Feed it with :meth:`on_candle` (O(1)); ask :meth:`correlation`.
    """

    def __init__(self, window: int, min_samples: int) -> None:
        require_int("window", window, 3)
        require_int("min_samples", min_samples, 2)
        self.window = window
        self.min_samples = min_samples
        # Each symbol's last times and closes, side by side (a backtest extends them by
        # the hundred: two plain columns take that without a tuple per candle).
        self._times: dict[str, deque[int]] = {}
        self._closes: dict[str, deque[float]] = {}
        # Twice the window, so that gaps in one symbol still leave a window of aligned returns.
        self._kept = 2 * window + 1

    def _columns(self, symbol: str) -> tuple[deque[int], deque[float]]:
        times = self._times.get(symbol)
        if times is None:
            times = self._times[symbol] = deque(maxlen=self._kept)
            closes = self._closes[symbol] = deque(maxlen=self._kept)
            return times, closes
        return times, self._closes[symbol]

    def on_candle(self, symbol: str, ts: int, close: float) -> None:
        """Record a closed candle's close. An older ``ts`` than the last is ignored."""
        # Per candle: the common good input costs one test, a bad one gets its message.
        if not (
            type(close) is float
            and 0.0 < close < math.inf
            and type(ts) is int
            and ts >= 0
            and type(symbol) is str
            and symbol.strip()
        ):
            require_text("symbol", symbol)
            require_ts("ts", ts)
            require_float("close", close, allow_zero=False)
        times, closes = self._columns(symbol)
        if times and ts <= times[-1]:
            if ts == times[-1]:
                closes[-1] = float(close)  # the same candle, revised
            return
        times.append(ts)
        closes.append(float(close))

    def extend(self, symbol: str, ts: list[int], closes: list[float]) -> None:
        """Record candles already checked (a backtest's columns), in time order and
        after the last one recorded: what :meth:`on_candle` on each would keep."""
        if len(ts) != len(closes):
            raise ValueError(f"{symbol}: {len(ts)} times for {len(closes)} closes")
        times, kept = self._columns(symbol)
        if times and ts and ts[0] <= times[-1]:
            raise ValueError(f"{symbol}: candles at {ts[0]} are not after the last recorded")
        times.extend(ts)
        kept.extend(closes)

    def correlation(self, symbol_a: str, symbol_b: str) -> float | None:
        """Correlation of close-to-close returns over the last ``window`` aligned returns,
        or None while there are fewer than ``min_samples``."""
        require_text("symbol_a", symbol_a)
        require_text("symbol_b", symbol_b)
        times_a = self._times.get(symbol_a)
        times_b = self._times.get(symbol_b)
        if not times_a or not times_b:
            return None
        closes_b = dict(zip(times_b, self._closes[symbol_b], strict=True))
        common = [
            (close_a, closes_b[ts])
            for ts, close_a in zip(times_a, self._closes[symbol_a], strict=True)
            if ts in closes_b
        ]
        returns_a: list[float] = []
        returns_b: list[float] = []
        for (a0, b0), (a1, b1) in pairwise(common):
            returns_a.append(a1 / a0 - 1.0)
            returns_b.append(b1 / b0 - 1.0)
        returns_a, returns_b = returns_a[-self.window :], returns_b[-self.window :]
        if len(returns_a) < self.min_samples:
            return None
        return pearson(returns_a, returns_b)
