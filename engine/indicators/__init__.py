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

The indicators, by module: moving averages (``SMA``, ``EMA``) in ``averages``;
oscillators (``RSI``, ``MACD``, ``ROC``) in ``oscillators``; ``RollingStd`` and
``ATR`` in ``volatility``; ``RollingMax`` and ``RollingMin`` in ``channels``;
``VolumeSurge`` in ``volume``; the period check and the warm-up mean they share
(``_Seed``) in ``_seed``. Import them from here.
"""

from __future__ import annotations

from engine.indicators.averages import EMA, SMA
from engine.indicators.channels import RollingMax, RollingMin
from engine.indicators.oscillators import MACD, ROC, RSI
from engine.indicators.volatility import ATR, RollingStd
from engine.indicators.volume import VolumeSurge

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
