"""Volume against its recent mean."""

from __future__ import annotations

from collections import deque

from engine.indicators._seed import _check_period

__all__ = ["VolumeSurge"]


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
