"""Candle timeframes as ccxt names them, and where their candles open.

Candles of every timeframe open on multiples of its length counted from the
Unix epoch, except ``1w`` (Mondays 00:00 UTC, as exchanges open weekly
candles) and ``1M`` (the first of each calendar month). :data:`TIMEFRAMES`
gives ``1M`` a nominal 30 days, which is what pacing uses; alignment and gap
counting go through :func:`candle_index` and :func:`candle_open`, which know
real months.
"""

from __future__ import annotations

import calendar
import time

_MINUTE = 60_000
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
#: One UTC day in milliseconds: the engine's day rollover and the store's retention count in these.
DAY_MS = _DAY

#: Length in milliseconds of every timeframe ccxt knows; ``1M`` counts 30 days.
TIMEFRAMES: dict[str, int] = {
    "1m": _MINUTE,
    "3m": 3 * _MINUTE,
    "5m": 5 * _MINUTE,
    "15m": 15 * _MINUTE,
    "30m": 30 * _MINUTE,
    "1h": _HOUR,
    "2h": 2 * _HOUR,
    "4h": 4 * _HOUR,
    "6h": 6 * _HOUR,
    "8h": 8 * _HOUR,
    "12h": 12 * _HOUR,
    "1d": _DAY,
    "3d": 3 * _DAY,
    "1w": 7 * _DAY,
    "1M": 30 * _DAY,
}

# 1970-01-01 was a Thursday; weekly candles open on Mondays.
_WEEK_OFFSET = 4 * _DAY


def timeframe_ms(tf: str) -> int:
    """The length of timeframe ``tf`` in milliseconds (``1M`` counts 30 days).

    Raises ValueError naming the allowed values when ``tf`` is unknown.
    """
    try:
        return TIMEFRAMES[tf]
    except KeyError:
        allowed = ", ".join(TIMEFRAMES)
        raise ValueError(f"unknown timeframe {tf!r}; expected one of {allowed}") from None


def candle_offset(tf: str) -> int:
    """Milliseconds from the epoch to the first candle open of fixed-length ``tf``."""
    timeframe_ms(tf)
    return _WEEK_OFFSET if tf == "1w" else 0


def candle_index(ts: int, tf: str) -> int:
    """The ordinal, counted from the epoch, of the ``tf`` candle that contains ``ts``."""
    if tf == "1M":
        tm = time.gmtime(ts // 1000)
        return (tm.tm_year - 1970) * 12 + tm.tm_mon - 1
    return (ts - candle_offset(tf)) // timeframe_ms(tf)


def candle_open(index: int, tf: str) -> int:
    """The open time in ms of the ``tf`` candle with ordinal ``index``."""
    if tf == "1M":
        year, month0 = divmod(index, 12)
        return calendar.timegm((1970 + year, month0 + 1, 1, 0, 0, 0)) * 1000
    return candle_offset(tf) + index * timeframe_ms(tf)


def floor_ts(ts: int, tf: str) -> int:
    """The open time of the ``tf`` candle that contains ``ts``."""
    return candle_open(candle_index(ts, tf), tf)


def is_aligned(ts: int, tf: str) -> bool:
    """Whether ``ts`` is the open time of a ``tf`` candle."""
    return floor_ts(ts, tf) == ts
