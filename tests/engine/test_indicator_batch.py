"""The whole-series indicators give the incremental indicators' floats, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_data import shared_data_dir

from engine.backtest.data import load_columns
from engine.indicators import ATR
from engine.indicators.batch import atr_series


def _incremental_atr(high, low, close, period, breaks=()):
    out = []
    atr = ATR(period)
    for i, (h, lo, c) in enumerate(zip(high, low, close, strict=True)):
        if i in breaks:
            atr = ATR(period)
        v = atr.update(h, lo, c)
        out.append(math.nan if v is None else v)
    return out


def _same(a, b) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


def test_atr_series_matches_atr_on_the_shared_file(tmp_path) -> None:
    cols = load_columns(shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv", cache_dir=tmp_path)
    got = atr_series(cols.high, cols.low, cols.close, 14).tolist()
    want = _incremental_atr(cols.high.tolist(), cols.low.tolist(), cols.close.tolist(), 14)
    assert _same(got, want)
    assert not math.isnan(got[13]) and math.isnan(got[12])


@settings(max_examples=60, deadline=None)
@given(
    bars=st.lists(
        st.tuples(
            st.floats(1, 1000, allow_nan=False),
            st.floats(0, 50, allow_nan=False),
            st.floats(0, 1, allow_nan=False),
        ),
        min_size=0,
        max_size=60,
    ),
    period=st.integers(1, 6),
    breaks=st.sets(st.integers(0, 59), max_size=4),
)
def test_atr_series_matches_atr_with_breaks(bars, period, breaks) -> None:
    low = [b[0] for b in bars]
    high = [b[0] + b[1] for b in bars]
    close = [lo + (h - lo) * b[2] for lo, h, b in zip(low, high, bars, strict=True)]
    mask = np.zeros(len(bars), dtype=bool)
    for i in breaks:
        if i < len(bars):
            mask[i] = True
    got = atr_series(np.array(high), np.array(low), np.array(close), period, breaks=mask)
    want = _incremental_atr(high, low, close, period, {i for i in breaks if i < len(bars)})
    assert _same(got.tolist(), want)


# --- every whole-series form against its incremental indicator ----------------------------

from engine.backtest.data import Columns  # noqa: E402
from engine.indicators import (  # noqa: E402
    EMA,
    MACD,
    ROC,
    RSI,
    RollingMax,
    RollingMin,
    VolumeSurge,
)
from engine.indicators.batch import (  # noqa: E402
    ema_series,
    macd_histogram_series,
    macd_series,
    missing_before,
    missing_in,
    previous,
    roc_series,
    rolling_max_series,
    rolling_min_series,
    rsi_series,
    true_range_series,
    volume_surge_series,
    wilder_series,
)


def _incremental(make, rows, breaks=(), read=None):
    """Feed ``rows`` to ``make()`` (a fresh one at each break); its values, NaN for None."""
    indicator = make()
    out = []
    for i, args in enumerate(rows):
        if i in breaks:
            indicator = make()
        value = indicator.update(*args)
        if read is not None:
            value = read(indicator)
        out.append(math.nan if value is None else value)
    return out


def _mask(n, breaks):
    mask = np.zeros(n, dtype=bool)
    mask[[i for i in breaks if i < n]] = True
    return mask


def _shared(tmp_path, name="binanceus_BTC-USDT_1m_2023-03.csv"):
    return load_columns(shared_data_dir() / name, cache_dir=tmp_path)


def _cases(cols):
    """(series function result, incremental result) for every indicator on ``cols``."""
    c, h, lo, v = (x.tolist() for x in (cols.close, cols.high, cols.low, cols.volume))
    closes = [(x,) for x in c]
    yield "ema", ema_series(cols.close, 12), _incremental(lambda: EMA(12), closes)
    yield "rsi", rsi_series(cols.close, 14), _incremental(lambda: RSI(14), closes)
    yield "rsi2", rsi_series(cols.close, 2), _incremental(lambda: RSI(2), closes)
    line, signal, hist = macd_series(cols.close)
    yield "macd", line, _incremental(MACD, closes, read=lambda m: m.macd)
    yield "signal", signal, _incremental(MACD, closes, read=lambda m: m.signal)
    yield "hist", hist, _incremental(MACD, closes)
    yield "hist fused", macd_histogram_series(cols.close), _incremental(MACD, closes)
    yield "roc", roc_series(cols.close, 10), _incremental(lambda: ROC(10), closes)
    vols = [(x,) for x in v]
    yield "surge", volume_surge_series(cols.volume, 20), _incremental(lambda: VolumeSurge(20), vols)
    yield (
        "max",
        rolling_max_series(cols.high, 20),
        _incremental(lambda: RollingMax(20), [(x,) for x in h]),
    )
    yield (
        "min",
        rolling_min_series(cols.low, 13),
        _incremental(lambda: RollingMin(13), [(x,) for x in lo]),
    )
    atr = wilder_series(true_range_series(cols.high, cols.low, cols.close), 14)
    yield "atr", atr, _incremental(lambda: ATR(14), list(zip(h, lo, c, strict=True)))


def test_every_series_matches_its_indicator_on_the_shared_file(tmp_path) -> None:
    cols = _shared(tmp_path)
    for name, got, want in _cases(cols):
        assert _same(got.tolist(), want), name
        assert not np.isnan(got).all(), name
    # VolumeSurge recomputes its sum every 64 * 20 candles; the month has 23 of those.
    assert len(cols) > 20 * 64 * 20


def test_every_series_matches_its_indicator_with_resets_at_the_gaps(tmp_path) -> None:
    cols = _shared(tmp_path, "binance_ADA-BTC_5m_2018-01.csv")
    breaks = set(np.flatnonzero(missing_in(cols) > 0).tolist())
    assert breaks
    mask = _mask(len(cols), breaks)
    c, h, lo, v = (x.tolist() for x in (cols.close, cols.high, cols.low, cols.volume))
    closes = [(x,) for x in c]
    pairs = [
        (rsi_series(cols.close, 14, breaks=mask), _incremental(lambda: RSI(14), closes, breaks)),
        (macd_histogram_series(cols.close, breaks=mask), _incremental(MACD, closes, breaks)),
        (macd_series(cols.close, breaks=mask)[2], _incremental(MACD, closes, breaks)),
        (ema_series(cols.close, 5, breaks=mask), _incremental(lambda: EMA(5), closes, breaks)),
        (roc_series(cols.close, 10, breaks=mask), _incremental(lambda: ROC(10), closes, breaks)),
        (
            volume_surge_series(cols.volume, 20, breaks=mask),
            _incremental(lambda: VolumeSurge(20), [(x,) for x in v], breaks),
        ),
        (
            rolling_max_series(cols.high, 20, breaks=mask),
            _incremental(lambda: RollingMax(20), [(x,) for x in h], breaks),
        ),
        (
            wilder_series(
                true_range_series(cols.high, cols.low, cols.close, breaks=mask), 14, breaks=mask
            ),
            _incremental_atr(h, lo, c, 14, breaks),
        ),
    ]
    for i, (got, want) in enumerate(pairs):
        assert _same(got.tolist(), want), i


def test_wilder_of_the_true_range_is_atr_series(tmp_path) -> None:
    cols = _shared(tmp_path)
    breaks = _mask(len(cols), {5, 100, 101, 7000})
    got = wilder_series(
        true_range_series(cols.high, cols.low, cols.close, breaks=breaks), 14, breaks=breaks
    )
    assert np.array_equal(
        got, atr_series(cols.high, cols.low, cols.close, 14, breaks=breaks), equal_nan=True
    )


# Prices in whole ticks with many repeats (flat stretches, equal highs, ties at zero change).
_tick_prices = st.lists(st.sampled_from([-2, -1, 0, 0, 0, 1, 2]), min_size=0, max_size=400).map(
    lambda steps: [100.0 + 0.5 * s for s in np.cumsum(steps).tolist()]
)
_any_prices = st.lists(st.floats(0.01, 1e6, allow_nan=False), min_size=0, max_size=200)
_volumes = st.lists(
    st.one_of(st.just(0.0), st.floats(0.0, 1e9, allow_nan=False), st.sampled_from([1.0, 2.5])),
    min_size=0,
    max_size=400,
)
_breaks = st.sets(st.integers(0, 399), max_size=6)


@settings(max_examples=80, deadline=None)
@given(prices=st.one_of(_tick_prices, _any_prices), period=st.integers(1, 6), breaks=_breaks)
def test_close_series_match_their_indicators_with_resets(prices, period, breaks) -> None:
    closes = [(x,) for x in prices]
    mask = _mask(len(prices), breaks)
    x = np.array(prices, dtype=np.float64)
    assert _same(
        ema_series(x, period, breaks=mask).tolist(),
        _incremental(lambda: EMA(period), closes, breaks),
    )
    assert _same(
        rsi_series(x, period, breaks=mask).tolist(),
        _incremental(lambda: RSI(period), closes, breaks),
    )
    assert _same(
        roc_series(x, period, breaks=mask).tolist(),
        _incremental(lambda: ROC(period), closes, breaks),
    )
    assert _same(
        rolling_max_series(x, period, breaks=mask).tolist(),
        _incremental(lambda: RollingMax(period), closes, breaks),
    )
    assert _same(
        rolling_min_series(x, period, breaks=mask).tolist(),
        _incremental(lambda: RollingMin(period), closes, breaks),
    )


@settings(max_examples=80, deadline=None)
@given(
    prices=st.one_of(_tick_prices, _any_prices),
    fast=st.integers(1, 5),
    more=st.integers(1, 6),
    signal=st.integers(1, 5),
    breaks=_breaks,
)
def test_macd_series_match_macd_with_resets(prices, fast, more, signal, breaks) -> None:
    slow = fast + more
    closes = [(x,) for x in prices]
    mask = _mask(len(prices), breaks)
    x = np.array(prices, dtype=np.float64)

    def make():
        return MACD(fast, slow, signal)

    line, sig, hist = macd_series(x, fast, slow, signal, breaks=mask)
    assert _same(line.tolist(), _incremental(make, closes, breaks, read=lambda m: m.macd))
    assert _same(sig.tolist(), _incremental(make, closes, breaks, read=lambda m: m.signal))
    want = _incremental(make, closes, breaks)
    assert _same(hist.tolist(), want)
    assert _same(macd_histogram_series(x, fast, slow, signal, breaks=mask).tolist(), want)


@settings(max_examples=80, deadline=None)
@given(volumes=_volumes, period=st.integers(1, 4), breaks=_breaks)
def test_volume_surge_series_matches_through_its_resyncs_and_resets(
    volumes, period, breaks
) -> None:
    # Periods of 1 to 4 resync every 64 to 256 updates: up to 400 volumes pass several.
    mask = _mask(len(volumes), breaks)
    got = volume_surge_series(np.array(volumes, dtype=np.float64), period, breaks=mask)
    want = _incremental(lambda: VolumeSurge(period), [(v,) for v in volumes], breaks)
    assert _same(got.tolist(), want)


@settings(max_examples=60, deadline=None)
@given(
    bars=st.lists(
        st.tuples(
            st.sampled_from([10.0, 10.5, 11.0, 1000.0]),
            st.sampled_from([0.0, 0.0, 0.5, 3.0]),
            st.sampled_from([0.0, 0.5, 1.0]),
        ),
        max_size=120,
    ),
    period=st.integers(1, 6),
    breaks=st.sets(st.integers(0, 119), max_size=4),
)
def test_wilder_true_range_matches_atr_on_flat_and_equal_bars(bars, period, breaks) -> None:
    low = [b[0] for b in bars]
    high = [b[0] + b[1] for b in bars]
    close = [lo + (h - lo) * b[2] for lo, h, b in zip(low, high, bars, strict=True)]
    mask = _mask(len(bars), breaks)
    tr = true_range_series(np.array(high), np.array(low), np.array(close), breaks=mask)
    got = wilder_series(tr, period, breaks=mask)
    assert _same(got.tolist(), _incremental_atr(high, low, close, period, breaks))


def test_missing_before_counts_gaps_as_the_pipeline_tells_on_gap() -> None:
    ts = np.array([0, 60, 120, 300, 360, 1000, 1001], dtype=np.int64) * 1000
    # 120 -> 300 s: two one-minute candles missing; 360 -> 1000 s: 9 (640 // 60 - 1);
    # a step below the timeframe (1000 -> 1001 s) is no gap.
    assert missing_before(ts, 60_000).tolist() == [0, 0, 0, 2, 0, 9, 0]
    # Without a timeframe, the smallest positive step (1 s here) is the unit.
    assert missing_before(ts, None).tolist() == [0, 59, 59, 179, 59, 639, 0]
    assert missing_before(np.array([5], dtype=np.int64)).tolist() == [0]
    assert missing_before(np.array([5, 5], dtype=np.int64)).tolist() == [0, 0]
    with pytest.raises(ValueError, match="above 0 ms"):
        missing_before(ts, 0)
    cols = Columns("X/Y", "1m", ts, *(np.ones(len(ts)) for _ in range(5)))
    assert missing_in(cols).tolist() == [0, 0, 0, 2, 0, 9, 0]


def test_previous_is_the_candle_before_and_forgets_at_a_break() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0])
    assert _same(previous(values).tolist(), [math.nan, 1.0, 2.0, 3.0])
    breaks = np.array([False, False, True, False])
    assert _same(previous(values, breaks).tolist(), [math.nan, 1.0, math.nan, 3.0])


def test_series_check_their_periods_and_breaks() -> None:
    x = np.ones(5)
    with pytest.raises(ValueError, match="period must be an int >= 1"):
        ema_series(x, 0)
    with pytest.raises(ValueError, match="fast period must be shorter than slow"):
        macd_series(x, 5, 5)
    with pytest.raises(ValueError, match="fast period must be shorter than slow"):
        macd_histogram_series(x, 6, 5)
    with pytest.raises(ValueError, match="breaks has 4 entries for 5 values"):
        rsi_series(x, 2, breaks=np.zeros(4, dtype=bool))
    with pytest.raises(ValueError, match="breaks has 6 entries for 5 values"):
        true_range_series(x, x, x, breaks=np.zeros(6, dtype=bool))
    with pytest.raises(ValueError, match="breaks has 4 entries for 5 values"):
        previous(x, np.zeros(4, dtype=bool))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 40),
    start=st.integers(0, 45),
    size=st.integers(0, 45),
    breaks=st.one_of(st.none(), st.lists(st.booleans(), min_size=40, max_size=40)),
)
def test_previous_rows_is_previous_of_those_rows(n, start, size, breaks) -> None:
    from engine.indicators.batch import previous, previous_rows

    values = np.arange(n, dtype=np.float64) * 1.5 + 1.0
    mask = None if breaks is None else np.array(breaks[:n], dtype=bool)
    rows = slice(start, start + size)
    want = previous(values, mask)[rows]
    got = previous_rows(values, mask, rows)
    assert len(got) == len(want)
    assert np.array_equal(got, want, equal_nan=True)


def test_sharing_makes_one_atr_for_the_same_candles_period_and_breaks(tmp_path) -> None:
    from engine.indicators.batch import sharing, volume_surge_series

    cols = load_columns(shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv", cache_dir=tmp_path)
    n = len(cols)
    no_gap = np.zeros(n, dtype=bool)
    gap = no_gap.copy()
    gap[n // 2] = True
    alone = atr_series(cols.high, cols.low, cols.close, 14, breaks=gap)
    with sharing():
        first = atr_series(cols.high, cols.low, cols.close, 14, breaks=gap)
        # The same memory seen through another array, breaks given anew: the same ATR.
        again = atr_series(
            np.asarray(cols.high), cols.low, np.asarray(cols.close), 14, breaks=gap.copy()
        )
        other_breaks = atr_series(cols.high, cols.low, cols.close, 14, breaks=no_gap)
        other_period = atr_series(cols.high, cols.low, cols.close, 10, breaks=gap)
        copied = atr_series(cols.high.copy(), cols.low, cols.close, 14, breaks=gap)
        # Breaks at the first candle and none at all start nothing afresh: the same.
        at_first = no_gap.copy()
        at_first[0] = True
        no_breaks = atr_series(cols.high, cols.low, cols.close, 14)
        first_only = atr_series(cols.high, cols.low, cols.close, 14, breaks=at_first)
        surge = volume_surge_series(cols.volume, 20, breaks=gap)
        surge_again = volume_surge_series(np.asarray(cols.volume), 20, breaks=gap.copy())
        surge_other = volume_surge_series(cols.volume, 14, breaks=gap)
    assert surge_again is surge and surge_other is not surge
    assert np.array_equal(surge, volume_surge_series(cols.volume, 20, breaks=gap), equal_nan=True)
    assert again is first
    assert first_only is no_breaks
    assert other_breaks is not first and other_period is not first and copied is not first
    assert np.array_equal(first, alone, equal_nan=True)
    assert not np.array_equal(other_breaks, first, equal_nan=True)
    assert not first.flags.writeable  # every reader gets the one array: none may change it
    after = atr_series(cols.high, cols.low, cols.close, 14, breaks=gap)
    assert after is not first and after.flags.writeable
