"""Execution: the order tracker, entry and exit orders, and fills into the account.

No awaits. Orders reach the paper market (:class:`~engine.broker.PaperBroker`)
at decision time; each fill is applied to the portfolio through the account and
recorded into a unit of work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from engine.account import Account
from engine.broker.paper import PaperBroker
from engine.events import EngineEvent, PositionClosed
from engine.ids import new_id
from engine.learning import LearningAgent
from engine.models import (
    Candle,
    Fill,
    OrderIntent,
    OrderSide,
    Position,
    Proposal,
    Side,
    evolve,
    q_cash,
    stop_or_take_profit,
    to_decimal,
)
from engine.portfolio import FillOutcome, Portfolio
from engine.ports import UnitOfWork
from engine.step import Step


@dataclass(slots=True)
class Working:
    """One working order: its intent, what it is for, and why."""

    intent: OrderIntent
    purpose: Literal["entry", "exit"]
    #: The proposal behind an entry (its stop, take-profit and votes).
    proposal: Proposal | None = None
    #: Why an exit closes its position ("" for an entry).
    reason: str = ""


class OrderTracker:
    """Every working order by client order id, which symbols are closing, and the
    proposal behind each open position."""

    def __init__(self) -> None:
        self._working: dict[str, Working] = {}
        self._closing: dict[str, int] = {}  # symbol → exit orders working
        #: The proposal behind each open position (for the learning agent).
        self.held: dict[str, Proposal] = {}

    def track(self, order: Working) -> None:
        self._working[order.intent.client_order_id] = order
        if order.purpose == "exit":
            symbol = order.intent.symbol
            self._closing[symbol] = self._closing.get(symbol, 0) + 1

    def pop(self, client_order_id: str) -> Working | None:
        """Stop tracking an order (filled or cancelled); None if it was not tracked."""
        order = self._working.pop(client_order_id, None)
        if order is not None and order.purpose == "exit":
            symbol = order.intent.symbol
            left = self._closing.get(symbol, 0) - 1
            if left > 0:
                self._closing[symbol] = left
            else:
                self._closing.pop(symbol, None)
        return order

    def get(self, client_order_id: str) -> Working | None:
        return self._working.get(client_order_id)

    def closing(self, symbol: str) -> bool:
        """Whether an exit order for ``symbol`` is working."""
        return symbol in self._closing

    def entries(self) -> list[Working]:
        """Working entry orders (with their proposal), oldest first."""
        out = [w for w in self._working.values() if w.purpose == "entry"]
        return sorted(out, key=lambda w: w.intent.created_at)

    def __len__(self) -> int:
        return len(self._working)


class Execution:
    """Orders to the paper market, fills into the account, outcomes into the store."""

    def __init__(
        self,
        market: PaperBroker,
        account: Account,
        learning: LearningAgent,
        new_work: Callable[[], UnitOfWork],
        *,
        brackets: bool = True,
    ) -> None:
        self.market = market
        #: Whether positions get their proposal's stop and take-profit (``strategy.brackets``).
        self.brackets = brackets
        self.account = account
        self.learning = learning
        self.new_work = new_work
        self.tracker = OrderTracker()

    @property
    def portfolio(self) -> Portfolio:
        portfolio = self.account.portfolio
        assert portfolio is not None
        return portfolio

    # --- orders ---------------------------------------------------------------------

    @staticmethod
    def entry_intent(proposal: Proposal, qty: Decimal, now: int, reason: str = "") -> OrderIntent:
        # Derived from the proposal (one proposal, one decision, at most one entry): the
        # client order id an exchange sees names the decision behind it.
        _, _, tail = proposal.id.partition("-")
        return OrderIntent(
            client_order_id=f"ord-{tail or new_id('x')}",
            proposal_id=proposal.id,
            symbol=proposal.symbol,
            side=OrderSide.BUY if proposal.side is Side.LONG else OrderSide.SELL,
            qty=qty,
            purpose="entry",
            created_at=now,
            reason=reason,
        )

    @staticmethod
    def exit_intent(
        pos: Position, reason: str, now: int, qty: Decimal | None = None
    ) -> OrderIntent:
        """A market order closing ``pos`` (``qty`` of it: live, rounded down to the step)."""
        return PaperBroker.exit_intent(
            pos.symbol, pos.side, pos.qty if qty is None else qty, reason, now
        )

    def send_entry(self, intent: OrderIntent, proposal: Proposal) -> None:
        """Track an entry and hand it to the paper market (its bracket goes with it)."""
        self.tracker.track(Working(intent, "entry", proposal))
        if self.brackets:
            self.market.accept(intent, proposal.stop, proposal.take_profit)
        else:
            self.market.accept(intent)

    def send_exit(self, intent: OrderIntent, reason: str) -> None:
        self.tracker.track(Working(intent, "exit", None, reason))
        self.market.accept(intent)

    def cancel(self, client_order_id: str) -> Working | None:
        """Take a working order off the market; what it was, or None if not working."""
        if self.market.withdraw(client_order_id) is None:
            return None
        return self.tracker.pop(client_order_id)

    def exit_order(self, pos: Position, reason: str, now: int, qty: Decimal | None = None) -> Step:
        """A market order closing ``pos`` (``qty`` of it, see :meth:`exit_intent`): stored,
        then at the market (taken off again if it cannot be stored)."""
        intent = self.exit_intent(pos, reason, now, qty)
        work = self.new_work()
        work.intent_created(intent)
        event = work.order_submitted(intent, now)
        self.send_exit(intent, reason)
        coid = intent.client_order_id
        return Step(work, [event], [intent], on_failed=lambda: self._drop(coid))

    def _drop(self, client_order_id: str) -> None:
        self.cancel(client_order_id)

    def cancel_order(self, client_order_id: str, reason: str, now: int) -> Step | None:
        """Cancel a working order; None if it is not working. It leaves the market at
        once, and goes back if its cancellation cannot be stored."""
        order = self.cancel(client_order_id)
        if order is None:
            return None
        work = self.new_work()
        event = work.intent_cancelled(client_order_id, now, reason)
        return Step(work, [event], on_failed=lambda: self.resend(order))

    def resend(self, order: Working) -> None:
        """Put a cancelled order back (its cancellation could not be stored)."""
        if order.purpose == "entry" and order.proposal is not None:
            self.send_entry(order.intent, order.proposal)
        else:
            self.send_exit(order.intent, order.reason)

    def restore(self, intent: OrderIntent, proposal: Proposal | None) -> None:
        """An order sent before a restart: still working (it fills at the next price).
        An entry whose proposal is gone is tracked as closing its symbol, as before."""
        if intent.purpose == "entry" and proposal is not None:
            self.send_entry(intent, proposal)
        else:
            self.tracker.track(Working(intent, "exit", None, intent.reason or "exit"))
            self.market.accept(intent)

    def committed_positions(self) -> list[Position]:
        """Open positions plus entry orders not yet filled, as the risk limits see them.

        Without the orders, several approvals between two candles would each
        see the same exposure and together pass the limits.
        """
        held = dict(self.portfolio.positions)
        for order in self.tracker.entries():
            proposal = order.proposal
            if proposal is None:
                continue
            intent = order.intent
            pos = held.get(intent.symbol)
            if pos is None:
                held[intent.symbol] = Position(
                    symbol=intent.symbol,
                    side=proposal.side,
                    qty=intent.qty,
                    entry_price=proposal.entry,
                    cost_basis=q_cash(intent.qty * proposal.entry),
                    opened_at=intent.created_at,
                )
            elif pos.side is proposal.side:
                held[intent.symbol] = evolve(pos, qty=pos.qty + intent.qty)
        return list(held.values())

    # --- fills ----------------------------------------------------------------------

    def on_candle(self, candle: Candle) -> list[Step]:
        """The fills ``candle`` brings, each its own Step: working orders, then a bracket."""
        fills = self.market.on_candle(candle)
        if not fills:
            return []
        return [self.apply_fill(fill) for fill in fills]

    def live_trigger(self, candle: Candle) -> tuple[Position, str] | None:
        """Beside a live broker: the position whose stop or take-profit ``candle`` hit, and
        which (the core sends its exit order, which the exchange fills), once."""
        pos = self.portfolio.positions.get(candle.symbol)
        if pos is None or not self.brackets or self.tracker.closing(candle.symbol):
            return None
        hit = stop_or_take_profit(
            pos.side,
            pos.stop,
            pos.take_profit,
            to_decimal(candle.open),
            to_decimal(candle.high),
            to_decimal(candle.low),
        )
        return None if hit is None else (pos, hit[1])

    def apply_fill(self, fill: Fill, dust: Decimal = Decimal(0)) -> Step:
        """One fill into the portfolio and one unit of work. A bracket's exit brings its
        intent and order into the same unit of work. ``dust``: what the fill leaves of
        its position that the market cannot trade (written off, see
        :meth:`Portfolio.apply_fill`)."""
        work = self.new_work()
        events: list[EngineEvent] = []
        if not self.market.matching:
            self.market.settle(fill)
        triggered = self.market.take_triggered(fill.client_order_id)
        if triggered is not None:
            work.intent_created(triggered)
            events.append(work.order_submitted(triggered, fill.ts))
            outcome = self.portfolio.apply_fill(fill, reason=triggered.reason)
        else:
            order = self.tracker.pop(fill.client_order_id)
            proposal = order.proposal if order is not None else None
            levels = proposal if proposal is not None and self.brackets else None
            outcome = self.portfolio.apply_fill(
                fill,
                stop=levels.stop if levels is not None else None,
                take_profit=levels.take_profit if levels is not None else None,
                proposal_id=proposal.id if proposal is not None else None,
                reason=order.reason if order is not None else "",
                dust=dust,
            )
            if proposal is not None and outcome.opened is not None:
                self.tracker.held[fill.symbol] = proposal
        events += self.record_outcome(work, outcome)
        return Step(work, events)

    def fill_now(self, intent: OrderIntent, price: Decimal) -> Step:
        """An exit filled at a known price (a close on stop at the last mark): intent,
        order and fill in one unit of work."""
        ts = intent.created_at
        work = self.new_work()
        work.intent_created(intent)
        events: list[EngineEvent] = [work.order_submitted(intent, ts)]
        fill = self.market.fill_at(intent, price, ts)
        outcome = self.portfolio.apply_fill(fill, reason=intent.reason)
        events += self.record_outcome(work, outcome)
        return Step(work, events)

    def write_off(self, pos: Position, reason: str, now: int) -> Step:
        """Close ``pos`` as dust, with no order (it is too small to trade): its cost
        basis is realized at zero proceeds, in one unit of work."""
        work = self.new_work()
        closed = self.portfolio.write_off(pos.symbol, now, reason)
        self.account.realize(closed.realized_pnl - pos.realized_pnl)
        return Step(work, self._closed_into(work, closed))

    def record_outcome(self, work: UnitOfWork, outcome: FillOutcome) -> list[EngineEvent]:
        """The statements of one fill: fill, order, position, cash, learning record."""
        events: list[EngineEvent] = [work.order_filled(outcome.record, outcome.cash)]
        ts = outcome.record.ts
        self.account.realize(outcome.record.realized_pnl - outcome.record.fee)
        if outcome.opened is not None:
            events.append(work.position_opened(outcome.opened, ts))
        if outcome.changed is not None:
            events.append(work.position_changed(outcome.changed, ts))
        if outcome.closed is not None:
            events += self._closed_into(work, outcome.closed)
        return events

    def _closed_into(self, work: UnitOfWork, closed: PositionClosed) -> list[EngineEvent]:
        """A closed position into ``work``, and its trade into the learning record."""
        event = work.position_closed(closed)
        cost = q_cash(closed.qty * closed.entry_price)
        ret = float((closed.realized_pnl - closed.fees) / cost) if cost > 0 else 0.0
        self.learning.on_trade_closed(
            self.tracker.held.pop(closed.symbol, None), closed.symbol, ret
        )
        work.agent_records(self.learning.take_dirty())
        work.counterfactuals(self.learning.take_closed())
        return [event]
