"""Agents on small candle tables, random walks and a month of real BTC candles."""

from __future__ import annotations

import csv
import textwrap
import tracemalloc
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_data import shared_data_dir

from engine.agents import (
    BUILTIN_AGENTS,
    Agent,
    MomentumAgent,
    PriceActionAgent,
    SmaCrossAgent,
    fmt_price,
    load_agent_class,
    resolve_agent_class,
)
from engine.models import AgentVote, Candle, Side

DATA = shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"
SYMBOL = "BTC/USDT"
LONG, SHORT = Side.LONG, Side.SHORT

Row = tuple[float, float, float, float, float]  # open, high, low, close, volume


@dataclass(frozen=True)
class Gap:
    """``missing`` candles that never arrived, between two rows of a table."""

    missing: int


def quiet(n: int, mid: float = 100.0, volume: float = 10.0) -> list[Row]:
    """Candles wobbling around ``mid`` in a 0.6-wide range, alternately up and down.

    Resistance is mid + 0.3 and support mid - 0.3, the ATR is 0.6; bodies (0.2)
    and wicks (0.2) are too small for any pattern. Row ``n - 1`` is a down
    candle when ``n`` is even.
    """
    rows: list[Row] = []
    for i in range(n):
        o, c = (mid - 0.1, mid + 0.1) if i % 2 == 0 else (mid + 0.1, mid - 0.1)
        rows.append((o, mid + 0.3, mid - 0.3, c, volume))
    return rows


def trend(n: int, start: float, step: float, volume: float) -> list[Row]:
    """``n`` full-bodied candles, each moving ``step`` from the last close."""
    rows: list[Row] = []
    price = start
    for _ in range(n):
        close = price + step
        rows.append((price, max(price, close) + 0.1, min(price, close) - 0.1, close, volume))
        price = close
    return rows


def flat(n: int, price: float = 100.0) -> list[Row]:
    return [(price, price, price, price, 10.0)] * n


def run_table(agent: Agent, table: Iterable[Row | Gap]) -> dict[int, AgentVote]:
    """Feed a table to an agent; the votes by candle row (gaps do not count as rows)."""
    votes: dict[int, AgentVote] = {}
    i = 0
    for row in table:
        if isinstance(row, Gap):
            agent.on_gap(agent.symbol, row.missing)
            continue
        vote = agent.on_candle(Candle(agent.symbol, i * 60_000, *row))
        if vote is not None:
            votes[i] = vote
        i += 1
    return votes


# --- candle tables: the rows, and the vote expected at each row (no vote elsewhere) -----

SELL_OFF = quiet(40) + trend(15, 100.0, -1.0, 10.0)  # rows 40-54 fall 1.0 each
RALLY = quiet(40) + trend(15, 100.0, 1.0, 10.0)
DRIFT_DOWN = quiet(40) + trend(8, 100.0, -0.2, 10.0)  # rows 40-47

TABLES: list[tuple[str, type[Agent], Sequence[Row | Gap], dict[int, Side]]] = [
    (
        "breakout above resistance on 4x volume",
        PriceActionAgent,
        [*quiet(24), (100.1, 101.2, 100.0, 101.0, 40.0)],
        {24: LONG},
    ),
    (
        "breakdown below support on 4x volume",
        PriceActionAgent,
        [*quiet(24), (99.9, 100.0, 98.8, 99.0, 40.0)],
        {24: SHORT},
    ),
    (
        "breakout on ordinary volume is not confirmed",
        PriceActionAgent,
        [*quiet(24), (100.1, 101.2, 100.0, 101.0, 10.0)],
        {},
    ),
    (
        "long lower wick rejects support",
        PriceActionAgent,
        [*quiet(24), (100.0, 100.1, 99.2, 100.05, 12.0)],
        {24: LONG},
    ),
    (
        "long upper wick rejects resistance",
        PriceActionAgent,
        [*quiet(24), (100.0, 100.8, 99.9, 99.95, 12.0)],
        {24: SHORT},
    ),
    (
        "bullish engulfing at support",
        PriceActionAgent,
        [*quiet(24), (99.85, 100.28, 99.75, 100.25, 15.0)],
        {24: LONG},
    ),
    (
        "bearish engulfing at resistance",
        PriceActionAgent,
        [*quiet(23), (100.15, 100.28, 99.72, 99.75, 15.0)],
        {23: SHORT},
    ),
    (
        "breakout after a short gap still counts",
        PriceActionAgent,
        [*quiet(24), Gap(3), (100.1, 101.2, 100.0, 101.0, 40.0)],
        {24: LONG},
    ),
    (
        "a gap as long as the channel resets it",
        PriceActionAgent,
        [*quiet(24), Gap(20), (100.1, 101.2, 100.0, 101.0, 40.0)],
        {},
    ),
    ("flat market: price action is silent", PriceActionAgent, flat(300), {}),
    ("quiet market: price action is silent", PriceActionAgent, quiet(300), {}),
    ("flat market: momentum is silent", MomentumAgent, flat(300), {}),
    ("quiet market: momentum is silent", MomentumAgent, quiet(300), {}),
    (
        # RSI falls under 30 during the sell-off and crosses back on the second rebound candle.
        "sell-off reversal on volume",
        MomentumAgent,
        [*SELL_OFF, *trend(6, SELL_OFF[-1][3], 1.5, 25.0)],
        {57: LONG},
    ),
    (
        "rally reversal on volume",
        MomentumAgent,
        [*RALLY, *trend(6, RALLY[-1][3], -1.5, 25.0)],
        {57: SHORT},
    ),
    (
        "a gap longer than the RSI period hides the reversal",
        MomentumAgent,
        [*SELL_OFF, Gap(15), *trend(6, SELL_OFF[-1][3], 1.5, 25.0)],
        {},
    ),
    (
        # Row 48 is the RSI reversal; at row 50 the MACD histogram turns up with ROC > 0.
        "MACD turn with rate of change and 3x volume",
        MomentumAgent,
        [*DRIFT_DOWN, *trend(3, DRIFT_DOWN[-1][3], 0.8, 30.0)],
        {48: LONG, 50: LONG},
    ),
    (
        "MACD turn on ordinary volume is not confirmed",
        MomentumAgent,
        [*DRIFT_DOWN, *trend(3, DRIFT_DOWN[-1][3], 0.8, 10.0)],
        {48: LONG},
    ),
]


@pytest.mark.parametrize(
    ("agent_cls", "table", "expected"),
    [pytest.param(cls, table, expected, id=name) for name, cls, table, expected in TABLES],
)
def test_candle_table(
    agent_cls: type[Agent], table: Sequence[Row | Gap], expected: dict[int, Side]
) -> None:
    votes = run_table(agent_cls(SYMBOL), table)
    assert {i: v.direction for i, v in votes.items()} == expected
    for vote in votes.values():
        assert vote.agent == agent_cls.name and vote.symbol == SYMBOL


def test_breakout_rationale_names_level_atr_and_volume() -> None:
    votes = run_table(PriceActionAgent(SYMBOL), [*quiet(24), (100.1, 101.2, 100.0, 101.0, 40.0)])
    assert votes[24].rationale == (
        "breakout above 20-bar resistance 100.3 (+1.2 ATR) on 4.0x volume"
    )
    assert votes[24].strength == 1.0  # > 1 ATR beyond the level on > 3x volume


def test_reversal_rationale_names_rsi_macd_roc_and_volume() -> None:
    table = [*SELL_OFF, *trend(6, SELL_OFF[-1][3], 1.5, 25.0)]
    vote = run_table(MomentumAgent(SYMBOL), table)[57]
    assert vote.rationale.startswith("RSI 27.8→36.6 crossing up, MACD hist -0.2")
    assert vote.rationale.endswith(", ROC(10) -2.72%, vol 2.2x")
    assert 0.2 < vote.strength < 1.0


def test_bigger_breakout_on_more_volume_is_stronger() -> None:
    def strength(close: float, volume: float) -> float:
        row = (100.1, close + 0.1, 100.0, close, volume)
        return run_table(PriceActionAgent(SYMBOL), [*quiet(24), row])[24].strength

    assert strength(100.5, 16.0) < strength(100.8, 16.0) < strength(100.8, 30.0)


# --- properties over random candle walks ----------------------------------------------


@st.composite
def candle_walks(draw: st.DrawFn) -> list[Candle]:
    steps = draw(
        st.lists(
            st.tuples(
                st.one_of(st.just(0.0), st.floats(-0.05, 0.05)),  # close-to-close return
                st.one_of(st.just(0.0), st.floats(0.0, 0.03)),  # upper wick
                st.one_of(st.just(0.0), st.floats(0.0, 0.03)),  # lower wick
                st.one_of(st.just(0.0), st.floats(0.0, 1e4)),  # volume; zero happens
            ),
            min_size=1,
            max_size=300,
        )
    )
    candles: list[Candle] = []
    price = draw(st.floats(1e-4, 1e5))
    for i, (ret, up, down, volume) in enumerate(steps):
        close = price * (1.0 + ret)
        high = max(price, close) * (1.0 + up)
        low = min(price, close) * (1.0 - down)
        candles.append(Candle(SYMBOL, i * 60_000, price, high, low, close, volume))
        price = close
    return candles


@settings(max_examples=150, deadline=None)
@given(candle_walks())
def test_votes_on_random_walks_are_well_formed(candles: list[Candle]) -> None:
    for cls in (PriceActionAgent, MomentumAgent):
        agent = cls(SYMBOL)
        for candle in candles:
            vote = agent.on_candle(candle)
            if vote is None:
                continue
            # Every built-in formula starts at 0.2 and tops out at 1: clamping never applies.
            assert 0.2 <= vote.strength <= 1.0, vote
            assert vote.agent == cls.name and vote.symbol == SYMBOL
            assert vote.rationale and "\n" not in vote.rationale
            assert "nan" not in vote.rationale and "inf" not in vote.rationale


# --- real data --------------------------------------------------------------------------


@cache
def btc_candles() -> tuple[Candle, ...]:
    with DATA.open(newline="") as f:
        return tuple(
            Candle(
                SYMBOL,
                int(r["timestamp"]),
                float(r["open"]),
                float(r["high"]),
                float(r["low"]),
                float(r["close"]),
                float(r["volume"]),
            )
            for r in csv.DictReader(f)
        )


@pytest.mark.parametrize("agent_cls", [PriceActionAgent, MomentumAgent])
def test_agents_vote_on_a_small_share_of_real_btc_candles(agent_cls: type[Agent]) -> None:
    candles = btc_candles()
    agent = agent_cls(SYMBOL)
    votes = [v for c in candles if (v := agent.on_candle(c)) is not None]
    share = len(votes) / len(candles)
    assert 0.005 <= share <= 0.20, share
    sides = {v.direction for v in votes}
    assert sides == {LONG, SHORT}


def deques_in(obj: object, seen: set[int] | None = None) -> Iterator[deque[Any]]:
    """Every deque reachable from an agent through slots and attributes."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, deque):
        yield obj
        return
    if not type(obj).__module__.startswith("engine."):
        return
    names = [s for klass in type(obj).__mro__ for s in getattr(klass, "__slots__", ())]
    names += list(getattr(obj, "__dict__", {}))
    for name in names:
        if hasattr(obj, name):
            yield from deques_in(getattr(obj, name), seen)


@pytest.mark.parametrize(
    ("agent_cls", "n_deques"),
    # Donchian max and min (a window and a monotonic deque each) and volume; ROC and volume.
    [(PriceActionAgent, 5), (MomentumAgent, 2)],
)
def test_agent_memory_stays_bounded_over_10000_candles(
    agent_cls: type[Agent], n_deques: int
) -> None:
    candles = btc_candles()[:10_000]
    agent = agent_cls(SYMBOL)
    tracemalloc.start()
    try:
        for candle in candles[:2_000]:
            agent.on_candle(candle)
        early, _ = tracemalloc.get_traced_memory()
        for candle in candles[2_000:]:
            agent.on_candle(candle)
        late, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert late - early < 4_096, (early, late)
    found = list(deques_in(agent))
    assert len(found) == n_deques
    assert all(len(d) <= 20 for d in found), [len(d) for d in found]


# --- the base class and the loader ------------------------------------------------------


class EveryTenthCandleAgent(Agent):
    """A user agent defined outside the engine, loaded by dotted path."""

    name: ClassVar[str] = "every_tenth"

    def __init__(self, symbol: str) -> None:
        super().__init__(symbol)
        self.seen = 0

    def on_candle(self, candle: Candle) -> AgentVote | None:
        self.seen += 1
        if self.seen % 10:
            return None
        return self.vote(LONG, 2.5, f"candle {self.seen}")


class NotAnAgent:
    name = "impostor"


class HalfAnAgent(Agent):
    name: ClassVar[str] = "half"


class NamelessAgent(Agent):
    def on_candle(self, candle: Candle) -> AgentVote | None:
        return None


@pytest.mark.parametrize("sep", [":", "."])
def test_loader_loads_a_user_agent_by_dotted_path(sep: str) -> None:
    cls = load_agent_class(f"{__name__}{sep}EveryTenthCandleAgent")
    assert cls is EveryTenthCandleAgent
    votes = run_table(cls("ETH/USDT"), quiet(30))
    assert sorted(votes) == [9, 19, 29]
    assert votes[9] == AgentVote("every_tenth", "ETH/USDT", LONG, 1.0, "candle 10")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("no_such_package.agents:Thing", "cannot import module 'no_such_package.agents'"),
        (f"{__name__}:Missing", "has no attribute 'Missing'"),
        (f"{__name__}:NotAnAgent", "is not a subclass of engine.agents.Agent"),
        ("engine.models.Candle", "is not a subclass of engine.agents.Agent"),
        (f"{__name__}:HalfAnAgent", "is abstract (does not implement on_candle)"),
        (f"{__name__}:NamelessAgent", "does not set a class attribute `name`"),
        ("momentum", "is not of the form"),
        ("engine.agents:", "is not of the form"),
    ],
)
def test_loader_bad_path_raises_value_error_naming_it(path: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        load_agent_class(path)
    message = str(info.value)
    assert repr(path) in message and reason in message


def test_builtin_agents_by_name_and_resolve_falls_back_to_dotted_paths() -> None:
    assert {
        "price_action": PriceActionAgent,
        "momentum": MomentumAgent,
        "sma_cross": SmaCrossAgent,
    } == BUILTIN_AGENTS
    assert resolve_agent_class("momentum") is MomentumAgent
    assert resolve_agent_class(f"{__name__}:EveryTenthCandleAgent") is EveryTenthCandleAgent
    with pytest.raises(ValueError, match="nope"):
        resolve_agent_class("nope")


def test_agent_without_a_name_cannot_be_built() -> None:
    with pytest.raises(TypeError, match="NamelessAgent must set"):
        NamelessAgent(SYMBOL)


def test_vote_clamps_strength_and_rejects_nan() -> None:
    agent = EveryTenthCandleAgent(SYMBOL)
    assert agent.vote(SHORT, -0.5, "x").strength == 0.0
    assert agent.vote(SHORT, 7.0, "x").strength == 1.0
    assert agent.vote(SHORT, 0.25, "x") == AgentVote("every_tenth", SYMBOL, SHORT, 0.25, "x")
    with pytest.raises(ValueError, match="NaN"):
        agent.vote(SHORT, float("nan"), "x")


def test_on_gap_is_a_no_op_by_default() -> None:
    agent = EveryTenthCandleAgent(SYMBOL)
    run_table(agent, [*quiet(5), Gap(100), *quiet(5)])
    assert agent.seen == 10


@pytest.mark.parametrize(
    ("price", "text"),
    [
        (27410.53, "27,410.5"),
        (100.3, "100.3"),
        (1.234567, "1.23457"),
        (0.000123456, "0.000123456"),
        (0.0, "0.0"),
    ],
)
def test_fmt_price(price: float, text: str) -> None:
    assert fmt_price(price) == text


def example_source(doc: str) -> str:
    """The code block after the last ``::`` of a docstring."""
    block = doc.rsplit("::\n", 1)[1]
    lines: list[str] = []
    for line in block.splitlines():
        if line.strip() and not line.startswith("        "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def test_the_example_agent_in_the_base_class_docstring_works() -> None:
    assert Agent.__doc__ is not None
    namespace: dict[str, Any] = {}
    exec(compile(example_source(Agent.__doc__), "<Agent docstring>", "exec"), namespace)
    cls = namespace["SmaCrossAgent"]
    agent = cls(SYMBOL)
    votes: Sequence[AgentVote] = [
        v for c in btc_candles()[:5_000] if (v := agent.on_candle(c)) is not None
    ]
    assert votes and {v.direction for v in votes} == {LONG, SHORT}
    assert all(v.agent == "sma_cross" and "crossed" in v.rationale for v in votes)
    agent.on_gap(SYMBOL, 3)
    assert agent.on_candle(btc_candles()[5_000]) is None  # warming up again after a gap
