"""The trading core: candle → votes → proposal → decision → order → fill → position.

Plain method calls that change the pieces' state and return :class:`Step`\\ s:
the unit of work to store and what follows once it is stored. The core never
awaits; the live shell (:mod:`engine.runtime`) stores the Steps in order before
it announces them, and a backtest driver can call the same methods with no
shell around them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Literal, Protocol

from engine.account import Account
from engine.agents.base import Agent
from engine.broker.paper import PaperBroker
from engine.config import Settings
from engine.desk import ApprovalDesk
from engine.events import (
    EngineEvent,
    EngineMessage,
    EquityUpdated,
    OrderDenied,
    ProposalMerged,
    TradingStateChanged,
)
from engine.execution import Execution
from engine.learning import LearningAgent
from engine.marks import Marks
from engine.models import (
    QTY_QUANTUM,
    Candle,
    DecisionAction,
    Fill,
    OrderIntent,
    OrderSide,
    Position,
    Proposal,
    RejectReason,
    Side,
    TradingState,
    evolve,
)
from engine.portfolio import Portfolio
from engine.ports import UnitOfWork
from engine.risk import RiskCheck, RiskEngine
from engine.router import Verdict
from engine.signals import SignalPipeline
from engine.step import CommandError, Step
from engine.timeframes import DAY_MS

By = Literal["human", "policy"]


class OrderGate(Protocol):
    """What an entry order must also meet beside a live broker: the market's precision
    and limits and the live notional caps (plain calls: the markets are loaded)."""

    def fit(self, symbol: str, qty: Decimal, price: Decimal, now: int) -> Decimal | str:
        """The quantity to send (at most ``qty``), or why none can be."""
        ...

    def fit_exit(self, symbol: str, qty: Decimal, price: Decimal) -> Decimal | str:
        """The quantity an exit of ``qty`` sends (rounded down to the market's step), or
        why ``qty`` is too small for the market to trade at ``price`` (dust)."""
        ...

    def record(self, work: UnitOfWork, symbol: str, qty: Decimal, price: Decimal, now: int) -> None:
        """An order of ``qty`` at about ``price`` goes out: count it (into ``work``)."""
        ...

    def restore(self, stored: str | None) -> None:
        """Put back what :meth:`record` stored (the store's ``live_notional`` state)."""
        ...


class TradingCore:
    """The pieces of one account (signals, desk, risk, execution, account, learning)."""

    def __init__(
        self,
        settings: Settings,
        *,
        currency: str,
        tf_ms: int,
        agent_classes: Sequence[type[Agent]],
        new_work: Callable[[], UnitOfWork],
        market: PaperBroker,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.new_work = new_work
        self.market = market
        self.tf_ms = tf_ms
        self.marks = Marks()
        #: The one owner of equity, its peak, the day's start and today's realized P&L.
        self.account = Account(Portfolio(settings.risk.initial_cash, currency=currency), self.marks)
        self.risk = RiskEngine(settings.risk, account=self.account)
        self.learning = LearningAgent()
        self.signals = SignalPipeline.from_settings(settings, agent_classes, self.learning, tf_ms)
        self.desk = ApprovalDesk.from_settings(settings, clock)
        self.router = self.desk.router
        self.execution = Execution(
            market, self.account, self.learning, new_work, brackets=settings.strategy.brackets
        )
        #: What a proposal against an open position does (``strategy.on_opposite``).
        self.on_opposite = settings.strategy.on_opposite
        #: Whether a short may be opened (not on spot): where not, a short signal only
        #: closes a long (``exit``, and ``reverse``, which has no short to open).
        self.shorts = settings.broker.shorts_allowed()
        #: Market time: the end of the last batch (what decisions and messages carry).
        self.market_ts = 0
        self.candles_seen = 0
        #: Whether candles may make proposals (the shell: running and warmed up).
        self.proposing = False
        #: Beside a live broker: the exchange's rules and the live caps an entry order
        #: must also meet after the risk limits (None on paper).
        self.order_gate: OrderGate | None = None
        #: Live: what the store wrote off as dust and the exchange still holds, by base
        #: currency (stored as ``dust:<BASE>``); the reconciliation counts it as held.
        self.dust: dict[str, Decimal] = {}
        #: Live: the cost basis of dust positions closed with no fill, in all (stored as
        #: ``dust_written_off``; ``cma db check`` counts it beside the fills' PnL).
        self.written_off = Decimal(0)
        #: Whether equity may have moved since the last equity point (a fill, a held
        #: symbol's mark, a command on the trading state): only then is it computed.
        self._equity_moved = True
        self._last_point: EquityUpdated | None = None

    # --- views ----------------------------------------------------------------------

    @property
    def portfolio(self) -> Portfolio:
        portfolio = self.account.portfolio
        assert portfolio is not None
        return portfolio

    def working_entries(self) -> list[OrderIntent]:
        """Entry orders at the market and not yet filled, oldest first."""
        orders = [o for o in self.market.working() if o.purpose == "entry"]
        return sorted(orders, key=lambda o: o.created_at)

    # --- the market -----------------------------------------------------------------

    def on_candle(self, candle: Candle) -> list[Step]:
        """One closed candle: fills (working orders, then a bracket), marks, agents, and
        the proposal they make (decided at once where the policy does)."""
        symbol = candle.symbol
        if self.market.active(symbol):
            steps = self.execution.on_candle(candle)
            if steps:
                self._equity_moved = True
        elif not self.market.matching and symbol in self.portfolio.positions:
            hit = self.execution.live_trigger(candle)
            steps = [] if hit is None else [self._exit(hit[0], hit[1], candle.ts)]
        else:
            steps = []
        self.candles_seen += 1
        self.marks.set(symbol, candle.close)
        if symbol in self.portfolio.positions:
            self._equity_moved = True
        self.risk.on_candle(symbol, candle.ts, candle.close)
        proposal, messages = self.signals.on_candle(
            candle, propose=self.proposing, message_ts=self.market_ts
        )
        if messages:
            steps.append(Step(self.new_work(), list(messages)))
        if proposal is None:
            return steps
        if self.on_opposite != "ignore":
            held = self.portfolio.positions.get(symbol)
            if held is not None and held.side is not proposal.side:
                if not self.closing(symbol):
                    steps.append(self.close_position(symbol, "opposite signal"))
                if self.on_opposite == "exit":
                    return steps
        if proposal.side is Side.SHORT and not self.shorts:
            return steps  # made only to close a long (above)
        if self.risk.state is not TradingState.ACTIVE:
            return steps  # no new entries: nothing to propose
        preview = self.size_entry(proposal, None, proposal.created_at, record=False)
        if not preview.allowed:
            proposal = evolve(proposal, risk_note=preview.reason)
        else:
            proposal = evolve(proposal, size=preview.quantity)
        steps.append(self._propose(proposal))
        return steps

    def warm(self, candle: Candle) -> None:
        """History from before a restart: the agents and the marks see it, nothing more
        (no fill, stop, take-profit or proposal, no message)."""
        self.marks.set(candle.symbol, candle.close)
        self.risk.on_candle(candle.symbol, candle.ts, candle.close)
        self.signals.on_candle(candle, propose=False, message_ts=self.market_ts)

    def skip(self, symbol: str, count: int, ts: list[int], closes: list[float]) -> None:
        """Count ``count`` candles of ``symbol`` that a backtest did not feed one by one
        (``ts`` and ``closes``: the last of them, oldest first, at least the last one).

        Only for quiet candles, which the backtest driver has checked: they fill no
        order and trigger no bracket, no agent votes on them, and they close none of
        the learning agent's followed trades. What the core keeps from every candle
        is kept from them: the count, the mark, the correlation window, the
        learning agent's clock.
        """
        self.candles_seen += count
        self.learning.skip(symbol, count)
        self.risk.skip(symbol, ts, closes)
        self.marks.set(symbol, closes[-1])
        if symbol in self.portfolio.positions:
            self._equity_moved = True

    def observe(self, now: int) -> list[Step]:
        """An equity point at market time ``now`` at the marks as they are, with no
        batch around it: a backtest's highest equity between the candles it feeds,
        so the drawdown peak is the one the live path would have."""
        changes = self.risk.on_equity(now, self.account.equity())
        return [self._state_changes(changes)] if changes else []

    def new_day(self, now: int) -> bool:
        """Whether market time ``now`` starts a UTC day after the account's."""
        day = self.account.day
        return day is not None and now // DAY_MS > day

    def after_batch(self, now: int) -> list[Step]:
        """The end of a batch at market time ``now``: expiries, the learning record,
        trading state from equity, and the equity point (announced last)."""
        self.market_ts = now
        steps = [self.expire(p) for p in self.desk.due(now)]
        rows = self.learning.take_dirty()
        closed = self.learning.take_closed()
        if rows or closed:
            work = self.new_work()
            work.agent_records(rows)
            work.counterfactuals(closed)
            steps.append(Step(work))
        last = self._last_point
        if last is None or self._equity_moved or self.new_day(now):
            # The account rolls the day over (today's realized P&L restarts) and raises
            # the peak; with equity unmoved on the same day nothing of that can change.
            changes = self.risk.on_equity(now, self.account.equity())
            if changes:
                steps.append(self._state_changes(changes))
            snap = self.account.snapshot()
            event = EquityUpdated(
                ts=now,
                equity=snap.equity,
                cash=snap.cash,
                unrealized=snap.unrealized,
                realized_today=snap.realized_today,
                drawdown=snap.drawdown,
            )
            self._equity_moved = False
        else:
            event = EquityUpdated(
                ts=now,
                equity=last.equity,
                cash=last.cash,
                unrealized=last.unrealized,
                realized_today=last.realized_today,
                drawdown=last.drawdown,
            )
        self._last_point = event
        steps.append(Step(self.new_work(), [event]))
        return steps

    def apply_fill(self, fill: Fill) -> Step:
        """A fill from outside the paper market (a live broker's). An exit's fill that
        leaves less of the position than the market can trade closes it: the rest is
        dust, written off in the same unit of work (see :meth:`_dust_into`)."""
        self._equity_moved = True
        gate = self.order_gate
        pos = self.portfolio.positions.get(fill.symbol)
        if (
            gate is None
            or pos is None
            or pos.side is not Side.LONG
            or fill.side is not OrderSide.SELL
            or not fill.qty < pos.qty
        ):
            return self.execution.apply_fill(fill)
        rest = pos.qty - fill.qty
        why = gate.fit_exit(fill.symbol, rest, fill.price)
        if not isinstance(why, str):
            return self.execution.apply_fill(fill)  # a tradable rest stays a position
        step = self.execution.apply_fill(fill, rest)
        self._dust_into(step, fill.symbol, rest, fill.ts, why)
        return step

    def _dust_into(self, step: Step, symbol: str, qty: Decimal, ts: int, why: str) -> None:
        """``qty`` of ``symbol`` written off as dust: counted as held on the exchange (in
        the store with ``step``), and said once."""
        base = symbol.partition("/")[0]
        total = self.dust.get(base, Decimal(0)) + qty
        self.dust[base] = total
        work = step.work
        work.set_state(f"dust:{base}", format(total, "f"))
        text = (
            f"dust {format(qty, 'f')} {base} left on the exchange: too small to trade ({why});"
            f" {symbol} closed, the dust written off at zero proceeds"
        )
        step.events.append(work.event(EngineMessage(ts=ts, text=text)))

    # --- proposals and decisions ----------------------------------------------------

    def _propose(self, proposal: Proposal) -> Step:
        """Queue (or merge) a proposal; where the policy decides at once, its decision
        goes into the same unit of work, after the queue's evictions."""
        offered = self.desk.offer(proposal)
        work = self.new_work()
        events: list[EngineEvent]
        if offered.merged:
            events = [
                work.proposal_merged(
                    ProposalMerged(
                        ts=proposal.created_at,
                        proposal_id=offered.proposal.id,
                        merged=offered.proposal.merged,
                        confidence=offered.proposal.confidence,
                    )
                )
            ]
        else:
            events = [work.proposal_created(proposal, proposal.created_at)]
        for old in offered.evicted:
            events += self._expire_into(work, old, "queue full: oldest expired first")
        send: list[OrderIntent] = []
        verdict = self.desk.verdict(offered.proposal)
        # A merge can lift a queued proposal's confidence over the auto threshold: the
        # policy decides again, or it would wait out its time to live unseen.
        if verdict is Verdict.APPROVE:
            _, more, intent = self._approve_into(work, offered.proposal.id, None, "policy")
            events += more
            if intent is not None:
                send.append(intent)
        elif verdict is Verdict.REJECT and not offered.merged:
            _, more = self._reject_into(work, proposal.id, RejectReason.POLICY, "policy")
            events += more
        return Step(work, events, send)

    def size_entry(
        self,
        proposal: Proposal,
        size: Decimal | None,
        now: int,
        *,
        record: bool = True,
        human: bool = False,
    ) -> RiskCheck:
        """The risk engine's answer for an entry (its pre-checks, then the limits and
        the sizer); a bad input is a denial, never an error."""
        positions: Mapping[str, Position] = self.portfolio.positions
        committed = self.execution.committed_positions()
        if self.on_opposite == "reverse" and self.execution.tracker.closing(proposal.symbol):
            # Reversing: the position is on its way out (its exit fills first).
            positions = {k: v for k, v in positions.items() if k != proposal.symbol}
            committed = [p for p in committed if p.symbol != proposal.symbol]
        return self.risk.check_entry(
            proposal,
            size,
            positions=positions,
            committed=committed,
            marks=self.marks,
            edge=self.learning.edge(proposal),
            ts=now,
            record=record,
            human=human,
            equity=self.portfolio.equity(self.marks),
        )

    def preview_entry(self, proposal_id: str, size: Decimal | None = None) -> RiskCheck:
        """What approving ``proposal_id`` (at ``size``) would get from the risk limits now;
        nothing is recorded."""
        proposal = self.router.get(proposal_id)
        if proposal is None:
            raise CommandError(f"proposal {proposal_id} is no longer pending")
        return self.size_entry(proposal, size, self.market_ts, record=False, human=True)

    def approve(self, proposal_id: str, size: Decimal | None, by: By = "human") -> Step:
        """Approve a pending proposal (``size`` resizes it): the decision and its order, or
        its denial. CommandError if it is no longer pending."""
        work = self.new_work()
        p, events, intent = self._approve_into(work, proposal_id, size, by)

        def undo() -> None:
            if intent is not None:
                self.execution.cancel(intent.client_order_id)
            self.desk.release(p)

        return Step(work, events, [] if intent is None else [intent], undo)

    def _approve_into(
        self, work: UnitOfWork, proposal_id: str, size: Decimal | None, by: By
    ) -> tuple[Proposal, list[EngineEvent], OrderIntent | None]:
        p = self.desk.claim(proposal_id)
        # A policy decides on the candle that made the proposal, before the batch ends:
        # the decision is dated at that candle's close, not the batch before.
        now = max(self.market_ts, p.created_at)
        rd = self.size_entry(p, size, now, human=by == "human")
        gate = self.order_gate
        if rd.allowed and gate is not None:
            price = self.marks.get(p.symbol, p.entry)
            fitted = gate.fit(p.symbol, rd.quantity, price, now)
            if isinstance(fitted, str):
                rd = RiskCheck(allowed=False, quantity=Decimal(0), reason=fitted)
            else:
                rd = RiskCheck(allowed=True, quantity=fitted, reason=rd.reason)
                gate.record(work, p.symbol, fitted, price, now)
        reason = None if rd.allowed else rd.reason
        intent = self.execution.entry_intent(
            p, rd.quantity if rd.allowed else max(size or p.size, QTY_QUANTUM), now, reason or ""
        )
        decision = self.desk.decide(
            p,
            DecisionAction.APPROVE,
            now,
            by,
            size=intent.qty,
            resized=size is not None and size != p.size,
        )
        events: list[EngineEvent] = [work.decision_made(decision, p.symbol, p.side, intent)]
        self.desk.done(p.id)
        if not rd.allowed:
            denied = OrderDenied(
                ts=now,
                symbol=p.symbol,
                reason=reason or "denied",
                proposal_id=p.id,
                client_order_id=intent.client_order_id,
            )
            events.append(work.order_denied(denied))
            return p, events, None
        events.append(work.order_submitted(intent, now))
        self.execution.send_entry(intent, p)
        return p, events, intent

    def reject(self, proposal_id: str, reason: RejectReason, by: By = "human") -> Step:
        """Reject a pending proposal with a reason code."""
        work = self.new_work()
        p, events = self._reject_into(work, proposal_id, reason, by)

        def undo() -> None:
            self.learning.unfollow(p)
            self.desk.release(p)

        return Step(work, events, on_failed=undo)

    def _reject_into(
        self, work: UnitOfWork, proposal_id: str, reason: RejectReason, by: By
    ) -> tuple[Proposal, list[EngineEvent]]:
        p = self.desk.claim(proposal_id)
        decision = self.desk.decide(
            p, DecisionAction.REJECT, max(self.market_ts, p.created_at), by, reason=reason.value
        )
        event = work.decision_made(decision, p.symbol, p.side, None)
        self.desk.done(p.id)
        self.learning.follow(p)
        return p, [event]

    def expire(self, p: Proposal, reason: str = "time to live ran out") -> Step:
        """Expire a claimed proposal."""
        work = self.new_work()
        return Step(work, self._expire_into(work, p, reason))

    def _expire_into(self, work: UnitOfWork, p: Proposal, reason: str) -> list[EngineEvent]:
        decision = self.desk.decide(
            p, DecisionAction.EXPIRE, max(self.market_ts, p.created_at), "engine", reason=reason
        )
        event = work.decision_made(decision, p.symbol, p.side, None)
        self.desk.done(p.id)
        self.learning.follow(p)
        return [event]

    def expire_pending(self) -> list[Step]:
        """Expire every pending proposal (on stop)."""
        return [self.expire(p) for p in self.desk.claim_all()]

    def set_policy(self, policy: str, auto_confidence: float | None = None) -> Step:
        """Switch the approval policy (manual, auto above a confidence, queue-only)."""
        text = self.desk.set_policy(policy, auto_confidence)
        work = self.new_work()
        return Step(work, [work.event(EngineMessage(ts=self.market_ts, text=text))])

    # --- trading state ----------------------------------------------------------------

    def halt(self, reason: str) -> Step | None:
        """Stop new entries until :meth:`resume_trading`; None if already halted."""
        changes = self.risk.halt(self.market_ts, reason)
        self._equity_moved = True
        return self._state_changes(changes) if changes else None

    def hold(self, reason: str) -> Step | None:
        """Exits only while ``reason`` lasts (an exchange's open circuit breaker); None if
        nothing changed."""
        changes = self.risk.hold(self.market_ts, reason)
        self._equity_moved = True
        return self._state_changes(changes) if changes else None

    def release(self, reason: str) -> Step | None:
        """End a :meth:`hold`; None if trading stays as it is."""
        changes = self.risk.release(self.market_ts, reason)
        self._equity_moved = True
        return self._state_changes(changes) if changes else None

    def resume_trading(self, reason: str) -> Step | None:
        """Leave HALTED or REDUCING by command; None if trading was ACTIVE."""
        held = self.risk.held
        if held is not None:
            raise CommandError(f"cannot resume while {held}")
        changes = self.risk.resume(self.market_ts, reason)
        self._equity_moved = True
        return self._state_changes(changes, rebased=True) if changes else None

    def _state_changes(self, changes: list[TradingStateChanged], *, rebased: bool = False) -> Step:
        """Trading state changes; ``rebased`` (a resume by command) also stores when the
        account's peak restarted, so a restart measures from the same peak."""
        work = self.new_work()
        events: list[EngineEvent] = [work.trading_state_changed(c) for c in changes]
        work.set_state("halted_by_limit", "1" if self.risk.halted_by_limit else "0")
        if rebased:
            work.set_state("risk_rebased_at", str(self.market_ts))
        return Step(work, events)

    # --- exits ------------------------------------------------------------------------

    def closing(self, symbol: str) -> bool:
        return self.execution.tracker.closing(symbol)

    def close_position(self, symbol: str, reason: str = "closed by hand") -> Step:
        """A market order closing ``symbol``; it fills at the next price."""
        pos = self.portfolio.positions.get(symbol)
        if pos is None:
            raise CommandError(f"no open position in {symbol}")
        if self.closing(symbol):
            raise CommandError(f"{symbol} is already being closed")
        check = self.risk.check_exit(self.market_ts, pos)
        if not check.allowed:
            raise CommandError(check.reason)
        return self._exit(pos, reason, self.market_ts)

    def _exit(self, pos: Position, reason: str, now: int) -> Step:
        """The exit order closing ``pos``. Beside an order gate it sends the quantity
        rounded down to the market's step; a long too small to trade at all (dust) is
        closed at once, written off at zero proceeds, and nothing is sent."""
        gate = self.order_gate
        if gate is None or pos.side is not Side.LONG:
            return self.execution.exit_order(pos, reason, now)
        fitted = gate.fit_exit(pos.symbol, pos.qty, self.marks.get(pos.symbol, pos.entry_price))
        if not isinstance(fitted, str):
            return self.execution.exit_order(pos, reason, now, fitted)
        self._equity_moved = True
        step = self.execution.write_off(pos, f"{reason}, written off as dust", now)
        self.written_off += pos.cost_basis
        step.work.set_state("dust_written_off", format(self.written_off, "f"))
        self._dust_into(step, pos.symbol, pos.qty, now, fitted)
        return step

    def cancel_entry(self, client_order_id: str, reason: str) -> Step | None:
        """Cancel a working entry order; None if it is not working."""
        return self.execution.cancel_order(client_order_id, reason, self.market_ts)

    def close_at_mark(self, pos: Position, reason: str = "closed on stop") -> Step:
        """Close ``pos`` at its last mark (no next price: the feed has stopped)."""
        mark = self.marks.get(pos.symbol, pos.entry_price)
        self._equity_moved = True
        return self.execution.fill_now(
            self.execution.exit_intent(pos, reason, self.market_ts), mark
        )
