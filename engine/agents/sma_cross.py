"""SMA cross: the textbook moving-average crossover, with a numpy batch form."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from engine.agents.base import Agent, BatchVotes, CandleColumns, fmt_price
from engine.indicators import SMA
from engine.models import AgentVote, Candle, Side

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["SmaCrossAgent"]

#: Two averages closer than this fraction of the slow one are equal (a tie, no
#: side). It is far below a price tick (a billionth of the price) and far above
#: the rounding a running sum gathers over millions of candles, so a flat
#: stretch reads as a tie, not as a cross made of rounding noise.
TIE = 1e-9


def _side(fast: float, slow: float) -> int:
    """+1 if the fast average is above the slow one, -1 below, 0 a tie."""
    diff = fast - slow
    tol = abs(slow) * TIE
    return 1 if diff > tol else -1 if diff < -tol else 0


def _check(label: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"sma_cross: {label} must be a positive int, got {value!r}")
    return value


class SmaCrossAgent(Agent):
    """Votes when SMA(``fast``) of the closes crosses SMA(``slow``).

    On the close of candle t: LONG when the fast average crosses above the
    slow one, SHORT when it crosses below, always at strength 1.0; the
    rationale gives both averages. A cross means the fast average is now on
    the other side of the slow one from where it last was: two averages equal
    (to a billionth, :data:`TIE`) are on no side, so touching and turning back
    is no cross, and the first side after the warm-up is not one either (there
    was no side before it). The first possible vote is on candle ``slow + 1``.

    The averages are ``engine.indicators.SMA`` running sums; the batch form
    makes the same sums with ``numpy.cumsum`` of the same differences, in the
    same order, so both give bit-for-bit the same averages and the same votes.
    Gaps are ignored: the averages are over the last candles that exist, as a
    textbook backtest computes them.
    """

    name: ClassVar[str] = "sma_cross"

    __slots__ = ("_fast", "_side", "_slow", "fast_period", "slow_period")

    def __init__(self, symbol: str, *, fast: int = 10, slow: int = 20) -> None:
        super().__init__(symbol)
        self.fast_period = _check("fast", fast)
        self.slow_period = _check("slow", slow)
        if fast >= slow:
            raise ValueError(f"sma_cross: fast must be below slow, got fast={fast}, slow={slow}")
        self._fast = SMA(fast)
        self._slow = SMA(slow)
        self._side = 0  # the side the fast average was last on; 0 before any

    def on_candle(self, candle: Candle) -> AgentVote | None:
        """Vote on a cross of the two averages at this close, else None."""
        fast = self._fast.update(candle.close)
        slow = self._slow.update(candle.close)
        if fast is None or slow is None:
            return None  # warming up
        side = _side(fast, slow)
        prev = self._side
        if side == 0 or side == prev:
            return None
        self._side = side
        if prev == 0:
            return None  # the first side seen: nothing was crossed
        return self.vote(
            Side.LONG if side > 0 else Side.SHORT, 1.0, self._rationale(side, fast, slow)
        )

    def _rationale(self, side: int, fast: float, slow: float) -> str:
        word = "above" if side > 0 else "below"
        return (
            f"SMA({self.fast_period}) {fmt_price(fast)} crossed {word} "
            f"SMA({self.slow_period}) {fmt_price(slow)}"
        )

    def batch_votes(self, columns: CandleColumns) -> BatchVotes:
        """The votes of ``on_candle`` on every close of ``columns``, with numpy."""
        import numpy as np  # only a backtest pays for importing numpy

        close = np.asarray(columns.close, dtype=np.float64)
        n = len(close)
        fast = _rolling_mean(close, self.fast_period)
        slow = _rolling_mean(close, self.slow_period)
        diff = fast - slow
        tol = np.abs(slow) * TIE
        # NaN (warming up) compares false both ways: no side.
        side = (diff > tol).astype(np.int8) - (diff < -tol).astype(np.int8)
        # The index of the last candle with a side, up to and including each one.
        at = np.where(side != 0, np.arange(n), -1)
        np.maximum.accumulate(at, out=at)
        prev = np.zeros(n, dtype=np.int8)  # the side before each candle
        if n > 1:
            before = at[:-1]
            prev[1:] = np.where(before >= 0, side[np.maximum(before, 0)], 0)
        cross = (side != 0) & (prev != 0) & (side != prev)
        direction = np.where(cross, side, 0).astype(np.int8)
        strength = cross.astype(np.float64)
        return BatchVotes(direction, strength, {"fast": fast, "slow": slow})

    def batch_rationale(self, votes: BatchVotes, index: int) -> str:
        """The rationale ``on_candle`` gives for the vote on candle ``index``."""
        return self._rationale(
            int(votes.direction[index]),
            float(votes.detail["fast"][index]),
            float(votes.detail["slow"][index]),
        )


def _rolling_mean(x: NDArray[np.float64], period: int) -> NDArray[np.float64]:
    """SMA(period) at every index (NaN while warming up), as ``SMA.update`` computes it.

    ``SMA`` keeps a running sum: it adds each value while the window fills,
    then ``x[i] - x[i - period]``. ``numpy.cumsum`` adds the same terms one by
    one in the same order (an accumulation, not a pairwise sum), so the sums,
    and the means, are the same floats.
    """
    import numpy as np  # only a backtest pays for importing numpy

    steps = x.copy()
    steps[period:] -= x[:-period]
    means = np.cumsum(steps) / period
    means[: period - 1] = np.nan
    return means
