"""The portfolio's money: random fills keep cash and cost basis reconciled to the unit,
in memory and through the real store (the checks of ``cma db check``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.models import (
    CASH_QUANTUM,
    Fill,
    OrderIntent,
    OrderSide,
    Side,
    q_cash,
)
from engine.portfolio import FillOutcome, Portfolio
from persistence.checks import run_checks
from persistence.store import Store

UNIT = Decimal("0.00000001")  # 8 places: quantities, prices and fees
INITIAL = Decimal("100000")
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
T0 = 1_767_225_600_000


def units(n: int) -> Decimal:
    return n * UNIT


@dataclass(frozen=True)
class Step:
    """One random fill, interpreted against the position it meets."""

    symbol: int
    kind: str  # "increase" (open or add), "partial" or "full" (close)
    buy: bool  # side of an opening fill
    qty: int  # units
    price: int  # units
    fee: int  # units
    fraction: float  # of the position, for a partial close


steps = st.lists(
    st.builds(
        Step,
        symbol=st.integers(0, len(SYMBOLS) - 1),
        kind=st.sampled_from(["increase", "partial", "full"]),
        buy=st.booleans(),
        qty=st.integers(1, 10**12),
        price=st.integers(1, 10**14),
        fee=st.integers(0, 10**9),
        fraction=st.floats(0.0, 1.0),
    ),
    min_size=1,
    max_size=40,
)


def fill_for(portfolio: Portfolio, step: Step, n: int) -> Fill:
    """The fill ``step`` makes against the portfolio's current position."""
    symbol = SYMBOLS[step.symbol]
    pos = portfolio.positions.get(symbol)
    if pos is None or step.kind == "increase":
        buy = step.buy if pos is None else pos.side is Side.LONG
        qty = units(step.qty)
    else:
        buy = pos.side is Side.SHORT
        held = int(pos.qty / UNIT)
        if step.kind == "full" or held < 2:
            qty = pos.qty
        else:
            qty = units(min(held - 1, max(1, round(step.fraction * held))))
    return Fill(
        client_order_id=f"ord-{n}",
        symbol=symbol,
        side=OrderSide.BUY if buy else OrderSide.SELL,
        qty=qty,
        price=units(step.price),
        fee=units(step.fee),
        ts=T0 + n * 60_000,
    )


def held_cost(portfolio: Portfolio) -> Decimal:
    """Σ long cost basis − Σ short cost basis."""
    return sum((p.cost_basis * p.side.sign for p in portfolio.positions.values()), Decimal(0))


def apply_all(portfolio: Portfolio, plan: list[Step]) -> list[tuple[Fill, FillOutcome]]:
    """Apply every step, checking the reconciliation identity after each fill."""
    realized = fees = Decimal(0)
    done: list[tuple[Fill, FillOutcome]] = []
    for n, step in enumerate(plan):
        fill = fill_for(portfolio, step, n)
        outcome = portfolio.apply_fill(fill)
        realized += outcome.record.realized_pnl
        fees += outcome.record.fee
        assert portfolio.cash + held_cost(portfolio) == INITIAL + realized - fees
        assert outcome.cash == portfolio.cash
        # Every amount stays on the store's unit: nothing is lost to rounding later.
        assert portfolio.cash == portfolio.cash.quantize(CASH_QUANTUM)
        for pos in portfolio.positions.values():
            assert pos.qty > 0
            assert pos.cost_basis == pos.cost_basis.quantize(CASH_QUANTUM)
        done.append((fill, outcome))
    return done


@settings(max_examples=300, deadline=None)
@given(plan=steps)
def test_random_fills_keep_cash_plus_cost_basis_equal_to_initial_plus_realized_minus_fees(
    plan: list[Step],
) -> None:
    apply_all(Portfolio(INITIAL), plan)


@settings(max_examples=200, deadline=None)
@given(plan=steps)
def test_closing_every_position_leaves_cash_equal_to_initial_plus_realized_minus_fees(
    plan: list[Step],
) -> None:
    portfolio = Portfolio(INITIAL)
    done = apply_all(portfolio, plan)
    for symbol, pos in list(portfolio.positions.items()):
        close = Fill(
            client_order_id=f"close-{symbol}",
            symbol=symbol,
            side=OrderSide.SELL if pos.side is Side.LONG else OrderSide.BUY,
            qty=pos.qty,
            price=Decimal("123.45678901"),
            fee=Decimal("0.5"),
            ts=T0,
        )
        done.append((close, portfolio.apply_fill(close)))
    assert portfolio.positions == {}
    realized = sum((o.record.realized_pnl for _, o in done), Decimal(0))
    fees = sum((o.record.fee for _, o in done), Decimal(0))
    assert portfolio.cash == INITIAL + realized - fees


@settings(max_examples=100, deadline=None)
@given(
    side=st.sampled_from([Side.LONG, Side.SHORT]),
    held=st.integers(1, 10**12),
    extra=st.integers(1, 10**12),
)
def test_a_fill_larger_than_the_position_it_reduces_raises_and_changes_nothing(
    side: Side, held: int, extra: int
) -> None:
    portfolio = Portfolio(INITIAL)
    opening = OrderSide.BUY if side is Side.LONG else OrderSide.SELL
    closing = OrderSide.SELL if side is Side.LONG else OrderSide.BUY
    portfolio.apply_fill(
        Fill(client_order_id="a", symbol="BTC/USDT", side=opening, qty=units(held),
             price=Decimal("100"), fee=Decimal("0.1"), ts=T0)
    )  # fmt: skip
    cash, positions = portfolio.cash, dict(portfolio.positions)
    too_big = Fill(
        client_order_id="b", symbol="BTC/USDT", side=closing, qty=units(held + extra),
        price=Decimal("101"), fee=Decimal("0.1"), ts=T0 + 1,
    )  # fmt: skip
    with pytest.raises(ValueError, match="exceeds the open position"):
        portfolio.apply_fill(too_big)
    assert portfolio.cash == cash
    assert portfolio.positions == positions


def test_long_equity_and_unrealized_at_a_mark() -> None:
    portfolio = Portfolio(INITIAL)
    portfolio.apply_fill(
        Fill(client_order_id="a", symbol="BTC/USDT", side=OrderSide.BUY, qty=Decimal("2"),
             price=Decimal("100"), fee=Decimal("0.2"), ts=T0)
    )  # fmt: skip
    assert portfolio.cash == Decimal("99799.8")
    marks = {"BTC/USDT": Decimal("110.5")}
    assert portfolio.unrealized(marks) == Decimal("21")  # 2 × (110.5 − 100)
    assert portfolio.equity(marks) == Decimal("99799.8") + Decimal("221")
    assert portfolio.exposure(marks) == Decimal("221")
    # Unmarked: valued at the entry price.
    assert portfolio.unrealized({}) == 0
    assert portfolio.equity({}) == Decimal("99999.8")


def test_short_equity_and_unrealized_at_a_mark() -> None:
    portfolio = Portfolio(INITIAL)
    portfolio.apply_fill(
        Fill(client_order_id="a", symbol="ETH/USDT", side=OrderSide.SELL, qty=Decimal("3"),
             price=Decimal("200"), fee=Decimal("0.6"), ts=T0)
    )  # fmt: skip
    assert portfolio.cash == Decimal("100599.4")  # proceeds in, fee out
    down = {"ETH/USDT": Decimal("190")}
    assert portfolio.unrealized(down) == Decimal("30")  # a short gains as the price falls
    assert portfolio.equity(down) == Decimal("100599.4") - Decimal("570")
    up = {"ETH/USDT": Decimal("210.12345678")}
    assert portfolio.unrealized(up) == Decimal("-30.37037034")
    assert portfolio.equity(up) == Decimal("100599.4") - Decimal("630.37037034")
    assert portfolio.exposure(up) == Decimal("630.37037034")


def test_partial_close_realizes_pnl_on_the_share_of_cost_it_removes() -> None:
    portfolio = Portfolio(INITIAL)
    portfolio.apply_fill(
        Fill(client_order_id="a", symbol="BTC/USDT", side=OrderSide.BUY, qty=Decimal("3"),
             price=Decimal("100"), fee=Decimal("0"), ts=T0)
    )  # fmt: skip
    out = portfolio.apply_fill(
        Fill(client_order_id="b", symbol="BTC/USDT", side=OrderSide.SELL, qty=Decimal("1"),
             price=Decimal("130"), fee=Decimal("0.13"), ts=T0 + 1)
    )  # fmt: skip
    assert out.record.realized_pnl == Decimal("30")
    assert out.changed is not None and out.changed.cost_basis == Decimal("200")
    assert out.changed.realized_pnl == Decimal("30") and out.changed.fees == Decimal("0.13")
    short = Portfolio(INITIAL)
    short.apply_fill(
        Fill(client_order_id="c", symbol="BTC/USDT", side=OrderSide.SELL, qty=Decimal("3"),
             price=Decimal("100"), fee=Decimal("0"), ts=T0)
    )  # fmt: skip
    out = short.apply_fill(
        Fill(client_order_id="d", symbol="BTC/USDT", side=OrderSide.BUY, qty=Decimal("3"),
             price=Decimal("130"), fee=Decimal("0"), ts=T0 + 1)
    )  # fmt: skip
    assert out.record.realized_pnl == Decimal("-90")
    assert out.closed is not None and out.closed.realized_pnl == Decimal("-90")
    assert short.cash == INITIAL - Decimal("90")


@settings(max_examples=60, deadline=None)
@given(plan=steps, mark_units=st.lists(st.integers(1, 10**14), min_size=3, max_size=3))
def test_equity_is_cash_plus_marked_positions_and_matches_unrealized_within_a_unit_each(
    plan: list[Step], mark_units: list[int]
) -> None:
    portfolio = Portfolio(INITIAL)
    apply_all(portfolio, plan)
    marks = {s: units(m) for s, m in zip(SYMBOLS, mark_units, strict=True)}
    expected = portfolio.cash + sum(
        (q_cash(p.qty * marks[p.symbol]) * p.side.sign for p in portfolio.positions.values()),
        Decimal(0),
    )
    assert portfolio.equity(marks) == expected
    # Equity − unrealized is cash + signed cost; both round once per position.
    gap = (
        portfolio.equity(marks)
        - portfolio.unrealized(marks)
        - (portfolio.cash + held_cost(portfolio))
    )
    assert abs(gap) <= len(portfolio.positions) * CASH_QUANTUM


async def _store_round_trip(plan: list[Step]) -> None:
    store = await Store.open(":memory:")
    try:
        await store.init_balance("USDT", INITIAL, T0)
        portfolio = Portfolio(INITIAL)
        for n, step in enumerate(plan):
            fill = fill_for(portfolio, step, n)
            outcome = portfolio.apply_fill(fill, reason="test")
            intent = OrderIntent(
                client_order_id=fill.client_order_id,
                proposal_id=None,
                symbol=fill.symbol,
                side=fill.side,
                qty=fill.qty,
                purpose="entry" if outcome.opened is not None else "exit",
                created_at=fill.ts,
            )
            # The statements of engine.runtime.Engine._exit_now / _record_outcome.
            async with store.unit_of_work() as uow:
                uow.intent_created(intent)
                uow.order_submitted(intent, fill.ts)
                uow.order_filled(outcome.record, outcome.cash)
                if outcome.opened is not None:
                    uow.position_opened(outcome.opened, fill.ts)
                if outcome.changed is not None:
                    uow.position_changed(outcome.changed, fill.ts)
                if outcome.closed is not None:
                    uow.position_closed(outcome.closed)
        results = await store.run(run_checks)
        failed = [r for r in results if not r.ok]
        assert not failed, failed
        state = await store.load_state()
        assert state.cash == portfolio.cash
        assert state.initial_cash == INITIAL
        assert {p.symbol: p for p in state.positions} == portfolio.positions
        restored = Portfolio(INITIAL, state.cash, state.positions)
        assert restored.equity({}) == portfolio.equity({})
    finally:
        await store.close()


@settings(max_examples=60, deadline=None)
@given(plan=steps)
def test_the_same_fills_stored_through_the_store_pass_every_db_check_and_reload_exactly(
    plan: list[Step],
) -> None:
    asyncio.run(_store_round_trip(plan))
