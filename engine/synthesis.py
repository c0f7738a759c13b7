"""The synthesizer: one symbol's votes on one candle become at most one proposal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple, Protocol

from engine.ids import new_id
from engine.indicators import ATR
from engine.models import AgentVote, Candle, Proposal, Side, q_price, to_decimal


class Lean(NamedTuple):
    """A vote without its rationale, for :meth:`Synthesizer.decide`."""

    agent: str
    symbol: str
    direction: Side
    strength: float


class VoteLike(Protocol):
    """What synthesis reads of a vote (an ``AgentVote`` has it)."""

    @property
    def agent(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def direction(self) -> Side: ...
    @property
    def strength(self) -> float: ...


@dataclass(frozen=True, slots=True)
class SynthesisParams:
    """How votes become a proposal."""

    agent_count: int  # agents running per symbol: a lone vote cannot look unanimous
    min_votes: int = 1
    min_confidence: float = 0.35
    stop_atr: float = 2.0
    reward_risk: float = 2.0
    ttl_ms: int = 300_000
    allow_shorts: bool = True

    def __post_init__(self) -> None:
        if self.agent_count < 1:
            raise ValueError(f"agent_count must be >= 1, got {self.agent_count}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must lie in [0, 1], got {self.min_confidence}")
        if self.stop_atr <= 0 or self.reward_risk <= 0:
            raise ValueError("stop_atr and reward_risk must be > 0")


class Synthesizer:
    """Weights each vote by its agent's record and decides direction and confidence.

    ``score(side) = Σ weight × strength`` over the votes for that side;
    ``confidence = min(1, |score(long) − score(short)| / agent_count)``: with a
    neutral record (weight 1), one agent alone never reaches full confidence. The stop
    sits ``stop_atr`` ATRs from the entry (the candle's close) and the
    take-profit ``reward_risk`` times as far on the other side.
    """

    def __init__(self, params: SynthesisParams, weight: Callable[[str, str], float]) -> None:
        self.params = params
        self._weight = weight
        self._atr: dict[str, ATR] = {}

    def on_candle(self, candle: Candle) -> float | None:
        """Feed the volatility estimate; call for every candle, voted on or not."""
        atr = self._atr.get(candle.symbol)
        if atr is None:
            atr = self._atr[candle.symbol] = ATR(14)
        return atr.update(candle.high, candle.low, candle.close)

    def on_gap(self, symbol: str) -> None:
        """Drop the volatility estimate across a gap rather than bridge it."""
        self._atr.pop(symbol, None)

    def synthesize(
        self, candle: Candle, votes: Sequence[AgentVote], size: Decimal, now_ms: int
    ) -> Proposal | None:
        """The proposal these votes make, or None (too few, too weak, no ATR yet)."""
        atr_ind = self._atr.get(candle.symbol)
        atr = atr_ind.value if atr_ind is not None else None
        return self.synthesize_at(candle, votes, size, now_ms, atr)

    def decide(self, votes: Sequence[VoteLike]) -> tuple[Side, float] | None:
        """The side and confidence ``votes`` make, or None (too few, too weak, a short
        where shorts are off). Only the votes' agent, symbol, direction and strength
        count: a backtest asks before it writes the votes' rationales."""
        p = self.params
        if len(votes) < p.min_votes:
            return None
        long_score = short_score = 0.0
        for v in votes:
            w = self._weight(v.agent, v.symbol)
            if v.direction is Side.LONG:
                long_score += w * v.strength
            else:
                short_score += w * v.strength
        side = Side.LONG if long_score >= short_score else Side.SHORT
        if side is Side.SHORT and not p.allow_shorts:
            return None
        confidence = min(1.0, abs(long_score - short_score) / p.agent_count)
        if confidence < p.min_confidence:
            return None
        return side, confidence

    def synthesize_at(
        self,
        candle: Candle,
        votes: Sequence[AgentVote],
        size: Decimal,
        now_ms: int,
        atr: float | None,
        *,
        decided: tuple[Side, float] | None = None,
    ) -> Proposal | None:
        """:meth:`synthesize` with the ATR given (a backtest's whole-series ATR, the same
        floats as :meth:`on_candle` makes; NaN or None while warming up). ``decided``:
        what :meth:`decide` gave for these votes, when the caller asked already."""
        p = self.params
        if atr is None or not atr > 0:
            return None
        if decided is None:
            decided = self.decide(votes)
        if decided is None:
            return None
        side, confidence = decided
        entry = to_decimal(candle.close)
        distance = to_decimal(atr * p.stop_atr)
        stop = entry - distance * side.sign
        take_profit = entry + distance * Decimal(repr(p.reward_risk)) * side.sign
        if stop <= 0 or take_profit <= 0:
            return None
        return Proposal(
            id=new_id("prp"),
            symbol=candle.symbol,
            side=side,
            entry=q_price(entry),
            stop=q_price(stop),
            take_profit=q_price(take_profit),
            confidence=round(confidence, 4),
            size=size,
            created_at=now_ms,
            expires_at=now_ms + p.ttl_ms,
            votes=tuple(votes),
        )
