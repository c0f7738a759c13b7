"""The risk engine's entry check (the pre-checks the engine used to do itself) and
the drawdown monitor on its own."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.account import Account
from engine.models import OrderDenied, Position, Proposal, Side, TradingState, evolve
from engine.portfolio import Portfolio
from engine.risk import DrawdownMonitor, EdgeStats, RiskCheck, RiskEngine, RiskLimits
from engine.timeframes import DAY_MS

DAY0 = 19_700 * DAY_MS
BTC = "BTC/USDT"
D = Decimal
NO_EDGE = EdgeStats(trades=100, win_rate=0.2, avg_win=1.0, avg_loss=1.0)


def proposal(side: Side = Side.LONG, stop: str = "90", take_profit: str = "120") -> Proposal:
    if side is Side.SHORT:
        stop, take_profit = "110", "80"
    return Proposal(
        id="prp-1",
        symbol=BTC,
        side=side,
        entry=D(100),
        stop=D(stop),
        take_profit=D(take_profit),
        confidence=1.0,
        size=D(0),
        created_at=DAY0,
        expires_at=DAY0 + 60_000,
    )


def position(side: Side) -> Position:
    return Position(
        symbol=BTC, side=side, qty=D(1), entry_price=D(100), cost_basis=D(100), opened_at=DAY0
    )


def risk_engine() -> RiskEngine:
    marks: dict[str, Decimal] = {}
    return RiskEngine(RiskLimits(), account=Account(Portfolio(D(10_000)), marks))


def check(
    engine: RiskEngine,
    p: Proposal,
    quantity: Decimal | None = None,
    *,
    positions: dict[str, Position] | None = None,
    marks: dict[str, Decimal] | None = None,
    edge: EdgeStats | None = None,
    human: bool = False,
    record: bool = True,
) -> RiskCheck:
    held = positions or {}
    return engine.check_entry(
        p,
        quantity,
        positions=held,
        committed=list(held.values()),
        marks=marks or {},
        edge=edge,
        ts=DAY0,
        record=record,
        human=human,
    )


def test_an_entry_within_the_limits_is_sized_at_the_account_s_equity() -> None:
    got = check(risk_engine(), proposal())
    # The default 2 % of the account's 10 000 at 100, under the 1 % stop risk (10 × 10 = 100).
    assert got == RiskCheck(True, D(2), got.reason)
    assert got.reason.startswith("2.00000000 BTC/USDT ≈ 200.00: default 2.00%")


def test_an_open_position_on_the_other_side_denies() -> None:
    engine = risk_engine()
    got = check(engine, proposal(Side.SHORT), positions={BTC: position(Side.LONG)})
    assert got == RiskCheck(False, D(0), "long BTC/USDT is open")
    # The risk pane's "Last denials" lists it too (it left out the checks before the limits).
    assert [(d.symbol, d.reason) for d in engine.denials] == [(BTC, "long BTC/USDT is open")]
    # A preview (record=False) keeps it out.
    quiet = risk_engine()
    check(quiet, proposal(Side.SHORT), positions={BTC: position(Side.LONG)}, record=False)
    assert quiet.denials == ()


@pytest.mark.parametrize(
    ("side", "mark", "reason"),
    [
        (Side.LONG, "90", "price 90 is already through the stop 90"),
        (Side.LONG, "121", "price 121 is already past the take-profit 120"),
        (Side.SHORT, "111", "price 111 is already through the stop 110"),
        (Side.SHORT, "80", "price 80 is already past the take-profit 80"),
    ],
)
def test_a_price_the_market_has_run_past_denies(side: Side, mark: str, reason: str) -> None:
    got = check(risk_engine(), proposal(side), marks={BTC: D(mark)})
    assert got == RiskCheck(False, D(0), reason)


def test_a_person_overrides_no_edge_with_the_default_fraction_but_a_policy_does_not() -> None:
    engine = risk_engine()
    by_policy = check(engine, proposal(), edge=NO_EDGE)
    assert not by_policy.allowed
    assert by_policy.reason.startswith("no edge: Kelly fraction 0 from 100 trades")
    by_person = check(engine, proposal(), edge=NO_EDGE, human=True)
    assert by_person.allowed
    assert "default 2.00%" in by_person.reason


def test_a_bad_input_is_a_denial_never_an_exception() -> None:
    engine = risk_engine()
    got = check(engine, proposal(), D(-1))
    assert got == RiskCheck(False, D(0), "invalid order: requested_qty must be > 0, got -1")
    got = check(engine, evolve(proposal(), stop=D(150)))
    assert not got.allowed
    assert got.reason.startswith("invalid order: proposal.stop must be below")


def test_a_limit_s_denial_is_kept_as_an_order_denied_event() -> None:
    engine = risk_engine()
    engine.halt(DAY0, "news")
    got = check(engine, proposal())
    assert not got.allowed
    assert engine.denials == (
        OrderDenied(ts=DAY0, symbol=BTC, reason=got.reason, proposal_id="prp-1"),
    )
    check(engine, proposal(), record=False)  # a preview
    assert len(engine.denials) == 1


def test_a_quantity_a_person_typed_keeps_the_caps() -> None:
    got = check(risk_engine(), proposal(), D(50))
    assert got.allowed
    assert got.quantity == D(10)  # 10 % of 10 000 at 100 (and 1 % lost at a stop 10 below)
    assert got.reason.endswith("requested 50, position cap 10.0%")


# --- the drawdown monitor --------------------------------------------------------


def _limits() -> RiskLimits:
    return RiskLimits(max_drawdown=0.10, reduce_drawdown=0.07, max_daily_loss=1.0)


def _run(monitor: DrawdownMonitor, equities: list[int], start: int = 0) -> TradingState:
    for i, equity in enumerate(equities, start):
        monitor.on_equity(DAY0 + i * 60_000, D(equity))
    return monitor.state


def test_the_monitor_halts_at_the_same_point_across_a_restart() -> None:
    straight = DrawdownMonitor(_limits(), Account())
    assert _run(straight, [100, 92, 95, 89]) is TradingState.HALTED
    assert straight.halted_by_limit

    account = Account()
    before = DrawdownMonitor(_limits(), account)
    assert _run(before, [100, 92, 95]) is TradingState.ACTIVE  # back within the reduce level
    # What the store keeps: the state, the peak and the day's start.
    assert (account.peak, account.day_start, account.day) == (D(100), D(100), DAY0 // DAY_MS)
    after = DrawdownMonitor(_limits(), Account())
    after.restore(before.state, D(100), D(100), DAY0 // DAY_MS)
    assert _run(after, [89], start=3) is TradingState.HALTED


def test_the_monitor_returns_each_change_as_an_event() -> None:
    monitor = DrawdownMonitor(_limits(), Account())
    changes = [monitor.on_equity(DAY0 + i, D(e)) for i, e in enumerate([100, 92, 100])]
    assert [[(c.old, c.new) for c in cs] for cs in changes] == [
        [],
        [(TradingState.ACTIVE, TradingState.REDUCING)],
        [(TradingState.REDUCING, TradingState.ACTIVE)],
    ]
    assert monitor.reason == "drawdown 0.0% back within 7.0%"
    assert [(c.old, c.new) for c in monitor.halt(DAY0 + 5, "by hand")] == [
        (TradingState.ACTIVE, TradingState.HALTED)
    ]
    assert not monitor.halted_by_limit
    assert monitor.resume(DAY0 + 6, "go")[0].new is TradingState.ACTIVE
    assert monitor.resume(DAY0 + 7, "again") == []
