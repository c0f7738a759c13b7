"""The correlation tracker: ``statistics.correlation`` gives today's answers.

The reference is the hand-written Pearson the risk manager used before the
package (kept here, verbatim but for the guard against a product of variances
that underflows, where it raised ZeroDivisionError).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from engine.risk import CorrelationTracker, RiskLimits, pearson

BTC, ETH = "BTC/USDT", "ETH/USDT"
MINUTE = 60_000


def reference_pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    n = len(xs)
    mean_x = math.fsum(xs) / n
    mean_y = math.fsum(ys) / n
    dx = [x - mean_x for x in xs]
    dy = [y - mean_y for y in ys]
    var_x = math.fsum(d * d for d in dx)
    var_y = math.fsum(d * d for d in dy)
    if var_x <= 0 or var_y <= 0 or var_x * var_y == 0:
        return 0.0  # a flat series moves with nothing
    cov = math.fsum(a * b for a, b in zip(dx, dy, strict=True))
    return max(-1.0, min(1.0, cov / math.sqrt(var_x * var_y)))


returns = st.floats(min_value=-0.5, max_value=0.5, allow_nan=False)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    n = draw(st.integers(2, 120))
    xs = draw(st.lists(returns, min_size=n, max_size=n))
    ys = draw(st.lists(returns, min_size=n, max_size=n))
    return xs, ys


@given(pairs())
@example(([0.01, 0.01, 0.01], [0.02, -0.01, 0.03]))  # constant: StatisticsError -> 0
@example(([0.0, 5e-324, 0.0], [0.1, 0.2, 0.3]))  # variances whose product underflows
@example(([0.01, 0.02, 0.03], [0.02, 0.04, 0.06]))  # exactly linear: 1
def test_pearson_equals_the_reference_within_1e_9(pair: tuple[list[float], list[float]]) -> None:
    xs, ys = pair
    got = pearson(xs, ys)
    assert -1.0 <= got <= 1.0
    assert got == pytest.approx(reference_pearson(xs, ys), abs=1e-9)


def test_a_constant_series_moves_with_nothing() -> None:
    assert pearson([0.0, 0.0, 0.0], [0.1, -0.2, 0.3]) == 0.0
    assert pearson([0.1, -0.2, 0.3], [0.5, 0.5, 0.5]) == 0.0


def _tracker(window: int = 10) -> CorrelationTracker:
    limits = RiskLimits(correlation_window=window)
    return CorrelationTracker(limits.correlation_window, limits.min_correlation_samples)


def test_too_few_aligned_returns_is_unknown() -> None:
    tracker = _tracker(window=10)  # needs 5 aligned returns
    for i, (a, b) in enumerate([(100, 10), (101, 11), (103, 10), (102, 12), (104, 13)]):
        tracker.on_candle(BTC, i * MINUTE, a)
        tracker.on_candle(ETH, i * MINUTE, b)
    assert tracker.correlation(BTC, ETH) is None  # 4 returns
    tracker.on_candle(BTC, 5 * MINUTE, 105)
    assert tracker.correlation(BTC, ETH) is None  # ETH has no close at 5
    tracker.on_candle(ETH, 5 * MINUTE, 12)
    assert tracker.correlation(BTC, ETH) is not None
    assert tracker.correlation(BTC, "SOL/USDT") is None


def test_a_flat_symbol_correlates_zero() -> None:
    tracker = _tracker(window=4)
    for i in range(6):
        tracker.on_candle(BTC, i * MINUTE, 100.0)
        tracker.on_candle(ETH, i * MINUTE, 10.0 + i * (-1) ** i)
    assert tracker.correlation(BTC, ETH) == 0.0


closes = st.floats(min_value=1.0, max_value=1e6, allow_nan=False)


@given(
    st.integers(3, 30),
    st.lists(st.tuples(st.booleans(), st.booleans(), closes, closes), min_size=0, max_size=90),
)
def test_the_tracker_correlates_the_last_window_of_aligned_returns(
    window: int, rows: list[tuple[bool, bool, float, float]]
) -> None:
    tracker = _tracker(window)
    for i, (has_a, has_b, a, b) in enumerate(rows):
        if has_a:
            tracker.on_candle(BTC, i * MINUTE, a)
        if has_b:
            tracker.on_candle(ETH, i * MINUTE, b)
    # What the tracker still holds: the last 2 * window + 1 closes of each symbol.
    kept = 2 * window + 1
    ts_a = [i for i, row in enumerate(rows) if row[0]][-kept:]
    ts_b = {i for i, row in enumerate(rows) if row[1]}
    ts_b = set(sorted(ts_b)[-kept:])
    both = [(rows[i][2], rows[i][3]) for i in ts_a if i in ts_b]
    ra = [a1 / a0 - 1.0 for (a0, _), (a1, _) in pairwise(both)][-window:]
    rb = [b1 / b0 - 1.0 for (_, b0), (_, b1) in pairwise(both)][-window:]
    got = tracker.correlation(BTC, ETH)
    if len(ra) < max(3, window // 2):
        assert got is None
    else:
        assert got == pytest.approx(reference_pearson(ra, rb), abs=1e-9)
