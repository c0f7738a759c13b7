"""The backtest driver: the live engine's core on another clock.

The driver owns no trading rule. It builds the same :class:`~engine.core.TradingCore`
the live shell builds (agents, synthesis, approval desk, risk, paper market,
account, learning) and feeds it candles from columns, synchronously, keeping
every unit of work in memory; the caller writes them to the store in one
transaction at the end (:attr:`BacktestRun.works`).

* :class:`Approval` says who decides in a backtest: the confidence threshold,
  all, or a simulated person with a delay in market time and a seeded reject
  rate. Proposals expire while they wait, as they would live.
* :class:`Backtest` runs; ``progress(done, total)`` is called now and then with
  candles done; ``should_stop()`` True stops it after the current candle and
  the run keeps what was done (``stopped`` is True).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import math
import random
import sys
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

import numpy as np

from engine.agents.base import KeptRows, SparseDetail
from engine.assembly import account_currency
from engine.backtest.data import Columns
from engine.backtest.metrics import ClosedTrade, Results, compute_results
from engine.broker.paper import PaperBroker
from engine.core import TradingCore
from engine.events import (
    DecisionMade,
    EngineMessage,
    EquityUpdated,
    PositionClosed,
    PositionOpened,
    ProposalCreated,
)
from engine.indicators.batch import atr_series, sharing
from engine.models import Candle, DecisionAction, RejectReason, Side, TradingState
from engine.step import CommandError, Step
from engine.timeframes import DAY_MS, timeframe_ms

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from engine.agents.base import Agent
    from engine.config import Settings
    from engine.ports import UnitOfWork

__all__ = ["Approval", "Backtest", "BacktestRun"]

ApprovalMode = Literal["threshold", "all", "person"]


@dataclass(frozen=True, slots=True)
class Approval:
    """Who approves a backtest's proposals.

    * ``threshold``: the auto policy, at ``threshold`` (None: the config's
      ``approval.auto_confidence``); below it a proposal is rejected.
    * ``all``: every proposal is approved (the risk manager may deny it).
    * ``person``: a simulated person decides each proposal ``delay_ms`` of market
      time after it is made, rejecting a share ``reject_rate`` of them (drawn from
      ``seed``); one whose time to live runs out first expires.
    """

    mode: ApprovalMode = "threshold"
    threshold: float | None = None
    delay_ms: int = 0
    reject_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("threshold", "all", "person"):
            raise ValueError(f"approval mode must be threshold, all or person, got {self.mode!r}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"approval threshold must lie in [0, 1], got {self.threshold}")
        if self.delay_ms < 0:
            raise ValueError(f"approval delay must be >= 0, got {self.delay_ms} ms")
        if not 0.0 <= self.reject_rate <= 1.0:
            raise ValueError(f"reject rate must lie in [0, 1], got {self.reject_rate}")


@dataclass(slots=True)
class BacktestRun:
    """What a backtest did: its units of work (to store), results and equity curve."""

    works: list[UnitOfWork]
    results: Results
    trades: list[ClosedTrade]
    #: Candles done, fed or counted (over all symbols), and how many there were.
    candles: int
    total: int
    #: True when ``should_stop`` ended it early (what was done is kept).
    stopped: bool
    #: The equity curve: one point per candle time, in the account's currency.
    ts: NDArray[np.int64]
    equity: NDArray[np.float64]
    final_equity: Decimal
    currency: str
    symbols: tuple[str, ...] = field(default=())
    #: Exact equity points for the store's equity table: every candle time with
    #: ``audit``, else one an hour of market time (every candle time on a timeframe of
    #: an hour or more).
    points: list[EquityUpdated] = field(default_factory=list)
    #: The engine's warnings and errors (an agent switched off, say), the first 100.
    messages: list[EngineMessage] = field(default_factory=list)


#: A float check that may find a level hit is this much wider than the level (the
#: exact check, in Decimal, is the core's): a candidate only costs a candle fed.
_WIDE = 1e-9
#: Seconds between two calls of ``progress`` and ``should_stop``.
_REPORT_SECONDS = 0.1
#: Without an audit, the store gets an equity point about this often in market time (a
#: batch is fed for one while a position is held, so the stored curve has its shape).
_POINT_MS = 3_600_000


class Backtest:
    """One backtest of ``columns`` (one per symbol, same timeframe) under ``settings``.

    Candles are grouped by time into batches, as a replay feeds them. A batch where
    something can happen is fed to the core candle by candle, exactly as the live
    shell feeds it; the quiet batches between two such batches are only counted
    (:meth:`TradingCore.skip`). Something can happen on a candle where an agent
    votes, an order waits for its fill, a bracket or a followed trade's level may
    be touched, a proposal's time runs out or a person decides, a UTC day starts,
    or the equity may cross a risk limit. The float checks that find those
    candles are wider than the core's Decimal ones, so a candle fed for nothing
    costs only time. An agent without a batch form, or ``audit``, feeds every
    candle.
    """

    def __init__(
        self,
        settings: Settings,
        columns: Sequence[Columns],
        *,
        agent_classes: Sequence[type[Agent]],
        approval: Approval,
        new_work: Callable[[], UnitOfWork],
        audit: bool = False,
    ) -> None:
        if not columns:
            raise ValueError("a backtest needs at least one symbol's candles")
        timeframes = {c.timeframe for c in columns}
        if len(timeframes) > 1:
            raise ValueError(f"the candles have more than one timeframe: {sorted(timeframes)}")
        symbols = [c.symbol for c in columns]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"a symbol is given twice: {symbols}")
        for c in columns:
            if len(c) == 0:
                raise ValueError(f"{c.symbol}: no candles")
        self.settings = settings
        self.columns = list(columns)
        self.agent_classes = list(agent_classes)
        self.approval = approval
        self.new_work = new_work
        self.audit = audit
        self.timeframe = columns[0].timeframe
        self.tf_ms = timeframe_ms(self.timeframe)
        self.total = sum(len(c) for c in self.columns)

    def run(
        self,
        *,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> BacktestRun:
        """Run it. The cyclic garbage collector is paused meanwhile: a run makes no
        cycles (``tests/engine/test_backtest_release.py``), and the collector's passes
        would only walk the units of work piling up, about 3 % of a run's time."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            return _Run(self).go(progress, should_stop)
        finally:
            if collecting:
                gc.enable()


def _approval_settings(settings: Settings, approval: Approval) -> Settings:
    """The settings with the approval policy the backtest's approval asks for."""
    a = settings.approval
    if approval.mode == "person":
        changes: dict[str, object] = {"policy": "manual"}
    elif approval.mode == "all":
        changes = {"policy": "auto", "auto_confidence": 0.0}
    else:
        # No person waits at a backtest: below the threshold is a rejection.
        changes = {"policy": "auto", "below_confidence": "reject"}
        if approval.threshold is not None:
            changes["auto_confidence"] = approval.threshold
    return settings.model_copy(update={"approval": a.model_copy(update=changes)})


@dataclass(slots=True)
class _LevelSearch:
    """The first candle of a symbol whose low is at or below ``low`` or whose high is at
    or above ``high``, kept while the levels (``key``) hold: the candle found
    (``next``), or that none comes before ``clear``; so no range is searched twice."""

    key: object = None
    next: int = -1
    clear: int = -1

    def first(
        self, s: _Symbol, key: object, low: float, high: float, start: int, end: int
    ) -> int | None:
        """The first candle from ``start`` touching the levels (searched up to ``end``;
        one found earlier may lie beyond it), or None before ``end``."""
        if self.key == key:
            if self.next >= start:
                return self.next
            start = max(start, self.clear)
        else:
            self.key, self.next, self.clear = key, -1, -1
        if start >= end:
            return None
        touch = s.low[start:end] <= low
        touch |= s.high[start:end] >= high
        first = int(touch.argmax())  # the first True, or 0 with none
        if not touch[first]:
            self.clear = end
            return None
        self.next = start + first
        return self.next


class _Symbol:
    """One symbol's columns as the driver reads them."""

    def __init__(self, columns: Columns, batches: NDArray[np.int64] | None, tf_ms: int) -> None:
        self.columns = columns
        self.symbol = columns.symbol
        self.n = len(columns)
        #: The batch of each candle (None: one symbol, the batch is the candle).
        self.batches = batches
        self.ts = columns.ts
        self.low = columns.low
        self.high = columns.high
        self.close = columns.close
        #: The last candle accounted for (fed or skipped).
        self.done = -1
        self.tf_ms = tf_ms
        #: The synthesis's ATR(14) at each candle, reset after a gap (see :meth:`make_atr`).
        self.atr: NDArray[np.float64] = np.empty(0)
        #: The candles where an agent votes, how many vote and the larger side's summed
        #: strength.
        # (Plain arrays: the driver walks them one candle at a time, from ``vote_at``.)
        self.votes: array[int] = array("q")
        self.vote_count: array[int] = array("h")
        self.vote_strength: array[float] = array("d")
        self.vote_at = 0
        self.agents: tuple[str, ...] = ()
        # The next candle that may touch the bracket's levels, or the followed trades'.
        self.bracket_search = _LevelSearch()
        self.learn_search = _LevelSearch()
        #: Each agent's vote on those candles: its strength clipped to [0, 1] (NaN kept),
        #: negative for a short, 0 for none; in the order of ``agents``.
        self.vote_sides: list[array[float]] = []
        # The vote candidate found at the agents' weights ``vote_key``.
        self.vote_key: tuple[float, ...] = ()
        self.vote_next = -1
        #: Whether that candidate holds at the weights now (none heavier than then).
        self.vote_holds = False
        #: The weights of this symbol's agents and the heaviest, at the records' version.
        self.weights: tuple[float, ...] = ()
        self.weight = 0.0
        self.weight_at = -1

    def make_atr(self) -> None:
        gaps = np.zeros(self.n, dtype=bool)
        gaps[1:] = np.diff(self.ts) > self.tf_ms
        c = self.columns
        self.atr = atr_series(c.high, c.low, c.close, 14, breaks=gaps)

    def batch_of(self, i: int) -> int:
        return i if self.batches is None else int(self.batches[i])

    def first_at(self, batch: int) -> int:
        """The index of the first candle in ``batch`` or after it."""
        if self.batches is None:
            return batch
        return int(self.batches.searchsorted(batch, side="left"))

    def candle(self, i: int) -> Candle:
        c = self.columns
        return Candle(
            self.symbol,
            int(c.ts[i]),
            float(c.open[i]),
            float(c.high[i]),
            float(c.low[i]),
            float(c.close[i]),
            float(c.volume[i]),
        )


@dataclass(slots=True)
class _MarketClock:
    """Market time for the desk's latencies: a proposal is shown at the close of the
    candle that made it, and a person decides between batches."""

    now: int = 0

    def seconds(self) -> float:
        return self.now / 1000


class _Run:
    """The state of one run of a :class:`Backtest`."""

    def __init__(self, bt: Backtest) -> None:
        self.bt = bt
        settings = _approval_settings(bt.settings, bt.approval)
        self.settings = settings
        self.tf_ms = bt.tf_ms
        cols = bt.columns
        if len(cols) == 1:
            self.ts = np.asarray(cols[0].ts)
            self.symbols = [_Symbol(cols[0], None, self.tf_ms)]
        else:
            self.ts = np.unique(np.concatenate([np.asarray(c.ts) for c in cols]))
            self.symbols = [
                _Symbol(c, np.searchsorted(self.ts, c.ts).astype(np.int64), self.tf_ms)
                for c in cols
            ]
        self.n_batches = len(self.ts)
        # Not a method of the run: the core keeps it, and a core that refers back to
        # the run would make a cycle that keeps every unit of work until the
        # collector comes by, in the middle of whatever runs next.
        self._market = _MarketClock()
        self.market = PaperBroker(settings.broker.fee_rate, settings.broker.slippage_bps)
        self.currency = account_currency([c.symbol for c in cols])
        self.core = TradingCore(
            settings,
            currency=self.currency,
            tf_ms=self.tf_ms,
            agent_classes=bt.agent_classes,
            new_work=bt.new_work,
            market=self.market,
            clock=self._market.seconds,
        )
        self.core.proposing = True
        self.works: list[UnitOfWork] = []
        #: Equity points for the store: all with an audit, else the first fed in each
        #: span of ``_POINT_MS`` (at least a candle) of market time, counted from the
        #: epoch (so a run cut short keeps the points the whole run keeps up to the
        #: cut). While a position is held, the first batch of each span is fed for it.
        self.points: list[EquityUpdated] = []
        self._point: EquityUpdated | None = None
        self._keep_at = 0
        self._keep_every = max(self.tf_ms, _POINT_MS)
        self.messages: list[EngineMessage] = []
        self.equity = np.zeros(self.n_batches, dtype=np.float64)
        self._equity_made: (
            tuple[int, int, float, list[tuple[int, float]], NDArray[np.float64]] | None
        ) = None
        self.trades: list[ClosedTrade] = []
        self._voters: dict[str, tuple[str, ...]] = {}
        self._opened: dict[str, tuple[str, ...]] = {}
        # The simulated person: proposal id -> (market time to decide, approve?).
        self._rng = random.Random(bt.approval.seed)
        self._decisions: dict[str, tuple[int, bool]] = {}
        self._approve_now: list[str] = []
        self._next_day = -1
        self.core.signals.between_agents = _give_back_memory
        # The synthesis's ATR and the agents' (the same ATR(14) of the same candles) are
        # made once, here, and the agents' batch forms are handed it.
        self.fast = False
        if not bt.audit:
            with sharing():
                for s in self.symbols:
                    s.make_atr()
                self.fast = all(
                    self.core.signals.use_batch(s.symbol, s.columns, s.atr) for s in self.symbols
                )
        if self.fast:
            for s in self.symbols:
                batch = self.core.signals.batch(s.symbol)
                assert batch is not None
                count = np.zeros(s.n, dtype=np.int16)
                for _, series in batch.sources:
                    count += np.asarray(series.direction) != 0
                where = np.flatnonzero(count)
                # Each side's summed strength, clipped to [0, 1] as the pipeline clips
                # (NaN stays NaN: such a candle is a candidate).
                longs = np.zeros(len(where), dtype=np.float64)
                shorts = np.zeros(len(where), dtype=np.float64)
                for _, series in batch.sources:
                    side = np.asarray(series.direction)[where]
                    strength = np.clip(np.asarray(series.strength)[where], 0.0, 1.0)
                    longs += np.where(side > 0, strength, 0.0)
                    shorts += np.where(side < 0, strength, 0.0)
                    signed = np.where(side > 0, strength, np.where(side < 0, -strength, 0.0))
                    s.vote_sides.append(array("d", signed.tolist()))
                s.votes = array("q", where.tolist())
                s.vote_count = array("h", count[where].tolist())
                s.vote_strength = array("d", np.maximum(longs, shorts).tolist())
                s.agents = tuple(agent.name for agent, _ in batch.sources)
                # The synthesis reads the ATR only on a candle where an agent votes.
                batch.atr = SparseDetail(KeptRows(s.votes), np.asarray(s.atr)[where], s.n)
                s.atr = np.empty(0)
        # Closes carried forward over every batch, for the equity between fed batches.
        self.closes = [self._carried(s) for s in self.symbols] if len(self.symbols) > 1 else None
        _give_back_memory()

    def _carried(self, s: _Symbol) -> NDArray[np.float64]:
        assert s.batches is not None
        out = np.full(self.n_batches, np.nan)
        out[s.batches] = s.close
        idx = np.where(np.isnan(out), 0, np.arange(self.n_batches))
        np.maximum.accumulate(idx, out=idx)
        carried = out[idx]
        carried[: int(s.batches[0])] = np.nan
        return carried

    def _end(self, b: int) -> int:
        """Market time at the end of batch ``b``: its candles' close."""
        return int(self.ts[b]) + self.tf_ms

    def _ending_at(self, t: int) -> int:
        """The first batch that ends at market time ``t`` or later."""
        return int(self.ts.searchsorted(t - self.tf_ms, side="left"))

    # --- the run -----------------------------------------------------------------------

    def go(
        self,
        progress: Callable[[int, int], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> BacktestRun:
        last = self.n_batches - 1
        b = 0
        stopped = False
        next_report = time.monotonic() + _REPORT_SECONDS
        done = 0
        while True:
            self._feed(b)
            if b >= last:
                done = self._candles_done(b)
                break
            now = time.monotonic()
            if now >= next_report:
                next_report = now + _REPORT_SECONDS
                done = self._candles_done(b)
                if progress is not None:
                    progress(done, self.bt.total)
                if should_stop is not None and should_stop():
                    stopped = True
                    break
            nxt = self._next_event(b) if self.fast else b + 1
            nxt = min(nxt, last)
            if nxt > b + 1:
                self._skip(b + 1, nxt)
            b = nxt
        if progress is not None:
            progress(done, self.bt.total)
        return self._finish(b, done, stopped)

    def _candles_done(self, b: int) -> int:
        if len(self.symbols) == 1:
            return b + 1
        return sum(s.done + 1 for s in self.symbols)

    def _feed(self, b: int) -> None:
        """Feed batch ``b`` to the core, as the live shell feeds a batch."""
        core = self.core
        if b > 0:
            core.market_ts = self._end(b - 1)
        self._market.now = core.market_ts
        if self._decisions:
            self._decide(core.market_ts)
        self._market.now = self._end(b)
        for s in self.symbols:
            i = s.done + 1
            if i >= s.n or s.batch_of(i) != b:
                continue
            batch = core.signals.batch(s.symbol)
            if batch is not None:
                batch.at = i
            self._take(core.on_candle(s.candle(i)))
            s.done = i
            if self._approve_now:
                self._approve_all()
        self._take(core.after_batch(self._end(b)))
        if self._point is not None:  # the batch's exact equity (the last point of it)
            self.equity[b] = float(self._point.equity)

    def _take(self, steps: list[Step]) -> None:
        for step in steps:
            work = step.work
            if len(work):
                self.works.append(work)
            for event in step.events:
                if isinstance(event, EquityUpdated):
                    self._point = event
                    if self.bt.audit or event.ts >= self._keep_at:
                        self.points.append(event)
                        every = self._keep_every
                        self._keep_at = (event.ts // every + 1) * every
                elif isinstance(event, EngineMessage):
                    if event.level in ("warning", "error") and len(self.messages) < 100:
                        self.messages.append(event)
                elif isinstance(event, ProposalCreated):
                    p = event.proposal
                    self._voters[p.id] = tuple(v.agent for v in p.votes if v.direction is p.side)
                    if self.bt.approval.mode == "person":
                        self._schedule(p.id, p.created_at)
                    elif self.bt.approval.mode == "all":
                        self._approve_now.append(p.id)
                elif isinstance(event, DecisionMade):
                    if event.decision.action is not DecisionAction.APPROVE:
                        self._voters.pop(event.decision.proposal_id, None)  # never held
                elif isinstance(event, PositionOpened):
                    pid = event.position.proposal_id
                    voters = self._voters.pop(pid, ()) if pid is not None else ()
                    self._opened[event.position.symbol] = voters
                elif isinstance(event, PositionClosed):
                    self.trades.append(
                        ClosedTrade(
                            symbol=event.symbol,
                            side=event.side,
                            qty=event.qty,
                            entry_ts=event.opened_at,
                            exit_ts=event.ts,
                            entry_price=event.entry_price,
                            exit_price=event.exit_price,
                            realized_pnl=event.realized_pnl,
                            fees=event.fees,
                            agents=self._opened.pop(event.symbol, ()),
                        )
                    )

    # --- the simulated person ----------------------------------------------------------

    def _approve_all(self) -> None:
        """``all``: a proposal the auto policy left waiting (one the risk manager would
        not size) is approved too, on its candle; the risk manager then denies it."""
        pending, self._approve_now = self._approve_now, []
        for pid in pending:
            if not self.core.desk.is_pending(pid):
                continue
            try:
                step = self.core.approve(pid, None, "policy")
            except CommandError:
                continue
            self._take([step])

    def _schedule(self, proposal_id: str, created_at: int) -> None:
        a = self.bt.approval
        approve = self._rng.random() >= a.reject_rate
        self._decisions[proposal_id] = (created_at + a.delay_ms, approve)

    def _decide(self, now: int) -> None:
        due = sorted((at, pid) for pid, (at, _) in self._decisions.items() if at <= now)
        for _, pid in due:
            _, approve = self._decisions.pop(pid)
            if self.core.router.get(pid) is None:
                continue  # expired first, as it would have live
            try:
                if approve:
                    step = self.core.approve(pid, None, "human")
                else:
                    step = self.core.reject(pid, RejectReason.DISAGREE, "human")
            except CommandError:
                continue
            self._take([step])

    # --- the quiet batches -------------------------------------------------------------

    def _next_event(self, b: int) -> int:
        """The next batch after ``b`` where something can happen (see :class:`Backtest`)."""
        core = self.core
        if self.market.has_working():
            return b + 1
        nxt = self.n_batches
        for s in self.symbols:
            nxt = min(nxt, self._vote_event(s))
        if self._decisions:
            first = min(at for at, _ in self._decisions.values())
            nxt = min(nxt, self._ending_at(first) + 1)
        expiry = core.desk.next_expiry()
        if expiry is not None:
            nxt = min(nxt, self._ending_at(expiry))
        if b >= self._next_day:
            day = self._end(b) // DAY_MS
            self._next_day = self._ending_at((day + 1) * DAY_MS)
        nxt = min(nxt, self._next_day)
        if core.portfolio.positions:  # the equity moves: a point for the store's curve
            nxt = min(nxt, self._ending_at(self._keep_at))
        if nxt <= b + 1:
            return b + 1
        for s in self.symbols:
            nxt = min(nxt, self._bracket_event(s, nxt), self._learning_event(s, nxt))
            if nxt <= b + 1:
                return b + 1
        return self._equity_event(b + 1, nxt)

    def _vote_event(self, s: _Symbol) -> int:
        """The batch of ``s``'s next candle whose votes could make a proposal.

        The synthesis's confidence is ``|long score - short score|`` over the agent
        count, a score being the side's votes' weight times strength summed: it is at
        most the larger score. A candle whose larger score cannot reach
        ``min_confidence`` at the agents' weights now (or whose votes are fewer than
        ``min_votes``) makes no proposal, and the weights only change on candles fed.
        The heaviest weight times the larger side's summed strength
        (``vote_strength``) bounds that score from above: the cheap first test.
        """
        learning = self.core.learning
        if s.weight_at != learning.version:
            s.weight_at = learning.version
            s.weights = tuple(learning.weight(a, s.symbol) for a in s.agents)
            s.weight = max(s.weights, default=0.0)
            key = s.vote_key
            # A candidate found at heavier weights is still one (the bound only loosens).
            s.vote_holds = len(key) == len(s.weights) and all(
                w <= old for w, old in zip(s.weights, key, strict=True)
            )
        weights, weight = s.weights, s.weight
        if s.vote_holds and s.vote_next > s.done:
            return s.batch_of(s.vote_next) if s.vote_next < s.n else self.n_batches
        params = self.core.signals.synth.params
        s.vote_key, s.vote_next, s.vote_holds = weights, s.n, True
        if weight <= 0:
            return self.n_batches
        need = params.min_confidence * params.agent_count * (1 - _WIDE)
        loose = need / weight
        votes, strengths, counts = s.votes, s.vote_strength, s.vote_count
        least, done, k, n = params.min_votes, s.done, s.vote_at, len(votes)
        k = bisect_right(votes, done, k)
        s.vote_at = k
        while k < n:
            # NaN strength is a candidate too: fed, the agent gets its error.
            if (
                not strengths[k] < loose
                and counts[k] >= least
                and _may_reach(weights, s.vote_sides, k, need)
            ):
                s.vote_next = votes[k]
                return s.batch_of(s.vote_next)
            k += 1
        return self.n_batches

    def _bracket_event(self, s: _Symbol, limit: int) -> int:
        """The first batch before ``limit`` where ``s``'s bracket may trigger, or ``limit``."""
        bracket = self.market.bracket(s.symbol)
        if bracket is None or (bracket.stop is None and bracket.take_profit is None):
            return limit
        # A long's stop is below and its target above; a short's the other way round.
        below, above = (
            (bracket.stop, bracket.take_profit)
            if bracket.side is Side.LONG
            else (bracket.take_profit, bracket.stop)
        )
        low = -math.inf if below is None else float(below) * (1 + _WIDE)
        high = math.inf if above is None else float(above) * (1 - _WIDE)
        key = (bracket.side, bracket.stop, bracket.take_profit)
        hit = s.bracket_search.first(s, key, low, high, s.done + 1, s.first_at(limit))
        return limit if hit is None else min(limit, s.batch_of(hit))

    def _learning_event(self, s: _Symbol, limit: int) -> int:
        """The first batch before ``limit`` where a followed trade of ``s`` may close."""
        levels = self.core.learning.levels(s.symbol)
        if levels is None:
            return limit
        low, high, last = levels
        start = s.done + 1
        # The candle on which the oldest followed trade reaches its age limit.
        aged = None if last is None else start + max(last, 1) - 1
        end = s.first_at(limit)
        if aged is not None:
            end = min(end, aged)
        hit = s.learn_search.first(s, (low, high, aged), low, high, start, end)
        if hit is not None:
            return min(limit, s.batch_of(hit))
        if aged is not None and aged < s.n and end >= aged:
            return min(limit, s.batch_of(aged))
        return limit

    def _held(self) -> list[tuple[int, float]]:
        """Each open position's symbol index and signed quantity."""
        positions = self.core.portfolio.positions
        out = []
        for k, s in enumerate(self.symbols):
            pos = positions.get(s.symbol)
            if pos is not None:
                out.append((k, float(pos.qty) * pos.side.sign))
        return out

    def _equity_between(
        self, lo: int, hi: int, held: list[tuple[int, float]]
    ) -> NDArray[np.float64]:
        """Equity at batches ``lo``..``hi - 1`` (floats) with the positions held now.

        The last one made is kept: the search for the next event and the skip up to
        it ask for the same batches (or fewer) with the same cash and positions."""
        cash = float(self.core.portfolio.cash)
        known = self._equity_made
        if known is not None:
            k_lo, k_hi, k_cash, k_held, k_e = known
            if k_lo == lo and hi <= k_hi and k_cash == cash and k_held == held:
                return k_e[: hi - lo]
        e = np.full(hi - lo, cash)
        for k, qty in held:
            closes = (
                self.closes[k][lo:hi] if self.closes is not None else self.symbols[0].close[lo:hi]
            )
            e += qty * closes
        e.flags.writeable = False  # kept: its readers only read it
        self._equity_made = (lo, hi, cash, held, e)
        return e

    def _equity_event(self, lo: int, hi: int) -> int:
        """The first batch in ``lo``..``hi - 1`` where the equity may cross a risk limit."""
        held = self._held()
        state = self.core.risk.state
        if not held or state is TradingState.HALTED or lo >= hi:
            return hi
        account = self.core.account
        limits = self.settings.risk
        e = self._equity_between(lo, hi, held)
        peak = -np.inf if account.peak is None else float(account.peak)
        peaks = np.maximum.accumulate(np.maximum(e, peak))
        with np.errstate(divide="ignore", invalid="ignore"):
            dd = np.where(peaks > 0, (peaks - e) / peaks, 1.0)
            start = float(account.day_start) if account.day_start is not None else None
            daily = (
                np.zeros_like(e)
                if start is None
                else ((start - e) / start if start > 0 else np.ones_like(e))
            )
        may = (dd > limits.reduce_drawdown - _WIDE) | (daily > limits.max_daily_loss - _WIDE)
        if state is TradingState.REDUCING:
            may |= dd <= limits.reduce_drawdown + _WIDE
        where = np.flatnonzero(may)
        return lo + int(where[0]) if len(where) else hi

    def _skip(self, lo: int, hi: int) -> None:
        """Batches ``lo``..``hi - 1`` are quiet: count them, and raise the peak as the
        live path would have."""
        core = self.core
        held = self._held()
        if held:
            e = self._equity_between(lo, hi, held)
            top = float(e.max())
            peak = core.account.peak
            if peak is None or top >= float(peak) * (1 - _WIDE):
                for c in np.flatnonzero(e >= top * (1 - _WIDE)).tolist():
                    at = lo + c
                    for k, _ in held:
                        s = self.symbols[k]
                        close = self.closes[k][at] if self.closes is not None else s.close[at]
                        core.marks.set(s.symbol, float(close))
                    self._take(core.observe(self._end(at)))
        for s in self.symbols:
            end = s.first_at(hi)
            start = s.done + 1
            if end <= start:
                continue
            tail = max(start, end - 2 * self.settings.risk.correlation_window - 1)
            core.skip(s.symbol, end - start, s.ts[tail:end].tolist(), s.close[tail:end].tolist())
            s.done = end - 1
        if held:
            self.equity[lo:hi] = self._equity_between(lo, hi, held)
        else:
            self.equity[lo:hi] = float(core.portfolio.cash)

    # --- the end -----------------------------------------------------------------------

    def _finish(self, b: int, done: int, stopped: bool) -> BacktestRun:
        # What only the run read goes first: the results' arrays do not pile on top of it.
        for sym in self.symbols:
            batch = self.core.signals.batch(sym.symbol)
            if batch is not None:
                batch.sources, batch.atr = [], []
            sym.atr = np.empty(0)
        self.closes = None
        _give_back_memory()
        ends = self.ts[: b + 1] + self.tf_ms
        equity = self.equity[: b + 1]
        final = self.core.account.equity()
        results = compute_results(ends, equity, self.trades, timeframe=self.tf_ms)
        points = self.points
        if self._point is not None and (not points or points[-1] is not self._point):
            points.append(self._point)  # the last one, always
        return BacktestRun(
            works=self.works,
            results=results,
            trades=self.trades,
            candles=done,
            total=self.bt.total,
            stopped=stopped,
            ts=ends,
            equity=equity,
            final_equity=final,
            currency=self.currency,
            symbols=tuple(s.symbol for s in self.symbols),
            points=points,
            messages=self.messages,
        )


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, or None (another system, another C library)."""
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _may_reach(weights: tuple[float, ...], sides: list[array[float]], k: int, need: float) -> bool:
    """Whether the larger side's weighted strength of vote candle ``k`` reaches ``need``
    (or a strength is NaN: the agent, fed, gets its error)."""
    longs = shorts = 0.0
    for w, side in zip(weights, sides, strict=True):
        x = side[k]
        if x > 0.0:
            longs += w * x
        elif x < 0.0:
            shorts -= w * x
        elif x != x:
            return True
    return not (longs if longs > shorts else shorts) < need


def _give_back_memory() -> None:
    """Hand the batch forms' freed scratch arrays back to the system (glibc keeps freed
    heap memory otherwise, and a million candles' scratch is a few hundred MiB)."""
    libc = _libc()
    try:
        if libc is not None:
            libc.malloc_trim(0)
    except AttributeError:  # not glibc: nothing to ask
        return
