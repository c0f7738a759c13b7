"""The engine: the live shell around the synchronous trading core.

The core (:mod:`engine.core`) turns candles and commands into Steps with plain
calls. This shell wires it from the settings, recovers it from the store, runs
the feed loop, and hands every Step, in order, to the commit pipeline
(:mod:`engine.pipeline`), which stores it durably before it sends its orders
and announces its events: what the console shows is what the store holds.
The candle loop does not wait for each commit; commands wait for their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import Literal

from engine import observe
from engine.broker import Broker, PaperBroker
from engine.config.sections import SECRET_FIELDS, Settings
from engine.core import OrderGate, TradingCore
from engine.desk import MAX_ORDER_QTY, qty_problem
from engine.events import DecisionMade, EngineEvent, EngineMessage, EngineStateChanged
from engine.feeds.base import Feed
from engine.learning import MAX_HOLD_CANDLES
from engine.models import Candle, Decision, Fill, OrderIntent, Proposal, RejectReason
from engine.pipeline import CommitPipeline
from engine.portfolio import Portfolio
from engine.ports import BATCH_TS, RecoveredState, StorePort
from engine.recovery import Recovery, StoreMismatchError, check_store_fits, restore
from engine.risk import RiskCheck
from engine.step import CommandError, Step
from engine.timeframes import timeframe_ms
from engine.views import EngineViews
from engine.wiring import SIM_WARMUP_BATCHES, account_currency, load_agents, make_feed

__all__ = [
    "MAX_ORDER_QTY",
    "SIM_WARMUP_BATCHES",
    "CommandError",
    "Engine",
    "Recovery",
    "StoreMismatchError",
    "account_currency",
    "make_feed",
    "qty_problem",
]

log = logging.getLogger("cma.engine")

Status = Literal["starting", "running", "paused", "stopping", "stopped"]
Callback = Callable[[EngineEvent], None]


class Engine(EngineViews):
    """One trading session on one store. See the module docstring for the flow."""

    def __init__(
        self,
        settings: Settings,
        store: StorePort,
        feed: Feed | None = None,
        *,
        broker: Broker | None = None,
        gate: OrderGate | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.feed = feed if feed is not None else make_feed(settings)
        # Beside an exchange's broker the paper market only tracks the core's orders: the
        # exchange fills them (reported to on_fill), candles do not.
        exchange = broker is not None and broker.live and not isinstance(broker, PaperBroker)
        #: Whether orders go to a real exchange (not a paper market, even one said live).
        self.on_exchange = exchange
        paper = PaperBroker(
            settings.broker.fee_rate, settings.broker.slippage_bps, matching=not exchange
        )
        #: The broker port; a paper broker is also the market the core matches against.
        self.broker: Broker = broker if broker is not None else paper
        market = self.broker if isinstance(self.broker, PaperBroker) else paper
        self.mode = "LIVE" if self.broker.live else "PAPER"
        self.feed_name = self.feed.name
        self._wall_clock = wall_clock
        #: Wall-clock seconds when this session began (the session row's start).
        self._session_started = wall_clock()
        #: The session row's id in the store, once :meth:`start` has begun it.
        self.session_id: int | None = None
        self._tf_ms = timeframe_ms(self.feed.timeframe)
        self.currency = account_currency(self.feed.symbols)
        self.core = TradingCore(
            settings,
            currency=self.currency,
            tf_ms=self._tf_ms,
            agent_classes=load_agents(settings),
            new_work=store.begin_work,
            market=market,
            clock=clock,
        )
        self.core.order_gate = gate
        self._subscribers: list[Callback] = []
        self._pipeline = CommitPipeline(store, self.broker, self._announce, self._fail)
        if exchange:
            # The exchange broker reports fills, refusals and its circuit breaker here.
            self.broker.listener = self  # type: ignore[attr-defined]
        self.status: Status = "starting"
        self._task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._error: BaseException | None = None
        self._batches = 0
        # After a restart: candles before this market time were traded before it.
        self._resume_ts: int | None = None
        self._resume_speed: float | None = None
        self._skipped = 0
        # After a restart: declined proposals the learning agent followed, refollowed as
        # the skipped candles reach the market time each was declined at.
        self._declined: deque[tuple[Proposal, int]] = deque()

    # --- events -----------------------------------------------------------------------

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback`` with every engine event, after it is stored."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, *events: EngineEvent) -> None:
        self._announce(list(events))

    def _announce(self, events: list[EngineEvent]) -> None:
        for event in events:
            for callback in list(self._subscribers):
                try:
                    callback(event)
                except Exception:  # a broken consumer must not stop trading
                    log.exception("event subscriber failed on %s", event.kind)

    def _set_status(self, status: Status) -> None:
        if status != self.status:
            self.status = status
            self.core.proposing = status == "running" and self._warm()
            event = EngineStateChanged(ts=self.market_ts, state=status)
            if self._pipeline.running and status != "stopped":
                # After the events of the Steps before it.
                self._pipeline.put_nowait(Step(self.store.begin_work(), [event]))
            else:
                self._emit(event)

    def _warm(self) -> bool:
        return self._batches > self.feed.warmup_batches

    # --- lifecycle --------------------------------------------------------------------

    async def start(self, *, paused_if_recovered: bool = True) -> Recovery:
        """Rebuild state from the store and start consuming the feed in the background.

        Raises :class:`StoreMismatchError`, before writing anything, for a store
        this feed cannot trade on. The session row's ``started_at`` and
        ``ended_at`` are wall-clock epoch milliseconds (a session is one run of
        the program); market time is what every event carries instead.

        With ``paused_if_recovered`` the engine starts paused when the recovery
        needs attention (:attr:`Recovery.needs_attention`), until :meth:`resume`.
        """
        state = await self.store.load_state()
        check_store_fits(
            state,
            currency=self.currency,
            store_path=self.store.path,
            feed_last_ts=self.feed.last_ts,
            tf_ms=self._tf_ms,
        )
        self.core.market_ts = state.last_ts or 0
        live = self.on_exchange
        if state.is_fresh:
            cash = self.settings.risk.initial_cash
            if live:
                # A live account starts with what the exchange holds of the quote currency.
                cash = (await self.broker.balances()).get(self.currency, Decimal(0))
                self.core.account.portfolio = Portfolio(cash, currency=self.currency)
            await self.store.init_balance(self.currency, cash, self.market_ts)
            recovery = Recovery(is_fresh=True)
        else:
            recovery, step = restore(self.core, state, self.currency)
            await self.store.commit(step.work)
            # One declined longer ago than a counterfactual is followed has closed by now
            # (its outcome was lost by an older version that did not follow it again).
            since = self.market_ts - MAX_HOLD_CANDLES * self._tf_ms
            self._declined.extend(f for f in state.followed if f[1] >= since)
            # A feed that starts before the store's market time (a replay, the demo
            # market) plays unpaced and untraded up to it: market time never goes back.
            self._resume_ts = self.market_ts
            self._resume_speed = self.feed.speed
            self.feed.speed = None
        if self.core.order_gate is not None:
            self.core.order_gate.restore(state.state.get("live_notional"))
        if live:
            await self._reconcile(state, recovery)
        mode = "live" if self.broker.live else "paper"
        config = self.settings.model_dump_json(exclude=SECRET_FIELDS)
        self.session_id = await self.store.begin_session(
            mode, self.feed_name, config, round(self._session_started * 1000)
        )
        self.store.set_reporter(self._emit)  # failed group commits reach the console
        paused = recovery.needs_attention and paused_if_recovered
        self._set_status("paused" if paused else "running")
        self._pipeline.start()
        self._task = asyncio.create_task(self._run(), name="cma-engine")
        return recovery

    async def _reconcile(self, state: RecoveredState, recovery: Recovery) -> None:
        """Live: ask the exchange about every order sent before the restart, and list
        what it holds that the store does not know, before trading resumes."""
        from engine.exchange.broker import ExchangeBroker
        from engine.exchange.reconcile import reconcile_exchange, reconcile_intents

        broker = self.broker
        assert isinstance(broker, ExchangeBroker)
        found = await reconcile_intents(broker, recovery.working_orders)
        for fill in found.fills:
            await self._pipeline.run(self.core.apply_fill(fill))
        for intent, reason in found.cancelled:
            step = self.core.cancel_entry(intent.client_order_id, reason)
            if step is not None:
                await self._pipeline.run(step)
        await reconcile_exchange(
            broker,
            found,
            known=[o.intent.client_order_id for o in state.open_intents],
            symbols=self.feed.symbols,
            positions=list(self.portfolio.positions.values()),
            cash=self.portfolio.cash,
            currency=self.currency,
            dust=self.core.dust,
        )
        recovery.working_orders = found.working
        recovery.positions = list(self.portfolio.positions.values())
        recovery.notes.extend(found.notes)
        recovery.differences = found.differences
        broker.start()

    # --- the live broker's reports (BrokerListener) ----------------------------------

    def on_fill(self, fill: Fill) -> None:
        """A fill from the exchange: into the core now, stored in order."""
        self._pipeline.put_nowait(self.core.apply_fill(fill))

    def on_rejected(self, intent: OrderIntent, reason: str) -> None:
        """The exchange refused an order (or it never arrived): its intent is cancelled."""
        step = self.core.cancel_entry(intent.client_order_id, reason)
        message = EngineMessage(
            ts=self.market_ts,
            level="warning",
            text=f"order {intent.client_order_id} ({intent.side.value} {intent.qty} "
            f"{intent.symbol}): {reason}",
        )
        work = step.work if step is not None else self.store.begin_work()
        events = [*(step.events if step is not None else []), work.event(message)]
        self._pipeline.put_nowait(Step(work, events))

    def on_breaker(self, is_open: bool, reason: str) -> None:
        """The exchange's circuit breaker opened (exits only) or closed again."""
        if is_open:
            step = self.core.hold(f"the exchange circuit breaker is open ({reason})")
        else:
            step = self.core.release("the exchange answers again: circuit breaker closed")
        if step is not None:
            self._pipeline.put_nowait(step)

    async def _run(self) -> None:
        try:
            async for batch in self.feed.batches():
                if self.status in ("stopping", "stopped"):
                    break
                await self._on_batch(batch)
            await self._pipeline.drain()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._crash(exc)
        finally:
            self._stopped.set()

    def _fail(self, exc: BaseException) -> None:
        """A commit of the candle loop failed: the loop stops at its next batch."""
        self.feed.close()

    def _crash(self, exc: BaseException) -> None:
        """Crash-only: everything committed is consistent; stop rather than trade on a
        state the store may not have. A failed commit is the error, not the stop it
        caused."""
        exc = self._pipeline.error or exc
        self._error = exc
        log.error("engine stopped on an error", exc_info=exc)
        self._emit(EngineMessage(ts=self.market_ts, level="error", text=f"engine stopped: {exc}"))
        self.status = "stopping"
        self._set_status("stopped")

    async def wait(self) -> None:
        """Until the feed ends (and its Steps are stored) or the engine stops; re-raises
        an engine error."""
        await self._stopped.wait()
        if self._error is not None:
            raise self._error

    async def synced(self) -> None:
        """Until every Step so far is stored and announced (the candle loop does not wait
        for its commits: read the store directly only after this)."""
        await self._pipeline.drain()

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
        """Stop gracefully: the feed stops, the pipeline drains, pending proposals are
        kept or expired, the store is flushed; positions stay open unless asked (or
        configured) to close."""
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
        if self._error is None:
            if self.settings.approval.on_stop == "expire":
                for step in self.core.expire_pending():
                    await self._pipeline.run(step)
            close = (
                self.settings.engine.close_positions_on_stop
                if close_positions is None
                else close_positions
            )
            if close:
                await self.cancel_entries("cancelled on stop (close all)")
                if self.on_exchange:
                    await self._close_live()
                else:
                    for pos in self.positions():
                        # No next price after the feed stops: close at the last mark.
                        await self._pipeline.run(self.core.close_at_mark(pos))
        try:
            await self._pipeline.close()
            stop_broker = getattr(self.broker, "close", None)
            if stop_broker is not None:
                await stop_broker()
            await self.store.flush()
            await self.store.end_session(round(self._wall_clock() * 1000))
        finally:
            # Stopped even when the last flush failed (a full disk): a second stop,
            # and whoever waits, must not wait for ever.
            self._stopped.set()
            self._set_status("stopped")

    async def _close_live(self, wait_s: float = 15.0) -> None:
        """Live: market orders closing every position, waiting (up to ``wait_s``) for the
        exchange to fill them; what is still open then stays open, and is said so."""
        for pos in self.positions():
            if not self.core.closing(pos.symbol):
                try:
                    await self._pipeline.run(self.core.close_position(pos.symbol, "closed on stop"))
                except CommandError as exc:
                    self._emit(EngineMessage(ts=self.market_ts, level="warning", text=str(exc)))
        deadline = time.monotonic() + wait_s
        while self.positions() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            await self._pipeline.drain()
        if self.positions():
            left = ", ".join(p.symbol for p in self.positions())
            text = f"positions still open on the exchange after the stop: {left}"
            self._emit(EngineMessage(ts=self.market_ts, level="warning", text=text))

    # --- the market -------------------------------------------------------------------

    async def _on_batch(self, batch: list[Candle]) -> None:
        self._batches += 1
        if self._resume_ts is not None and not self._caught_up(batch):
            if self.on_exchange or self.feed_name == "replay" or not self.feed.is_live(batch):
                # History from before the restart (an exchange's, or the replay's own
                # candles): it warms the agents up again, and nothing else (no order,
                # stop or proposal on it), so a replay carries on exactly as the run
                # that was never stopped (benchmarks/chaos.py). The demo market's
                # history can be long and is only skipped.
                for candle in batch:
                    self.core.warm(candle)
            if batch:
                self._refollow(batch[-1].ts + self._tf_ms)
            return
        core = self.core
        core.proposing = self.status == "running" and self._warm() and self.feed.is_live(batch)
        steps: list[Step] = []
        observer = observe.current()
        if observer.timed:
            clock = time.perf_counter
            for candle in batch:
                began = clock()
                steps += core.on_candle(candle)
                observer.candle_done(clock() - began)
        else:
            for candle in batch:
                steps += core.on_candle(candle)
        if batch:
            now = batch[-1].ts + self._tf_ms
            new_day = core.new_day(now)
            steps += core.after_batch(now)
            if any(step.work for step in steps):
                # The batch stores something: its last unit says the batch is whole, so a
                # restart resumes after it (its fills alone carry the candle's open time).
                steps[-1].work.set_state(BATCH_TS, str(now))
            # The batch's units go into the store together (all or none).
            await self._pipeline.put(*steps)
            if new_day:
                s = self.settings.store
                await self.store.prune(now, s.equity_retention_days, s.candle_retention_days)
            if self.feed_name != "replay":
                self.store.record_candles(self.feed.timeframe, batch)
            if self._subscribers and not self._pipeline.idle:
                # A subscriber reads the views when it hears an event: at a batch's end
                # they show what was announced. With nobody listening the loop runs on.
                await self._pipeline.drain()

    def _caught_up(self, batch: list[Candle]) -> bool:
        """Whether ``batch`` is past the market time recovered from the store."""
        assert self._resume_ts is not None
        if batch and batch[0].ts < self._resume_ts:
            self._skipped += len(batch)
            return False
        if self._skipped:
            log.info("skipped %d candles traded before the restart", self._skipped)
        self._refollow(None)
        self._resume_ts = None
        if self.feed.speed is None:  # unless a speed was chosen meanwhile
            self.feed.speed = self._resume_speed
        return True

    def _refollow(self, now: int | None) -> None:
        """The learning agent follows again the declined proposals it followed before the
        restart, each after the skipped batch it was declined in (so its age in candles
        is the one it had; ``now`` None: all that are left)."""
        declined = self._declined
        learning = self.core.learning
        while declined and (now is None or declined[0][1] <= now):
            learning.follow(declined.popleft()[0])

    # --- commands ---------------------------------------------------------------------

    async def _command(self, step: Step, what: str) -> None:
        """Store a command's Step (after the Steps before it) and announce it."""
        try:
            await self._pipeline.run(step)
        except Exception as exc:
            raise CommandError(f"could not store {what}: {exc}") from exc

    async def approve(self, proposal_id: str, size: Decimal | None = None) -> Decision:
        """Approve a pending proposal (``size`` resizes it). Returns once stored."""
        if size is not None:
            problem = qty_problem(size)
            if problem is not None:
                raise CommandError(f"size: {problem}, got {size:.6g}")
        step = self.core.approve(proposal_id, size, "human")
        await self._command(step, "the approval")
        return _decision(step)

    def preview_entry(self, proposal_id: str, size: Decimal | None = None) -> RiskCheck:
        """What approving ``proposal_id`` (at ``size``) would get from the risk limits now:
        the quantity they allow, or the denial. Nothing is recorded (the resize dialog
        shows it before the person approves)."""
        if self.router.get(proposal_id) is None:
            raise CommandError(f"proposal {proposal_id} is no longer pending")
        if size is not None and (problem := qty_problem(size)) is not None:
            raise CommandError(problem)
        return self.core.preview_entry(proposal_id, size)

    async def reject(self, proposal_id: str, reason: RejectReason) -> Decision:
        """Reject a pending proposal with a reason code. Returns once stored."""
        step = self.core.reject(proposal_id, RejectReason(reason), "human")
        await self._command(step, "the rejection")
        return _decision(step)

    async def set_policy(self, policy: str, auto_confidence: float | None = None) -> None:
        """Switch the approval policy (manual, auto above a confidence, queue-only)."""
        await self._command(self.core.set_policy(policy, auto_confidence), "the policy")

    async def halt(self, reason: str) -> None:
        """Stop new entries until :meth:`resume_trading`."""
        step = self.core.halt(reason)
        if step is not None:
            await self._command(step, "the halt")

    async def resume_trading(self, reason: str) -> None:
        """Leave HALTED or REDUCING: only ever by this explicit command (or config)."""
        step = self.core.resume_trading(reason)
        if step is not None:
            await self._command(step, "the resume")

    async def close_position(self, symbol: str, reason: str = "closed by hand") -> None:
        """Send a market order closing ``symbol``; it fills at the next price."""
        await self._command(self.core.close_position(symbol, reason), "the exit order")

    async def close_all(self) -> None:
        """Cancel every working entry order, then close every open position not already
        closing (an entry left working would open a position right after)."""
        await self.cancel_entries("cancelled by hand (close all)")
        for symbol in list(self.portfolio.positions):
            if not self.core.closing(symbol):
                await self.close_position(symbol, "closed by hand (all)")

    async def cancel_entries(self, reason: str) -> list[OrderIntent]:
        """Cancel every working entry order, durably; returns the cancelled orders.

        Each order leaves the market before its cancellation is stored, so no fill
        can slip in during the write; if the write fails the order goes back and
        CommandError says so.
        """
        cancelled: list[OrderIntent] = []
        for intent in self.core.working_entries():
            coid = intent.client_order_id
            step = self.core.cancel_entry(coid, reason)
            if step is None:
                continue
            await self._command(step, f"the cancellation of {coid}")
            if self.on_exchange:
                # Off the exchange too; one that filled meanwhile still reports its fill.
                await self.broker.cancel(coid)
            cancelled.append(intent)
        return cancelled


def _decision(step: Step) -> Decision:
    """The decision a command's Step made (its first event)."""
    event = step.events[0]
    assert isinstance(event, DecisionMade)
    return event.decision
