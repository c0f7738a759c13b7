"""Momentum: RSI reversals and MACD turns, weighed with rate of change and volume."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from engine.agents.base import Agent, BatchVotes, CandleColumns
from engine.indicators import ATR, MACD, ROC, RSI, VolumeSurge
from engine.models import AgentVote, Candle, Side

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["MomentumAgent"]


def _clip01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


class MomentumAgent(Agent):
    """Votes when momentum turns: an RSI reversal, or a MACD turn with follow-through.

    Two setups trigger a vote:

    * **RSI reversal.** RSI(``rsi_period``) crosses back up through
      ``oversold`` (LONG) or back down through ``overbought`` (SHORT).
    * **MACD turn.** The MACD histogram changes sign, the rate of change over
      ``roc_period`` candles has the same sign, and volume is at least
      ``min_volume`` times the average of the previous ``volume_period``
      candles.

    The strength is ``0.2 + 0.8 * mean`` of four scores in [0, 1], each zero
    when it points the other way: RSI (1 on a reversal cross, otherwise its
    distance from 50 with 25 points in full), the MACD histogram (0.2 ATR in
    full), the rate of change (2 ATRs of travel in full) and volume (3x the
    average in full); the ATR is taken over ``rsi_period`` candles. If the two
    setups point opposite ways the agent abstains. On 1-minute BTC-USDT
    (March 2023) it votes on about 4 % of candles.

    Returns None while warming up (``slow + signal`` candles, 35 by default).
    A gap longer than ``rsi_period`` candles resets the state.

    For backtests, ``batch_votes`` gives the same votes (the same strength
    floats) over a whole series at once, and ``batch_rationale`` the same words.
    """

    name: ClassVar[str] = "momentum"

    __slots__ = (
        "_atr",
        "_macd",
        "_prev_hist",
        "_prev_rsi",
        "_roc",
        "_rsi",
        "_vol",
        "macd_periods",
        "min_volume",
        "overbought",
        "oversold",
        "roc_period",
        "rsi_period",
        "volume_period",
    )

    def __init__(
        self,
        symbol: str,
        *,
        rsi_period: int = 14,
        oversold: float = 30.0,
        overbought: float = 70.0,
        macd_periods: tuple[int, int, int] = (12, 26, 9),
        roc_period: int = 10,
        volume_period: int = 20,
        min_volume: float = 1.5,
    ) -> None:
        super().__init__(symbol)
        if not 0.0 < oversold < overbought < 100.0:
            raise ValueError(f"need 0 < oversold < overbought < 100, got {oversold}, {overbought}")
        self.rsi_period = rsi_period
        self.oversold = oversold
        self.overbought = overbought
        self.macd_periods = macd_periods
        self.roc_period = roc_period
        self.volume_period = volume_period
        self.min_volume = min_volume
        self._reset()

    def _reset(self) -> None:
        self._rsi = RSI(self.rsi_period)
        self._macd = MACD(*self.macd_periods)
        self._roc = ROC(self.roc_period)
        self._vol = VolumeSurge(self.volume_period)
        self._atr = ATR(self.rsi_period)
        self._prev_rsi: float | None = None
        self._prev_hist: float | None = None

    def on_gap(self, symbol: str, missing: int) -> None:
        """Reset when the hole is longer than the RSI period."""
        if missing > self.rsi_period:
            self._reset()

    def on_candle(self, candle: Candle) -> AgentVote | None:
        """Vote when momentum turns, else None."""
        close = candle.close
        rsi = self._rsi.update(close)
        hist = self._macd.update(close)
        roc = self._roc.update(close)
        surge = self._vol.update(candle.volume)
        atr = self._atr.update(candle.high, candle.low, close)
        prev_rsi, prev_hist = self._prev_rsi, self._prev_hist
        self._prev_rsi, self._prev_hist = rsi, hist

        if rsi is None or prev_rsi is None or hist is None or prev_hist is None:
            return None
        if roc is None or atr is None or atr <= 0.0:
            return None

        direction = 0
        rsi_cross = False
        if prev_rsi < self.oversold <= rsi:
            direction, rsi_cross = 1, True
        elif prev_rsi > self.overbought >= rsi:
            direction, rsi_cross = -1, True
        macd_turn = 0
        if prev_hist <= 0.0 < hist:
            macd_turn = 1
        elif prev_hist >= 0.0 > hist:
            macd_turn = -1
        if macd_turn and macd_turn * roc > 0.0 and surge is not None and surge >= self.min_volume:
            if direction and direction != macd_turn:
                return None
            direction = macd_turn
        if not direction:
            return None

        rsi_score = 1.0 if rsi_cross else _clip01(direction * (rsi - 50.0) / 25.0)
        macd_score = _clip01(direction * hist / (0.2 * atr))
        roc_score = _clip01(direction * roc * close / (100.0 * atr) / 2.0)
        vol_score = 0.0 if surge is None else _clip01((surge - 1.0) / 2.0)
        strength = 0.2 + 0.2 * (rsi_score + macd_score + roc_score + vol_score)

        # 0.2 + 0.2 * (four scores in [0, 1]) lies in [0.2, 1]; AgentVote checks it (no clamping).
        return AgentVote(
            self.name,
            self.symbol,
            Side.LONG if direction > 0 else Side.SHORT,
            strength,
            self._rationale(direction, rsi_cross, prev_rsi, rsi, prev_hist, hist, roc, surge),
        )

    def _rationale(
        self,
        direction: int,
        rsi_cross: bool,
        prev_rsi: float,
        rsi: float,
        prev_hist: float,
        hist: float,
        roc: float,
        surge: float | None,
    ) -> str:
        turn = "up" if direction > 0 else "down"
        if rsi_cross:
            lead = f"RSI {prev_rsi:.1f}→{rsi:.1f} crossing {turn}"
            hist_text = f"MACD hist {hist:+.4g}"
        else:
            lead = f"MACD hist {prev_hist:+.4g}→{hist:+.4g} turning {turn}"
            hist_text = f"RSI {rsi:.1f}"
        vol_text = "vol n/a" if surge is None else f"vol {surge:.1f}x"
        return (
            f"{lead}, {hist_text}, ROC({self.roc_period}) {round(roc, 2) + 0.0:+.2f}%, {vol_text}"
        )

    def batch_votes(self, columns: CandleColumns) -> BatchVotes:
        """The votes of ``on_candle`` on every candle of ``columns``, computed whole.

        The indicators are ``engine.indicators.batch``'s whole-series forms (the
        same floats as the incremental ones); the rule below is ``on_candle``'s,
        written over arrays, in the same order of operations. Where a gap makes
        the live agent reset (more than ``rsi_period`` candles missing, counted
        as the engine counts them for ``on_gap``), every indicator starts afresh.
        """
        import numpy as np  # only a backtest pays for importing numpy

        from engine.indicators.batch import (
            atr_series,
            by_blocks,
            macd_histogram_series,
            missing_in,
            previous_rows,
            roc_series,
            rsi_series,
            volume_surge_series,
        )

        close = np.asarray(columns.close, dtype=np.float64)
        breaks = missing_in(columns) > self.rsi_period
        # The hungriest first (its scratch comes and goes before the others are kept).
        surge = volume_surge_series(columns.volume, self.volume_period, breaks=breaks)
        rsi = rsi_series(close, self.rsi_period, breaks=breaks)
        hist = macd_histogram_series(close, *self.macd_periods, breaks=breaks)
        roc = roc_series(close, self.roc_period, breaks=breaks)
        atr = atr_series(columns.high, columns.low, close, self.rsi_period, breaks=breaks)

        def block_votes(
            rows: slice,
        ) -> tuple[NDArray[np.int8], NDArray[np.float64], NDArray[np.bool_]]:
            """Direction, strength and RSI cross of the candles ``rows``: on_candle's rule."""
            rsi, prev_rsi, hist, prev_hist = (
                rsi_[rows],
                previous_rows(rsi_, breaks, rows),
                hist_[rows],
                previous_rows(hist_, breaks, rows),
            )
            roc, atr, surge, close = roc_[rows], atr_[rows], surge_[rows], close_[rows]
            ready = ~(np.isnan(rsi) | np.isnan(prev_rsi) | np.isnan(hist) | np.isnan(prev_hist))
            ready &= ~np.isnan(roc) & (atr > 0.0)  # NaN > 0 is False: a warming ATR is not ready
            up = (prev_rsi < self.oversold) & (self.oversold <= rsi)
            down = ~up & (prev_rsi > self.overbought) & (self.overbought >= rsi)
            rsi_dir = up.astype(np.int8) - down.astype(np.int8)
            turn = ((prev_hist <= 0.0) & (hist > 0.0)).astype(np.int8)
            turn -= ((prev_hist >= 0.0) & (hist < 0.0) & (turn == 0)).astype(np.int8)
            macd_ok = (turn != 0) & (turn * roc > 0.0) & (surge >= self.min_volume)
            against = macd_ok & (rsi_dir != 0) & (rsi_dir != turn)
            direction = np.where(macd_ok, turn, rsi_dir).astype(np.int8)
            direction[~ready | against] = 0

            rsi_cross = rsi_dir != 0
            sign = direction.astype(np.float64)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                rsi_score = np.where(rsi_cross, 1.0, _clip(sign * (rsi - 50.0) / 25.0))
                macd_score = _clip(sign * hist / (0.2 * atr))
                roc_score = _clip(sign * roc * close / (100.0 * atr) / 2.0)
                vol_score = np.where(np.isnan(surge), 0.0, _clip((surge - 1.0) / 2.0))
                strength = 0.2 + 0.2 * (rsi_score + macd_score + roc_score + vol_score)
            strength = np.where(direction != 0, strength, 0.0)
            return direction, strength, rsi_cross

        # The masks and scores are made a block of candles at a time (each candle's
        # vote depends on its own row only): their memory does not grow with the series.
        rsi_, hist_ = rsi, hist
        roc_, atr_, surge_, close_ = roc, atr, surge, close
        direction, strength, rsi_cross = by_blocks(
            block_votes, len(close), np.int8, np.float64, np.bool_
        )
        detail: dict[str, NDArray[Any]] = {
            "rsi": rsi,
            "hist": hist,
            "roc": roc,
            "surge": surge,
            "rsi_cross": rsi_cross,
        }
        return BatchVotes(direction, strength, detail)

    def batch_rationale(self, votes: BatchVotes, index: int) -> str:
        """The rationale ``on_candle`` gives for the vote on candle ``index``."""
        detail = votes.detail
        rsi, hist = detail["rsi"], detail["hist"]
        surge = float(detail["surge"][index])
        return self._rationale(
            int(votes.direction[index]),
            bool(detail["rsi_cross"][index]),
            float(rsi[index - 1]),
            float(rsi[index]),
            float(hist[index - 1]),
            float(hist[index]),
            float(detail["roc"][index]),
            None if surge != surge else surge,
        )


def _clip(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """``_clip01`` over an array: the same comparisons, so the same floats."""
    import numpy as np  # only a backtest pays for importing numpy

    return np.where(x < 0.0, 0.0, np.where(x > 1.0, 1.0, x))
