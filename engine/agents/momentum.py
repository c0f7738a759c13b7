"""Momentum: RSI reversals and MACD turns, weighed with rate of change and volume."""

from __future__ import annotations

from typing import ClassVar

from engine.agents.base import Agent
from engine.indicators import ATR, MACD, ROC, RSI, VolumeSurge
from engine.models import AgentVote, Candle, Side

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

        turn = "up" if direction > 0 else "down"
        if rsi_cross:
            lead = f"RSI {prev_rsi:.1f}→{rsi:.1f} crossing {turn}"
            hist_text = f"MACD hist {hist:+.4g}"
        else:
            lead = f"MACD hist {prev_hist:+.4g}→{hist:+.4g} turning {turn}"
            hist_text = f"RSI {rsi:.1f}"
        vol_text = "vol n/a" if surge is None else f"vol {surge:.1f}x"
        # 0.2 + 0.2 * (four scores in [0, 1]) lies in [0.2, 1]; AgentVote checks it (no clamping).
        return AgentVote(
            self.name,
            self.symbol,
            Side.LONG if direction > 0 else Side.SHORT,
            strength,
            f"{lead}, {hist_text}, ROC({self.roc_period}) {round(roc, 2) + 0.0:+.2f}%, {vol_text}",
        )
