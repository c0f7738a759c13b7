"""The whole-series indicators give the incremental indicators' floats, bit for bit."""

from __future__ import annotations

import math

import numpy as np
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
