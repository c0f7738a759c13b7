"""The engine: feeds → agents → synthesis → approval → risk → broker → portfolio → store.

It runs inside whatever event loop starts it (the console's, or the headless
runner's). The path from a candle to a proposal is plain synchronous calls;
the engine awaits only where there is I/O: a store write when something
changed, and the feed between batches. Every state change is written in one
unit of work *before* subscribers hear of it, so what the console shows is
what the store holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

from engine.account import Account, EquitySnapshot
from engine.agents import BUILTIN_AGENTS, load_agent_class
from engine.agents.base import Agent
from engine.broker import Broker, PaperBroker
from engine.config import Settings
from engine.feeds.base import Feed
from engine.learning import LearningAgent
from engine.models import (
    QTY_QUANTUM,
    AgentVote,
    Candle,
    Decision,
    DecisionAction,
    EngineEvent,
    EngineMessage,
    EngineStateChanged,
    EquityUpdated,
    Fill,
    OrderDenied,
    OrderIntent,
    OrderSide,
    Position,
    Proposal,
    ProposalMerged,
    RejectReason,
    Side,
    TradingState,
    TradingStateChanged,
    evolve,
    new_id,
    q_cash,
    stop_or_take_profit,
    to_decimal,
)
from engine.portfolio import FillOutcome, Portfolio
from engine.ports import RecoveredState, StorePort, UnitOfWork
from engine.risk import RiskCheck, RiskEngine, RiskSnapshot
from engine.router import Policy, SignalRouter, Verdict, confidence_at_least
from engine.synthesis import SynthesisParams, Synthesizer
from engine.timeframes import DAY_MS, timeframe_ms

log = logging.getLogger("cma.engine")

#: Candles of history a paced demo market plays unpaced before it goes live.
SIM_WARMUP_BATCHES = 120
Status = Literal["starting", "running", "paused", "stopping", "stopped"]
Callback = Callable[[EngineEvent], None]


class CommandError(Exception):
    """A command the engine could not carry out; the message is for a person."""


class StoreMismatchError(ValueError):
    """The store holds an account this feed cannot trade on; nothing was written."""


def _utc(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts / 1000))


#: The largest order quantity a person may type (no market trades 10^15 units of anything).
MAX_ORDER_QTY = Decimal(10) ** 15


def qty_problem(qty: Decimal) -> str | None:
    """Why ``qty`` cannot be an order quantity (None if it can): finite, above zero,
    at most :data:`MAX_ORDER_QTY`, and no finer than :data:`QTY_QUANTUM`."""
    if not qty.is_finite():
        return "the quantity must be a finite number"
    if qty <= 0:
        return "the quantity must be above zero"
    if qty > MAX_ORDER_QTY:
        return f"the quantity must be at most {MAX_ORDER_QTY:,}"
    if qty != qty.quantize(QTY_QUANTUM, rounding="ROUND_DOWN"):
        return f"the quantity has more decimal places than {QTY_QUANTUM:f} allows"
    return None


@dataclass(slots=True)
class Recovery:
    """What the engine found in the store when it started."""

    is_fresh: bool
    positions: list[Position] = field(default_factory=list)
    pending: list[Proposal] = field(default_factory=list)
    trading_state: TradingState = TradingState.ACTIVE
    notes: list[str] = field(default_factory=list)
    #: Orders sent before the restart and not yet filled (they fill at the next price).
    working_orders: list[OrderIntent] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        """Whether a person has something to decide before trading resumes: open
        positions, live proposals, working orders, or trading not ACTIVE.

        A clean quit with none of these (a fresh store too) needs nothing: the
        engine starts running at once and no restart summary is shown.
        """
        return not self.is_fresh and bool(
            self.positions
            or self.pending
            or self.working_orders
            or self.trading_state is not TradingState.ACTIVE
        )


def make_feed(settings: Settings, *, limit: int | None = None) -> Feed:
    """The feed the configuration asks for; ValueError (a ReplayError for a file) names
    the setting or the file when it cannot be built."""
    f = settings.feed
    speed = None if f.speed == "max" else float(f.speed)
    if f.kind == "sim":
        from engine.feeds.sim import SimFeed

        if f.files:
            raise ValueError(
                "feed.files: the sim feed plays no files; replay them with --feed replay "
                "(or leave --feed out)"
            )
        account_currency(f.symbols)
        start_ts = None
        if speed is not None:
            # Start the demo with history behind it, so agents are warm when it goes live.
            tf = timeframe_ms(f.timeframe)
            start_ts = (time.time_ns() // 1_000_000 // tf - SIM_WARMUP_BATCHES) * tf
        feed: Feed = SimFeed(
            symbols=f.symbols,
            timeframe=f.timeframe,
            seed=f.seed,
            speed=speed,
            start_ts=start_ts,
            limit=limit,
        )
        if speed is not None:
            feed.warmup_batches = SIM_WARMUP_BATCHES
        return feed
    if f.kind == "replay":
        from engine.feeds.replay import ReplayFeed

        if not f.files:
            raise ValueError("feed.files: the replay feed needs at least one CSV file (--files)")
        # The file names' timeframe rules; feed.timeframe counts only where it was set.
        timeframe = f.timeframe if "timeframe" in f.model_fields_set else None
        replay = ReplayFeed(
            list(f.files),
            speed=speed,
            timeframe=timeframe,
            timeframe_from="feed.timeframe",
            validate=False,
        )
        account_currency(replay.symbols, replay.quotes())
        replay.validate()  # every row, once the cheap checks passed
        return replay
    raise ValueError("feed.kind: the ccxt exchange feed is not available yet; use sim or replay")


def account_currency(
    symbols: Sequence[str], files: Mapping[str, Sequence[Path]] | None = None
) -> str:
    """The one currency the symbols are quoted in, which the account's cash is held in.

    One account holds one cash balance, so symbols quoted in different
    currencies (BTC/USDT and ETH/BTC) cannot share it: ETH/BTC would be sized
    as if the USDT cash were BTC. Raises ValueError naming the currencies and,
    for a replay, the files (``files``: the files by quote currency).
    """
    quotes: dict[str, list[str]] = {}
    for symbol in symbols:
        quotes.setdefault(symbol.rpartition("/")[2], []).append(symbol)
    if len(quotes) <= 1:
        return next(iter(quotes), "USDT")
    if files is not None:
        named = {q: [p.name for p in paths] for q, paths in files.items()}
        what, fix = "replay files are", "replay them separately"
    else:
        named, what, fix = quotes, "feed.symbols are", "trade them in separate runs"
    parts = [f"{q} ({_few(names)})" for q, names in named.items()]
    listed = ", ".join(parts[:-1]) + " and " + parts[-1]
    raise ValueError(f"{what} quoted in {listed}; one account has one currency: {fix}")


def _few(names: Sequence[str], most: int = 3) -> str:
    """``a, b, c and 4 more``: a list kept to one line."""
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


class Engine:
    """One trading session on one store. See the module docstring for the flow."""

    def __init__(
        self,
        settings: Settings,
        store: StorePort,
        feed: Feed | None = None,
        *,
        broker: Broker | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.feed = feed if feed is not None else make_feed(settings)
        self.broker = (
            broker
            if broker is not None
            else PaperBroker(settings.broker.fee_rate, settings.broker.slippage_bps)
        )
        self.mode = "LIVE" if self.broker.live else "PAPER"
        self.feed_name = self.feed.name
        self._clock = clock
        self._wall_clock = wall_clock
        #: Wall-clock seconds when this session began (the console's session clock).
        self.session_started = wall_clock()
        self._tf_ms = timeframe_ms(self.feed.timeframe)
        self.currency = account_currency(self.feed.symbols)

        self.marks: dict[str, Decimal] = {}
        #: The one owner of equity, its peak, the day's start and today's realized P&L.
        self.account = Account(
            Portfolio(settings.risk.initial_cash, currency=self.currency), self.marks
        )
        self.risk = RiskEngine(settings.risk, account=self.account)
        self.learning = LearningAgent()
        self._agent_classes = self._load_agents(settings)
        a = settings.agents
        self.synth = Synthesizer(
            SynthesisParams(
                agent_count=len(self._agent_classes),
                min_votes=a.min_votes,
                min_confidence=a.min_confidence,
                stop_atr=a.stop_atr,
                reward_risk=a.reward_risk,
                ttl_ms=int(settings.approval.ttl_seconds * 1000),
                allow_shorts=settings.broker.shorts_allowed(),
            ),
            self.learning.weight,
        )
        ap = settings.approval
        self.router = SignalRouter(
            max_pending=ap.max_pending,
            dedup_window_ms=int(ap.dedup_window_seconds * 1000),
            policy=Policy(ap.policy),
            auto_confidence=ap.auto_confidence,
            below_confidence=ap.below_confidence,
        )
        self._agents: dict[str, list[Agent]] = {}
        self._last_ts: dict[str, int] = {}
        self._subscribers: list[Callback] = []
        self.status: Status = "starting"
        self.market_ts = 0
        self._shown_at: dict[str, float] = {}  # wall clock when each proposal appeared
        self._entry_of: dict[str, Proposal] = {}  # client order id → proposal, for open entries
        self._exit_reason: dict[str, str] = {}  # client order id → why we exit
        self._closing: set[str] = set()  # symbols with an exit order in flight
        self._position_proposal: dict[str, Proposal] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._error: BaseException | None = None
        self.candles_seen = 0
        self._batches = 0
        # After a restart: candles before this market time were traded before it.
        self._resume_ts: int | None = None
        self._resume_speed: float | None = None
        self._skipped = 0
        # Approvals between their claim and their broker submit (the store write in
        # between awaits): cancel_entries waits for them, or it would miss their orders.
        self._approving = 0
        self._approvals_settled = asyncio.Event()
        self._approvals_settled.set()

    # --- wiring -------------------------------------------------------------------

    @staticmethod
    def _load_agents(settings: Settings) -> list[type[Agent]]:
        classes: list[type[Agent]] = []
        for name in settings.agents.enabled:
            if name not in BUILTIN_AGENTS:
                raise ValueError(
                    f"agents.enabled: unknown agent {name!r}; built-in agents are "
                    f"{', '.join(sorted(BUILTIN_AGENTS))}"
                )
            classes.append(BUILTIN_AGENTS[name])
        classes.extend(load_agent_class(path) for path in settings.agents.user)
        if not classes:
            raise ValueError("agents.enabled: at least one agent must run")
        return classes

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback`` with every engine event, after it is stored."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, *events: EngineEvent) -> None:
        for event in events:
            for callback in list(self._subscribers):
                try:
                    callback(event)
                except Exception:  # a broken consumer must not stop trading
                    log.exception("event subscriber failed on %s", event.kind)

    def _set_status(self, status: Status) -> None:
        if status != self.status:
            self.status = status
            self._emit(EngineStateChanged(ts=self.market_ts, state=status))

    # --- views ----------------------------------------------------------------------

    @property
    def policy(self) -> str:
        return self.router.policy.value

    @property
    def auto_confidence(self) -> float:
        return self.router.auto_confidence

    def pending(self) -> list[Proposal]:
        """Pending proposals, oldest first."""
        return self.router.pending()

    def positions(self) -> list[Position]:
        return list(self.portfolio.positions.values())

    def working_entries(self) -> list[OrderIntent]:
        """Entry orders sent to the broker and not yet filled, oldest first.

        An approved entry fills at the next candle of its symbol; until then it is
        here (and after a restart too: a sent entry is resubmitted by recovery).
        """
        orders = [o for o in self.broker.open_orders() if o.purpose == "entry"]
        return sorted(orders, key=lambda o: o.created_at)

    def _committed_positions(self) -> list[Position]:
        """Open positions plus entry orders not yet filled, as the risk limits see them.

        Without the orders, several approvals between two candles would each
        see the same exposure and together pass the limits.
        """
        held = dict(self.portfolio.positions)
        for order in self.broker.open_orders():
            proposal = self._entry_of.get(order.client_order_id)
            if proposal is None:
                continue
            pos = held.get(order.symbol)
            if pos is None:
                held[order.symbol] = Position(
                    symbol=order.symbol,
                    side=proposal.side,
                    qty=order.qty,
                    entry_price=proposal.entry,
                    cost_basis=q_cash(order.qty * proposal.entry),
                    opened_at=order.created_at,
                )
            elif pos.side is proposal.side:
                held[order.symbol] = evolve(pos, qty=pos.qty + order.qty)
        return list(held.values())

    @property
    def portfolio(self) -> Portfolio:
        """The ledger: cash and positions (the account's)."""
        portfolio = self.account.portfolio
        assert portfolio is not None
        return portfolio

    def equity_snapshot(self) -> EquitySnapshot:
        """The equity pane's figures; its drawdown is the risk pane's."""
        return self.account.snapshot()

    def risk_snapshot(self) -> RiskSnapshot:
        return self.risk.snapshot(self.portfolio.equity(self.marks), self.positions(), self.marks)

    def status_line(self) -> str:
        eq = self.equity_snapshot()
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.market_ts / 1000))
        return (
            f"{stamp} {self.status:8} {self.risk.state.value:8} equity {eq.equity:.2f} "
            f"(dd {eq.drawdown:.1%}) cash {eq.cash:.2f} pos {len(self.portfolio.positions)} "
            f"pending {len(self.router)} candles {self.candles_seen}"
        )

    # --- lifecycle ------------------------------------------------------------------

    async def start(self, *, paused_if_recovered: bool = True) -> Recovery:
        """Rebuild state from the store and start consuming the feed in the background.

        Raises :class:`StoreMismatchError`, before writing anything, for a store
        this feed cannot trade on (see :meth:`_check_store_fits`).

        The session row's ``started_at`` and ``ended_at`` are wall-clock epoch
        milliseconds: a session is one run of the program (its mode, feed and
        config), and the console's session clock counts wall time from
        :attr:`session_started`. Market time, which a replay sets years back,
        is what every event, proposal and equity point carries instead; a fresh
        store knows none before its first candle.

        With ``paused_if_recovered`` the engine starts paused when the recovery
        needs attention (:attr:`Recovery.needs_attention`), until :meth:`resume`.
        """
        state = await self.store.load_state()
        recovery = await self._recover(state)
        mode = "live" if self.broker.live else "paper"
        config = self.settings.model_dump_json(exclude={"exchange": {"api_key", "api_secret"}})
        await self.store.begin_session(
            mode, self.feed_name, config, round(self.session_started * 1000)
        )
        self.store.set_reporter(self._emit)  # failed group commits reach the console
        paused = recovery.needs_attention and paused_if_recovered
        self._set_status("paused" if paused else "running")
        self._task = asyncio.create_task(self._run(), name="cma-engine")
        return recovery

    def _check_store_fits(self, state: RecoveredState) -> None:
        """Refuse a store this feed cannot go on trading: another currency, or a replay
        that ends before the store's market time (every candle would be skipped)."""
        store = f"the store {self.store.path}" if self.store.path else "the store"
        if state.currency is not None and state.currency != self.currency:
            raise StoreMismatchError(
                f"{store} holds a {state.currency} account, but this market is quoted in "
                f"{self.currency}; trade it on its own store (--db PATH)"
            )
        end = self.feed.last_ts
        if state.last_ts is not None and end is not None and end + self._tf_ms <= state.last_ts:
            raise StoreMismatchError(
                f"{store} has traded up to {_utc(state.last_ts)}, after the replay's last candle "
                f"({_utc(end)}): market time never goes back, so nothing would trade; "
                "replay into a new store (--db PATH)"
            )

    async def _recover(self, state: RecoveredState) -> Recovery:
        self._check_store_fits(state)
        now = state.last_ts or 0
        self.market_ts = now
        if state.is_fresh:
            await self.store.init_balance(self.currency, self.settings.risk.initial_cash, now)
            return Recovery(is_fresh=True)
        assert state.cash is not None and state.initial_cash is not None
        self.account.portfolio = Portfolio(
            state.initial_cash, state.cash, state.positions, currency=self.currency
        )
        self.router.restore(state.pending)
        # A feed that starts before ``now`` (a replay, the demo market) plays unpaced and
        # untraded up to it, so market time never goes back across a restart.
        self._resume_ts = now
        self._resume_speed = self.feed.speed
        self.feed.speed = None
        mono = self._clock()
        for p in state.pending:
            self._shown_at[p.id] = mono
        self.learning.restore(state.records)
        self._position_proposal = dict(state.position_proposals)
        trading = TradingState(state.state.get("trading_state", TradingState.ACTIVE.value))
        # The peak since the last resume by command (``risk_rebased_at``): the only rebase.
        peak = state.equity_peak or state.initial_cash
        self.risk.restore(
            trading,
            peak,
            state.day_start_equity or peak,
            max(0, now // DAY_MS),
            halted_by_limit=state.state.get("halted_by_limit") == "1",
        )
        self.account.realized_today = state.realized_today
        notes: list[str] = []
        working: list[OrderIntent] = []
        for open_intent in state.open_intents:
            intent = open_intent.intent
            if open_intent.status == "sent":
                # The paper order was accepted before the restart: it is still open.
                self.broker.submit(intent)
                working.append(intent)
                if intent.purpose == "entry" and open_intent.proposal is not None:
                    self._entry_of[intent.client_order_id] = open_intent.proposal
                else:
                    self._closing.add(intent.symbol)
                    self._exit_reason[intent.client_order_id] = intent.reason or "exit"
                notes.append(
                    f"order {intent.client_order_id} ({intent.side.value} {intent.qty} "
                    f"{intent.symbol}) is still open and fills at the next price"
                )
            else:
                async with self.store.unit_of_work() as uow:
                    uow.intent_cancelled(
                        intent.client_order_id, now, "never sent before the restart"
                    )
                notes.append(f"order intent {intent.client_order_id} was never sent: cancelled")
        return Recovery(
            is_fresh=False,
            positions=self.positions(),
            pending=self.pending(),
            trading_state=trading,
            notes=notes,
            working_orders=working,
        )

    async def _run(self) -> None:
        try:
            async for batch in self.feed.batches():
                if self.status in ("stopping", "stopped"):
                    break
                await self._on_batch(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Crash-only: everything committed is consistent; stop rather than
            # trade on a state the store may not have.
            self._error = exc
            log.exception("engine stopped on an error")
            self._emit(
                EngineMessage(ts=self.market_ts, level="error", text=f"engine stopped: {exc}")
            )
            self._set_status("stopped")
        finally:
            self._stopped.set()

    async def wait(self) -> None:
        """Until the feed ends or the engine stops; re-raises an engine error."""
        await self._stopped.wait()
        if self._error is not None:
            raise self._error

    @property
    def error(self) -> BaseException | None:
        return self._error

    def pause(self) -> None:
        """No new proposals; the feed, marks, stops and take-profits keep running."""
        if self.status == "running":
            self._set_status("paused")

    def resume(self) -> None:
        if self.status == "paused":
            self._set_status("running")

    async def stop(self, *, close_positions: bool | None = None) -> None:
        """Stop gracefully: the feed stops, pending proposals are kept or expired, the
        store is flushed; positions stay open unless asked (or configured) to close."""
        if self.status in ("stopping", "stopped"):
            await self._stopped.wait()
            return
        self._set_status("stopping")
        self.feed.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._stopped.wait()), timeout=5.0)
            except TimeoutError:
                self._task.cancel()
        if self.settings.approval.on_stop == "expire":
            for p in list(self.router.pending()):
                if self.router.claim(p.id) is not None:
                    await self._store_expiry(p)
        close = (
            self.settings.engine.close_positions_on_stop
            if close_positions is None
            else close_positions
        )
        if close:
            await self.cancel_entries("cancelled on stop (close all)")
            for pos in self.positions():
                # No next price after the feed stops: close at the last mark.
                mark = self.marks.get(pos.symbol, pos.entry_price)
                await self._exit_now(pos, mark, "closed on stop")
        await self.store.flush()
        await self.store.end_session(round(self._wall_clock() * 1000))
        self._stopped.set()
        self._set_status("stopped")

    # --- the market -----------------------------------------------------------------

    async def _on_batch(self, batch: list[Candle]) -> None:
        self._batches += 1
        if self._resume_ts is not None and not self._caught_up(batch):
            return
        for candle in batch:
            if self.broker.open_orders(candle.symbol):
                for fill in self.broker.on_candle(candle):
                    await self._apply_fill(fill)
            if candle.symbol in self.portfolio.positions and candle.symbol not in self._closing:
                trigger = self._trigger(self.portfolio.positions[candle.symbol], candle)
                if trigger is not None:
                    await self._exit_now(
                        self.portfolio.positions[candle.symbol], trigger[0], trigger[1], candle.ts
                    )
            proposal = self._analyse(candle)
            if proposal is not None:
                await self._propose(proposal)
        if batch:
            await self._after_batch(batch[-1].ts + self._tf_ms, batch)

    def _caught_up(self, batch: list[Candle]) -> bool:
        """Whether ``batch`` is past the market time recovered from the store."""
        assert self._resume_ts is not None
        if batch and batch[0].ts < self._resume_ts:
            self._skipped += len(batch)
            return False
        if self._skipped:
            log.info("skipped %d candles traded before the restart", self._skipped)
        self._resume_ts = None
        if self.feed.speed is None:  # unless a speed was chosen meanwhile
            self.feed.speed = self._resume_speed
        return True

    def _analyse(self, candle: Candle) -> Proposal | None:
        """Marks, indicators and agents for one candle: plain calls, no I/O."""
        symbol = candle.symbol
        self.candles_seen += 1
        last = self._last_ts.get(symbol)
        agents = self._agents.get(symbol)
        if agents is None:
            agents = self._agents[symbol] = self._make_agents(symbol)
        elif last is not None and candle.ts - last > self._tf_ms:
            missing = (candle.ts - last) // self._tf_ms - 1
            for agent in list(agents):
                try:
                    agent.on_gap(symbol, missing)
                except Exception as exc:
                    self._switch_off(agents, agent, agent.name, symbol, exc)
            self.synth.on_gap(symbol)
        self._last_ts[symbol] = candle.ts
        self.marks[symbol] = to_decimal(candle.close)
        self.risk.on_candle(symbol, candle.ts, candle.close)
        self.learning.on_candle(candle)
        self.synth.on_candle(candle)
        votes = self._votes(agents, candle)
        if not votes or self.status != "running" or self._batches <= self.feed.warmup_batches:
            return None
        now = candle.ts + self._tf_ms
        proposal = self.synth.synthesize(candle, votes, Decimal(0), now)
        if proposal is None:
            return None
        if self.risk.state is not TradingState.ACTIVE:
            return None  # no new entries: nothing to propose
        preview = self._size_entry(proposal, None, now, record=False)
        if not preview.allowed:
            return evolve(proposal, risk_note=preview.reason)
        return evolve(proposal, size=preview.quantity)

    def _size_entry(
        self,
        proposal: Proposal,
        qty: Decimal | None,
        now: int,
        *,
        record: bool = True,
        human: bool = False,
    ) -> RiskCheck:
        """The risk engine's answer for an entry; a bad input is a denial, never an error."""
        return self.risk.check_entry(
            proposal,
            qty,
            positions=self.portfolio.positions,
            committed=self._committed_positions(),
            marks=self.marks,
            edge=self.learning.edge(proposal),
            ts=now,
            record=record,
            human=human,
        )

    def _make_agents(self, symbol: str) -> list[Agent]:
        """One instance of each agent class for ``symbol``; one that raises is left out."""
        agents: list[Agent] = []
        for cls in self._agent_classes:
            try:
                agents.append(cls(symbol))
            except Exception as exc:
                self._switch_off(agents, None, getattr(cls, "name", cls.__name__), symbol, exc)
        return agents

    def _votes(self, agents: list[Agent], candle: Candle) -> list[AgentVote]:
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
            self._switch_off(agents, agent, agent.name, candle.symbol, error)
        return votes

    def _switch_off(
        self, agents: list[Agent], agent: Agent | None, name: str, symbol: str, exc: Exception
    ) -> None:
        """Take a failed agent out of ``symbol``'s agents: its traceback goes to the log,
        one line to subscribers. Trading goes on with the others."""
        if agent is not None and agent in agents:
            agents.remove(agent)
        text = (
            f"agent {name} failed on {symbol}: {type(exc).__name__}: {exc}; "
            f"switched off for {symbol}"
        )
        log.error("%s", text, exc_info=exc)
        self._emit(EngineMessage(ts=self.market_ts, level="error", text=text))

    @staticmethod
    def _trigger(pos: Position, c: Candle) -> tuple[Decimal, str] | None:
        """Stop or take-profit hit inside ``c``; the stop first when both are."""
        return stop_or_take_profit(
            pos.side,
            pos.stop,
            pos.take_profit,
            to_decimal(c.open),
            to_decimal(c.high),
            to_decimal(c.low),
        )

    async def _after_batch(self, now: int, batch: list[Candle]) -> None:
        self.market_ts = now
        day = self.account.day
        if day is not None and now // DAY_MS > day:
            s = self.settings.store
            await self.store.prune(now, s.equity_retention_days, s.candle_retention_days)
        for p in self.router.due(now):
            await self._store_expiry(p)
        rows = self.learning.take_dirty()
        if rows:
            async with self.store.unit_of_work() as uow:
                uow.agent_records(rows)
        # The account rolls the day over (today's realized P&L restarts) and raises the peak.
        changes = self.risk.on_equity(now, self.account.equity())
        if changes:
            await self._store_state_changes(changes)
        snap = self.equity_snapshot()
        event = EquityUpdated(
            ts=now,
            equity=snap.equity,
            cash=snap.cash,
            unrealized=snap.unrealized,
            realized_today=snap.realized_today,
            drawdown=snap.drawdown,
        )
        self.store.record_equity(event)
        if self.feed_name != "replay":
            self.store.record_candles(self.feed.timeframe, batch)
        self._emit(event)

    async def _store_state_changes(
        self, changes: list[TradingStateChanged], *, rebased: bool = False
    ) -> None:
        """Store trading state changes; ``rebased`` (a resume by command) also stores
        when the account's peak restarted, so a restart measures from the same peak."""
        async with self.store.unit_of_work() as uow:
            events = [uow.trading_state_changed(c) for c in changes]
            uow.set_state("halted_by_limit", "1" if self.risk.halted_by_limit else "0")
            if rebased:
                uow.set_state("risk_rebased_at", str(self.market_ts))
        self._emit(*events)

    # --- proposals and decisions ------------------------------------------------------

    async def _propose(self, proposal: Proposal) -> None:
        offered = self.router.offer(proposal)
        async with self.store.unit_of_work() as uow:
            if offered.merged:
                event: EngineEvent = uow.proposal_merged(
                    ProposalMerged(
                        ts=proposal.created_at,
                        proposal_id=offered.proposal.id,
                        merged=offered.proposal.merged,
                        confidence=offered.proposal.confidence,
                    )
                )
            else:
                event = uow.proposal_created(proposal, proposal.created_at)
        if not offered.merged:
            self._shown_at[proposal.id] = self._clock()
        self._emit(event)
        for old in offered.evicted:
            await self._store_expiry(old, reason="queue full: oldest expired first")
        verdict = self.router.verdict(offered.proposal)
        if offered.merged:
            # A merge can lift a queued proposal's confidence over the auto threshold:
            # the policy decides again, or it would wait out its time to live unseen.
            merged_id = offered.proposal.id
            # A person may have decided it while the merge was being stored.
            still_pending = any(p.id == merged_id for p in self.router.pending())
            if verdict is Verdict.APPROVE and still_pending:
                await self._approve(merged_id, None, by="policy")
            return
        if verdict is Verdict.APPROVE:
            await self._approve(proposal.id, None, by="policy")
        elif verdict is Verdict.REJECT:
            await self._reject(proposal.id, RejectReason.POLICY, by="policy")

    def _latency_ms(self, proposal_id: str) -> int:
        shown = self._shown_at.pop(proposal_id, None)
        return 0 if shown is None else max(0, round((self._clock() - shown) * 1000))

    def _claim(self, proposal_id: str) -> Proposal:
        proposal = self.router.claim(proposal_id)
        if proposal is None:
            raise CommandError(
                f"proposal {proposal_id} is no longer pending (already decided or expired)"
            )
        return proposal

    async def approve(self, proposal_id: str, qty: Decimal | None = None) -> Decision:
        """Approve a pending proposal (``qty`` resizes it). Returns once stored."""
        if qty is not None:
            problem = qty_problem(qty)
            if problem is not None:
                raise CommandError(f"size: {problem}, got {qty:.6g}")
        return await self._approve(proposal_id, qty, by="human")

    def preview_entry(self, proposal_id: str, qty: Decimal | None = None) -> RiskCheck:
        """What approving ``proposal_id`` (at ``qty``) would get from the risk limits now:
        the quantity they allow, or the denial. Nothing is recorded (the resize dialog
        shows it before the person approves)."""
        proposal = self.router.get(proposal_id)
        if proposal is None:
            raise CommandError(f"proposal {proposal_id} is no longer pending")
        if qty is not None and (problem := qty_problem(qty)) is not None:
            raise CommandError(problem)
        return self._size_entry(proposal, qty, self.market_ts, record=False, human=True)

    async def _approve(
        self, proposal_id: str, qty: Decimal | None, by: Literal["human", "policy"]
    ) -> Decision:
        self._approving += 1
        self._approvals_settled.clear()
        try:
            return await self._approve_claimed(proposal_id, qty, by)
        finally:
            self._approving -= 1
            if not self._approving:
                self._approvals_settled.set()

    async def _approve_claimed(
        self, proposal_id: str, qty: Decimal | None, by: Literal["human", "policy"]
    ) -> Decision:
        p = self._claim(proposal_id)
        now = self.market_ts
        rd = self._size_entry(p, qty, now, human=by == "human")
        approved = rd.allowed
        reason = None if approved else rd.reason
        intent = OrderIntent(
            client_order_id=new_id("ord"),
            proposal_id=p.id,
            symbol=p.symbol,
            side=OrderSide.BUY if p.side is Side.LONG else OrderSide.SELL,
            qty=rd.quantity if approved else max(qty or p.size, QTY_QUANTUM),
            purpose="entry",
            created_at=now,
            reason=reason or "",
        )
        decision = Decision(
            proposal_id=p.id,
            action=DecisionAction.APPROVE,
            size=intent.qty,
            resized=qty is not None and qty != p.size,
            latency_ms=self._latency_ms(p.id),
            decided_at=now,
            decided_by=by,
        )
        try:
            async with self.store.unit_of_work() as uow:
                events: list[EngineEvent] = [uow.decision_made(decision, p.symbol, p.side, intent)]
                if approved:
                    events.append(uow.order_submitted(intent, now))
                else:
                    events.append(
                        uow.order_denied(
                            OrderDenied(
                                ts=now,
                                symbol=p.symbol,
                                reason=reason or "denied",
                                proposal_id=p.id,
                                client_order_id=intent.client_order_id,
                            )
                        )
                    )
        except Exception as exc:
            self.router.release(p.id)
            self._shown_at.setdefault(p.id, self._clock())
            raise CommandError(f"could not store the approval: {exc}") from exc
        self.router.done(p.id)
        if approved:
            self._entry_of[intent.client_order_id] = p
            self.broker.submit(intent)
        self._emit(*events)
        return decision

    async def reject(self, proposal_id: str, reason: RejectReason) -> Decision:
        """Reject a pending proposal with a reason code. Returns once stored."""
        return await self._reject(proposal_id, RejectReason(reason), by="human")

    async def _reject(
        self, proposal_id: str, reason: RejectReason, by: Literal["human", "policy"]
    ) -> Decision:
        p = self._claim(proposal_id)
        decision = Decision(
            proposal_id=p.id,
            action=DecisionAction.REJECT,
            reason=reason.value,
            latency_ms=self._latency_ms(p.id),
            decided_at=self.market_ts,
            decided_by=by,
        )
        try:
            async with self.store.unit_of_work() as uow:
                event = uow.decision_made(decision, p.symbol, p.side, None)
        except Exception as exc:
            self.router.release(p.id)
            raise CommandError(f"could not store the rejection: {exc}") from exc
        self.router.done(p.id)
        self.learning.follow(p)
        self._emit(event)
        return decision

    async def _store_expiry(self, p: Proposal, reason: str = "time to live ran out") -> None:
        decision = Decision(
            proposal_id=p.id,
            action=DecisionAction.EXPIRE,
            reason=reason,
            latency_ms=self._latency_ms(p.id),
            decided_at=max(self.market_ts, p.created_at),
            decided_by="engine",
        )
        async with self.store.unit_of_work() as uow:
            event = uow.decision_made(decision, p.symbol, p.side, None)
        self.router.done(p.id)
        self.learning.follow(p)
        self._emit(event)

    async def set_policy(self, policy: str, auto_confidence: float | None = None) -> None:
        """Switch the approval policy (manual, auto above a confidence, queue-only)."""
        try:
            new = Policy(policy)
        except ValueError:
            raise CommandError(
                f"policy must be one of {', '.join(p.value for p in Policy)}, got {policy!r}"
            ) from None
        if auto_confidence is not None:
            if not 0.0 <= auto_confidence <= 1.0:
                raise CommandError(f"confidence must lie in [0, 1], got {auto_confidence}")
            self.router.auto_confidence = auto_confidence
        self.router.policy = new
        text = f"approval policy is now {new.value}"
        if new is Policy.AUTO:
            text += f" (approve at confidence {confidence_at_least(self.router.auto_confidence)})"
        async with self.store.unit_of_work() as uow:
            event = uow.event(EngineMessage(ts=self.market_ts, text=text))
        self._emit(event)

    # --- trading state ------------------------------------------------------------------

    async def halt(self, reason: str) -> None:
        """Stop new entries until :meth:`resume_trading`."""
        changes = self.risk.halt(self.market_ts, reason)
        if changes:
            await self._store_state_changes(changes)

    async def resume_trading(self, reason: str) -> None:
        """Leave HALTED or REDUCING: only ever by this explicit command (or config)."""
        changes = self.risk.resume(self.market_ts, reason)
        if changes:
            await self._store_state_changes(changes, rebased=True)

    # --- exits and fills ----------------------------------------------------------------

    def _exit_intent(self, pos: Position, reason: str, now: int) -> OrderIntent:
        return OrderIntent(
            client_order_id=new_id("ord"),
            proposal_id=None,
            symbol=pos.symbol,
            side=OrderSide.SELL if pos.side is Side.LONG else OrderSide.BUY,
            qty=pos.qty,
            purpose="exit",
            created_at=now,
            reason=reason,
        )

    async def close_position(self, symbol: str, reason: str = "closed by hand") -> None:
        """Send a market order closing ``symbol``; it fills at the next price."""
        pos = self.portfolio.positions.get(symbol)
        if pos is None:
            raise CommandError(f"no open position in {symbol}")
        if symbol in self._closing:
            raise CommandError(f"{symbol} is already being closed")
        check = self.risk.check_exit(self.market_ts, pos)
        if not check.allowed:
            raise CommandError(check.reason)
        intent = self._exit_intent(pos, reason, self.market_ts)
        try:
            async with self.store.unit_of_work() as uow:
                uow.intent_created(intent)
                event = uow.order_submitted(intent, self.market_ts)
        except Exception as exc:
            raise CommandError(f"could not store the exit order: {exc}") from exc
        self._closing.add(symbol)
        self._exit_reason[intent.client_order_id] = reason
        self.broker.submit(intent)
        self._emit(event)

    async def close_all(self) -> None:
        """Cancel every working entry order, then close every open position not already
        closing (an entry left working would open a position right after)."""
        await self.cancel_entries("cancelled by hand (close all)")
        for symbol in list(self.portfolio.positions):
            if symbol not in self._closing:
                await self.close_position(symbol, "closed by hand (all)")

    async def cancel_entries(self, reason: str) -> list[OrderIntent]:
        """Cancel every working entry order, durably; returns the cancelled orders.

        Approvals already claimed finish first, so an entry being stored while this
        runs is cancelled too rather than sent after it. Each order leaves the broker
        before its cancellation is stored, so no fill can slip in during the write;
        if the write fails the order goes back to the broker and CommandError says so.
        """
        await self._approvals_settled.wait()
        cancelled: list[OrderIntent] = []
        for intent in self.working_entries():
            coid = intent.client_order_id
            if not self.broker.cancel(coid):
                continue
            try:
                async with self.store.unit_of_work() as uow:
                    event = uow.intent_cancelled(coid, self.market_ts, reason)
            except Exception as exc:
                self.broker.submit(intent)
                raise CommandError(f"could not store the cancellation of {coid}: {exc}") from exc
            self._entry_of.pop(coid, None)
            if self._exit_reason.pop(coid, None) is not None:
                self._closing.discard(intent.symbol)  # recovered without its proposal
            cancelled.append(intent)
            self._emit(event)
        return cancelled

    async def _exit_now(
        self, pos: Position, price: Decimal, reason: str, ts: int | None = None
    ) -> None:
        """A triggered stop or take-profit (or a close on stop): intent, order and fill
        in one transaction."""
        now = self.market_ts if ts is None else ts
        intent = self._exit_intent(pos, reason, now)
        fill = self.broker.fill_now(intent, price, now)
        outcome = self.portfolio.apply_fill(fill, reason=reason)
        async with self.store.unit_of_work() as uow:
            uow.intent_created(intent)
            events: list[EngineEvent] = [uow.order_submitted(intent, now)]
            events += self._record_outcome(uow, outcome)
        self._emit(*events)

    async def _apply_fill(self, fill: Fill) -> None:
        proposal = self._entry_of.pop(fill.client_order_id, None)
        reason = self._exit_reason.pop(fill.client_order_id, "")
        outcome = self.portfolio.apply_fill(
            fill,
            stop=proposal.stop if proposal is not None else None,
            take_profit=proposal.take_profit if proposal is not None else None,
            proposal_id=proposal.id if proposal is not None else None,
            reason=reason,
        )
        if proposal is not None and outcome.opened is not None:
            self._position_proposal[fill.symbol] = proposal
        async with self.store.unit_of_work() as uow:
            events = self._record_outcome(uow, outcome)
        if reason:
            self._closing.discard(fill.symbol)
        self._emit(*events)

    def _record_outcome(self, uow: UnitOfWork, outcome: FillOutcome) -> list[EngineEvent]:
        """The statements of one fill: fill, order, position, cash, learning record."""
        events: list[EngineEvent] = [uow.order_filled(outcome.record, outcome.cash)]
        ts = outcome.record.ts
        self.account.realize(outcome.record.realized_pnl - outcome.record.fee)
        if outcome.opened is not None:
            events.append(uow.position_opened(outcome.opened, ts))
        if outcome.changed is not None:
            events.append(uow.position_changed(outcome.changed, ts))
        if outcome.closed is not None:
            closed = outcome.closed
            events.append(uow.position_closed(closed))
            self._closing.discard(closed.symbol)
            cost = q_cash(closed.qty * closed.entry_price)
            ret = float((closed.realized_pnl - closed.fees) / cost) if cost > 0 else 0.0
            self.learning.on_trade_closed(
                self._position_proposal.pop(closed.symbol, None), closed.symbol, ret
            )
            uow.agent_records(self.learning.take_dirty())
        return events
