"""Oscillators of the close: RSI, MACD and the rate of change."""

from __future__ import annotations

from collections import deque

from engine.indicators._seed import _check_period, _Seed
from engine.indicators.averages import EMA

__all__ = ["MACD", "ROC", "RSI"]


class RSI:
    """Relative strength index with Wilder smoothing (default period 14).

    The average gain and loss are seeded with the simple mean of the first
    ``period`` close-to-close changes, then smoothed as
    ``avg = (avg * (period - 1) + x) / period``; the first value comes with the
    ``period + 1``-th close. When the average loss is zero the RSI is 100, as
    in talipp, except when the average gain is zero too: a market that has not
    moved at all reads a neutral 50, not "overbought".
    """

    __slots__ = ("_avg_gain", "_avg_loss", "_gain_seed", "_loss_seed", "_prev", "_value", "period")

    def __init__(self, period: int = 14) -> None:
        self.period = _check_period(period)
        self._prev: float | None = None
        self._gain_seed = _Seed(period)
        self._loss_seed = _Seed(period)
        self._avg_gain = 0.0
        self._avg_loss = 0.0
        self._value: float | None = None

    def update(self, close: float) -> float | None:
        """Add one close; return the RSI in [0, 100], or None while warming up."""
        prev = self._prev
        self._prev = close
        if prev is None:
            return None
        change = close - prev
        gain = change if change > 0.0 else 0.0
        loss = -change if change < 0.0 else 0.0
        period = self.period
        if self._value is None:
            avg_gain = self._gain_seed.add(gain)
            avg_loss = self._loss_seed.add(loss)
            if avg_gain is None or avg_loss is None:
                return None
            self._avg_gain = avg_gain
            self._avg_loss = avg_loss
        else:
            self._avg_gain = (self._avg_gain * (period - 1) + gain) / period
            self._avg_loss = (self._avg_loss * (period - 1) + loss) / period
        avg_loss = self._avg_loss
        if avg_loss == 0.0:
            self._value = 100.0 if self._avg_gain > 0.0 else 50.0
        else:
            self._value = 100.0 - 100.0 / (1.0 + self._avg_gain / avg_loss)
        return self._value

    @property
    def value(self) -> float | None:
        """The last RSI, or None while warming up."""
        return self._value


class MACD:
    """Moving average convergence/divergence (default 12/26/9).

    ``macd = EMA(fast) - EMA(slow)`` once the slow EMA is ready;
    ``signal = EMA(signal)`` of the MACD line, seeded with the mean of its first
    ``signal`` values; ``histogram = macd - signal``. ``update`` returns the
    histogram (None until the signal line is ready); the ``macd``, ``signal``
    and ``histogram`` properties give all three.
    """

    __slots__ = ("_fast", "_hist", "_macd", "_signal", "_slow")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        if not fast < slow:
            raise ValueError(f"fast period must be shorter than slow, got {fast} and {slow}")
        self._fast = EMA(fast)
        self._slow = EMA(slow)
        self._signal = EMA(signal)
        self._macd: float | None = None
        self._hist: float | None = None

    def update(self, close: float) -> float | None:
        """Add one close; return the histogram, or None while warming up."""
        fast = self._fast.update(close)
        slow = self._slow.update(close)
        if fast is None or slow is None:
            return None
        macd = fast - slow
        self._macd = macd
        signal = self._signal.update(macd)
        if signal is None:
            return None
        self._hist = macd - signal
        return self._hist

    @property
    def macd(self) -> float | None:
        """The MACD line, or None while the slow EMA warms up."""
        return self._macd

    @property
    def signal(self) -> float | None:
        """The signal line, or None while warming up."""
        return self._signal.value

    @property
    def histogram(self) -> float | None:
        """MACD minus signal, or None while warming up."""
        return self._hist

    @property
    def value(self) -> float | None:
        """Same as ``histogram``."""
        return self._hist


class ROC:
    """Rate of change over ``period`` values, in percent.

    ``100 * (x - x[-period]) / x[-period]``; the first value comes with the
    ``period + 1``-th input. None when the reference value is zero.
    """

    __slots__ = ("_value", "_window", "period")

    def __init__(self, period: int = 10) -> None:
        self.period = _check_period(period)
        self._window: deque[float] = deque(maxlen=period + 1)
        self._value: float | None = None

    def update(self, x: float) -> float | None:
        """Add one value; return the rate of change in percent, or None."""
        window = self._window
        window.append(x)
        if len(window) <= self.period:
            return None
        ref = window[0]
        self._value = 100.0 * (x - ref) / ref if ref != 0.0 else None
        return self._value

    @property
    def value(self) -> float | None:
        """The last rate of change, or None."""
        return self._value
