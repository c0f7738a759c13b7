"""The default agents' batch forms give exactly the votes of their ``on_candle``.

``momentum`` and ``price_action`` vote in a backtest from ``batch_votes`` (the
whole series at once) and ``batch_rationale``; these tests hold them to the
incremental agents candle by candle: the same direction, the same strength
float and the same rationale, on every shared file, on files with gaps (where
the live agents reset) and on generated series with flat stretches and ties.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_data import shared_data_dir

from engine.agents import MomentumAgent, PriceActionAgent
from engine.agents.base import Agent
from engine.agents.testing import ArrayColumns, assert_batch_matches
from engine.backtest.data import Columns, load_columns, save_csv
from engine.config import Settings
from engine.indicators.batch import missing_before, missing_in
from engine.learning import LearningAgent
from engine.models import AgentVote, Candle, Side
from engine.signals import SignalPipeline

FILES = sorted(shared_data_dir().glob("*.csv"))
BTC = "binanceus_BTC-USDT_1m_2023-03.csv"
AGENTS: list[type[Agent]] = [MomentumAgent, PriceActionAgent]

# Settings that vote often on short series: every rule fires in a few hundred candles.
QUICK: dict[type[Agent], dict[str, Any]] = {
    MomentumAgent: {
        "rsi_period": 3,
        "macd_periods": (2, 4, 2),
        "roc_period": 2,
        "volume_period": 3,
        "min_volume": 1.2,
    },
    PriceActionAgent: {"window": 3, "atr_period": 2, "volume_period": 3, "min_volume": 1.2},
}


@cache
def shared(name: str, tmp: str) -> Columns:
    return load_columns(shared_data_dir() / name, cache_dir=tmp)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("candles"))


def incremental_votes(agent: Agent, columns: Columns) -> list[AgentVote | None]:
    """What ``on_candle`` says on each candle, with ``on_gap`` as the engine calls it."""
    step = int(np.diff(columns.ts).min())
    votes: list[AgentVote | None] = []
    for i in range(len(columns)):
        if i and columns.ts[i] - columns.ts[i - 1] > step:
            agent.on_gap(agent.symbol, int(columns.ts[i] - columns.ts[i - 1]) // step - 1)
        candle = Candle(
            agent.symbol,
            int(columns.ts[i]),
            float(columns.open[i]),
            float(columns.high[i]),
            float(columns.low[i]),
            float(columns.close[i]),
            float(columns.volume[i]),
        )
        votes.append(agent.on_candle(candle))
    return votes


# --- real data ------------------------------------------------------------------------------


@pytest.mark.parametrize("agent_cls", AGENTS, ids=lambda c: c.name)
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_batch_form_matches_on_candle_on_every_shared_file(
    path: Path, agent_cls: type[Agent], cache_dir: str
) -> None:
    columns = shared(path.name, cache_dir)
    assert_batch_matches(agent_cls, columns)
    assert_batch_matches(agent_cls, columns, **QUICK[agent_cls])


@pytest.mark.parametrize("agent_cls", AGENTS, ids=lambda c: c.name)
def test_batch_votes_are_the_agent_votes_with_their_rationales(
    agent_cls: type[Agent], cache_dir: str
) -> None:
    columns = shared(BTC, cache_dir)
    agent = agent_cls("BTC/USDT")
    votes = agent.batch_votes(columns)
    assert votes is not None
    want = incremental_votes(agent_cls("BTC/USDT"), columns)
    got = [agent.batch_vote(votes, i) for i in range(len(columns))]
    assert got == want
    # Not vacuous: the month has votes both ways (momentum ~4 %, price action ~8 %).
    voting = [v for v in want if v is not None]
    assert len(voting) > 0.03 * len(columns)
    assert {v.direction for v in voting} == {Side.LONG, Side.SHORT}


def test_price_action_batch_form_gives_every_kind_of_vote(cache_dir: str) -> None:
    columns = shared(BTC, cache_dir)
    agent = PriceActionAgent("BTC/USDT")
    votes = agent.batch_votes(columns)
    texts = {
        agent.batch_rationale(votes, int(i)).split(" ")[0] for i in np.flatnonzero(votes.direction)
    }
    assert texts == {"breakout", "breakdown", "bullish", "bearish", "rejected"}
    kinds = set(votes.detail["kind"][votes.direction != 0].tolist())
    assert kinds == {1, 2, 3, 4, 5, 6}


def test_momentum_batch_form_gives_rsi_and_macd_votes(cache_dir: str) -> None:
    columns = shared(BTC, cache_dir)
    agent = MomentumAgent("BTC/USDT")
    votes = agent.batch_votes(columns)
    leads = {agent.batch_rationale(votes, int(i))[:4] for i in np.flatnonzero(votes.direction)}
    assert leads == {"RSI ", "MACD"}


# --- gaps: the live agents reset, the batch forms find the gaps in ts -----------------------


def without(columns: Columns, *holes: tuple[int, int]) -> Columns:
    """``columns`` with the candles of each ``(start, length)`` hole deleted."""
    keep = np.ones(len(columns), dtype=bool)
    for start, length in holes:
        keep[start : start + length] = False
    return Columns(
        columns.symbol,
        columns.timeframe,
        *(getattr(columns, f)[keep] for f in ("ts", "open", "high", "low", "close", "volume")),
    )


# 3 missing: no reset; 15: momentum resets (more than 14); 20: price_action resets too.
HOLES = ((500, 3), (2_000, 15), (4_000, 14), (6_000, 20), (8_000, 19), (12_000, 400))


class DeafMomentum(MomentumAgent):
    """Momentum that never hears of gaps: its batch form (which finds them) must differ."""

    def on_gap(self, symbol: str, missing: int) -> None:
        pass


class DeafPriceAction(PriceActionAgent):
    def on_gap(self, symbol: str, missing: int) -> None:
        pass


@pytest.mark.parametrize(
    ("agent_cls", "deaf"),
    [(MomentumAgent, DeafMomentum), (PriceActionAgent, DeafPriceAction)],
    ids=["momentum", "price_action"],
)
def test_batch_form_resets_where_the_live_agent_resets_on_a_file_with_holes(
    agent_cls: type[Agent], deaf: type[Agent], cache_dir: str, tmp_path: Path
) -> None:
    holed = without(shared(BTC, cache_dir), *HOLES)
    # Through a real file: written, loaded (with its timeframe) and compared.
    path = tmp_path / "binanceus_BTC-USDT_1m_2023-03.csv"
    save_csv(holed, path)
    loaded = load_columns(path, cache_dir=tmp_path / "cache")
    assert loaded.timeframe == "1m"
    assert sorted(missing_in(loaded)[missing_in(loaded) > 0].tolist()) == [3, 14, 15, 19, 20, 400]
    plain = ArrayColumns(
        holed.ts, holed.open, holed.high, holed.low, holed.close, holed.volume, holed.symbol
    )
    for columns in (loaded, plain):
        assert_batch_matches(agent_cls, columns)
        assert_batch_matches(agent_cls, columns, **QUICK[agent_cls])
    # The holes matter: an agent that ignores them votes otherwise somewhere.
    with pytest.raises(AssertionError, match="differs from on_candle"):
        assert_batch_matches(deaf, loaded)


def test_the_gaps_the_batch_forms_find_are_the_ones_the_pipeline_announces(
    cache_dir: str,
) -> None:
    heard: list[tuple[int, int]] = []

    class Ear(Agent):
        name: ClassVar[str] = "ear"

        def on_gap(self, symbol: str, missing: int) -> None:
            heard.append((index, missing))

        def on_candle(self, candle: Candle) -> AgentVote | None:
            return None

    columns = shared("binance_ADA-BTC_5m_2018-01.csv", cache_dir)
    pipeline = SignalPipeline.from_settings(Settings(), [Ear], LearningAgent(), 5 * 60_000)
    for index in range(len(columns)):
        candle = Candle(
            columns.symbol,
            int(columns.ts[index]),
            *(
                float(getattr(columns, f)[index])
                for f in ("open", "high", "low", "close", "volume")
            ),
        )
        pipeline.on_candle(candle, propose=False, message_ts=candle.ts)
    missing = missing_in(columns)
    assert heard
    assert heard == [(int(i), int(missing[i])) for i in np.flatnonzero(missing)]


# --- generated series: flat stretches, ties, zero volume and gaps ---------------------------


@st.composite
def markets(draw: st.DrawFn) -> ArrayColumns:
    """Candles in whole ticks: many flat closes, equal highs and lows, zero volumes, gaps."""
    n = draw(st.integers(0, 300))
    steps = draw(st.lists(st.sampled_from([-3, -1, 0, 0, 0, 1, 3]), min_size=n, max_size=n))
    tick = draw(st.sampled_from([1.0, 0.01, 0.5]))
    close = np.maximum(1, 200 + np.cumsum(steps, dtype=np.int64)).astype(np.float64) * tick
    moved = draw(st.lists(st.sampled_from([0, 0, 1, -1]), min_size=n, max_size=n))
    opens = np.concatenate([close[:1], close[:-1]]) + np.array(moved, dtype=np.float64) * tick
    opens = np.maximum(opens, tick)
    wick = (
        np.array(
            draw(st.lists(st.sampled_from([0, 0, 1, 2, 6]), min_size=2 * n, max_size=2 * n)),
            dtype=np.float64,
        ).reshape(2, n)
        * tick
    )
    high = np.maximum(opens, close) + wick[0]
    low = np.maximum(np.minimum(opens, close) - wick[1], tick / 2)
    volume = np.array(
        draw(st.lists(st.sampled_from([0.0, 1.0, 1.0, 2.0, 5.0, 0.5]), min_size=n, max_size=n))
    )
    gaps = draw(st.lists(st.sampled_from([1] * 12 + [2, 4, 16, 21]), min_size=n, max_size=n))
    ts = 1_700_000_000_000 + 60_000 * np.cumsum(gaps, dtype=np.int64)
    return ArrayColumns(ts, opens, high, low, close, volume, "GEN/USDT")


@settings(max_examples=120, deadline=None)
@given(columns=markets(), agent_cls=st.sampled_from(AGENTS), quick=st.booleans())
def test_batch_forms_match_on_generated_markets(
    columns: ArrayColumns, agent_cls: type[Agent], quick: bool
) -> None:
    assert_batch_matches(agent_cls, columns, **(QUICK[agent_cls] if quick else {}))


def pipeline_votes(agent_cls: type[Agent], columns: Columns, tf_ms: int) -> list[AgentVote | None]:
    """The votes ``agent_cls`` gives inside the engine's SignalPipeline, gaps and all."""
    said: list[AgentVote | None] = []

    class Recorded(agent_cls):  # type: ignore[valid-type, misc]
        def on_candle(self, candle: Candle) -> AgentVote | None:
            vote = super().on_candle(candle)
            said.append(vote)
            return vote

    pipeline = SignalPipeline.from_settings(Settings(), [Recorded], LearningAgent(), tf_ms)
    for i in range(len(columns)):
        candle = Candle(
            columns.symbol,
            int(columns.ts[i]),
            *(float(getattr(columns, f)[i]) for f in ("open", "high", "low", "close", "volume")),
        )
        pipeline.on_candle(candle, propose=False, message_ts=candle.ts)
    return said


@pytest.mark.parametrize("agent_cls", AGENTS, ids=lambda c: c.name)
def test_batch_votes_are_the_votes_the_agent_gives_inside_the_pipeline(
    agent_cls: type[Agent], cache_dir: str
) -> None:
    # One-minute candles taken every other minute, with holes: the pipeline counts a
    # gap in its timeframe (1m), not in the smallest step (2m). Deleting 7 (10) of the
    # sparse candles leaves 15 (21) minutes missing: momentum resets (and price_action
    # too), where counting in steps of 2 minutes would say 7 (10) and reset neither.
    month = shared(BTC, cache_dir).between(None, int(shared(BTC, cache_dir).ts[12_000]))
    fields = ("ts", "open", "high", "low", "close", "volume")
    sparse = without(
        Columns(month.symbol, "1m", *(getattr(month, f)[::2] for f in fields)),
        (1_500, 7),
        (3_500, 10),
    )
    assert sorted(set(missing_in(sparse).tolist())) == [0, 1, 15, 21]
    assert sorted(set(missing_before(sparse.ts).tolist())) == [0, 7, 10]
    agent = agent_cls(sparse.symbol)
    votes = agent.batch_votes(sparse)
    assert votes is not None
    want = pipeline_votes(agent_cls, sparse, 60_000)
    got = [agent.batch_vote(votes, i) for i in range(len(sparse))]
    assert got == want
    assert sum(v is not None for v in got) > 100


def test_the_batch_forms_hold_across_their_blocks(tmp_path: Path) -> None:
    """Masks and scores go a block of 65,536 candles at a time: a series of several
    blocks (the BTC month tiled) still votes as on_candle does."""
    from engine.backtest.data import tile
    from engine.indicators.batch import by_blocks

    month = load_columns(
        shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv", cache_dir=tmp_path
    )
    columns = tile(month, 140_000)
    for cls in (MomentumAgent, PriceActionAgent):
        assert_batch_matches(cls, columns)
    [squares] = by_blocks(lambda rows: (np.arange(140_000)[rows] ** 2,), 140_000, np.int64)
    assert squares.tolist() == [i * i for i in range(140_000)]
