"""The synthesizer: votes weighted by record become one proposal, with confidence,
stop and take-profit from the ATR; shorts only when allowed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.models import AgentVote, Candle, Side
from engine.synthesis import SynthesisParams, Synthesizer

BTC = "BTC/USDT"
T0 = 1_767_225_600_000
MIN = 60_000


def candle(i: int, o: float, h: float, lo: float, c: float, symbol: str = BTC) -> Candle:
    return Candle(symbol, T0 + i * MIN, o, h, lo, c, 1.0)


def warm(synth: Synthesizer, n: int = 14, symbol: str = BTC) -> Candle:
    """``n`` candles of true range 2 around 100; returns the last."""
    last = candle(0, 100, 101, 99, 100, symbol)
    for i in range(n):
        last = candle(i, 100, 101, 99, 100, symbol)
        synth.on_candle(last)
    return last


def vote(agent: str, side: Side, strength: float) -> AgentVote:
    return AgentVote(agent, BTC, side, strength, f"{agent} says {side.value}")


def synth(weights: dict[str, float] | None = None, **params: object) -> Synthesizer:
    kw: dict[str, object] = {"agent_count": 2, "min_confidence": 0.35, **params}
    table = weights or {}
    return Synthesizer(
        SynthesisParams(**kw),
        lambda agent, symbol: table.get(agent, 1.0),
    )


def test_votes_become_a_long_with_stop_and_take_profit_from_the_atr() -> None:
    s = synth()
    last = warm(s)
    p = s.synthesize(
        last, [vote("a", Side.LONG, 0.8), vote("b", Side.LONG, 0.6)], Decimal(3), T0 + 15 * MIN
    )
    assert p is not None
    assert p.side is Side.LONG and p.symbol == BTC
    assert p.entry == Decimal(100)
    assert p.stop == Decimal(96)  # 2 ATRs of 2 below
    assert p.take_profit == Decimal(108)  # twice the stop distance above
    assert p.confidence == pytest.approx(0.7)  # (0.8 + 0.6) / 2 agents
    assert p.size == Decimal(3)
    assert (p.created_at, p.expires_at) == (T0 + 15 * MIN, T0 + 15 * MIN + 300_000)
    assert [(v.agent, v.direction, v.strength) for v in p.votes] == [
        ("a", Side.LONG, 0.8),
        ("b", Side.LONG, 0.6),
    ]


def test_stop_and_take_profit_scale_with_the_atr_and_the_settings() -> None:
    s = synth(stop_atr=1.5, reward_risk=3.0)
    # Fourteen true ranges of 2, then one of 9: Wilder's ATR is (13 × 2 + 9) / 14 = 2.5.
    ranges = [2.0] * 14 + [9.0]
    last = warm(s)
    last = candle(14, 100, 105, 96, 100)
    s.on_candle(last)
    expected_atr = (sum(ranges[:14]) / 14 * 13 + ranges[14]) / 14
    assert expected_atr == 2.5
    p = s.synthesize(last, [vote("a", Side.LONG, 1.0)], Decimal(1), T0)
    assert p is not None
    distance = Decimal(repr(expected_atr * 1.5))
    assert p.stop == (Decimal(100) - distance).quantize(Decimal("1e-8"))
    assert p.take_profit == (Decimal(100) + distance * 3).quantize(Decimal("1e-8"))


def test_short_votes_make_a_short_with_the_stop_above_and_the_take_profit_below() -> None:
    s = synth(allow_shorts=True)
    last = warm(s)
    p = s.synthesize(last, [vote("a", Side.SHORT, 1.0), vote("b", Side.LONG, 0.2)], Decimal(1), T0)
    assert p is not None
    assert p.side is Side.SHORT
    assert (p.stop, p.take_profit) == (Decimal(104), Decimal(92))
    assert p.confidence == pytest.approx(0.4)  # |0.2 − 1.0| / 2


def test_no_short_proposal_when_shorts_are_off() -> None:
    s = synth(allow_shorts=False)
    last = warm(s)
    votes = [vote("a", Side.SHORT, 1.0), vote("b", Side.SHORT, 1.0)]
    assert s.synthesize(last, votes, Decimal(1), T0) is None
    # A long still goes through.
    assert s.synthesize(last, [vote("a", Side.LONG, 1.0)], Decimal(1), T0) is not None


def test_weights_from_the_record_tilt_the_direction_and_the_confidence() -> None:
    votes = [vote("good", Side.LONG, 0.6), vote("bad", Side.SHORT, 0.8)]
    neutral = synth()
    last = warm(neutral)
    p = neutral.synthesize(last, votes, Decimal(1), T0)
    assert p is None  # 0.2 / 2 = 0.1: below the minimum confidence
    tilted = synth({"good": 1.8, "bad": 0.3})
    last = warm(tilted)
    p = tilted.synthesize(last, votes, Decimal(1), T0)
    assert p is not None and p.side is Side.LONG
    assert p.confidence == pytest.approx((1.8 * 0.6 - 0.3 * 0.8) / 2)


def test_confidence_is_capped_at_one() -> None:
    s = synth({"a": 2.0, "b": 2.0})
    last = warm(s)
    p = s.synthesize(last, [vote("a", Side.LONG, 1.0), vote("b", Side.LONG, 1.0)], Decimal(1), T0)
    assert p is not None and p.confidence == 1.0


def test_one_agent_alone_cannot_look_unanimous() -> None:
    s = synth(agent_count=3, min_confidence=0.0)
    last = warm(s)
    p = s.synthesize(last, [vote("a", Side.LONG, 1.0)], Decimal(1), T0)
    assert p is not None and p.confidence == pytest.approx(1 / 3, abs=1e-4)


def test_no_proposal_before_the_atr_is_warm_or_after_a_gap() -> None:
    s = synth()
    last = warm(s, n=13)
    votes = [vote("a", Side.LONG, 1.0), vote("b", Side.LONG, 1.0)]
    assert s.synthesize(last, votes, Decimal(1), T0) is None
    s.on_candle(candle(13, 100, 101, 99, 100))
    assert s.synthesize(last, votes, Decimal(1), T0) is not None
    s.on_gap(BTC)
    assert s.synthesize(last, votes, Decimal(1), T0) is None


def test_too_few_votes_or_too_little_confidence_make_no_proposal() -> None:
    s = synth(min_votes=2)
    last = warm(s)
    assert s.synthesize(last, [vote("a", Side.LONG, 1.0)], Decimal(1), T0) is None
    weak = [vote("a", Side.LONG, 0.3), vote("b", Side.LONG, 0.3)]  # 0.3 < 0.35
    assert s.synthesize(last, weak, Decimal(1), T0) is None


def test_a_stop_at_or_below_zero_makes_no_proposal() -> None:
    s = synth(stop_atr=60.0)  # 60 ATRs of 2 below a price of 100
    last = warm(s)
    votes = [vote("a", Side.LONG, 1.0), vote("b", Side.LONG, 1.0)]
    assert s.synthesize(last, votes, Decimal(1), T0) is None


def test_each_symbol_has_its_own_atr() -> None:
    s = synth()
    warm(s)
    eth = Candle("ETH/USDT", T0, 100, 101, 99, 100, 1.0)
    s.on_candle(eth)
    votes = [
        AgentVote("a", "ETH/USDT", Side.LONG, 1.0, "x"),
        AgentVote("b", "ETH/USDT", Side.LONG, 1.0, "x"),
    ]
    assert s.synthesize(eth, votes, Decimal(1), T0) is None


@pytest.mark.parametrize(
    "params",
    [{"agent_count": 0}, {"min_confidence": 1.5}, {"stop_atr": 0.0}, {"reward_risk": -1.0}],
)
def test_bad_parameters_are_refused(params: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SynthesisParams(**{"agent_count": 2, **params})
