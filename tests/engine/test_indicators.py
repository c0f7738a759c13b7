"""Incremental indicators against talipp and naive references on real BTC candles."""

from __future__ import annotations

import csv
import math
from collections import deque
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view
from shared_data import shared_data_dir
from talipp.indicators import ATR as TpATR
from talipp.indicators import EMA as TpEMA
from talipp.indicators import MACD as TpMACD
from talipp.indicators import ROC as TpROC
from talipp.indicators import RSI as TpRSI
from talipp.indicators import SMA as TpSMA
from talipp.indicators import StdDev as TpStdDev
from talipp.ohlcv import OHLCV

from engine.indicators import (
    ATR,
    EMA,
    MACD,
    ROC,
    RSI,
    SMA,
    RollingMax,
    RollingMin,
    RollingStd,
    VolumeSurge,
)

DATA = shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"
TALIPP_ROWS = 3000  # talipp keeps whole lists; a few thousand rows keep the test fast
REL = 1e-9


@cache
def ohlcv() -> tuple[tuple[float, float, float, float, float], ...]:
    """(open, high, low, close, volume) of every candle in the month."""
    with DATA.open(newline="") as f:
        return tuple(
            (
                float(r["open"]),
                float(r["high"]),
                float(r["low"]),
                float(r["close"]),
                float(r["volume"]),
            )
            for r in csv.DictReader(f)
        )


def closes(n: int = TALIPP_ROWS) -> list[float]:
    return [row[3] for row in ohlcv()[:n]]


def assert_series_match(
    ours: Sequence[float | None], ref: Sequence[float | None], abs_tol: float = 0.0
) -> None:
    """Same warm-up (None in the same places) and values equal to ``REL``."""
    assert len(ours) == len(ref)
    warm_ours = [i for i, v in enumerate(ours) if v is None]
    warm_ref = [i for i, v in enumerate(ref) if v is None]
    assert warm_ours == warm_ref
    assert len(warm_ours) < len(ours)  # something was compared
    for i, (a, b) in enumerate(zip(ours, ref, strict=True)):
        if a is None or b is None:
            continue
        assert math.isclose(a, b, rel_tol=REL, abs_tol=abs_tol), (i, a, b)


def feed(update: Callable[[float], float | None], values: Sequence[float]) -> list[float | None]:
    return [update(v) for v in values]


# --- talipp references -----------------------------------------------------------------


@pytest.mark.parametrize("period", [1, 9, 26, 200])
def test_ema_matches_talipp_seeded_with_sma(period: int) -> None:
    xs = closes()
    assert_series_match(feed(EMA(period).update, xs), list(TpEMA(period, input_values=xs)))


@pytest.mark.parametrize("period", [1, 20, 50])
def test_sma_matches_talipp(period: int) -> None:
    xs = closes()
    assert_series_match(feed(SMA(period).update, xs), list(TpSMA(period, input_values=xs)))


@pytest.mark.parametrize("period", [2, 14, 30])
def test_rsi_matches_talipp_wilder(period: int) -> None:
    xs = closes()
    assert_series_match(feed(RSI(period).update, xs), list(TpRSI(period, input_values=xs)))


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5)])
def test_macd_matches_talipp(fast: int, slow: int, signal: int) -> None:
    xs = closes()
    ours = MACD(fast, slow, signal)
    got_macd: list[float | None] = []
    got_signal: list[float | None] = []
    got_hist: list[float | None] = []
    for x in xs:
        hist = ours.update(x)
        assert hist == ours.histogram == ours.value
        got_macd.append(ours.macd)
        got_signal.append(ours.signal)
        got_hist.append(hist)
    ref = list(TpMACD(fast, slow, signal, input_values=xs))
    # The histogram is a small difference of prices near 23,000: compare it on the price scale.
    price_tol = REL * max(xs)
    assert_series_match(got_macd, [None if r is None else r.macd for r in ref], price_tol)
    assert_series_match(got_signal, [None if r is None else r.signal for r in ref], price_tol)
    assert_series_match(got_hist, [None if r is None else r.histogram for r in ref], price_tol)
    assert got_hist[slow + signal - 2] is not None and got_hist[slow + signal - 3] is None


@pytest.mark.parametrize("period", [1, 14, 30])
def test_atr_matches_talipp_first_true_range_is_high_minus_low(period: int) -> None:
    rows = ohlcv()[:TALIPP_ROWS]
    atr = ATR(period)
    ours = [atr.update(h, lo, c) for _, h, lo, c, _ in rows]
    ref = list(TpATR(period, input_values=[OHLCV(o, h, lo, c, v) for o, h, lo, c, v in rows]))
    assert_series_match(ours, ref)


@pytest.mark.parametrize("period", [1, 10, 60])
def test_roc_matches_talipp_in_percent(period: int) -> None:
    xs = closes()
    assert_series_match(feed(ROC(period).update, xs), list(TpROC(period, input_values=xs)))


def test_rolling_std_population_matches_talipp() -> None:
    xs = closes()
    assert_series_match(feed(RollingStd(20).update, xs), list(TpStdDev(20, input_values=xs)))


# --- conventions talipp does not cover -------------------------------------------------


def test_rsi_of_a_market_that_never_moves_is_neutral_50() -> None:
    rsi = RSI(14)
    assert feed(rsi.update, [100.0] * 30)[-1] == 50.0


def test_rsi_of_a_market_that_only_rises_is_100() -> None:
    rsi = RSI(14)
    assert feed(rsi.update, [100.0 + i for i in range(30)])[-1] == 100.0


def test_roc_of_a_zero_reference_is_none() -> None:
    roc = ROC(2)
    assert feed(roc.update, [0.0, 1.0, 2.0, 3.0]) == [None, None, None, 200.0]


def test_value_property_follows_update() -> None:
    for ind in (EMA(3), SMA(3), RollingStd(3), RSI(3), MACD(2, 3, 2), ROC(3), VolumeSurge(3)):
        assert ind.value is None
        last = None
        for x in closes(50):
            last = ind.update(x)
        assert last is not None and ind.value == last
    for extreme in (RollingMax(3), RollingMin(3)):
        assert extreme.value is None
        last = feed(extreme.update, [3.0, 1.0, 2.0, 5.0])[-1]
        assert extreme.value == last


@pytest.mark.parametrize("make", [lambda: SMA(0), lambda: EMA(-1), lambda: RollingStd(1, ddof=1)])
def test_bad_periods_raise(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="period"):
        make()


def test_macd_with_fast_not_shorter_than_slow_raises() -> None:
    with pytest.raises(ValueError, match="shorter"):
        MACD(26, 12, 9)


# --- naive references over the whole month ---------------------------------------------


@pytest.mark.parametrize("ddof", [0, 1])
def test_rolling_std_matches_numpy_over_a_month_without_drift(ddof: int) -> None:
    # 30,000 updates cross the periodic resync many times; the last values show any drift.
    xs = np.array([row[3] for row in ohlcv()])
    period = 20
    ref = sliding_window_view(xs, period).std(axis=1, ddof=ddof)
    std = RollingStd(period, ddof=ddof)
    ours = [std.update(float(x)) for x in xs]
    assert ours[: period - 1] == [None] * (period - 1)
    np.testing.assert_allclose(np.array(ours[period - 1 :], dtype=float), ref, rtol=1e-9)
    assert std.mean == pytest.approx(xs[-period:].mean(), rel=1e-12)


@pytest.mark.parametrize("period", [1, 20, 55])
def test_rolling_max_and_min_match_numpy_donchian_bands(period: int) -> None:
    rows = ohlcv()
    highs = np.array([r[1] for r in rows])
    lows = np.array([r[2] for r in rows])
    hi, lo = RollingMax(period), RollingMin(period)
    ours_hi = [hi.update(float(x)) for x in highs]
    ours_lo = [lo.update(float(x)) for x in lows]
    assert ours_hi[: period - 1] == [None] * (period - 1) == ours_lo[: period - 1]
    assert ours_hi[period - 1 :] == sliding_window_view(highs, period).max(axis=1).tolist()
    assert ours_lo[period - 1 :] == sliding_window_view(lows, period).min(axis=1).tolist()


def naive_volume_surge(volumes: Sequence[float], period: int) -> list[float | None]:
    out: list[float | None] = []
    for i, v in enumerate(volumes):
        prev = volumes[max(0, i - period) : i]
        mean = sum(prev) / period
        out.append(v / mean if len(prev) == period and any(prev) else None)
    return out


@pytest.mark.parametrize("period", [1, 20])
def test_volume_surge_matches_naive_ratio_to_previous_mean(period: int) -> None:
    volumes = [row[4] for row in ohlcv()]  # holds zero-volume minutes
    surge = VolumeSurge(period)
    ours = [surge.update(v) for v in volumes]
    ref = naive_volume_surge(volumes, period)
    assert [i for i, v in enumerate(ours) if v is None] == [
        i for i, v in enumerate(ref) if v is None
    ]
    for i, (a, b) in enumerate(zip(ours, ref, strict=True)):
        if a is not None and b is not None:
            assert math.isclose(a, b, rel_tol=1e-9), (i, a, b)


def test_volume_surge_after_all_zero_window_is_none_then_recovers() -> None:
    surge = VolumeSurge(3)
    # 0.1 + 0.7 + 0.2 - 0.1 - 0.7 - 0.2 leaves 5.6e-17 in a running sum, not 0.
    got = feed(surge.update, [0.1, 0.7, 0.2, 0.0, 0.0, 0.0, 5.0, 1.0, 2.0, 9.0])
    assert got[:3] == [None, None, None]
    assert got[3:6] == [0.0, 0.0, 0.0]
    assert got[6] is None  # the three volumes before it are all zero
    assert got[7:] == [pytest.approx(3 / 5), pytest.approx(2 * 3 / 6), pytest.approx(9 * 3 / 8)]


# --- properties ------------------------------------------------------------------------

values = st.lists(
    st.one_of(
        st.integers(-5, 5).map(float),  # many ties, the hard case for monotonic deques
        st.floats(-1e6, 1e6, allow_nan=False),
    ),
    max_size=300,
)


@given(values, st.integers(1, 25))
def test_rolling_extremes_equal_max_min_of_last_n_with_bounded_deques(
    xs: list[float], period: int
) -> None:
    hi, lo = RollingMax(period), RollingMin(period)
    for i, x in enumerate(xs):
        got_hi, got_lo = hi.update(x), lo.update(x)
        window = xs[max(0, i + 1 - period) : i + 1]
        if i + 1 < period:
            assert got_hi is None and got_lo is None
        else:
            assert got_hi == max(window) and got_lo == min(window)
        for ind in (hi, lo):
            assert len(ind._window) <= period
            assert len(ind._mono) <= period


@given(values, st.integers(1, 25))
def test_windowed_indicators_hold_at_most_a_period_of_values(xs: list[float], period: int) -> None:
    inds = (SMA(period), RollingStd(period), ROC(period), VolumeSurge(period))
    for x in xs:
        for ind in inds:
            ind.update(abs(x))
    for ind in inds:
        buffers = [getattr(ind, s) for s in type(ind).__slots__ if s.startswith("_")]
        for buffer in buffers:
            if isinstance(buffer, deque):
                assert len(buffer) <= period + 1
