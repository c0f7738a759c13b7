"""Whole-series forms of the indicators, for backtests: the same floats, in one pass.

Each function gives, at every index, exactly what the incremental indicator's
``update`` returns after that candle (NaN where it returns None), because it
does the same float operations in the same order. They are plain loops over
Python floats where the indicator is recursive (numpy cannot run a recursion
without changing the order of the additions), and numpy where it is not.
``tests/engine/test_indicator_batch.py`` holds each one to its indicator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.indicators._seed import _check_period

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["atr_series"]


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
    synthesizer drops its estimate rather than bridge one).
    """
    import numpy as np  # only a backtest pays for importing numpy

    _check_period(period)
    n = len(close)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    his, los, cls = high.tolist(), low.tolist(), close.tolist()
    starts = set() if breaks is None else set(np.flatnonzero(breaks).tolist())
    values = out.tolist()
    prev: float | None = None
    value: float | None = None
    count = 0
    total = 0.0
    nan = float("nan")
    for i in range(n):
        if i in starts:
            prev = value = None
            count = 0
            total = 0.0
        h = his[i]
        lo = los[i]
        tr = h - lo
        if prev is not None:
            if h - prev > tr:
                tr = h - prev
            if prev - lo > tr:
                tr = prev - lo
        prev = cls[i]
        if value is not None:
            value = (value * (period - 1) + tr) / period
            values[i] = value
            continue
        count += 1
        total += tr
        if count == period:
            value = total / period
            values[i] = value
        else:
            values[i] = nan
    return np.array(values, dtype=np.float64)
