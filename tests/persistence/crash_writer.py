"""The writer half of the crash test, and the test-only reference accounting.

Run as ``python crash_writer.py DB_PATH SEED [UNITS_LOG]``: it opens the real
:class:`persistence.store.Store`, rebuilds its state with ``load_state()`` and
then loops until it is killed, committing the units of work a real engine
commits (a proposal is made; it is approved with an order intent, rejected or
expired; the order is sent; the fill moves the position and the cash; exits are
ordered), each as ONE unit of work. After each commit returns it appends one
line naming the unit to ``UNITS_LOG`` (default ``DB_PATH.units``) and fsyncs it,
so every line in that file names a unit that must survive a crash.

:class:`Book` is the reference accounting (long and short, partial closes,
flips), exact in :class:`~decimal.Decimal` to 8 places. It keeps
``cash + Σ open sign × cost_basis == initial + Σ realized − Σ fees`` true after
every fill; ``tests/persistence/test_checks.py`` reuses it.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from engine.models import (
    AgentVote,
    Decision,
    DecisionAction,
    Fill,
    OrderIntent,
    OrderSide,
    Position,
    PositionClosed,
    Proposal,
    Side,
    TradingState,
    TradingStateChanged,
    evolve,
    new_id,
    q_cash,
    q_price,
)
from engine.ports import AgentRecordRow, UnitOfWork
from persistence.store import Store

INITIAL_CASH = Decimal("100000")
CURRENCY = "USDT"
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
START_PRICES = ("60000", "3000", "150")
EIGHT = Decimal("0.00000001")


# --- the reference accounting -------------------------------------------------------


@dataclass(slots=True)
class FillPlan:
    """What one fill does, computed before the unit of work commits."""

    fill: Fill
    cash: Decimal
    positions: dict[str, Position]
    closed: PositionClosed | None = None
    changed: Position | None = None
    opened: Position | None = None

    def write(self, uow: UnitOfWork) -> None:
        """Add the fill, its position change(s) and the new cash to ``uow``."""
        if self.closed is not None:
            uow.position_closed(self.closed)
        if self.changed is not None:
            uow.position_changed(self.changed, self.fill.ts)
        if self.opened is not None:
            uow.position_opened(self.opened, self.fill.ts)
        uow.order_filled(self.fill, self.cash)


@dataclass(slots=True)
class Book:
    """Cash and open positions, as exact as the store keeps them."""

    cash: Decimal
    positions: dict[str, Position] = field(default_factory=dict)

    def plan_fill(
        self,
        client_order_id: str,
        symbol: str,
        side: OrderSide,
        qty: Decimal,
        price: Decimal,
        fee: Decimal,
        ts: int,
        proposal_id: str | None = None,
    ) -> FillPlan:
        """The effect of one fill; :meth:`apply` it once its unit has committed.

        A buy adds to a long or covers a short; a sell adds to a short or reduces
        a long. A fill larger than the opposite position closes it and opens the
        rest the other way. Notionals are rounded to 8 places once and that same
        amount moves both cash and cost basis, so the books balance exactly.
        """
        positions = dict(self.positions)
        direction = Side.LONG if side is OrderSide.BUY else Side.SHORT
        flow = 1 if side is OrderSide.SELL else -1  # selling brings cash in
        cash = self.cash - fee
        realized = Decimal(0)
        remaining = qty
        closed: PositionClosed | None = None
        changed: Position | None = None
        opened: Position | None = None
        pos = positions.get(symbol)
        if pos is not None and pos.side is not direction:
            close_qty = min(qty, pos.qty)
            notional = q_cash(close_qty * price)
            removed = (
                pos.cost_basis
                if close_qty == pos.qty
                else q_cash(pos.cost_basis * close_qty / pos.qty)
            )
            realized = (notional - removed) * pos.side.sign
            cash += flow * notional
            fee_close = fee if close_qty == qty else q_cash(fee * close_qty / qty)
            remaining = qty - close_qty
            if close_qty == pos.qty:
                closed = PositionClosed(
                    ts=ts,
                    symbol=symbol,
                    side=pos.side,
                    qty=pos.qty,
                    entry_price=pos.entry_price,
                    exit_price=price,
                    realized_pnl=pos.realized_pnl + realized,
                    fees=pos.fees + fee_close,
                    reason="exit" if remaining == 0 else "flip",
                    opened_at=pos.opened_at,
                )
                del positions[symbol]
            else:
                changed = evolve(
                    pos,
                    qty=pos.qty - close_qty,
                    cost_basis=pos.cost_basis - removed,
                    realized_pnl=pos.realized_pnl + realized,
                    fees=pos.fees + fee_close,
                )
                positions[symbol] = changed
            fee_open = fee - fee_close
        else:
            fee_open = fee
        if remaining > 0:
            notional = q_cash(remaining * price)
            cash += flow * notional
            same = positions.get(symbol)
            if same is not None:
                qty_after = same.qty + remaining
                cost_after = same.cost_basis + notional
                changed = evolve(
                    same,
                    qty=qty_after,
                    cost_basis=cost_after,
                    entry_price=q_price(cost_after / qty_after),
                    fees=same.fees + fee_open,
                )
                positions[symbol] = changed
            else:
                opened = Position(
                    symbol=symbol,
                    side=direction,
                    qty=remaining,
                    entry_price=price,
                    cost_basis=notional,
                    opened_at=ts,
                    proposal_id=proposal_id,
                    fees=fee_open,
                )
                positions[symbol] = opened
        fill = Fill(
            client_order_id=client_order_id,
            symbol=symbol,
            side=side,
            qty=qty,
            price=price,
            fee=fee,
            realized_pnl=realized,
            ts=ts,
        )
        return FillPlan(fill, cash, positions, closed, changed, opened)

    def apply(self, plan: FillPlan) -> None:
        self.cash = plan.cash
        self.positions = plan.positions

    def reconciles(self, initial: Decimal, realized: Decimal, fees: Decimal) -> bool:
        held = sum((p.side.sign * p.cost_basis for p in self.positions.values()), Decimal(0))
        return self.cash + held == initial + realized - fees


def eight(rng: random.Random, low: Decimal, high: Decimal) -> Decimal:
    """A random Decimal with 8 decimal places in [low, high]."""
    return Decimal(rng.randint(int(low / EIGHT), int(high / EIGHT))) * EIGHT


# --- the writer -----------------------------------------------------------------------


class UnitsLog:
    """Append-only lines, each fsynced before the next unit starts."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        # A kill cannot split one write(2) of a short line, but be safe: never
        # glue a new line onto a torn one.
        if path.stat().st_size:
            with path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self.line("")

    def line(self, text: str) -> None:
        os.write(self._fd, (text + "\n").encode())
        os.fsync(self._fd)


class Writer:
    def __init__(self, db_path: str, seed: int, log: UnitsLog) -> None:
        self.db_path = db_path
        self.seed = seed
        self.rng = random.Random(seed)
        self.log = log
        self.book = Book(INITIAL_CASH)
        self.pending: dict[str, Proposal] = {}
        self.intents: dict[str, tuple[OrderIntent, str]] = {}  # id -> (intent, pending|sent)
        self.prices = {s: Decimal(p) for s, p in zip(SYMBOLS, START_PRICES, strict=True)}
        self.ts = int(time.time() * 1000)
        self.seq = 0

    def now(self) -> int:
        self.ts = max(self.ts + 1, int(time.time() * 1000))
        return self.ts

    def price(self, symbol: str) -> Decimal:
        move = Decimal(self.rng.randint(-200, 200)) / Decimal(10000)  # ±2 %
        self.prices[symbol] = q_price(self.prices[symbol] * (1 + move))
        return self.prices[symbol]

    async def run(self) -> None:
        store = await Store.open(self.db_path)
        state = await store.load_state()
        if state.is_fresh:
            await store.init_balance(CURRENCY, INITIAL_CASH, self.now())
            state = await store.load_state()
        assert state.cash is not None
        self.book = Book(state.cash, {p.symbol: p for p in state.positions})
        self.pending = {p.id: p for p in state.pending}
        self.intents = {o.intent.client_order_id: (o.intent, o.status) for o in state.open_intents}
        self.seq = int(state.state.get("bookkeeping_seq", "0"))
        self.log.line(
            f"recovered {self.seed} pending={len(self.pending)} intents={len(self.intents)}"
            f" positions={len(self.book.positions)} cash={self.book.cash}"
        )
        await store.begin_session("paper", "sim", "{}", self.now())
        while True:
            await self.step(store)

    async def step(self, store: Store) -> None:
        rng = self.rng
        roll = rng.random()
        to_send = [i for i, (_, st) in self.intents.items() if st == "pending"]
        to_fill = [i for i, (_, st) in self.intents.items() if st == "sent"]
        if roll < 0.25 or not (self.pending or to_send or to_fill):
            await self.propose(store)
        elif roll < 0.45 and self.pending:
            await self.decide(store)
        elif roll < 0.6 and to_send:
            await self.submit(store, rng.choice(to_send))
        elif roll < 0.85 and to_fill:
            await self.fill(store, rng.choice(to_fill))
        elif roll < 0.93 and self.book.positions:
            await self.exit(store)
        else:
            await self.bookkeeping(store)

    async def propose(self, store: Store) -> None:
        symbol = self.rng.choice(SYMBOLS)
        entry = self.price(symbol)
        side = self.rng.choice((Side.LONG, Side.SHORT))
        ts = self.now()
        proposal = Proposal(
            id=new_id("prp"),
            symbol=symbol,
            side=side,
            entry=entry,
            stop=q_price(entry * (1 - side.sign * Decimal("0.02"))),
            take_profit=q_price(entry * (1 + side.sign * Decimal("0.04"))),
            confidence=round(self.rng.random(), 4),
            size=eight(self.rng, Decimal("0.001"), Decimal("20") / (entry / 100)),
            created_at=ts,
            expires_at=ts + 300_000,
            votes=(
                AgentVote(
                    agent="momentum",
                    symbol=symbol,
                    direction=side,
                    strength=0.6,
                    rationale="rsi turn",
                ),
            ),
        )
        async with store.unit_of_work() as uow:
            uow.proposal_created(proposal, ts)
        self.pending[proposal.id] = proposal
        self.log.line(f"proposal {proposal.id}")

    async def decide(self, store: Store) -> None:
        proposal = self.pending[self.rng.choice(sorted(self.pending))]
        ts = self.now()
        roll = self.rng.random()
        intent: OrderIntent | None = None
        if roll < 0.6:
            action = DecisionAction.APPROVE
            intent = OrderIntent(
                client_order_id=new_id("c"),
                proposal_id=proposal.id,
                symbol=proposal.symbol,
                side=OrderSide.BUY if proposal.side is Side.LONG else OrderSide.SELL,
                qty=proposal.size,
                purpose="entry",
                created_at=ts,
            )
        else:
            action = DecisionAction.REJECT if roll < 0.85 else DecisionAction.EXPIRE
        decision = Decision(
            proposal_id=proposal.id,
            action=action,
            reason=None if intent else "weak_signal",
            size=proposal.size if intent else None,
            latency_ms=self.rng.randint(0, 5000),
            decided_at=ts,
            decided_by="policy",
        )
        async with store.unit_of_work() as uow:
            uow.decision_made(decision, proposal.symbol, proposal.side, intent)
        del self.pending[proposal.id]
        if intent is not None:
            self.intents[intent.client_order_id] = (intent, "pending")
        coid = intent.client_order_id if intent else "-"
        self.log.line(f"decision {proposal.id} {action.value} {coid}")

    async def submit(self, store: Store, coid: str) -> None:
        intent, _ = self.intents[coid]
        async with store.unit_of_work() as uow:
            uow.order_submitted(intent, self.now())
        self.intents[coid] = (intent, "sent")
        self.log.line(f"submit {coid}")

    async def fill(self, store: Store, coid: str) -> None:
        intent, _ = self.intents[coid]
        price = self.price(intent.symbol)
        fee = q_cash(intent.qty * price * Decimal("0.001"))
        plan = self.book.plan_fill(
            coid, intent.symbol, intent.side, intent.qty, price, fee, self.now(), intent.proposal_id
        )
        async with store.unit_of_work() as uow:
            plan.write(uow)
        self.book.apply(plan)
        del self.intents[coid]
        self.log.line(f"fill {coid}")

    async def exit(self, store: Store) -> None:
        """Order an exit of part or all of a position (its own unit, no proposal)."""
        symbol = self.rng.choice(sorted(self.book.positions))
        pos = self.book.positions[symbol]
        part = pos.qty if self.rng.random() < 0.5 else max(EIGHT, (pos.qty / 2).quantize(EIGHT))
        intent = OrderIntent(
            client_order_id=new_id("c"),
            proposal_id=None,
            symbol=symbol,
            side=OrderSide.SELL if pos.side is Side.LONG else OrderSide.BUY,
            qty=part,
            purpose="exit",
            created_at=self.now(),
            reason="take profit",
        )
        async with store.unit_of_work() as uow:
            uow.intent_created(intent)
        self.intents[intent.client_order_id] = (intent, "pending")
        self.log.line(f"intent {intent.client_order_id}")

    async def bookkeeping(self, store: Store) -> None:
        """Engine state and the learning agent's record, under a rising sequence number."""
        self.seq += 1
        n = self.seq
        new = self.rng.choice(list(TradingState))
        async with store.unit_of_work() as uow:
            uow.set_state("bookkeeping_seq", str(n))
            uow.trading_state_changed(
                TradingStateChanged(ts=self.now(), old=TradingState.ACTIVE, new=new, reason="test")
            )
            uow.agent_records([AgentRecordRow(agent="momentum", symbol="*", trades=n, wins=n // 2)])
        self.log.line(f"state {n}")


def main() -> None:
    db_path, seed = sys.argv[1], int(sys.argv[2])
    log_path = Path(sys.argv[3] if len(sys.argv) > 3 else f"{db_path}.units")
    log = UnitsLog(log_path)
    print("ready", flush=True)
    asyncio.run(Writer(db_path, seed, log).run())


if __name__ == "__main__":
    main()
