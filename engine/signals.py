"""The signal pipeline: per-symbol agents → synthesis → a proposal. No awaits.

Each symbol gets its own instance of every agent class. A gap in a symbol's
candles tells its agents and the synthesizer; an agent that raises (or returns
something that is not a vote) is switched off for that symbol with one message,
and trading goes on with the others. The learning agent sees every candle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from engine.agents.base import Agent, BatchVotes, CandleColumns
from engine.config import Settings
from engine.events import EngineMessage
from engine.learning import LearningAgent
from engine.models import AgentVote, Candle, Proposal, Side
from engine.synthesis import Lean, SynthesisParams, Synthesizer

log = logging.getLogger("cma.engine")

_ZERO = Decimal(0)


class FloatSeries(Protocol):
    """Floats by index (a list, or a numpy array of float64)."""

    def __getitem__(self, index: int, /) -> float: ...


@dataclass(slots=True)
class BatchSignals:
    """One symbol's votes and ATR over a whole series (a backtest's), read at ``at``:
    the index of the candle :meth:`SignalPipeline.on_candle` is given next."""

    sources: list[tuple[Agent, BatchVotes]]
    atr: FloatSeries
    at: int = 0


class SignalPipeline:
    """Agents and synthesis for every symbol; :meth:`on_candle` is the one entry.

    A backtest may switch a symbol to its agents' batch forms (:meth:`use_batch`):
    the votes are then read from arrays computed once, the same votes
    ``on_candle`` would give, and the rest (learning, synthesis) is unchanged.
    """

    def __init__(
        self,
        agent_classes: Sequence[type[Agent]],
        synth: Synthesizer,
        learning: LearningAgent,
        tf_ms: int,
        params: Mapping[str, Mapping[str, object]] | None = None,
    ) -> None:
        self.agent_classes = list(agent_classes)
        #: Each agent's settings by name (``agents.params``), passed to its constructor.
        self.params = {} if params is None else params
        self.synth = synth
        self.learning = learning
        self.tf_ms = tf_ms
        self._agents: dict[str, list[Agent]] = {}
        self._last_ts: dict[str, int] = {}
        self._batch: dict[str, BatchSignals] = {}
        #: Called after each agent's batch form is made (a backtest hands the scratch
        #: memory back there, so the next agent's does not pile on top of it).
        self.between_agents: Callable[[], None] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        agent_classes: Sequence[type[Agent]],
        learning: LearningAgent,
        tf_ms: int,
    ) -> SignalPipeline:
        """The pipeline the settings ask for; the learning agent's record weights votes."""
        a = settings.agents
        params = SynthesisParams(
            agent_count=len(agent_classes),
            min_votes=a.min_votes,
            min_confidence=a.min_confidence,
            stop_atr=a.stop_atr,
            reward_risk=a.reward_risk,
            ttl_ms=int(settings.approval.ttl_seconds * 1000),
            # Where shorts are off (spot), a short signal is still made when it may
            # close a long (strategy.on_opposite): the core never proposes it.
            allow_shorts=settings.broker.shorts_allowed()
            or settings.strategy.on_opposite != "ignore",
        )
        synth = Synthesizer(params, learning.weight)
        return cls(agent_classes, synth, learning, tf_ms, settings.agents.params)

    def on_candle(
        self, candle: Candle, *, propose: bool, message_ts: int
    ) -> tuple[Proposal | None, list[EngineMessage]]:
        """Feed ``candle`` to its symbol's agents; the proposal their votes make when
        ``propose`` (None otherwise), and one message per agent switched off."""
        symbol = candle.symbol
        messages: list[EngineMessage] = []
        batch = self._batch.get(symbol)
        if batch is not None:
            self.learning.on_candle(candle)
            if not propose:
                return None, messages
            at = batch.at
            votes, decided = self._batch_votes(batch, at, symbol, messages, message_ts)
            if not votes:
                return None, messages
            proposal = self.synth.synthesize_at(
                candle, votes, _ZERO, candle.ts + self.tf_ms, float(batch.atr[at]), decided=decided
            )
            return proposal, messages
        last = self._last_ts.get(symbol)
        agents = self._agents.get(symbol)
        if agents is None:
            agents = self._agents[symbol] = self._make_agents(symbol, messages, message_ts)
        elif last is not None and candle.ts - last > self.tf_ms:
            missing = (candle.ts - last) // self.tf_ms - 1
            for agent in list(agents):
                try:
                    agent.on_gap(symbol, missing)
                except Exception as exc:
                    messages.append(
                        self._switch_off(agents, agent, agent.name, symbol, exc, message_ts)
                    )
            self.synth.on_gap(symbol)
        self._last_ts[symbol] = candle.ts
        self.learning.on_candle(candle)
        self.synth.on_candle(candle)
        votes = self._votes(agents, candle, messages, message_ts)
        if not votes or not propose:
            return None, messages
        return self.synth.synthesize(candle, votes, _ZERO, candle.ts + self.tf_ms), messages

    def use_batch(self, symbol: str, columns: CandleColumns, atr: FloatSeries) -> bool:
        """Read ``symbol``'s votes from its agents' batch forms over ``columns`` (and the
        synthesis's ATR from ``atr``, ``engine.indicators.batch.atr_series`` with a
        reset after each gap) instead of calling ``on_candle``. False, and nothing
        changes, when an agent has no batch form or fails to start: then the symbol
        goes candle by candle, as live."""
        if symbol in self._agents:
            raise RuntimeError(f"{symbol} has seen candles already: batch votes start fresh")
        messages: list[EngineMessage] = []
        agents = self._make_agents(symbol, messages, 0)
        if messages:
            return False
        sources: list[tuple[Agent, BatchVotes]] = []
        for agent in agents:
            try:
                votes = agent.batch_votes(columns)
            except Exception:
                log.exception(
                    "agent %s: batch form failed on %s; candle by candle", agent.name, symbol
                )
                return False
            if votes is None:
                return False
            sources.append((agent, votes.sparse()))
            del votes  # the whole detail goes before the next agent's is made
            if self.between_agents is not None:
                self.between_agents()
        self._agents[symbol] = agents
        self._batch[symbol] = BatchSignals(sources, atr)
        return True

    def batch(self, symbol: str) -> BatchSignals | None:
        """``symbol``'s batch votes, or None when it goes candle by candle."""
        return self._batch.get(symbol)

    def _batch_votes(
        self,
        batch: BatchSignals,
        at: int,
        symbol: str,
        messages: list[EngineMessage],
        ts: int,
    ) -> tuple[list[AgentVote], tuple[Side, float] | None]:
        """The votes at ``at`` and, when they are the lean votes decided first (every
        agent that leant voted), that decision: the synthesis need not weigh them again."""
        # First the votes without their rationales: most candles' votes make no
        # proposal, and only a proposal shows its votes' words.
        lean: list[Lean] = []
        decided: tuple[Side, float] | None = None
        for agent, series in batch.sources:
            direction = series.direction[at]
            if not direction:
                continue
            strength = float(series.strength[at])
            if strength != strength:
                lean = []  # NaN: let the agent's vote() say what is wrong
                break
            strength = 0.0 if strength < 0.0 else 1.0 if strength > 1.0 else strength
            side = Side.LONG if direction > 0 else Side.SHORT
            lean.append(Lean(agent.name, symbol, side, strength))
        else:
            decided = self.synth.decide(lean)
            if decided is None:
                return [], None
        votes: list[AgentVote] = []
        broken: list[tuple[Agent, Exception]] = []
        for agent, series in batch.sources:
            if not series.direction[at]:
                continue
            try:
                vote = agent.batch_vote(series, at)
            except Exception as exc:
                broken.append((agent, exc))
                continue
            if vote is not None:
                votes.append(vote)
        for agent, error in broken:
            batch.sources = [s for s in batch.sources if s[0] is not agent]
            messages.append(
                self._switch_off(self._agents[symbol], agent, agent.name, symbol, error, ts)
            )
        return votes, decided if _as_leant(votes, lean) else None

    def _make_agents(self, symbol: str, messages: list[EngineMessage], ts: int) -> list[Agent]:
        """One instance of each agent class for ``symbol``; one that raises is left out."""
        agents: list[Agent] = []
        for cls in self.agent_classes:
            try:
                agents.append(cls(symbol, **self.params.get(getattr(cls, "name", ""), {})))
            except Exception as exc:
                name = getattr(cls, "name", cls.__name__)
                messages.append(self._switch_off(agents, None, name, symbol, exc, ts))
        return agents

    def _votes(
        self, agents: list[Agent], candle: Candle, messages: list[EngineMessage], ts: int
    ) -> list[AgentVote]:
        """Each agent's vote on ``candle``, asked once; one that raises (or returns
        something that is not a vote) is switched off for this symbol."""
        votes: list[AgentVote] = []
        broken: list[tuple[Agent, Exception]] = []
        for agent in agents:
            try:
                vote = agent.on_candle(candle)
            except Exception as exc:
                broken.append((agent, exc))
                continue
            if vote is None:
                continue
            if not isinstance(vote, AgentVote):
                kind = type(vote).__name__
                broken.append((agent, TypeError(f"on_candle returned a {kind}, not a vote")))
                continue
            votes.append(vote)
        for agent, error in broken:
            messages.append(self._switch_off(agents, agent, agent.name, candle.symbol, error, ts))
        return votes

    @staticmethod
    def _switch_off(
        agents: list[Agent],
        agent: Agent | None,
        name: str,
        symbol: str,
        exc: Exception,
        ts: int,
    ) -> EngineMessage:
        """Take a failed agent out of ``symbol``'s agents: its traceback goes to the log,
        one line to subscribers. Trading goes on with the others."""
        if agent is not None and agent in agents:
            agents.remove(agent)
        text = (
            f"agent {name} failed on {symbol}: {type(exc).__name__}: {exc}; "
            f"switched off for {symbol}"
        )
        log.error("%s", text, exc_info=exc)
        return EngineMessage(ts=ts, level="error", text=text)


def _as_leant(votes: list[AgentVote], lean: list[Lean]) -> bool:
    """Whether ``votes`` are ``lean`` with their rationales (each agent that leant voted
    the same side and strength): then what the lean votes decided holds for them."""
    if len(votes) != len(lean):
        return False
    for vote, leant in zip(votes, lean, strict=True):
        if (
            vote.agent != leant.agent
            or vote.symbol != leant.symbol
            or vote.direction is not leant.direction
            or vote.strength != leant.strength
        ):
            return False
    return True
