"""The risk engine: sizing invariants, limits, trading states and correlation."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal, localcontext
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.models import Position, Proposal, Side, TradingState, TradingStateChanged, q_qty
from engine.risk import (
    DENIALS_KEPT,
    EdgeStats,
    RiskEngine,
    RiskLimits,
    kelly_fraction,
)
from engine.timeframes import DAY_MS

DAY0 = 19_700 * DAY_MS  # midnight UTC
MINUTE = 60_000
BTC, ETH, SOL, XRP = "BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"
SYMBOLS = (BTC, ETH, SOL, XRP)


ZERO, HUNDRED = Decimal(0), Decimal(100)


def D(value: str | int) -> Decimal:
    return Decimal(value)


def make_proposal(
    symbol: str = BTC,
    side: Side = Side.LONG,
    entry: Decimal = HUNDRED,
    stop: Decimal = ZERO,
    confidence: float = 1.0,
    ts: int = DAY0,
) -> Proposal:
    return Proposal(
        id="prp-test",
        symbol=symbol,
        side=side,
        entry=entry,
        stop=stop,
        take_profit=D(0),
        confidence=confidence,
        size=D(0),
        created_at=ts,
        expires_at=ts + MINUTE,
    )


def make_position(symbol: str, side: Side, qty: Decimal, price: Decimal) -> Position:
    return Position(
        symbol=symbol,
        side=side,
        qty=qty,
        entry_price=price,
        cost_basis=qty * price,
        opened_at=DAY0,
    )


def exposure_by_symbol(
    positions: Sequence[Position], marks: dict[str, Decimal]
) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for p in positions:
        if p.qty == 0:
            continue
        out[p.symbol] = out.get(p.symbol, D(0)) + p.qty * marks.get(p.symbol, p.entry_price)
    return out


def dec(fraction: float) -> Decimal:
    return Decimal(repr(fraction))


# --- Kelly ---------------------------------------------------------------------


def test_kelly_matches_the_formula_for_a_known_edge() -> None:
    # W = 0.6, R = 2: f* = 0.6 - 0.4 / 2
    assert kelly_fraction(0.6, 2.0, 1.0) == pytest.approx(0.4)


def test_kelly_with_negative_edge_is_clipped_to_zero() -> None:
    assert kelly_fraction(0.3, 1.0, 1.0) == 0.0


def test_kelly_with_zero_average_win_raises() -> None:
    with pytest.raises(ValueError, match=r"^avg_win must be a finite number > 0, got 0$"):
        kelly_fraction(0.5, 0, 1.0)


positive_floats = st.floats(min_value=0, max_value=1e300, exclude_min=True, allow_nan=False)
unit_floats = st.floats(min_value=0.0, max_value=1.0)


@given(win_rate=unit_floats, avg_win=positive_floats, avg_loss=positive_floats)
def test_kelly_lies_in_unit_interval(win_rate: float, avg_win: float, avg_loss: float) -> None:
    assert 0.0 <= kelly_fraction(win_rate, avg_win, avg_loss) <= 1.0


@given(a=unit_floats, b=unit_floats, avg_win=positive_floats, avg_loss=positive_floats)
def test_kelly_never_decreases_as_win_rate_grows(
    a: float, b: float, avg_win: float, avg_loss: float
) -> None:
    low, high = sorted((a, b))
    assert kelly_fraction(low, avg_win, avg_loss) <= kelly_fraction(high, avg_win, avg_loss)


def test_edge_without_a_recorded_loss_bets_the_win_rate() -> None:
    assert EdgeStats(trades=40, win_rate=0.7, avg_win=1.0, avg_loss=0.0).kelly() == 0.7


def test_edge_without_a_recorded_win_bets_nothing() -> None:
    assert EdgeStats(trades=40, win_rate=0.0, avg_win=0.0, avg_loss=1.0).kelly() == 0.0


# --- invalid inputs ---------------------------------------------------------------


def _manager() -> RiskEngine:
    return RiskEngine(RiskLimits())


def _size_with(**overrides: Any) -> Callable[[], object]:
    def call() -> object:
        args: dict[str, Any] = {
            "proposal": make_proposal(),
            "equity": D(10_000),
            "positions": [],
            "marks": {},
            "edge": None,
        }
        args.update(overrides)
        return _manager().size(**args)

    return call


INVALID: list[tuple[str, Callable[[], object]]] = [
    ("win_rate", lambda: kelly_fraction(1.2, 1.0, 1.0)),
    ("win_rate", lambda: kelly_fraction(-0.1, 1.0, 1.0)),
    ("win_rate", lambda: kelly_fraction(math.nan, 1.0, 1.0)),
    ("avg_win", lambda: kelly_fraction(0.5, -1.0, 1.0)),
    ("avg_win", lambda: kelly_fraction(0.5, math.inf, 1.0)),
    ("avg_loss", lambda: kelly_fraction(0.5, 1.0, 0.0)),
    ("trades", lambda: EdgeStats(trades=-1, win_rate=0.5, avg_win=1.0, avg_loss=1.0)),
    ("win_rate", lambda: EdgeStats(trades=1, win_rate=2.0, avg_win=1.0, avg_loss=1.0)),
    ("avg_win", lambda: EdgeStats(trades=1, win_rate=0.5, avg_win=math.nan, avg_loss=1.0)),
    ("avg_loss", lambda: EdgeStats(trades=1, win_rate=0.5, avg_win=1.0, avg_loss=-1.0)),
    ("symbol", lambda: _manager().on_candle("", DAY0, 1.0)),
    ("ts", lambda: _manager().on_candle(BTC, -1, 1.0)),
    ("close", lambda: _manager().on_candle(BTC, DAY0, -5.0)),
    ("close", lambda: _manager().on_candle(BTC, DAY0, math.inf)),
    ("ts", lambda: _manager().on_equity(-1, D(1))),
    ("equity", lambda: _manager().on_equity(DAY0, D("NaN"))),
    ("symbol_a", lambda: _manager().correlation("", ETH)),
    ("proposal.entry", _size_with(proposal=make_proposal(entry=D(0)))),
    ("proposal.stop", _size_with(proposal=make_proposal(stop=D(-1)))),
    ("proposal.stop", _size_with(proposal=make_proposal(entry=D(100), stop=D(105)))),
    ("proposal.stop", _size_with(proposal=make_proposal(side=Side.SHORT, stop=D(95)))),
    ("equity", _size_with(equity=D("Infinity"))),
    ("marks['ETH/USDT']", _size_with(marks={ETH: D(-5)})),
    ("requested_qty", _size_with(requested_qty=D(0))),
    ("ts", _size_with(ts=-5)),
    ("qty", lambda: _manager().check_exit(DAY0, make_position(BTC, Side.LONG, D(1), D(1)), D(-1))),
    ("reason", lambda: _manager().halt(DAY0, "")),
    ("reason", lambda: _manager().resume(DAY0, "  ")),
    ("day", lambda: _manager().restore(TradingState.HALTED, D(1), D(1), -1)),
    ("peak_equity", lambda: _manager().restore(TradingState.HALTED, D("NaN"), D(1), 0)),
]


@pytest.mark.parametrize(
    ("argument", "call"),
    INVALID,
    ids=[f"{i}-{argument}" for i, (argument, _) in enumerate(INVALID)],
)
def test_invalid_input_raises_value_error_naming_the_argument(
    argument: str, call: Callable[[], object]
) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(argument) + " must "):
        call()


def test_invalid_win_rate_message_shows_the_value() -> None:
    with pytest.raises(ValueError, match=r"^win_rate must lie in \[0, 1\], got 1\.2$"):
        kelly_fraction(1.2, 1.0, 1.0)


def test_invalid_decimal_message_shows_the_value() -> None:
    with pytest.raises(ValueError, match=r"^requested_qty must be > 0, got -5$"):
        _size_with(requested_qty=D(-5))()


# --- sizing ----------------------------------------------------------------------


def test_default_fraction_sizes_before_enough_trades() -> None:
    manager = RiskEngine(RiskLimits(default_risk_fraction=0.02, min_trades_for_kelly=30))
    edge = EdgeStats(trades=29, win_rate=0.6, avg_win=2.0, avg_loss=1.0)
    check = manager.size(make_proposal(), D(10_000), [], {}, edge)
    assert check.allowed
    assert check.quantity == D("2.00000000")  # 2% of 10 000 at 100


def test_kelly_sizes_once_enough_trades() -> None:
    limits = RiskLimits(kelly_multiplier=0.25, max_position_fraction=0.5, min_trades_for_kelly=30)
    edge = EdgeStats(trades=30, win_rate=0.6, avg_win=2.0, avg_loss=1.0)
    check = RiskEngine(limits).size(make_proposal(), D(10_000), [], {}, edge)
    assert check.quantity == D(10)  # 0.25 × 0.4 = 10% of 10 000 at 100
    assert "Kelly" in check.reason


def test_kelly_is_capped_by_the_position_fraction() -> None:
    limits = RiskLimits(kelly_multiplier=1.0, max_position_fraction=0.1)
    edge = EdgeStats(trades=100, win_rate=0.6, avg_win=2.0, avg_loss=1.0)
    check = RiskEngine(limits).size(make_proposal(), D(10_000), [], {}, edge)
    assert check.quantity == D(10)  # Kelly says 40%, the cap 10%
    assert "position cap 10.0%" in check.reason


def test_confidence_scales_the_size() -> None:
    check = _manager().size(make_proposal(confidence=0.5), D(10_000), [], {}, None)
    assert check.quantity == D(1)


def test_stop_distance_caps_the_loss_at_max_risk_per_trade() -> None:
    limits = RiskLimits(max_risk_per_trade=0.01, default_risk_fraction=0.1)
    check = RiskEngine(limits).size(make_proposal(stop=D(50)), D(10_000), [], {}, None)
    assert check.quantity == D(2)  # 2 × (100 - 50) = 100 = 1% of equity
    assert "stop risk" in check.reason


def test_no_edge_denies_the_entry() -> None:
    edge = EdgeStats(trades=50, win_rate=0.2, avg_win=1.0, avg_loss=1.0)
    check = _manager().size(make_proposal(), D(10_000), [], {}, edge)
    assert not check.allowed
    assert check.reason.startswith("no edge")


def test_size_below_minimum_notional_is_denied() -> None:
    check = _manager().size(make_proposal(), D(100), [], {}, None)  # 2% of 100 = 2
    assert not check.allowed
    assert check.quantity == 0
    assert check.reason.startswith("size below minimum notional: 2.00 < 10")


def test_requested_qty_is_honoured_within_the_limits() -> None:
    check = _manager().size(make_proposal(), D(10_000), [], {}, None, requested_qty=D(3))
    assert check.allowed
    assert check.quantity == D(3)


def test_requested_qty_is_capped_by_the_position_fraction() -> None:
    check = _manager().size(make_proposal(), D(10_000), [], {}, None, requested_qty=D(50))
    assert check.quantity == D(10)  # max_position_fraction 0.1 of 10 000 at 100


# --- limits and their reasons -------------------------------------------------------


def test_max_open_positions_denies_a_new_symbol() -> None:
    manager = RiskEngine(RiskLimits(max_open_positions=2))
    positions = [
        make_position(ETH, Side.LONG, D(1), D(100)),
        make_position(SOL, Side.LONG, D(1), D(100)),
    ]
    check = manager.size(make_proposal(BTC), D(10_000), positions, {}, None)
    assert not check.allowed
    assert check.reason == "max open positions 2 reached"


def test_max_open_positions_allows_adding_to_an_open_symbol() -> None:
    manager = RiskEngine(RiskLimits(max_open_positions=2))
    positions = [
        make_position(ETH, Side.LONG, D(1), D(100)),
        make_position(SOL, Side.LONG, D(1), D(100)),
    ]
    assert manager.size(make_proposal(ETH), D(10_000), positions, {}, None).allowed


def test_total_exposure_limit_denies_with_the_numbers() -> None:
    manager = RiskEngine(RiskLimits(max_total_exposure=0.8, default_risk_fraction=0.1))
    positions = [make_position(ETH, Side.LONG, D("79.96"), D(100))]
    check = manager.size(make_proposal(BTC), D(10_000), positions, {}, None)
    assert not check.allowed
    assert check.reason == "total exposure 90.0% would exceed 80.0%"


def test_total_exposure_headroom_caps_the_size() -> None:
    manager = RiskEngine(RiskLimits(max_total_exposure=0.8, default_risk_fraction=0.1))
    positions = [make_position(ETH, Side.SHORT, D(75), D(100))]
    check = manager.size(make_proposal(BTC), D(10_000), positions, {}, None)
    assert check.quantity == D(5)  # 500 of headroom at 100
    assert "total exposure headroom" in check.reason


def test_symbol_exposure_limit_uses_the_mark() -> None:
    manager = RiskEngine(RiskLimits(max_symbol_exposure=0.25, default_risk_fraction=0.1))
    positions = [make_position(BTC, Side.LONG, D(1), D(1_000))]
    # bought at 1 000, now marked at 2 496: 24.96% of equity already
    check = manager.size(make_proposal(BTC), D(10_000), positions, {BTC: D(2_496)}, None)
    assert not check.allowed
    assert check.reason == "BTC/USDT exposure 35.0% would exceed 25.0%"


def test_halted_denies_entries_with_the_state_in_the_reason() -> None:
    manager = _manager()
    manager.halt(DAY0, "news")
    check = manager.size(make_proposal(), D(10_000), [], {}, None)
    assert not check.allowed
    assert check.reason.startswith("trading HALTED (news)")


def test_entry_without_positive_equity_is_denied() -> None:
    check = _manager().size(make_proposal(), D(0), [], {}, None)
    assert not check.allowed
    assert check.reason == "equity 0 leaves nothing to size against"


def test_a_preview_does_not_record_its_denial() -> None:
    manager = _manager()
    check = manager.size(make_proposal(), D(1), [], {}, None, record=False)
    assert not check.allowed
    assert manager.denials == ()


def test_denials_are_kept_newest_last_and_bounded() -> None:
    manager = _manager()
    for i in range(DENIALS_KEPT + 5):
        manager.size(make_proposal(ts=DAY0 + i), D(1), [], {}, None)
    denials = manager.denials
    assert len(denials) == DENIALS_KEPT
    assert [d.ts for d in denials] == [DAY0 + i for i in range(5, DENIALS_KEPT + 5)]
    assert denials[-1].symbol == BTC
    assert manager.snapshot(D(1), [], {}).denials == denials


# --- sizing properties ----------------------------------------------------------------

fractions = st.floats(min_value=0.0, max_value=1.0, exclude_min=True)
equities = st.decimals(min_value=D("0.01"), max_value=D("1e9"), places=2)
prices = st.decimals(min_value=D("0.0001"), max_value=D("1e6"), places=4)


@st.composite
def risk_limits(draw: st.DrawFn) -> RiskLimits:
    max_drawdown = draw(fractions)
    return RiskLimits(
        max_open_positions=draw(st.integers(1, 6)),
        max_symbol_exposure=draw(fractions),
        max_total_exposure=draw(fractions),
        max_correlation=draw(unit_floats),
        correlation_window=draw(st.integers(3, 100)),
        max_daily_loss=draw(fractions),
        max_drawdown=max_drawdown,
        reduce_drawdown=draw(st.floats(min_value=0.0, max_value=max_drawdown, exclude_min=True)),
        kelly_multiplier=draw(fractions),
        max_position_fraction=draw(fractions),
        max_risk_per_trade=draw(fractions),
        default_risk_fraction=draw(fractions),
        min_trades_for_kelly=draw(st.integers(1, 100)),
        min_notional=draw(st.decimals(min_value=D("0.01"), max_value=D(1_000), places=2)),
        auto_resume_next_day=draw(st.booleans()),
    )


@st.composite
def proposals(draw: st.DrawFn) -> Proposal:
    side = draw(st.sampled_from(Side))
    entry = draw(prices)
    stop = D(0)
    if draw(st.booleans()):
        distance = q_qty(entry * draw(st.decimals(D("0.0001"), D("0.99"), places=4)))
        if distance > 0:
            stop = entry - distance if side is Side.LONG else entry + distance
    return make_proposal(
        symbol=draw(st.sampled_from(SYMBOLS)),
        side=side,
        entry=entry,
        stop=stop,
        confidence=draw(unit_floats),
    )


@st.composite
def book(draw: st.DrawFn, equity: Decimal) -> tuple[list[Position], dict[str, Decimal]]:
    """Open positions worth up to 60% of equity each, and marks for some of them."""
    positions: list[Position] = []
    marks: dict[str, Decimal] = {}
    for symbol in draw(st.lists(st.sampled_from(SYMBOLS), unique=True, max_size=4)):
        price = draw(prices)
        share = draw(st.decimals(D(0), D("0.6"), places=3))
        qty = q_qty(equity * share / price)
        positions.append(make_position(symbol, draw(st.sampled_from(Side)), qty, price))
        if draw(st.booleans()):
            marks[symbol] = draw(prices)
    return positions, marks


edges = st.none() | st.builds(
    EdgeStats,
    trades=st.integers(0, 200),
    win_rate=unit_floats,
    avg_win=st.floats(0, 10),
    avg_loss=st.floats(0, 10),
)


@settings(max_examples=300, deadline=None)
@given(
    limits=risk_limits(),
    state=st.sampled_from(TradingState),
    proposal=proposals(),
    equity=equities,
    data=st.data(),
    edge=edges,
    requested=st.none() | st.decimals(D("0.00000001"), D("1e7"), places=8),
    peak_ratio=st.none() | st.decimals(D(1), D(3), places=3),
)
def test_size_never_breaks_a_limit(
    limits: RiskLimits,
    state: TradingState,
    proposal: Proposal,
    equity: Decimal,
    data: st.DataObject,
    edge: EdgeStats | None,
    requested: Decimal | None,
    peak_ratio: Decimal | None,
) -> None:
    positions, marks = data.draw(book(equity))
    manager = RiskEngine(limits, state)
    if peak_ratio is not None:
        manager.on_equity(DAY0 - DAY_MS, equity * peak_ratio)
    state_before = manager.state

    check = manager.size(proposal, equity, positions, marks, edge, requested)

    with localcontext() as ctx:
        ctx.prec = 60
        assert check.quantity >= 0
        if not check.allowed:
            assert check.quantity == 0
            assert check.reason
            assert manager.denials[-1].reason == check.reason
            return
        assert state_before is TradingState.ACTIVE
        assert check.quantity == q_qty(check.quantity)
        notional = check.quantity * proposal.entry
        assert notional > 0
        assert notional >= limits.min_notional
        assert notional <= dec(limits.max_position_fraction) * equity
        exposures = exposure_by_symbol(positions, marks)
        held = exposures.get(proposal.symbol, D(0))
        assert held + notional <= dec(limits.max_symbol_exposure) * equity
        assert sum(exposures.values(), D(0)) + notional <= dec(limits.max_total_exposure) * equity
        if proposal.stop > 0:
            loss_at_stop = check.quantity * abs(proposal.entry - proposal.stop)
            assert loss_at_stop <= dec(limits.max_risk_per_trade) * equity
        if requested is not None:
            assert check.quantity <= requested
        if proposal.symbol not in exposures:
            assert len(exposures) < limits.max_open_positions


@settings(max_examples=100, deadline=None)
@given(
    state=st.sampled_from([TradingState.HALTED, TradingState.REDUCING]),
    proposal=proposals(),
    equity=equities,
    edge=edges,
    requested=st.none() | st.decimals(D("0.00000001"), D(1_000), places=8),
)
def test_entries_are_denied_unless_active(
    state: TradingState,
    proposal: Proposal,
    equity: Decimal,
    edge: EdgeStats | None,
    requested: Decimal | None,
) -> None:
    manager = _manager()
    manager.restore(state, equity, equity, DAY0 // DAY_MS)
    check = manager.size(proposal, equity, [], {}, edge, requested)
    assert not check.allowed
    assert check.quantity == 0
    assert check.reason.startswith(f"trading {state}")


# --- exits --------------------------------------------------------------------------


def test_exit_is_allowed_while_halted() -> None:
    manager = _manager()
    manager.halt(DAY0, "manual")
    position = make_position(BTC, Side.LONG, D("1.5"), D(100))
    check = manager.check_exit(DAY0, position)
    assert check.allowed
    assert check.quantity == D("1.5")


def test_partial_exit_is_allowed_while_reducing() -> None:
    manager = _manager()
    manager.restore(TradingState.REDUCING, D(100), D(100), 0)
    check = manager.check_exit(DAY0, make_position(BTC, Side.LONG, D(2), D(100)), D(1))
    assert check.allowed
    assert check.quantity == D(1)


def test_exit_larger_than_the_position_is_denied() -> None:
    manager = _manager()
    check = manager.check_exit(DAY0, make_position(BTC, Side.LONG, D("1.5"), D(100)), D(2))
    assert not check.allowed
    assert check.reason == "exit qty 2.00000000 exceeds open BTC/USDT qty 1.5"


# --- trading states ----------------------------------------------------------------

EQUITY = D(10_000)


def _limits(**overrides: Any) -> RiskLimits:
    base: dict[str, Any] = {"max_daily_loss": 0.03, "max_drawdown": 0.2, "reduce_drawdown": 0.14}
    base.update(overrides)
    return RiskLimits(**base)


def test_daily_loss_beyond_the_limit_halts() -> None:
    manager = RiskEngine(_limits())
    assert manager.on_equity(DAY0, EQUITY) == []
    events = manager.on_equity(DAY0 + MINUTE, D(9_600))
    assert events == [
        TradingStateChanged(
            ts=DAY0 + MINUTE,
            old=TradingState.ACTIVE,
            new=TradingState.HALTED,
            reason="daily loss 4.0% exceeds 3.0%",
        )
    ]
    assert manager.state is TradingState.HALTED


def test_daily_loss_counts_from_the_start_of_the_utc_day() -> None:
    manager = RiskEngine(_limits())
    manager.on_equity(DAY0, D(10_500))
    manager.on_equity(DAY0 + DAY_MS, D(10_000))  # a new day starts at 10 000
    assert manager.on_equity(DAY0 + DAY_MS + MINUTE, D(9_750)) == []  # 2.5% today
    assert manager.state is TradingState.ACTIVE


def test_drawdown_beyond_the_reduce_level_allows_exits_only_and_recovers() -> None:
    manager = RiskEngine(_limits(max_daily_loss=1.0))
    manager.on_equity(DAY0, EQUITY)
    [event] = manager.on_equity(DAY0 + MINUTE, D(8_500))
    assert event.new is TradingState.REDUCING
    assert event.reason == "drawdown 15.0% exceeds reduce level 14.0%: exits only"
    assert not manager.size(make_proposal(), D(8_500), [], {}, None).allowed
    [event] = manager.on_equity(DAY0 + 2 * MINUTE, D(9_000))
    assert event.new is TradingState.ACTIVE


drawdowns = st.decimals(min_value=D("0.2001"), max_value=D("0.9999"), places=4)
later_updates = st.lists(
    st.tuples(st.integers(0, 2 * DAY_MS), st.decimals(D("0.01"), D("1e8"), places=2)),
    max_size=20,
)


@settings(deadline=None)
@given(peak=equities, drop=drawdowns, later=later_updates, auto=st.booleans())
def test_drawdown_beyond_max_halts_until_resume(
    peak: Decimal, drop: Decimal, later: list[tuple[int, Decimal]], auto: bool
) -> None:
    manager = RiskEngine(_limits(max_daily_loss=1.0, auto_resume_next_day=auto))
    manager.on_equity(DAY0, peak)
    events = manager.on_equity(DAY0 + MINUTE, peak * (1 - drop))
    assert [e.new for e in events] == [TradingState.HALTED]
    assert events[0].reason.startswith("drawdown ")

    ts = DAY0 + MINUTE
    for step, equity in later:
        ts += step
        # with auto resume a new day may lift the halt, but only once the drawdown allows it
        could_lift = auto and equity * 10 >= peak * 8
        events = manager.on_equity(ts, equity)
        if not could_lift:
            assert events == []
            assert manager.state is TradingState.HALTED
        if manager.state is not TradingState.HALTED:
            return

    [event] = manager.resume(ts + 1, "reviewed")
    assert (event.old, event.new, event.reason) == (
        TradingState.HALTED,
        TradingState.ACTIVE,
        "reviewed",
    )
    # resume re-based the peak, so the acknowledged drawdown does not halt again
    last = later[-1][1] if later else peak * (1 - drop)
    assert manager.on_equity(ts + 2, last) == []
    assert manager.state is TradingState.ACTIVE


@pytest.mark.parametrize("auto", [True, False])
def test_a_new_utc_day_resumes_a_daily_loss_halt_only_when_configured(auto: bool) -> None:
    manager = RiskEngine(_limits(auto_resume_next_day=auto))
    manager.on_equity(DAY0, EQUITY)
    manager.on_equity(DAY0 + MINUTE, D(9_600))
    assert manager.on_equity(DAY0 + DAY_MS - 1, D(9_900)) == []  # same day: still halted
    assert manager.snapshot(D(9_900), [], {}).halted_by_limit
    events = manager.on_equity(DAY0 + DAY_MS, D(9_600))
    if auto:
        assert [(e.old, e.new) for e in events] == [(TradingState.HALTED, TradingState.ACTIVE)]
        assert events[0].reason == "new UTC day 2023-12-10: auto resume"
        assert not manager.snapshot(D(9_600), [], {}).halted_by_limit
    else:
        assert events == []
    assert manager.state is (TradingState.ACTIVE if auto else TradingState.HALTED)


def test_auto_resume_never_lifts_a_persons_halt() -> None:
    manager = RiskEngine(_limits(auto_resume_next_day=True))
    manager.on_equity(DAY0, EQUITY)
    manager.halt(DAY0 + MINUTE, "going to lunch")
    assert manager.on_equity(DAY0 + DAY_MS, EQUITY) == []
    assert manager.state is TradingState.HALTED


def test_a_persons_halt_on_top_of_a_limit_halt_is_not_lifted_by_a_new_day() -> None:
    manager = RiskEngine(_limits(auto_resume_next_day=True))
    manager.on_equity(DAY0, EQUITY)
    manager.on_equity(DAY0 + MINUTE, D(9_600))  # daily loss halt
    assert manager.halt(DAY0 + 2 * MINUTE, "investigating the loss") == []
    assert manager.on_equity(DAY0 + DAY_MS, EQUITY) == []
    assert manager.state is TradingState.HALTED


def test_auto_resume_keeps_a_drawdown_halt_while_the_drawdown_lasts() -> None:
    manager = RiskEngine(_limits(max_daily_loss=1.0, auto_resume_next_day=True))
    manager.on_equity(DAY0, EQUITY)
    manager.on_equity(DAY0 + MINUTE, D(7_500))
    assert manager.on_equity(DAY0 + DAY_MS, D(7_500)) == []
    assert manager.state is TradingState.HALTED


def test_halt_and_resume_report_their_changes() -> None:
    manager = _manager()
    [halted] = manager.halt(DAY0, "exchange incident")
    assert (halted.old, halted.new, halted.reason) == (
        TradingState.ACTIVE,
        TradingState.HALTED,
        "exchange incident",
    )
    assert manager.halt(DAY0 + 1, "again") == []
    [resumed] = manager.resume(DAY0 + 2, "incident over")
    assert resumed.new is TradingState.ACTIVE
    assert manager.resume(DAY0 + 3, "already active") == []


def test_restore_puts_back_the_state_and_the_baselines() -> None:
    manager = _manager()
    manager.restore(TradingState.HALTED, D(12_000), D(10_000), DAY0 // DAY_MS)
    snapshot = manager.snapshot(D(9_000), [], {})
    assert snapshot.state is TradingState.HALTED
    assert (snapshot.peak_equity, snapshot.day_start_equity) == (D(12_000), D(10_000))
    assert snapshot.drawdown == pytest.approx(0.25)
    assert snapshot.daily_loss == pytest.approx(0.1)
    assert not manager.size(make_proposal(), D(9_000), [], {}, None).allowed


def test_snapshot_reports_exposure_against_the_limits() -> None:
    manager = _manager()
    positions = [
        make_position(BTC, Side.LONG, D(1), D(1_500)),
        make_position(ETH, Side.SHORT, D(10), D(100)),
    ]
    snapshot = manager.snapshot(EQUITY, positions, {BTC: D(2_000)})
    assert snapshot.symbol_exposure == {BTC: pytest.approx(0.2), ETH: pytest.approx(0.1)}
    assert snapshot.total_exposure == pytest.approx(0.3)
    assert (snapshot.open_positions, snapshot.max_open_positions) == (2, 5)
    assert snapshot.state is TradingState.ACTIVE


# --- correlation ---------------------------------------------------------------------

WINDOW = 30


def _closes(returns: Iterable[float], start: float = 100.0) -> list[float]:
    closes = [start]
    for r in returns:
        closes.append(closes[-1] * (1.0 + r))
    return closes


def _feed(
    manager: RiskEngine, symbol: str, closes: Sequence[float], skip: Iterable[int] = ()
) -> None:
    skipped = set(skip)
    for i, close in enumerate(closes):
        if i not in skipped:
            manager.on_candle(symbol, DAY0 + i * MINUTE, close)


def _paired_market(
    seed: int, eth_from_btc: Callable[[float, float], float], n: int = 2 * WINDOW + 1
) -> RiskEngine:
    rng = random.Random(seed)
    btc = [rng.gauss(0.0, 0.01) for _ in range(n)]
    eth = [eth_from_btc(r, rng.gauss(0.0, 0.01)) for r in btc]
    manager = RiskEngine(RiskLimits(correlation_window=WINDOW, max_correlation=0.8))
    _feed(manager, BTC, _closes(btc))
    _feed(manager, ETH, _closes(eth, start=2_000.0))
    return manager


def _try(manager: RiskEngine, btc_side: Side, eth_side: Side) -> str | None:
    """Propose ETH with a BTC position open; the denial reason, or None if allowed."""
    positions = [make_position(BTC, btc_side, D("0.01"), D(100))]
    check = manager.size(make_proposal(ETH, eth_side), EQUITY, positions, {}, None)
    return None if check.allowed else check.reason


@settings(deadline=None)
@given(seed=st.integers(0, 2**32))
def test_correlated_same_side_entry_is_denied(seed: int) -> None:
    manager = _paired_market(seed, lambda btc, noise: btc + 0.1 * noise)
    corr = manager.correlation(ETH, BTC)
    assert corr is not None and corr > 0.9
    reason = _try(manager, Side.LONG, Side.LONG)
    assert reason is not None
    assert re.fullmatch(r"correlation (0\.9\d|1\.00) with BTC/USDT exceeds 0\.80", reason)
    assert _try(manager, Side.SHORT, Side.SHORT) is not None


@settings(deadline=None)
@given(seed=st.integers(0, 2**32))
def test_correlated_opposite_side_entry_is_a_hedge(seed: int) -> None:
    manager = _paired_market(seed, lambda btc, noise: btc + 0.1 * noise)
    assert _try(manager, Side.LONG, Side.SHORT) is None
    assert _try(manager, Side.SHORT, Side.LONG) is None


@settings(deadline=None)
@given(seed=st.integers(0, 2**32))
def test_anticorrelated_entry_is_denied_only_on_the_opposite_side(seed: int) -> None:
    manager = _paired_market(seed, lambda btc, noise: -btc + 0.1 * noise)
    assert _try(manager, Side.LONG, Side.LONG) is None
    reason = _try(manager, Side.LONG, Side.SHORT)
    assert reason is not None
    assert re.fullmatch(
        r"correlation -(0\.9\d|1\.00) with long BTC/USDT: "
        r"a short moves with it \((0\.9\d|1\.00) exceeds 0\.80\)",
        reason,
    )


@settings(deadline=None)
@given(seed=st.integers(0, 2**32))
def test_uncorrelated_entry_is_allowed(seed: int) -> None:
    manager = _paired_market(seed, lambda btc, noise: noise)
    assert _try(manager, Side.LONG, Side.LONG) is None
    assert _try(manager, Side.LONG, Side.SHORT) is None


def test_correlation_is_unknown_and_allows_with_too_few_returns() -> None:
    manager = _paired_market(7, lambda btc, noise: btc, n=WINDOW // 2 - 1)
    assert manager.correlation(ETH, BTC) is None
    assert _try(manager, Side.LONG, Side.LONG) is None


def test_correlation_looks_only_at_the_recent_window() -> None:
    rng = random.Random(11)
    old = [rng.gauss(0.0, 0.01) for _ in range(500)]
    recent = [rng.gauss(0.0, 0.01) for _ in range(WINDOW)]
    manager = RiskEngine(RiskLimits(correlation_window=WINDOW))
    _feed(manager, BTC, _closes(old + recent))
    _feed(manager, ETH, _closes([-r for r in old] + recent))
    corr = manager.correlation(BTC, ETH)
    assert corr is not None and corr > 0.99
    assert _try(manager, Side.LONG, Side.LONG) is not None


def test_gap_in_one_symbol_is_skipped_not_a_zero_return() -> None:
    # ETH is BTC × 20 but misses every other candle: a zero return there would
    # halve the correlation, pairing returns by position would scramble it.
    rng = random.Random(3)
    btc = _closes(rng.gauss(0.0, 0.01) for _ in range(2 * WINDOW))
    manager = RiskEngine(RiskLimits(correlation_window=WINDOW))
    _feed(manager, BTC, btc)
    _feed(manager, ETH, [20 * c for c in btc], skip=range(1, len(btc), 2))
    corr = manager.correlation(BTC, ETH)
    assert corr is not None and corr > 0.999
    assert _try(manager, Side.LONG, Side.LONG) is not None


@settings(deadline=None)
@given(
    seed=st.integers(0, 2**32),
    btc_gaps=st.sets(st.integers(1, 2 * WINDOW), max_size=WINDOW // 4),
    eth_gaps=st.sets(st.integers(1, 2 * WINDOW), max_size=WINDOW // 4),
)
def test_gaps_anywhere_keep_proportional_series_fully_correlated(
    seed: int, btc_gaps: set[int], eth_gaps: set[int]
) -> None:
    rng = random.Random(seed)
    btc = _closes(rng.gauss(0.0, 0.01) for _ in range(2 * WINDOW))
    manager = RiskEngine(RiskLimits(correlation_window=WINDOW))
    _feed(manager, BTC, btc, skip=btc_gaps)
    _feed(manager, ETH, [20 * c for c in btc], skip=eth_gaps)
    corr = manager.correlation(BTC, ETH)
    assert corr is not None
    assert corr > 0.999


def test_a_revised_candle_replaces_the_close_and_an_older_one_is_ignored() -> None:
    rng = random.Random(5)
    btc = _closes(rng.gauss(0.0, 0.01) for _ in range(2 * WINDOW))
    manager = RiskEngine(RiskLimits(correlation_window=WINDOW))
    _feed(manager, BTC, btc)
    _feed(manager, ETH, [c * 3 for c in btc])
    last = DAY0 + (len(btc) - 1) * MINUTE
    manager.on_candle(ETH, last, 1.0)  # revised: a crash on the last candle
    manager.on_candle(ETH, last - MINUTE, 1e9)  # stale: ignored
    corr = manager.correlation(BTC, ETH)
    assert corr is not None and corr < 0.9
    manager.on_candle(ETH, last, btc[-1] * 3)
    corr = manager.correlation(BTC, ETH)
    assert corr is not None and corr > 0.999
