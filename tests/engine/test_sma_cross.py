"""The sma_cross agent: textbook crosses, its batch form and the public test helper."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_data import shared_data_dir

from engine.agents import BUILTIN_AGENTS, Agent, BatchVotes, SmaCrossAgent, resolve_agent_class
from engine.agents.base import CandleColumns
from engine.agents.testing import ArrayColumns, assert_batch_matches, columns_from_candles
from engine.config import Settings
from engine.feeds.csvfile import read_rows, symbol_from_filename, timeframe_from_filename
from engine.indicators import SMA
from engine.models import AgentVote, Candle, Side

SYMBOL = "BTC/USDT"
FILES = sorted(shared_data_dir().glob("*.csv"))


@cache
def shared_columns(name: str) -> ArrayColumns:
    path = shared_data_dir() / name
    symbol = symbol_from_filename(name)
    timeframe = timeframe_from_filename(name)
    assert symbol is not None and timeframe is not None
    return columns_from_candles(row[3] for row in read_rows(path, symbol, 0, 0, timeframe))


def columns_of(closes: list[float], *, step: int = 60_000) -> ArrayColumns:
    """Candles with these closes, one ``step`` apart, open = previous close."""
    close = np.array(closes, dtype=np.float64)
    opens = np.concatenate([close[:1], close[:-1]])
    return ArrayColumns(
        ts=np.arange(len(close), dtype=np.int64) * step + 1_700_000_040_000,
        open=opens,
        high=np.maximum(opens, close),
        low=np.minimum(opens, close),
        close=close,
        volume=np.ones(len(close)),
        symbol=SYMBOL,
    )


def run(agent: Agent, closes: list[float]) -> dict[int, AgentVote]:
    """The votes of ``on_candle`` over these closes, by candle index."""
    votes: dict[int, AgentVote] = {}
    for i, close in enumerate(closes):
        vote = agent.on_candle(Candle(SYMBOL, 60_000 * i, close, close, close, close, 1.0))
        if vote is not None:
            votes[i] = vote
    return votes


# --- textbook behaviour, worked by hand -------------------------------------------------

# SMA(2) and SMA(3) of these closes, from index 2 on (written out by hand):
#   i:      2    3    4    5    6     7   8
#   close:  3    2    1    6    6     0   0
#   SMA(2): 3.5  2.5  1.5  3.5  6     3   0
#   SMA(3): 4    3    2    3    4.33  4   2
#   side:   -    -    -    +    +     -   -
# The first side (index 2) crosses nothing; the cross above is on 5, below on 7.
HAND = [5.0, 4.0, 3.0, 2.0, 1.0, 6.0, 6.0, 0.0, 0.0]


def test_a_cross_on_the_close_of_candle_t_is_a_vote_on_t_and_nothing_between() -> None:
    votes = run(SmaCrossAgent(SYMBOL, fast=2, slow=3), HAND)
    assert sorted(votes) == [5, 7]
    assert votes[5] == AgentVote(
        "sma_cross", SYMBOL, Side.LONG, 1.0, "SMA(2) 3.5 crossed above SMA(3) 3.0"
    )
    assert votes[7] == AgentVote(
        "sma_cross", SYMBOL, Side.SHORT, 1.0, "SMA(2) 3.0 crossed below SMA(3) 4.0"
    )


def test_the_batch_form_votes_on_the_same_candles_with_the_same_words() -> None:
    agent = SmaCrossAgent(SYMBOL, fast=2, slow=3)
    votes = agent.batch_votes(columns_of(HAND))
    assert votes.direction.tolist() == [0, 0, 0, 0, 0, 1, 0, -1, 0]
    assert votes.strength.tolist() == [0, 0, 0, 0, 0, 1.0, 0, 1.0, 0]
    assert agent.batch_vote(votes, 5) == run(SmaCrossAgent(SYMBOL, fast=2, slow=3), HAND)[5]
    assert agent.batch_vote(votes, 4) is None
    assert_batch_matches(SmaCrossAgent, columns_of(HAND), fast=2, slow=3)


def test_no_vote_while_warming_up_and_the_first_possible_vote_is_on_candle_slow_plus_one() -> None:
    # Falling for `slow` candles (the first side, below, is no cross), then a jump.
    closes = [10.0, 9.0, 8.0, 7.0, 20.0]
    assert sorted(run(SmaCrossAgent(SYMBOL, fast=2, slow=4), closes)) == [4]
    assert run(SmaCrossAgent(SYMBOL, fast=2, slow=4), closes[:4]) == {}


def test_a_flat_market_and_a_touch_that_turns_back_are_no_crosses() -> None:
    agent = SmaCrossAgent(SYMBOL, fast=2, slow=4)
    assert run(agent, [27_412.53] * 200) == {}
    # Below, then the averages meet (5: SMA(2) = SMA(4) = 1.5) and part the same way.
    touch = [4.0, 3.0, 2.0, 1.0, 2.0, 1.0, 1.0]
    assert run(SmaCrossAgent(SYMBOL, fast=2, slow=4), touch) == {}
    # Below, a tie, then above: the cross is on the candle that is above (6), not the tie.
    through = [4.0, 3.0, 2.0, 1.0, 1.0, 2.0, 1.0]
    votes = run(SmaCrossAgent(SYMBOL, fast=2, slow=4), through)
    assert sorted(votes) == [6] and votes[6].direction is Side.LONG
    for closes in (touch, through):
        assert_batch_matches(SmaCrossAgent, columns_of(closes), fast=2, slow=4)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"fast": 0}, "fast must be a positive int, got 0"),
        ({"slow": -3}, "slow must be a positive int, got -3"),
        ({"fast": 2.5}, "fast must be a positive int, got 2.5"),
        ({"fast": True}, "fast must be a positive int, got True"),
        ({"fast": 20, "slow": 20}, "fast must be below slow, got fast=20, slow=20"),
        ({"fast": 30}, "fast must be below slow, got fast=30, slow=20"),
    ],
)
def test_settings_are_positive_ints_with_fast_below_slow(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=f"sma_cross: {message}"):
        SmaCrossAgent(SYMBOL, **settings)  # type: ignore[arg-type]


def test_defaults_are_10_and_20_and_sma_cross_is_built_in_but_not_enabled_by_default() -> None:
    agent = SmaCrossAgent(SYMBOL)
    assert (agent.fast_period, agent.slow_period) == (10, 20)
    assert BUILTIN_AGENTS["sma_cross"] is SmaCrossAgent
    assert resolve_agent_class("sma_cross") is SmaCrossAgent
    assert Settings().agents.enabled == ("price_action", "momentum")


# --- the batch form equals the incremental one ------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_batch_form_matches_on_candle_on_every_shared_file(path: Path) -> None:
    columns = shared_columns(path.name)
    assert_batch_matches(SmaCrossAgent, columns)
    assert_batch_matches(SmaCrossAgent, columns, fast=3, slow=50)


def test_batch_averages_are_the_running_sums_bit_for_bit() -> None:
    columns = shared_columns("binanceus_BTC-USDT_1m_2023-03.csv")
    votes = SmaCrossAgent(SYMBOL).batch_votes(columns)
    for period, key in ((10, "fast"), (20, "slow")):
        sma = SMA(period)
        incremental = [sma.update(float(x)) for x in columns.close]
        expected = np.array([np.nan if v is None else v for v in incremental])
        assert np.array_equal(votes.detail[key], expected, equal_nan=True)
    # The real month has crosses both ways, each at strength 1.
    assert (votes.direction == 1).sum() > 100 and (votes.direction == -1).sum() > 100
    assert set(votes.strength[votes.direction != 0].tolist()) == {1.0}


def exact_crosses(closes: list[float], fast: int, slow: int) -> dict[int, int]:
    """The textbook crosses in exact arithmetic on the prices as written in the file."""
    x = [Fraction(repr(c)) for c in closes]  # repr is the file's decimal text
    crosses: dict[int, int] = {}
    last = 0
    sum_fast, sum_slow = (
        sum(x[slow - fast : slow - 1], Fraction(0)),
        sum(x[: slow - 1], Fraction(0)),
    )
    for t in range(slow - 1, len(x)):
        sum_fast += x[t]
        sum_slow += x[t]
        a, b = sum_fast * slow, sum_slow * fast  # the two means, times fast * slow
        side = (a > b) - (a < b)
        if side and last and side != last:
            crosses[t] = side
        last = side or last
        sum_fast -= x[t - fast + 1]
        sum_slow -= x[t - slow + 1]
    return crosses


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_votes_on_real_data_are_the_exact_decimal_crosses(path: Path) -> None:
    # Float sums gather rounding; without the tie tolerance (TIE = 0) 60 votes on these
    # files (5 of them) are crosses of rounding noise in flat stretches, not of prices.
    columns = shared_columns(path.name)
    votes = SmaCrossAgent(SYMBOL).batch_votes(columns)
    got = {int(i): int(votes.direction[i]) for i in votes.direction.nonzero()[0]}
    assert got == exact_crosses(columns.close.tolist(), 10, 20)


def ticks(draw_steps: list[int], base: int) -> list[float]:
    """A walk in whole ticks: prices are integers, so averages of them tie exactly."""
    prices, price = [], base
    for step in draw_steps:
        price = max(1, price + step)
        prices.append(float(price))
    return prices


# Steps of 0 are common, so flat stretches (and ties of the averages) are too.
walk_steps = st.lists(st.sampled_from([-3, -1, 0, 0, 0, 0, 1, 3]), min_size=1, max_size=300)
periods = st.integers(1, 12).flatmap(lambda f: st.tuples(st.just(f), st.integers(f + 1, 25)))


@settings(max_examples=150, deadline=None)
@given(walk_steps, st.sampled_from([5, 100, 2_741_253]), st.sampled_from([1.0, 0.01, 0.1]), periods)
def test_batch_form_matches_on_random_walks_with_flat_stretches_and_ties(
    steps: list[int], base: int, tick: float, fast_slow: tuple[int, int]
) -> None:
    fast, slow = fast_slow
    closes = [p * tick for p in ticks(steps, base)]
    assert_batch_matches(SmaCrossAgent, columns_of(closes), fast=fast, slow=slow)


@settings(max_examples=150, deadline=None)
@given(walk_steps, periods)
def test_on_integer_prices_the_votes_are_the_exact_textbook_crosses(
    steps: list[int], fast_slow: tuple[int, int]
) -> None:
    # Integer closes make the float averages' order exact; compare with exact fractions.
    fast, slow = fast_slow
    closes = ticks(steps, 50)
    expected: dict[int, Side] = {}
    last = 0
    for t in range(slow - 1, len(closes)):
        f = Fraction(sum(int(c) for c in closes[t - fast + 1 : t + 1]), fast)
        s = Fraction(sum(int(c) for c in closes[t - slow + 1 : t + 1]), slow)
        side = (f > s) - (f < s)
        if side and last and side != last:
            expected[t] = Side.LONG if side > 0 else Side.SHORT
        last = side or last
    votes = run(SmaCrossAgent(SYMBOL, fast=fast, slow=slow), closes)
    assert {t: v.direction for t, v in votes.items()} == expected


# --- the helper fails when it should ----------------------------------------------------


class OffByOne(SmaCrossAgent):
    """A batch form that votes one candle late: the helper must catch it."""

    def batch_votes(self, columns: CandleColumns) -> BatchVotes:
        votes = super().batch_votes(columns)
        return BatchVotes(np.roll(votes.direction, 1), np.roll(votes.strength, 1), votes.detail)


class WrongWords(SmaCrossAgent):
    def batch_rationale(self, votes: BatchVotes, index: int) -> str:
        return super().batch_rationale(votes, index).replace("crossed", "crossed cleanly")


class Unsure(SmaCrossAgent):
    def batch_votes(self, columns: CandleColumns) -> BatchVotes:
        votes = super().batch_votes(columns)
        return BatchVotes(votes.direction, votes.strength * 0.5, votes.detail)


def test_the_helper_catches_a_batch_form_that_differs() -> None:
    columns = shared_columns("binanceus_BTC-USDT_1m_2023-03.csv")
    with pytest.raises(
        AssertionError, match=r"differs from on_candle on \d+ of 30240 candles: candle \d+ "
    ):
        assert_batch_matches(OffByOne, columns)
    with pytest.raises(
        AssertionError, match=r"rationale 'SMA.10. .* crossed (above|below) .*crossed cleanly"
    ):
        assert_batch_matches(WrongWords, columns)
    with pytest.raises(
        AssertionError, match=r"on_candle (long|short) 1\.0, batch (long|short) 0\.5"
    ):
        assert_batch_matches(Unsure, columns)


class LongAfterGaps(Agent):
    """Votes LONG on the first candle after a gap; its batch form finds gaps only if told to."""

    name: ClassVar[str] = "after_gaps"
    __slots__ = ("_gap", "find_gaps")

    def __init__(self, symbol: str, *, find_gaps: bool = True) -> None:
        super().__init__(symbol)
        self.find_gaps = find_gaps
        self._gap = False

    def on_gap(self, symbol: str, missing: int) -> None:
        self._gap = True

    def on_candle(self, candle: Candle) -> AgentVote | None:
        gap, self._gap = self._gap, False
        return self.vote(Side.LONG, 1.0, "after a gap") if gap else None

    def batch_votes(self, columns: CandleColumns) -> BatchVotes:
        step = np.diff(columns.ts)
        after = np.zeros(len(columns.ts), dtype=np.int8)
        if self.find_gaps:
            after[1:] = step > step.min()
        return BatchVotes(after, after.astype(np.float64))


def test_the_helper_tells_the_incremental_form_of_gaps_as_a_feed_would() -> None:
    columns = shared_columns("binance_ADA-BTC_5m_2018-01.csv")  # has missing candles
    assert_batch_matches(LongAfterGaps, columns)
    with pytest.raises(AssertionError, match=r"on_candle long 1\.0, batch no vote"):
        assert_batch_matches(LongAfterGaps, columns, find_gaps=False)


def test_an_agent_without_a_batch_form_says_so() -> None:
    class Plain(Agent):
        name: ClassVar[str] = "plain"

        def on_candle(self, candle: Candle) -> AgentVote | None:
            return None

    agent = Plain(SYMBOL)
    assert agent.batch_votes(columns_of([1.0, 2.0])) is None
    with pytest.raises(NotImplementedError, match="Plain has no batch_rationale"):
        agent.batch_rationale(BatchVotes(np.zeros(1, np.int8), np.zeros(1)), 0)
    with pytest.raises(AssertionError, match="Plain has no batch form"):
        assert_batch_matches(Plain, columns_of([1.0, 2.0]))


def test_batch_votes_must_have_one_entry_per_candle() -> None:
    with pytest.raises(ValueError, match=r"direction has 3 entries but \{'strength': 2\}"):
        BatchVotes(np.zeros(3, np.int8), np.zeros(2))
    with pytest.raises(ValueError, match=r"\{'fast': 4\}"):
        BatchVotes(np.zeros(3, np.int8), np.zeros(3), {"fast": np.zeros(4)})


def test_columns_from_candles_refuses_two_symbols() -> None:
    candles = [Candle("A/B", 0, 1, 1, 1, 1, 1), Candle("C/D", 60_000, 1, 1, 1, 1, 1)]
    with pytest.raises(ValueError, match="more than one symbol"):
        columns_from_candles(candles)


def test_the_agents_load_numpy_only_when_a_batch_form_runs() -> None:
    # numpy costs about 60 ms to import; the console's start and the live engine never need it.
    code = (
        "import sys, engine.agents, engine.agents.testing, engine.wiring\n"
        "print('numpy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class Doubled(SmaCrossAgent):
    """Directions of +2/-2 and a strength where there is no vote: not the protocol."""

    def batch_votes(self, columns: CandleColumns) -> BatchVotes:
        votes = super().batch_votes(columns)
        strength = votes.strength.copy()
        strength[0] = 0.25
        return BatchVotes(votes.direction * 2, strength, votes.detail)


class Short(SmaCrossAgent):
    def batch_votes(self, columns: CandleColumns) -> BatchVotes:
        votes = super().batch_votes(columns)
        return BatchVotes(votes.direction[1:], votes.strength[1:])


def test_the_helper_names_directions_off_the_protocol_and_a_wrong_length() -> None:
    columns = columns_of(HAND)
    with pytest.raises(AssertionError) as info:
        assert_batch_matches(Doubled, columns, fast=2, slow=3)
    message = str(info.value)
    assert "on 3 of 9 candles" in message
    assert "candle 0 (ts 1700000040000): on_candle no vote, batch no vote with strength 0.25" in (
        message
    )
    assert "candle 5 (ts 1700000340000): on_candle long 1.0, batch direction 2 (not +1" in message
    assert "candle 7 (ts 1700000460000): on_candle short 1.0, batch direction -2 (" in message
    with pytest.raises(AssertionError, match="batch_votes gave 8 entries for 9 candles"):
        assert_batch_matches(Short, columns, fast=2, slow=3)
