"""The learning agent: each agent's record, real and counterfactual.

It does not vote. It keeps, per agent and per symbol (and overall under
``*``), the win rate, average win and average loss of the trades that agent
voted for. Trades that were approved count when their position closes.
Proposals that were rejected or expired are followed on paper (the
*counterfactual*) until their stop or take-profit would have triggered, so the
record is not biased by the person's choices, and the console can show
whether those choices add value. The record weights the synthesis and feeds
the Kelly statistics of the risk engine.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from engine.models import Candle, Proposal, Side, stop_or_take_profit
from engine.ports import AgentRecordRow, CounterfactualRow
from engine.risk import EdgeStats

OVERALL = "*"
#: Counterfactual trades followed at once per symbol; the oldest is dropped beyond it.
MAX_FOLLOWED = 200
#: A counterfactual still open after this many candles is closed at the close.
MAX_HOLD_CANDLES = 720


@dataclass(slots=True)
class Record:
    """Running totals for one agent on one symbol. Returns are fractions of the entry."""

    trades: int = 0
    wins: int = 0
    sum_win: float = 0.0
    sum_loss: float = 0.0  # magnitudes
    cf_trades: int = 0
    cf_wins: int = 0
    cf_sum_win: float = 0.0
    cf_sum_loss: float = 0.0

    def add(self, ret: float, counterfactual: bool) -> None:
        if counterfactual:
            self.cf_trades += 1
            if ret > 0:
                self.cf_wins += 1
                self.cf_sum_win += ret
            else:
                self.cf_sum_loss += -ret
        else:
            self.trades += 1
            if ret > 0:
                self.wins += 1
                self.sum_win += ret
            else:
                self.sum_loss += -ret

    @property
    def all_trades(self) -> int:
        return self.trades + self.cf_trades

    @property
    def all_wins(self) -> int:
        return self.wins + self.cf_wins

    def edge(self) -> EdgeStats | None:
        """Win rate and payoff over real and counterfactual trades; None with no trades."""
        n = self.all_trades
        if n == 0:
            return None
        wins = self.all_wins
        losses = n - wins
        # No wins gives avg_win 0 and so a Kelly of 0: a losing record is denied,
        # not sized by the default fraction.
        avg_win = (self.sum_win + self.cf_sum_win) / wins if wins else 0.0
        avg_loss = (self.sum_loss + self.cf_sum_loss) / losses if losses else 0.0
        return EdgeStats(trades=n, win_rate=wins / n, avg_win=avg_win, avg_loss=avg_loss)


@dataclass(slots=True)
class _Followed:
    proposal_id: str
    symbol: str
    side: Side
    entry: float
    stop: float
    take_profit: float
    agents: tuple[str, ...]
    #: The symbol's candle count when it was followed: its age is the count now minus this.
    born: int = 0


@dataclass(slots=True)
class Levels:
    """Where one symbol's followed trades could close: a candle whose low is at or
    below ``low`` or whose high is at or above ``high`` may close one, as may the
    candle on which the oldest reaches :data:`MAX_HOLD_CANDLES` (``oldest_born``).
    A bound may be loose (a trade dropped or closed since): it only makes a check
    that finds nothing."""

    low: float = -math.inf
    high: float = math.inf
    oldest_born: int | None = None

    def add(self, f: _Followed) -> None:
        if f.side is Side.LONG:
            below, above = f.stop, f.take_profit
        else:
            below, above = f.take_profit, f.stop
        self.low = max(self.low, below)
        self.high = min(self.high, above)
        if self.oldest_born is None:
            self.oldest_born = f.born


@dataclass(slots=True)
class LearningAgent:
    """Keeps every agent's record and follows declined proposals on paper."""

    records: dict[tuple[str, str], Record] = field(default_factory=dict)
    _followed: dict[str, deque[_Followed]] = field(default_factory=dict)
    _dirty: set[tuple[str, str]] = field(default_factory=set)
    #: Candles seen per symbol (the clock the followed trades' ages are read on).
    _seen: dict[str, int] = field(default_factory=dict)
    _levels: dict[str, Levels] = field(default_factory=dict)
    #: Counts the changes to the records (so a reader of the weights knows they moved).
    version: int = 0
    #: The pooled edge of each group of agents, at the records' version it was made at.
    _edges: dict[tuple[str, ...], tuple[int, EdgeStats | None]] = field(default_factory=dict)
    #: Followed trades closed since the last :meth:`take_closed`, for the store.
    _closed: list[CounterfactualRow] = field(default_factory=list)
    #: The weights asked for at the records' version ``_weights_at``.
    _weights: dict[tuple[str, str], float] = field(default_factory=dict)
    _weights_at: int = -1

    # --- inputs ---------------------------------------------------------------

    def restore(self, rows: list[AgentRecordRow]) -> None:
        """Load the persisted record (after a restart)."""
        self.version += 1
        for r in rows:
            self.records[(r.agent, r.symbol)] = Record(
                r.trades, r.wins, r.sum_win, r.sum_loss,
                r.cf_trades, r.cf_wins, r.cf_sum_win, r.cf_sum_loss,
            )  # fmt: skip

    def follow(self, proposal: Proposal) -> None:
        """Start following a rejected or expired proposal on paper."""
        agents = tuple(v.agent for v in proposal.votes if v.direction is proposal.side)
        if not agents:
            return
        queue = self._followed.get(proposal.symbol)
        if queue is None:
            queue = self._followed[proposal.symbol] = deque(maxlen=MAX_FOLLOWED)
        followed = _Followed(
            proposal.id,
            proposal.symbol,
            proposal.side,
            float(proposal.entry),
            float(proposal.stop),
            float(proposal.take_profit),
            agents,
            self._seen.get(proposal.symbol, 0),
        )
        queue.append(followed)
        levels = self._levels.get(proposal.symbol)
        if levels is None:
            levels = self._levels[proposal.symbol] = Levels()
        levels.add(followed)

    def unfollow(self, proposal: Proposal) -> None:
        """Stop following ``proposal`` (its rejection could not be stored: it is pending
        again, and a person may still approve it)."""
        queue = self._followed.get(proposal.symbol)
        if queue is not None:
            kept = [f for f in queue if f.proposal_id != proposal.id]
            if len(kept) != len(queue):
                queue.clear()
                queue.extend(kept)
                self._relevel(proposal.symbol)

    def on_candle(self, candle: Candle) -> int:
        """Advance the counterfactual trades of ``candle.symbol``; return how many closed.

        The stop is assumed to trigger first when both fall inside one candle,
        the same rule as the paper broker. Most candles close nothing, and one
        comparison with the symbol's :class:`Levels` shows it.
        """
        symbol = candle.symbol
        seen = self._seen[symbol] = self._seen.get(symbol, 0) + 1
        levels = self._levels.get(symbol)
        if levels is None or (
            candle.low > levels.low
            and candle.high < levels.high
            and (levels.oldest_born is None or seen - levels.oldest_born < MAX_HOLD_CANDLES)
        ):
            return 0
        queue = self._followed.get(symbol)
        if not queue:
            del self._levels[symbol]
            return 0
        closed = 0
        keep: list[_Followed] = []
        for f in queue:
            hit = stop_or_take_profit(
                f.side, f.stop, f.take_profit, candle.open, candle.high, candle.low
            )
            if hit is not None:
                exit_price, reason = hit[0], hit[1].replace("-", "_")
            elif seen - f.born >= MAX_HOLD_CANDLES:
                exit_price, reason = candle.close, "time"
            else:
                keep.append(f)
                continue
            ret = (exit_price - f.entry) / f.entry * f.side.sign
            self._add(f.symbol, f.agents, ret, counterfactual=True)
            self._closed.append(
                CounterfactualRow(
                    f.proposal_id, symbol, f.side.value, f.agents, f.entry, exit_price, ret,
                    reason, candle.ts,
                )
            )  # fmt: skip
            closed += 1
        if closed:
            self._followed[symbol] = deque(keep, maxlen=MAX_FOLLOWED)
        self._relevel(symbol)
        return closed

    def skip(self, symbol: str, candles: int) -> None:
        """Count ``candles`` of ``symbol`` that closed none of its followed trades (a
        backtest that has checked them with :meth:`levels` does not feed them)."""
        self._seen[symbol] = self._seen.get(symbol, 0) + candles

    def levels(self, symbol: str) -> tuple[float, float, int | None] | None:
        """Where ``symbol``'s followed trades could close: ``(low, high, last)``: a
        candle with its low at or below ``low`` or its high at or above ``high`` may
        close one, and so may the ``last``-th candle from now (None: no age limit
        near); None when nothing is followed."""
        levels = self._levels.get(symbol)
        if levels is None:
            return None
        last = None
        if levels.oldest_born is not None:
            last = levels.oldest_born + MAX_HOLD_CANDLES - self._seen.get(symbol, 0)
        return levels.low, levels.high, last

    def _relevel(self, symbol: str) -> None:
        """Recompute ``symbol``'s levels from its queue (after trades closed or left)."""
        queue = self._followed.get(symbol)
        if not queue:
            self._levels.pop(symbol, None)
            return
        levels = self._levels[symbol] = Levels()
        for f in queue:
            levels.add(f)

    def on_trade_closed(self, proposal: Proposal | None, symbol: str, ret: float) -> None:
        """Count a real trade's return (net PnL over cost) for the agents behind it."""
        if proposal is None:
            return
        agents = tuple(v.agent for v in proposal.votes if v.direction is proposal.side)
        self._add(symbol, agents, ret, counterfactual=False)

    def _add(self, symbol: str, agents: tuple[str, ...], ret: float, counterfactual: bool) -> None:
        self.version += 1
        for agent in agents:
            for key in ((agent, symbol), (agent, OVERALL)):
                rec = self.records.get(key)
                if rec is None:
                    rec = self.records[key] = Record()
                rec.add(ret, counterfactual)
                self._dirty.add(key)

    # --- outputs --------------------------------------------------------------

    def weight(self, agent: str, symbol: str) -> float:
        """Synthesis weight in (0, 2): twice the smoothed win rate, 1.0 with no record.

        The per-symbol record is used once it has 10 trades, else the overall one;
        a Beta(2, 2) prior keeps a few lucky trades from dominating.
        """
        key = (agent, symbol)
        weights = self._weights
        if self._weights_at != self.version:
            weights.clear()  # the records moved: every weight is made afresh
            self._weights_at = self.version
        else:
            known = weights.get(key)
            if known is not None:
                return known
        rec = self.records.get(key)
        if rec is None or rec.trades + rec.cf_trades < 10:
            rec = self.records.get((agent, OVERALL))
        weight = 1.0 if rec is None else 2.0 * (rec.all_wins + 2) / (rec.all_trades + 4)
        weights[key] = weight
        return weight

    def edge(self, proposal: Proposal) -> EdgeStats | None:
        """Kelly statistics of the agents behind ``proposal``, pooled over their records."""
        agents = tuple(v.agent for v in proposal.votes if v.direction is proposal.side)
        known = self._edges.get(agents)
        if known is not None and known[0] == self.version:
            return known[1]
        pooled = Record()
        for agent in agents:
            rec = self.records.get((agent, OVERALL))
            if rec is None:
                continue
            pooled.trades += rec.trades
            pooled.wins += rec.wins
            pooled.sum_win += rec.sum_win
            pooled.sum_loss += rec.sum_loss
            pooled.cf_trades += rec.cf_trades
            pooled.cf_wins += rec.cf_wins
            pooled.cf_sum_win += rec.cf_sum_win
            pooled.cf_sum_loss += rec.cf_sum_loss
        edge = pooled.edge()
        self._edges[agents] = (self.version, edge)
        return edge

    def take_dirty(self) -> list[AgentRecordRow]:
        """Rows changed since the last call, for the store."""
        if not self._dirty:  # nearly every candle
            return []
        rows = [
            AgentRecordRow(agent, symbol, r.trades, r.wins, r.sum_win, r.sum_loss,
                           r.cf_trades, r.cf_wins, r.cf_sum_win, r.cf_sum_loss)
            for (agent, symbol) in sorted(self._dirty)
            for r in (self.records[(agent, symbol)],)
        ]  # fmt: skip
        self._dirty.clear()
        return rows

    def take_closed(self) -> list[CounterfactualRow]:
        """The followed trades closed since the last call, for the store."""
        if not self._closed:  # nearly every candle
            return []
        closed, self._closed = self._closed, []
        return closed

    @property
    def followed(self) -> int:
        return sum(len(q) for q in self._followed.values())
