"""How far prices spread: the rolling standard deviation and the average true range."""

from __future__ import annotations

from collections import deque
from math import sqrt

from engine.indicators._seed import _check_period, _Seed

__all__ = ["ATR", "RollingStd"]


class RollingStd:
    """Standard deviation (and mean) of the last ``period`` values.

    ``ddof=0`` gives the population deviation (talipp's ``StdDev``), ``ddof=1``
    the sample deviation. The window's mean and sum of squared deviations are
    updated in place (a windowed Welford update; a running sum of squares
    would cancel catastrophically on prices near 30,000 with a spread of 10).
    Values are taken relative to a recent mean, and everything is recomputed
    exactly every ``16 * period`` updates, because rounding in the in-place
    update otherwise drifts by about 1e-9 relative within a few thousand
    candles.
    """

    __slots__ = (
        "_m2",
        "_mean",
        "_shift",
        "_since_resync",
        "_value",
        "_window",
        "ddof",
        "period",
    )

    def __init__(self, period: int, ddof: int = 0) -> None:
        self.period = _check_period(period, minimum=ddof + 1)
        if ddof not in (0, 1):
            raise ValueError(f"ddof must be 0 or 1, got {ddof!r}")
        self.ddof = ddof
        self._window: deque[float] = deque(maxlen=period)
        self._shift: float | None = None
        self._mean = 0.0  # of the shifted values
        self._m2 = 0.0
        self._since_resync = 0
        self._value: float | None = None

    def update(self, x: float) -> float | None:
        """Add one value; return the deviation of the last ``period`` values, or None."""
        window = self._window
        n = len(window)
        shift = self._shift
        if shift is None:
            shift = self._shift = x
        if n == self.period:
            a = x - shift
            b = window[0] - shift
            window.append(x)
            mean = self._mean
            new_mean = mean + (a - b) / n
            self._m2 += (a - b) * (a - new_mean + b - mean)
            self._mean = new_mean
            self._since_resync += 1
            if self._since_resync >= 16 * n:
                self._resync()
        else:
            window.append(x)
            n += 1
            delta = x - shift - self._mean
            self._mean += delta / n
            self._m2 += delta * (x - shift - self._mean)
            if n < self.period:
                return None
        m2 = self._m2 if self._m2 > 0.0 else 0.0
        self._value = sqrt(m2 / (n - self.ddof))
        return self._value

    def _resync(self) -> None:
        window = self._window
        n = len(window)
        shift = sum(window) / n
        mean = sum(v - shift for v in window) / n
        self._shift = shift
        self._mean = mean
        self._m2 = sum((v - shift - mean) ** 2 for v in window)
        self._since_resync = 0

    @property
    def mean(self) -> float | None:
        """The mean of the current window, or None while warming up."""
        if self._value is None or self._shift is None:
            return None
        return self._shift + self._mean

    @property
    def value(self) -> float | None:
        """The last deviation, or None while warming up."""
        return self._value


class ATR:
    """Average true range with Wilder smoothing (default period 14).

    The true range is ``max(high - low, |high - prev_close|, |low - prev_close|)``,
    and plain ``high - low`` for the first candle. The average is seeded with the
    mean of the first ``period`` true ranges, so the first value comes with the
    ``period``-th candle (talipp's convention; TA-Lib skips the first candle).
    """

    __slots__ = ("_prev_close", "_seed", "_value", "period")

    def __init__(self, period: int = 14) -> None:
        self.period = _check_period(period)
        self._prev_close: float | None = None
        self._seed = _Seed(period)
        self._value: float | None = None

    def update(self, high: float, low: float, close: float) -> float | None:
        """Add one candle; return the ATR, or None while warming up."""
        prev = self._prev_close
        self._prev_close = close
        tr = high - low
        if prev is not None:
            if high - prev > tr:
                tr = high - prev
            if prev - low > tr:
                tr = prev - low
        value = self._value
        if value is not None:
            value = (value * (self.period - 1) + tr) / self.period
            self._value = value
            return value
        self._value = self._seed.add(tr)
        return self._value

    @property
    def value(self) -> float | None:
        """The last ATR, or None while warming up."""
        return self._value
