"""The core beside a live broker: the paper market only tracks orders (the exchange fills
them through ``apply_fill``), a stop or take-profit sends an exit order instead of
filling on paper, an order gate fits entries, and a hold keeps trading in REDUCING."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from crafted_market import FLAT, WARMUP, CraftedFeed, FakeClock, Row, ScriptedAgent, settings
from crafted_market import with_warmup as warm
from hypothesis import given
from hypothesis import strategies as st

from engine.account import Account
from engine.broker import PaperBroker
from engine.core import TradingCore
from engine.events import OrderDenied, OrderFilled, OrderSubmitted, TradingStateChanged
from engine.marks import Marks
from engine.models import Candle, Fill, OrderSide, Side, TradingState
from engine.portfolio import Portfolio
from engine.ports import UnitOfWork as WorkPort
from engine.risk.drawdown import DrawdownMonitor
from engine.risk.limits import RiskLimits
from engine.step import CommandError, Step
from engine.wiring import load_agents
from persistence.store import UnitOfWork

BTC = "BTC/USDT"
DIP: Row = (100.0, 100.5, 80.0, 85.0)  # through any long's stop


def _core(matching: bool, **sections: dict[str, object]) -> tuple[TradingCore, CraftedFeed]:
    cfg = settings(approval={"policy": "auto"}, **sections)  # type: ignore[arg-type]
    feed = CraftedFeed({BTC: warm([FLAT, FLAT, FLAT, DIP, FLAT])})
    ScriptedAgent.script = {(BTC, feed.ts(WARMUP)): (Side.LONG, 1.0)}
    core = TradingCore(
        cfg,
        currency="USDT",
        tf_ms=60_000,
        agent_classes=load_agents(cfg),
        new_work=lambda: UnitOfWork(None),
        market=PaperBroker(cfg.broker.fee_rate, cfg.broker.slippage_bps, matching=matching),
        clock=FakeClock(),
    )
    core.proposing = True
    return core, feed


def _play(core: TradingCore, candles: list[Candle]) -> list[Step]:
    steps: list[Step] = []
    for candle in candles:
        steps += core.on_candle(candle)
        steps += core.after_batch(candle.ts + 60_000)
    return steps


def _candles(feed: CraftedFeed) -> list[Candle]:
    return [c for batch in feed.iter_batches() for c in batch]


def _fill_of(step: Step, price: str) -> Fill:
    intent = step.send[0]
    return Fill(
        client_order_id=intent.client_order_id,
        symbol=intent.symbol,
        side=intent.side,
        qty=intent.qty,
        price=Decimal(price),
        fee=Decimal("0.10"),
        ts=intent.created_at + 60_000,
    )


def test_without_matching_candles_fill_nothing_and_the_exchange_fill_opens_the_position() -> None:
    core, feed = _core(matching=False)
    candles = _candles(feed)
    steps = _play(core, candles[: WARMUP + 3])
    sent = [s for s in steps if s.send]
    assert len(sent) == 1 and sent[0].send[0].purpose == "entry"
    # The paper market holds it as working; no candle filled it.
    assert not any(isinstance(e, OrderFilled) for s in steps for e in s.events)
    assert core.working_entries() == sent[0].send
    # The exchange's fill comes in through apply_fill: the order stops working.
    step = core.apply_fill(_fill_of(sent[0], "100.5"))
    assert any(isinstance(e, OrderFilled) for e in step.events)
    assert core.working_entries() == [] and BTC in core.portfolio.positions
    pos = core.portfolio.positions[BTC]
    assert pos.stop is not None and pos.stop > Decimal(80)


def test_a_stop_hit_sends_one_exit_order_instead_of_a_paper_fill() -> None:
    core, feed = _core(matching=False)
    candles = _candles(feed)
    steps = _play(core, candles[: WARMUP + 1])
    entry = next(s for s in steps if s.send)
    core.apply_fill(_fill_of(entry, "100"))
    later = _play(core, candles[WARMUP + 1 :])
    exits = [i for s in later for i in s.send if i.purpose == "exit"]
    assert len(exits) == 1 and exits[0].side is OrderSide.SELL and exits[0].reason == "stop"
    assert exits[0].qty == core.portfolio.positions[BTC].qty  # still held until it fills
    assert any(isinstance(e, OrderSubmitted) for s in later for e in s.events)
    assert not any(isinstance(e, OrderFilled) for s in later for e in s.events)
    assert core.closing(BTC)


def test_with_matching_the_same_dip_fills_the_stop_on_paper() -> None:
    core, feed = _core(matching=True)
    steps = _play(core, _candles(feed))
    fills = [e for s in steps for e in s.events if isinstance(e, OrderFilled)]
    assert [f.fill.side for f in fills] == [OrderSide.BUY, OrderSide.SELL]
    assert not any(i.purpose == "exit" for s in steps for i in s.send)


class Gate:
    """An order gate that caps quantity and remembers what it recorded."""

    def __init__(self, cap: Decimal | None, refuse: str | None = None) -> None:
        self.cap, self.refuse = cap, refuse
        self.recorded: list[Decimal] = []

    def fit(self, symbol: str, qty: Decimal, price: Decimal, now: int) -> Decimal | str:
        if self.refuse is not None:
            return self.refuse
        return qty if self.cap is None else min(qty, self.cap)

    def fit_exit(self, symbol: str, qty: Decimal, price: Decimal) -> Decimal | str:
        return qty

    def record(self, work: WorkPort, symbol: str, qty: Decimal, price: Decimal, now: int) -> None:
        self.recorded.append(qty)
        work.set_state("gate", str(qty))

    def restore(self, stored: str | None) -> None:
        pass


def test_an_order_gate_fits_the_entry_or_denies_it_with_its_reason() -> None:
    core, feed = _core(matching=False)
    gate = Gate(Decimal("0.5"))
    core.order_gate = gate
    steps = _play(core, _candles(feed)[: WARMUP + 1])
    [intent] = [i for s in steps for i in s.send]
    assert intent.qty == Decimal("0.5") and gate.recorded == [Decimal("0.5")]

    core, feed = _core(matching=False)
    core.order_gate = Gate(None, refuse="notional 4.20 USDT below the minimum 10 USDT")
    steps = _play(core, _candles(feed)[: WARMUP + 1])
    assert not any(s.send for s in steps)
    denied = [e for s in steps for e in s.events if isinstance(e, OrderDenied)]
    assert [d.reason for d in denied] == ["notional 4.20 USDT below the minimum 10 USDT"]


def test_a_hold_keeps_reducing_until_released_and_resume_is_refused_meanwhile() -> None:
    core, _ = _core(matching=False)
    step = core.hold("the exchange circuit breaker is open (timeouts)")
    assert step is not None and core.risk.state is TradingState.REDUCING
    # Equity within every limit does not clear it while held.
    assert core.risk.on_equity(1, core.account.equity()) == []
    assert core.risk.state is TradingState.REDUCING
    with pytest.raises(CommandError, match="circuit breaker is open"):
        core.resume_trading("by hand")
    step = core.release("the exchange answers again")
    assert step is not None and core.risk.state is TradingState.ACTIVE
    assert core.release("again") is None


def _monitor(initial: Decimal) -> DrawdownMonitor:
    account = Account(Portfolio(initial, currency="USDT"), Marks())
    return DrawdownMonitor(RiskLimits.model_construct(), account)


@given(
    equities=st.lists(st.integers(min_value=500, max_value=1500), min_size=1, max_size=12),
    hold_at=st.integers(min_value=0, max_value=11),
)
def test_while_held_the_state_is_never_active(equities: list[int], hold_at: int) -> None:
    mon = _monitor(Decimal(1000))
    changes: list[TradingStateChanged] = []
    for i, value in enumerate(equities):
        if i == hold_at:
            changes += mon.hold(i + 1, "breaker open")
        changes += mon.on_equity(i + 1, Decimal(value))
        if i >= hold_at:
            assert mon.state is not TradingState.ACTIVE
    changes += mon.release(len(equities) + 1, "breaker closed")
    assert mon.held is None
    # Every change is a real move and follows the one before it.
    for before, after in itertools.pairwise(changes):
        assert after.old is before.new and after.old is not after.new
