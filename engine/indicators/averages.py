"""Moving averages: the simple mean of a window and the exponential average."""

from __future__ import annotations

from collections import deque

from engine.indicators._seed import _check_period, _Seed

__all__ = ["EMA", "SMA"]


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
