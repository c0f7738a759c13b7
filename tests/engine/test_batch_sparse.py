"""A backtest keeps an agent's batch detail only where a rationale may read it."""

from __future__ import annotations

import numpy as np
import pytest

from engine.agents.base import BatchVotes
from engine.agents.sma_cross import SmaCrossAgent
from engine.agents.testing import ArrayColumns, assert_batch_matches


def votes() -> BatchVotes:
    direction = np.array([0, 0, 1, 0, 0, -1, 0], dtype=np.int8)
    strength = direction.astype(np.float64) ** 2
    return BatchVotes(direction, strength, {"x": np.arange(7) * 10.0})


def test_the_voting_candles_and_the_ones_before_them_are_kept() -> None:
    sparse = votes().sparse()
    x = sparse.detail["x"]
    assert len(x) == 7
    assert [x[i] for i in (1, 2, 4, 5)] == [10.0, 20.0, 40.0, 50.0]
    for i in (0, 3, 6):
        with pytest.raises(IndexError, match=f"candle {i} was not kept"):
            x[i]


class _ReadsTooFarBack(SmaCrossAgent):
    """A rationale that reads two candles back: off the batch protocol."""

    def batch_rationale(self, votes: BatchVotes, index: int) -> str:
        votes.detail["fast"][index - 2]
        return super().batch_rationale(votes, index)


def test_the_batch_check_fails_an_agent_that_reads_detail_it_may_not() -> None:
    close = np.concatenate([np.linspace(100, 90, 40), np.linspace(90, 110, 40)])
    columns = ArrayColumns(
        ts=np.arange(len(close), dtype=np.int64) * 60_000,
        open=close,
        high=close + 1,
        low=close - 1,
        close=close,
        volume=np.ones(len(close)),
    )
    assert_batch_matches(SmaCrossAgent, columns)  # the shipped rationale reads index only
    with pytest.raises(IndexError, match="was not kept"):
        assert_batch_matches(_ReadsTooFarBack, columns)
