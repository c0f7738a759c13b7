"""What the indicators share: the period check and the warm-up mean."""

from __future__ import annotations


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
