"""Incremental technical indicators for the candle hot path.

Every indicator is a small slotted class fed one value (or one candle's
high/low/close) at a time. ``update(...)`` returns the new value, or ``None``
while the indicator is still warming up; the ``value`` property returns the
last result. Each update does O(1) amortized work and the memory held is
bounded by the period: windows are ``deque(maxlen=period)`` and rolling
extremes use monotonic deques. Nothing here allocates per update beyond
deque appends, and nothing uses numpy, because a backtest calls these a
million times.

Warm-up and seeding follow talipp (https://github.com/nardew/talipp), which
the tests use as the reference:

* ``EMA(n)`` is seeded with the simple mean of the first ``n`` values, so its
  first value comes with the ``n``-th input.
* ``RSI(n)`` and ``ATR(n)`` use Wilder smoothing seeded with the simple mean
  of the first ``n`` changes (RSI) or true ranges (ATR). The first true range
  is the first candle's high - low, so ATR's first value comes with the
  ``n``-th candle and RSI's with the ``n + 1``-th close.
* ``MACD`` starts once the slow EMA is ready; its signal line is an EMA of the
  MACD line seeded with the mean of its first ``signal`` values.
* ``ROC(n)`` is in percent: ``100 * (x - x[-n]) / x[-n]``.

Values are floats: market data is float; money is Decimal elsewhere.
"""

from __future__ import annotations

from collections import deque
from math import sqrt

__all__ = [
    "ATR",
    "EMA",
    "MACD",
    "ROC",
    "RSI",
    "SMA",
    "RollingMax",
    "RollingMin",
    "RollingStd",
    "VolumeSurge",
]


def _check_period(period: int, minimum: int = 1) -> int:
    if not isinstance(period, int) or period < minimum:
        raise ValueError(f"period must be an int >= {minimum}, got {period!r}")
    return period


class _Seed:
    """The simple mean of the first ``period`` values: how EMA, RSI and ATR start.

    Only fed during the warm-up; the indicators smooth on their own after it.
    """

    __slots__ = ("_count", "_sum", "period")

    def __init__(self, period: int) -> None:
        self.period = period
        self._count = 0
        self._sum = 0.0

    def add(self, x: float) -> float | None:
        """Add one warm-up value; the mean with the ``period``-th, None before it."""
        self._count += 1
        self._sum += x
        if self._count == self.period:
            return self._sum / self.period
        return None


class SMA:
    """Simple moving average over the last ``period`` values.

    Keeps a running sum over a fixed window; the first value comes with the
    ``period``-th input.
    """

    __slots__ = ("_sum", "_value", "_window", "period")

    def __init__(self, period: int) -> None:
        self.period = _check_period(period)
        self._window: deque[float] = deque(maxlen=period)
        self._sum = 0.0
        self._value: float | None = None

    def update(self, x: float) -> float | None:
        """Add one value; return the mean of the last ``period`` values, or None."""
        window = self._window
        if len(window) == self.period:
            self._sum += x - window[0]
            window.append(x)
            self._value = self._sum / self.period
        else:
            window.append(x)
            self._sum += x
            if len(window) == self.period:
                self._value = self._sum / self.period
        return self._value

    @property
    def value(self) -> float | None:
        """The last mean, or None while warming up."""
        return self._value


class EMA:
    """Exponential moving average with ``alpha = 2 / (period + 1)``.

    Seeded with the simple mean of the first ``period`` values (talipp's and
    TA-Lib's convention), so the first value comes with the ``period``-th input.
    """

    __slots__ = ("_alpha", "_beta", "_seed", "_value", "period")

    def __init__(self, period: int) -> None:
        self.period = _check_period(period)
        self._alpha = 2.0 / (period + 1.0)
        self._beta = 1.0 - self._alpha
        self._seed = _Seed(period)
        self._value: float | None = None

    def update(self, x: float) -> float | None:
        """Add one value; return the new average, or None while warming up."""
        value = self._value
        if value is not None:
            # talipp's exact arithmetic, so the reference test can hold bit for bit.
            value = self._alpha * x + self._beta * value
            self._value = value
            return value
        self._value = self._seed.add(x)
        return self._value

    @property
    def value(self) -> float | None:
        """The last average, or None while warming up."""
        return self._value


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


class RollingMax:
    """Maximum of the last ``period`` values (a Donchian channel's upper band).

    A monotonic deque holds the window's candidates in non-increasing order,
    so each update is amortized O(1) and memory stays within ``2 * period``
    floats. Equal values are all kept, which lets an expiring value be matched
    against the head by value, with no index bookkeeping per update.
    """

    __slots__ = ("_mono", "_window", "period")

    def __init__(self, period: int) -> None:
        self.period = _check_period(period)
        self._window: deque[float] = deque(maxlen=period)
        self._mono: deque[float] = deque()

    def update(self, x: float) -> float | None:
        """Add one value; return the maximum of the last ``period``, or None."""
        window = self._window
        mono = self._mono
        if len(window) == self.period and window[0] == mono[0]:
            mono.popleft()
        window.append(x)
        while mono and mono[-1] < x:
            mono.pop()
        mono.append(x)
        return mono[0] if len(window) == self.period else None

    @property
    def value(self) -> float | None:
        """The current maximum, or None while warming up."""
        return self._mono[0] if len(self._window) == self.period else None


class RollingMin:
    """Minimum of the last ``period`` values (a Donchian channel's lower band).

    The mirror image of ``RollingMax``.
    """

    __slots__ = ("_mono", "_window", "period")

    def __init__(self, period: int) -> None:
        self.period = _check_period(period)
        self._window: deque[float] = deque(maxlen=period)
        self._mono: deque[float] = deque()

    def update(self, x: float) -> float | None:
        """Add one value; return the minimum of the last ``period``, or None."""
        window = self._window
        mono = self._mono
        if len(window) == self.period and window[0] == mono[0]:
            mono.popleft()
        window.append(x)
        while mono and mono[-1] > x:
            mono.pop()
        mono.append(x)
        return mono[0] if len(window) == self.period else None

    @property
    def value(self) -> float | None:
        """The current minimum, or None while warming up."""
        return self._mono[0] if len(self._window) == self.period else None


class VolumeSurge:
    """This candle's volume over the mean volume of the previous ``period`` candles.

    The current candle is left out of the mean, so a spike is not diluted by
    itself; the first value comes with the ``period + 1``-th candle. None when
    the previous ``period`` volumes are all zero, where the ratio means nothing.
    The running sum is recomputed every ``64 * period`` updates, because volumes
    span orders of magnitude and each large one leaves rounding behind.
    """

    __slots__ = ("_since_resync", "_sum", "_value", "_window", "_zeros", "period")

    def __init__(self, period: int = 20) -> None:
        self.period = _check_period(period)
        self._window: deque[float] = deque(maxlen=period)
        self._sum = 0.0
        self._zeros = 0
        self._since_resync = 0
        self._value: float | None = None

    def update(self, volume: float) -> float | None:
        """Add one candle's volume; return the surge ratio, or None."""
        window = self._window
        if len(window) == self.period:
            total = self._sum
            # Count zeros rather than test the sum: rounding residue is rarely exactly 0.
            if self._zeros == self.period or total <= 0.0:
                self._value = None
            else:
                self._value = volume * self.period / total
            old = window[0]
            if old == 0.0:
                self._zeros -= 1
            self._sum = total - old
        self._sum += volume
        window.append(volume)
        if volume == 0.0:
            self._zeros += 1
        self._since_resync += 1
        if self._since_resync >= 64 * self.period:
            self._sum = sum(window)
            self._since_resync = 0
        return self._value

    @property
    def value(self) -> float | None:
        """The last ratio, or None."""
        return self._value
