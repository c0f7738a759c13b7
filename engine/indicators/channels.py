"""The highest and lowest of a window: a Donchian channel's bands."""

from __future__ import annotations

from collections import deque

from engine.indicators._seed import _check_period

__all__ = ["RollingMax", "RollingMin"]


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
