"""Walk-forward windows, the objectives, and which trial is chosen."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.backtest.data import Columns
from engine.backtest.metrics import compute_results
from optimize.result import choose
from optimize.trial import TRAIN_PARTS, cut, score_of, walk_forward
from reports.optimization import TrialRow

MINUTE = 60_000


def columns(n: int, start: int = 1_677_628_800_000, symbol: str = "BTC/USDT") -> Columns:
    ts = start + np.arange(n, dtype=np.int64) * MINUTE
    price = 100.0 + np.sin(np.arange(n) / 50.0)
    return Columns(symbol, "1m", ts, price, price + 1, price - 1, price, np.ones(n))


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 12), candles=st.integers(2, 5000), offset=st.integers(0, 999))
def test_windows_roll_forward_and_each_tests_on_what_follows_its_training(
    n: int, candles: int, offset: int
) -> None:
    assume(candles >= (n + TRAIN_PARTS) * 2)
    data = [columns(candles, start=1_677_628_800_000 + offset * MINUTE)]
    windows = walk_forward(data, n)
    first, end = int(data[0].ts[0]), int(data[0].ts[-1]) + MINUTE
    assert len(windows) == n and [w.index for w in windows] == list(range(n))
    part = (end - first) / (n + TRAIN_PARTS)
    for w in windows:
        assert first <= w.train_start < w.train_end == w.test_start < w.test_end <= end
        # on candle boundaries, about three parts of training for one of testing
        for bound in (w.train_start, w.train_end, w.test_end):
            assert (bound - first) % MINUTE == 0
        assert abs((w.train_end - w.train_start) - TRAIN_PARTS * part) <= 2 * MINUTE
        assert abs((w.test_end - w.test_start) - part) <= 2 * MINUTE
        train, test = cut(data, w.train_start, w.train_end), cut(data, w.test_start, w.test_end)
        assert train and test and int(train[0].ts[-1]) < int(test[0].ts[0])
    for a, b in itertools.pairwise(windows):
        assert a.test_end <= b.test_end and a.test_end == b.test_start  # tests tile, no overlap
        assert a.train_start < b.train_start
    assert windows[-1].test_end == end and windows[0].train_start == first


def test_too_few_candles_or_a_gap_is_refused_in_words() -> None:
    with pytest.raises(ValueError, match="--windows 4 needs at least 14 candles"):
        walk_forward([columns(10)], 4)
    with pytest.raises(ValueError, match="--windows must be 1 or more"):
        walk_forward([columns(100)], 0)
    head, tail = columns(50), columns(50, start=1_677_628_800_000 + 10_000 * MINUTE)
    gapped = Columns(
        "BTC/USDT", "1m",
        *[np.concatenate([getattr(head, f), getattr(tail, f)]) for f in
          ("ts", "open", "high", "low", "close", "volume")],
    )  # fmt: skip
    with pytest.raises(ValueError, match="no candles in one of its ranges"):
        walk_forward([gapped], 4)


def test_each_objective_scores_a_backtest_and_none_means_no_score() -> None:
    ts = [i * 86_400_000 for i in range(5)]
    up = compute_results(ts, [100.0, 101.0, 99.0, 103.0, 104.0], [], timeframe="1d")
    assert score_of(up, "return") == pytest.approx(0.04)
    assert score_of(up, "sharpe") == up.sharpe
    assert up.annualised_return is not None
    assert score_of(up, "calmar") == pytest.approx(up.annualised_return / up.max_drawdown)
    flat = compute_results(ts, [100.0] * 5, [], timeframe="1d")
    assert score_of(flat, "sharpe") is None and score_of(flat, "calmar") is None


scores = st.one_of(st.none(), st.floats(-5, 5, allow_nan=False))


@st.composite
def trial_rows(draw: st.DrawFn) -> list[TrialRow]:
    windows = draw(st.integers(1, 4))
    rows = []
    for number in range(draw(st.integers(0, 25))):
        state = draw(st.sampled_from(["complete", "complete", "pruned", "failed"]))
        oos = tuple(draw(st.lists(scores, min_size=windows, max_size=windows)))
        value = draw(st.floats(-5, 5, allow_nan=False)) if state == "complete" else None
        held = state == "complete" and all(v is not None for v in oos)
        mean = sum(v for v in oos if v is not None) / windows if held else None
        rows.append(TrialRow(number, state, {"x": number}, value, (), oos, (), (), mean))
    return rows


@settings(max_examples=300, deadline=None)
@given(trial_rows())
def test_the_chosen_trial_held_up_best_out_of_sample_not_in_sample(rows: list[TrialRow]) -> None:
    chosen, best_in = choose(rows)
    complete = [r for r in rows if r.state == "complete"]
    if not complete:
        assert chosen is None and best_in is None
        return
    assert best_in is not None and best_in.value == max(r.value for r in complete)  # type: ignore[type-var]
    held = [r for r in complete if r.oos_mean is not None]
    if not held:
        assert chosen is None
        return
    assert chosen is not None and chosen.state == "complete"
    assert chosen.oos_mean == max(r.oos_mean for r in held)  # type: ignore[type-var]
    assert all(v is not None and math.isfinite(v) for v in chosen.out_of_sample)
    # ties on the out-of-sample mean go to the better in-sample mean, then the earlier trial
    tied = [r for r in held if r.oos_mean == chosen.oos_mean]
    assert chosen == min(tied, key=lambda r: (-r.value, r.number))  # type: ignore[operator]


def test_a_trial_best_in_sample_is_not_chosen_when_it_fails_out_of_sample() -> None:
    row = TrialRow(0, "complete", {}, 0.0, (), (0.1,), (), (), 0.1)
    overfit = dataclasses.replace(row, number=1, value=9.0, out_of_sample=(-3.0,), oos_mean=-3.0)
    chosen, best_in = choose([row, overfit])
    assert best_in is overfit and chosen is row
