"""Whole-series forms of the indicators, for backtests: the same floats, in one pass.

Each function gives, at every index, exactly what the incremental indicator's
``update`` returns after that candle (NaN where it returns None), because it
does the same float operations in the same order. They are plain loops over
Python floats where the indicator is recursive (numpy cannot run a recursion
without changing the order of the additions), and numpy where it is not.
``tests/engine/test_indicator_batch.py`` holds each one to its indicator.

The loops are generator expressions over the floats of a memoryview, with the
state in locals, poured into ``numpy.fromiter`` (no list of a million floats on
either side); where one indicator runs several recursions (RSI's two averages,
MACD's three EMAs) they share one loop. A million candles take about 0.04 s per
recursion. ``breaks`` marks where an agent starts its indicators afresh.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from engine.indicators._seed import _check_period

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from engine.agents.base import CandleColumns

__all__ = [
    "atr_series",
    "ema_series",
    "macd_histogram_series",
    "macd_series",
    "missing_before",
    "missing_in",
    "previous",
    "previous_rows",
    "roc_series",
    "rolling_max_series",
    "rolling_min_series",
    "rsi_series",
    "sharing",
    "true_range_series",
    "volume_surge_series",
    "wilder_series",
]


def atr_series(
    high: NDArray[np.float64],
    low: NDArray[np.float64],
    close: NDArray[np.float64],
    period: int = 14,
    *,
    breaks: NDArray[np.bool_] | None = None,
) -> NDArray[np.float64]:
    """``ATR(period).update(high[i], low[i], close[i])`` at every ``i`` (NaN warming up).

    ``breaks[i]`` True starts a fresh ATR at candle ``i`` (a gap before it: the
    synthesizer drops its estimate rather than bridge one). Wilder's smoothing of
    the true range, as ``ATR`` computes it.
    """
    _check_period(period)
    return _once(
        "atr",
        (high, low, close),
        period,
        breaks,
        lambda h, lo, c: wilder_series(
            true_range_series(h, lo, c, breaks=breaks), period, breaks=breaks
        ),
    )


def _once(
    name: str,
    arrays: tuple[Any, ...],
    period: int,
    breaks: NDArray[np.bool_] | None,
    make: Callable[..., NDArray[np.float64]],
) -> NDArray[np.float64]:
    """``make(*arrays)``; inside :func:`sharing`, made once for the same series ``name``
    of the same arrays (the same memory), period and breaks, and handed out read-only."""
    import numpy as np  # only a backtest pays for importing numpy

    inputs = tuple(np.asarray(x, dtype=np.float64) for x in arrays)
    if _shared is None:
        return make(*inputs)
    if breaks is not None:
        _check_breaks(len(inputs[0]), breaks)
    # A break at the first candle starts nothing afresh: the same as none.
    fresh = () if breaks is None else tuple(int(i) for i in np.flatnonzero(breaks) if i > 0)
    key = (name, *(_where(x) for x in inputs), period, fresh)
    known = _shared.get(key)
    if known is not None:
        return known[1]
    out = make(*inputs)
    out.flags.writeable = False  # handed to every reader: none may change it
    # The inputs are kept with it, so their memory (which the key names) is not reused.
    _shared[key] = (inputs, out)
    return out


#: The series made inside :func:`sharing`, by name, where their inputs lie, period and
#: breaks, with their inputs.
_shared: dict[tuple[object, ...], tuple[tuple[Any, ...], NDArray[np.float64]]] | None = None


@contextmanager
def sharing() -> Iterator[None]:
    """Inside, :func:`atr_series` and :func:`volume_surge_series` of the same arrays (the
    same memory), period and breaks are computed once and handed out read-only to
    each caller: a backtest's synthesis and its agents read the same ATR(14) of the
    same candles, and both default agents the same volume surge. Outside, every call
    computes afresh and nothing is kept."""
    global _shared
    outer = _shared
    if outer is None:
        _shared = {}
    try:
        yield
    finally:
        if outer is None:
            _shared = None


def _where(x: NDArray[np.float64]) -> tuple[object, ...]:
    """Where an array's values lie: the same tuple is the same values while it lives."""
    return (x.__array_interface__["data"][0], x.shape, x.strides)


def _check_breaks(n: int, breaks: NDArray[np.bool_]) -> None:
    if len(breaks) != n:
        raise ValueError(f"breaks has {len(breaks)} entries for {n} values")


def _pieces(n: int, breaks: NDArray[np.bool_] | None) -> list[tuple[int, int]]:
    """The ``(start, stop)`` of each run of candles between breaks."""
    import numpy as np  # only a backtest pays for importing numpy

    if breaks is None:
        return [(0, n)]
    _check_breaks(n, breaks)
    starts = [0, *(int(i) for i in np.flatnonzero(breaks) if i > 0), n]
    return list(itertools.pairwise(starts))


def _piecewise(
    n: int,
    breaks: NDArray[np.bool_] | None,
    piece: Callable[[int, int], NDArray[np.float64]],
) -> NDArray[np.float64]:
    """``piece(start, stop)`` over each run between breaks, put together."""
    import numpy as np  # only a backtest pays for importing numpy

    pieces = _pieces(n, breaks)
    if len(pieces) == 1:
        return piece(0, n)
    out = np.empty(n, dtype=np.float64)
    for start, stop in pieces:
        out[start:stop] = piece(start, stop)
    return out


def _floats(values: NDArray[np.float64]) -> Iterator[float]:
    """The values as Python floats, one at a time.

    A memoryview makes each float as the loop asks for it: no list of a million
    floats is built (``.tolist()`` would cost a third of the loop again).
    """
    import numpy as np  # only a backtest pays for importing numpy

    return iter(np.ascontiguousarray(values, dtype=np.float64).data)


def _seed(values: NDArray[np.float64], period: int) -> float:
    """``_Seed``'s mean of the first ``period`` values: added one by one from 0.0."""
    total = 0.0
    for x in values[:period].tolist():
        total += x
    return total / period


def _rsi(avg_gain: float, avg_loss: float) -> float:
    """RSI's value from its two averages (50 for a market that has not moved)."""
    if avg_loss == 0.0:
        return 100.0 if avg_gain > 0.0 else 50.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


def _wilder(values: NDArray[np.float64], period: int) -> NDArray[np.float64]:
    """Wilder smoothing (RSI's averages, ATR) seeded with the mean; NaN warming up."""
    import numpy as np  # only a backtest pays for importing numpy

    m = len(values)
    out = np.full(m, np.nan)
    if m < period:
        return out
    value = out[period - 1] = _seed(values, period)
    keep, p = float(period - 1), float(period)  # the same floats as the int operands
    out[period:] = np.fromiter(
        (value := (value * keep + x) / p for x in _floats(values[period:])),
        dtype=np.float64,
        count=m - period,
    )
    return out


def _ema(values: NDArray[np.float64], period: int) -> NDArray[np.float64]:
    """``EMA(period)`` over ``values``; NaN warming up."""
    import numpy as np  # only a backtest pays for importing numpy

    m = len(values)
    out = np.full(m, np.nan)
    if m < period:
        return out
    alpha = 2.0 / (period + 1.0)
    beta = 1.0 - alpha
    value = out[period - 1] = _seed(values, period)
    out[period:] = np.fromiter(
        (value := alpha * x + beta * value for x in _floats(values[period:])),
        dtype=np.float64,
        count=m - period,
    )
    return out


# --- the indicators ------------------------------------------------------------------------


def missing_before(ts: NDArray[np.int64], step: int | None = None) -> NDArray[np.int64]:
    """How many candles are missing before each candle, as the engine tells ``on_gap``.

    The signal pipeline calls ``agent.on_gap(symbol, (ts - last) // step - 1)``
    when a candle comes more than ``step`` (the timeframe, in ms) after the one
    before; this is that number at every candle (0 where there is no gap, and on
    the first candle). ``step`` None takes the smallest positive step of ``ts``,
    as ``engine.agents.testing.assert_batch_matches`` does.
    """
    import numpy as np  # only a backtest pays for importing numpy

    missing = np.zeros(len(ts), dtype=np.int64)
    if len(ts) < 2:
        return missing
    steps = np.diff(np.asarray(ts, dtype=np.int64))
    if step is None:
        positive = steps[steps > 0]
        if not len(positive):
            return missing
        step = int(positive.min())
    if step <= 0:
        raise ValueError(f"the candle step must be above 0 ms, got {step}")
    missing[1:] = np.where(steps > step, steps // step - 1, 0)
    return missing


def missing_in(columns: CandleColumns) -> NDArray[np.int64]:
    """:func:`missing_before` for an agent's columns, counted in their timeframe.

    ``columns.timeframe`` where the columns have one (``engine.backtest.data.Columns``
    do: the engine counts gaps in the feed's timeframe), else the smallest step.
    """
    from engine.timeframes import timeframe_ms

    timeframe = getattr(columns, "timeframe", None)
    step = timeframe_ms(timeframe) if isinstance(timeframe, str) else None
    return missing_before(columns.ts, step)


def previous(
    values: NDArray[np.float64], breaks: NDArray[np.bool_] | None = None
) -> NDArray[np.float64]:
    """The value of the candle before at every candle (NaN on the first and after a break).

    What an agent that keeps "the value before" holds, a reset forgetting it.
    """
    import numpy as np  # only a backtest pays for importing numpy

    prev = np.empty(len(values), dtype=np.float64)
    prev[:1] = np.nan
    prev[1:] = values[:-1]
    if breaks is not None:
        _check_breaks(len(prev), breaks)
        prev[breaks] = np.nan
    return prev


def previous_rows(
    values: NDArray[np.float64], breaks: NDArray[np.bool_] | None, rows: slice
) -> NDArray[np.float64]:
    """``previous(values, breaks)[rows]`` (``rows`` a slice with a start, no step), made
    for those rows alone: a block's worth of memory, not the series'."""
    import numpy as np  # only a backtest pays for importing numpy

    start, stop, _ = rows.indices(len(values))
    prev = np.empty(max(stop - start, 0), dtype=np.float64)
    if not len(prev):
        return prev
    if start == 0:
        prev[0] = np.nan
        prev[1:] = values[: stop - 1]
    else:
        prev[:] = values[start - 1 : stop - 1]
    if breaks is not None:
        _check_breaks(len(values), breaks)
        prev[breaks[start:stop]] = np.nan
    return prev


def wilder_series(
    values: NDArray[np.float64], period: int = 14, *, breaks: NDArray[np.bool_] | None = None
) -> NDArray[np.float64]:
    """Wilder's smoothing of ``values`` at every index (NaN warming up).

    The mean of the first ``period`` values (added one by one), then
    ``avg = (avg * (period - 1) + x) / period``: RSI's average gain and loss and
    the ATR of the true ranges (``atr_series`` is
    ``wilder_series(true_range_series(high, low, close), period)``).
    """
    import numpy as np  # only a backtest pays for importing numpy

    _check_period(period)
    values = np.asarray(values, dtype=np.float64)
    return _piecewise(
        len(values),
        breaks,
        lambda a, b: _wilder(values[a:b], period),
    )


def true_range_series(
    high: NDArray[np.float64],
    low: NDArray[np.float64],
    close: NDArray[np.float64],
    *,
    breaks: NDArray[np.bool_] | None = None,
) -> NDArray[np.float64]:
    """``ATR``'s true range at every candle: ``high - low`` on the first (and after a break),
    then the largest of that, ``high - prev_close`` and ``prev_close - low``."""
    import numpy as np  # only a backtest pays for importing numpy

    high = np.asarray(high, dtype=np.float64)
    low = np.asarray(low, dtype=np.float64)
    tr = high - low
    if len(tr) < 2:
        return tr
    prev = np.asarray(close, dtype=np.float64)[:-1]
    out = tr.copy()
    rest = out[1:]
    # ATR.update's two comparisons, in its order (not np.maximum, which differs on NaN).
    step = high[1:] - prev
    np.copyto(rest, step, where=step > rest)
    np.subtract(prev, low[1:], out=step)
    np.copyto(rest, step, where=step > rest)
    if breaks is not None:
        _check_breaks(len(out), breaks)
        fresh = np.flatnonzero(breaks)
        out[fresh] = tr[fresh]
    return out


def ema_series(
    values: NDArray[np.float64], period: int, *, breaks: NDArray[np.bool_] | None = None
) -> NDArray[np.float64]:
    """``EMA(period).update(values[i])`` at every ``i`` (NaN warming up)."""
    import numpy as np  # only a backtest pays for importing numpy

    _check_period(period)
    values = np.asarray(values, dtype=np.float64)
    return _piecewise(
        len(values),
        breaks,
        lambda a, b: _ema(values[a:b], period),
    )


def rsi_series(
    close: NDArray[np.float64], period: int = 14, *, breaks: NDArray[np.bool_] | None = None
) -> NDArray[np.float64]:
    """``RSI(period).update(close[i])`` at every ``i`` (NaN warming up)."""
    import numpy as np  # only a backtest pays for importing numpy

    _check_period(period)
    close = np.asarray(close, dtype=np.float64)

    def piece(a: int, b: int) -> NDArray[np.float64]:
        if b - a <= period:
            return np.full(b - a, np.nan)
        change = close[a + 1 : b] - close[a : b - 1]
        gains = np.where(change > 0.0, change, 0.0)
        losses = np.where(change < 0.0, -change, 0.0)
        g, loss = _seed(gains, period), _seed(losses, period)
        keep, p = float(period - 1), float(period)
        out = np.full(b - a, np.nan)
        out[period] = _rsi(g, loss)
        # RSI.update's smoothing and value in one loop: each average is
        # (avg * (period - 1) + x) / period as there (the loss first, for the test).
        out[period + 1 :] = np.fromiter(
            (
                100.0 - 100.0 / (1.0 + (g := (g * keep + x) / p) / loss)
                if (loss := (loss * keep + y) / p) != 0.0
                else (100.0 if (g := (g * keep + x) / p) > 0.0 else 50.0)
                for x, y in zip(_floats(gains[period:]), _floats(losses[period:]), strict=True)
            ),
            dtype=np.float64,
            count=b - a - period - 1,
        )
        return out

    return _piecewise(len(close), breaks, piece)


def macd_series(
    close: NDArray[np.float64],
    fast: int = 12,
    slow: int = 26,
    signal: int = 9,
    *,
    breaks: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``MACD(fast, slow, signal)``'s ``macd``, ``signal`` and ``histogram`` at every index.

    NaN where the indicator gives None: the MACD line before the slow EMA is
    ready, the signal line and the histogram before the signal EMA is.
    """
    import numpy as np  # only a backtest pays for importing numpy

    if not fast < slow:
        raise ValueError(f"fast period must be shorter than slow, got {fast} and {slow}")
    for period in (fast, slow, signal):
        _check_period(period)
    close = np.asarray(close, dtype=np.float64)
    n = len(close)
    line = np.full(n, np.nan)
    sig = np.full(n, np.nan)
    for a, b in _pieces(n, breaks):
        line[a:b] = _ema(close[a:b], fast) - _ema(close[a:b], slow)
        if b - a >= slow:
            sig[a + slow - 1 : b] = _ema(line[a + slow - 1 : b], signal)
    return line, sig, line - sig


def macd_histogram_series(
    close: NDArray[np.float64],
    fast: int = 12,
    slow: int = 26,
    signal: int = 9,
    *,
    breaks: NDArray[np.bool_] | None = None,
) -> NDArray[np.float64]:
    """``MACD(fast, slow, signal).update(close[i])`` (the histogram) at every ``i``.

    The same floats as ``macd_series(...)[2]`` in one fused loop: the three
    EMAs, the line and the histogram per close, once all three are warm.
    """
    import numpy as np  # only a backtest pays for importing numpy

    if not fast < slow:
        raise ValueError(f"fast period must be shorter than slow, got {fast} and {slow}")
    for period in (fast, slow, signal):
        _check_period(period)
    close = np.asarray(close, dtype=np.float64)
    warm = slow + signal - 1  # the histogram's first value comes with this many closes
    a1, a2, a3 = 2.0 / (fast + 1.0), 2.0 / (slow + 1.0), 2.0 / (signal + 1.0)
    b1, b2, b3 = 1.0 - a1, 1.0 - a2, 1.0 - a3

    def piece(a: int, b: int) -> NDArray[np.float64]:
        if b - a < warm:
            return np.full(b - a, np.nan)
        head = close[a : a + warm]
        f_head, s_head = _ema(head, fast), _ema(head, slow)
        line = f_head[slow - 1 :] - s_head[slow - 1 :]
        sig_head = _ema(line, signal)
        f, s, sig = float(f_head[-1]), float(s_head[-1]), float(sig_head[-1])
        out = np.full(b - a, np.nan)
        out[warm - 1] = float(line[-1]) - sig
        out[warm:] = np.fromiter(
            (
                (now := (f := a1 * x + b1 * f) - (s := a2 * x + b2 * s))
                - (sig := a3 * now + b3 * sig)
                for x in _floats(close[a + warm : b])
            ),
            dtype=np.float64,
            count=b - a - warm,
        )
        return out

    return _piecewise(len(close), breaks, piece)


def roc_series(
    values: NDArray[np.float64], period: int = 10, *, breaks: NDArray[np.bool_] | None = None
) -> NDArray[np.float64]:
    """``ROC(period).update(values[i])`` at every ``i``, in percent (NaN where it is None)."""
    import numpy as np  # only a backtest pays for importing numpy

    _check_period(period)
    values = np.asarray(values, dtype=np.float64)

    def piece(a: int, b: int) -> NDArray[np.float64]:
        out = np.full(b - a, np.nan)
        if b - a > period:
            x, ref = values[a + period : b], values[a : b - period]
            with np.errstate(divide="ignore", invalid="ignore"):
                out[period:] = np.where(ref != 0.0, 100.0 * (x - ref) / ref, np.nan)
        return out

    return _piecewise(len(values), breaks, piece)


def volume_surge_series(
    volume: NDArray[np.float64], period: int = 20, *, breaks: NDArray[np.bool_] | None = None
) -> NDArray[np.float64]:
    """``VolumeSurge(period).update(volume[i])`` at every ``i`` (NaN where it is None).

    ``VolumeSurge`` keeps a running sum, ``(sum - oldest) + newest`` per candle,
    and replaces it with ``sum(window)`` every ``64 * period`` updates. Between
    two of those the sums are one ``numpy.cumsum`` (an accumulation: the same
    additions in the same order) over the terms interleaved, ``-oldest``,
    ``+newest``, ...; the replacements are Python's ``sum`` of the same window.
    """
    _check_period(period)
    return _once("volume_surge", (volume,), period, breaks, lambda v: _surge(v, period, breaks))


def _surge(
    volume: NDArray[np.float64], period: int, breaks: NDArray[np.bool_] | None
) -> NDArray[np.float64]:
    import numpy as np  # only a backtest pays for importing numpy

    every = 64 * period

    def piece(a: int, b: int) -> NDArray[np.float64]:
        v = volume[a:b]
        m = len(v)
        out = np.full(m, np.nan)
        if m <= period:
            return out
        # after[k]: the running sum after update k (and after a resync there).
        after = np.empty(m, dtype=np.float64)
        # Resyncs cut the accumulation: each block of `every` updates restarts from
        # Python's sum of the window (as VolumeSurge does), one cumsum row per block.
        ends = range(every - 1, m, every)
        starts = np.array([sum(v[e - period + 1 : e + 1].tolist()) for e in ends])
        first_end = min(every, m) - 1
        first = min(m, first_end + 1)
        terms = np.empty(_term_index(first_end, period) + 1, dtype=np.float64)
        terms[0] = 0.0
        terms[1 : period + 1] = v[:period]
        terms[period + 1 :: 2] = -v[: first - period]
        terms[period + 2 :: 2] = v[period:first]
        after[: first_end + 1] = np.cumsum(terms)[_term_positions(0, first_end, period)]
        # Updates from `every` on: two terms each (-oldest, +newest), 2 * every per
        # block, a few blocks at a time so the memory does not grow with the series.
        rows = -(-(m - every) // every) if m > every else 0
        for r0 in range(0, rows, _SURGE_ROWS):
            r1 = min(rows, r0 + _SURGE_ROWS)
            lo, hi = every + r0 * every, min(m, every + r1 * every)
            flat = np.zeros((r1 - r0) * 2 * every, dtype=np.float64)
            flat[0 : 2 * (hi - lo) : 2] = -v[lo - period : hi - period]
            flat[1 : 2 * (hi - lo) : 2] = v[lo:hi]
            block = np.empty((r1 - r0, 2 * every + 1), dtype=np.float64)
            block[:, 0] = starts[r0:r1]
            block[:, 1:] = flat.reshape(r1 - r0, 2 * every)
            after[lo:hi] = np.cumsum(block, axis=1)[:, 2::2].ravel()[: hi - lo]
        after[every - 1 :: every] = starts
        total = after[period - 1 : m - 1]  # the sum before each update from `period` on
        zero = np.concatenate([[0], np.cumsum(v == 0.0)])
        zeros = zero[period:m] - zero[: m - period]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ratio = v[period:] * period / total
        out[period:] = np.where((zeros == period) | (total <= 0.0), np.nan, ratio)
        return out

    return _piecewise(len(volume), breaks, piece)


#: Rows per block of :func:`by_blocks`.
_BLOCK = 1 << 16
#: Resync blocks of the volume surge summed at once.
_SURGE_ROWS = 32


def _term_index(k: int, period: int) -> int:
    """Where update ``k``'s last term (its ``+newest``) lies in the interleaved terms."""
    return k + 1 if k < period else 2 * k - period + 2


def _term_positions(k0: int, k1: int, period: int) -> NDArray[np.int64]:
    """The term index of updates ``k0`` to ``k1`` (inclusive)."""
    import numpy as np  # only a backtest pays for importing numpy

    k = np.arange(k0, k1 + 1, dtype=np.int64)
    return np.where(k < period, k + 1, 2 * k - period + 2)


def _rolling(
    values: NDArray[np.float64],
    period: int,
    breaks: NDArray[np.bool_] | None,
    pick: Callable[[NDArray[np.float64], NDArray[np.float64]], NDArray[np.float64]],
) -> NDArray[np.float64]:
    import numpy as np  # only a backtest pays for importing numpy

    _check_period(period)
    values = np.asarray(values, dtype=np.float64)

    def piece(a: int, b: int) -> NDArray[np.float64]:
        x = values[a:b]
        out = np.full(b - a, np.nan)
        if b - a < period:
            return out
        # Extremes of windows of 1, 2, 4, ... by doubling; two overlapping ones cover `period`.
        span, best = 1, x
        while span * 2 <= period:
            best = pick(best[:-span], best[span:])
            span *= 2
        rest = period - span
        out[period - 1 :] = pick(best[: len(best) - rest], best[rest:])
        return out

    return _piecewise(len(values), breaks, piece)


def rolling_max_series(
    values: NDArray[np.float64], period: int, *, breaks: NDArray[np.bool_] | None = None
) -> NDArray[np.float64]:
    """``RollingMax(period).update(values[i])`` at every ``i`` (NaN warming up)."""
    import numpy as np  # only a backtest pays for importing numpy

    return _rolling(values, period, breaks, np.maximum)


def rolling_min_series(
    values: NDArray[np.float64], period: int, *, breaks: NDArray[np.bool_] | None = None
) -> NDArray[np.float64]:
    """``RollingMin(period).update(values[i])`` at every ``i`` (NaN warming up)."""
    import numpy as np  # only a backtest pays for importing numpy

    return _rolling(values, period, breaks, np.minimum)


def by_blocks(
    part: Callable[[slice], tuple[NDArray[Any], ...]], n: int, *dtypes: Any
) -> tuple[NDArray[Any], ...]:
    """Arrays of ``n`` values of ``dtypes``, filled a block of rows at a time by
    ``part(rows)``: for a rule where each row depends on its own inputs only, so its
    masks and scores take the memory of a block, not of the series."""
    import numpy as np  # only a backtest pays for importing numpy

    outs = tuple(np.zeros(n, dtype=d) for d in dtypes)
    for start in range(0, n, _BLOCK):
        rows = slice(start, start + _BLOCK)
        for out, got in zip(outs, part(rows), strict=True):
            out[rows] = got
    return outs
