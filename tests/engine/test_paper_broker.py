"""The paper broker: market orders at the next open, and the brackets it emulates
(set when an entry fills, cleared on exit; stop first; a gap fills at the open)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from crafted_market import (
    FLAT,
    WARMUP,
    CraftedFeed,
    Row,
    assert_checks_pass,
    crafted_engine,
    play,
    query,
    settings,
    with_warmup,
)

from engine.broker import Broker, Order, PaperBroker
from engine.models import Candle, OrderIntent, OrderSide, Side
from engine.runtime import Engine

BTC, ETH = "BTC/USDT", "ETH/USDT"
T0 = 1_700_000_000_000


def candle(o: float, h: float, low: float, c: float, i: int = 0) -> Candle:
    return Candle(symbol=BTC, ts=T0 + i * 60_000, open=o, high=h, low=low, close=c, volume=1.0)


def buy(coid: str = "e1", qty: str = "2", purpose: str = "entry") -> OrderIntent:
    return OrderIntent(
        client_order_id=coid,
        proposal_id="p1" if purpose == "entry" else None,
        symbol=BTC,
        side=OrderSide.BUY,
        qty=Decimal(qty),
        purpose=purpose,
        created_at=T0,
    )


def broker() -> PaperBroker:
    return PaperBroker(Decimal(0), Decimal(0))


def test_an_entry_fill_sets_its_bracket_and_the_stop_triggers_in_the_same_candle() -> None:
    b = broker()
    b.accept(buy(), stop=Decimal(96), take_profit=Decimal(108))
    # Opens at 100 (the entry fills), dips to 95: the stop at 96 fills after the entry.
    entry, stop = b.on_candle(candle(100, 101, 95, 97))
    assert (entry.client_order_id, entry.price) == ("e1", Decimal(100))
    assert (stop.side, stop.qty, stop.price) == (OrderSide.SELL, Decimal(2), Decimal(96))
    intent = b.take_triggered(stop.client_order_id)
    assert intent is not None and (intent.purpose, intent.reason) == ("exit", "stop")
    assert b.take_triggered(stop.client_order_id) is None  # taken once
    assert b.bracket(BTC) is None  # the exit cleared it
    assert b.on_candle(candle(90, 91, 80, 85, 1)) == []


def test_the_stop_wins_when_both_levels_are_inside_one_candle() -> None:
    b = broker()
    b.restore_bracket(BTC, Side.LONG, Decimal(1), Decimal(96), Decimal(108))
    [fill] = b.on_candle(candle(100, 110, 90, 100))
    assert fill.price == Decimal(96)
    assert b.take_triggered(fill.client_order_id).reason == "stop"  # type: ignore[union-attr]


def test_a_gap_through_the_take_profit_fills_at_the_open_and_a_short_exit_buys() -> None:
    b = broker()
    b.restore_bracket(BTC, Side.SHORT, Decimal(3), Decimal(104), Decimal(92))
    [fill] = b.on_candle(candle(90, 91, 89, 90))
    assert (fill.side, fill.qty, fill.price) == (OrderSide.BUY, Decimal(3), Decimal(90))


def test_an_exit_order_clears_the_bracket_and_adds_keep_the_latest_levels() -> None:
    b = broker()
    b.accept(buy("e1", "1"), stop=Decimal(90), take_profit=Decimal(120))
    b.on_candle(candle(100, 101, 99, 100))
    b.accept(buy("e2", "2"), stop=Decimal(95), take_profit=None)
    b.on_candle(candle(100, 101, 99, 100, 1))
    bracket = b.bracket(BTC)
    assert bracket is not None
    assert (bracket.qty, bracket.stop, bracket.take_profit) == (Decimal(3), Decimal(95), 120)
    exit_ = PaperBroker.exit_intent(BTC, Side.LONG, Decimal(3), "closed by hand", T0)
    b.accept(exit_)
    [fill] = b.on_candle(candle(100, 101, 80, 100, 2))  # the exit fills first: no stop after
    assert fill.client_order_id == exit_.client_order_id and b.bracket(BTC) is None


async def test_the_port_lists_orders_not_intents_and_knows_their_end() -> None:
    b: Broker = broker()
    await b.submit(buy("e1"))
    await b.submit(buy("e2"))
    orders = await b.open_orders(BTC)
    assert [type(o) for o in orders] == [Order, Order]
    assert [(o.client_order_id, o.status, o.quantity) for o in orders] == [
        ("e1", "working", Decimal(2)),
        ("e2", "working", Decimal(2)),
    ]
    assert await b.cancel("e1") and not await b.cancel("e1")
    assert isinstance(b, PaperBroker)
    b.on_candle(candle(100, 101, 99, 100))
    e1, e2 = await b.fetch_order("e1"), await b.fetch_order("e2")
    assert e1 is not None and e1.status == "cancelled"
    assert e2 is not None and e2.status == "filled"
    assert await b.fetch_order("nope") is None
    assert await b.open_orders() == []
    assert await b.balances() == {}


async def test_a_position_and_a_working_entry_keep_their_brackets_across_a_restart(
    tmp_path: Path,
) -> None:
    """The paper brackets live in the broker: a restart puts back each open position's
    (from the store) and each working entry's (from its proposal)."""
    path = str(tmp_path / "cma.db")
    cfg = settings(approval={"policy": "manual"}, feed={"symbols": (BTC, ETH)})

    async def approve_all(engine: Engine) -> None:
        for p in engine.pending():
            await engine.approve(p.id)

    async def approve_eth(engine: Engine) -> None:
        [p] = [p for p in engine.pending() if p.symbol == ETH]
        await engine.approve(p.id)

    # BTC's entry fills at candle 16; ETH proposes at 16 and is approved after the last
    # candle, so its entry is still working when the engine stops.
    tables = {BTC: with_warmup([FLAT, FLAT]), ETH: with_warmup([FLAT, FLAT])}
    feed = CraftedFeed(tables, hooks={WARMUP: approve_all, WARMUP + 1: approve_eth})
    votes = {(BTC, feed.ts(WARMUP)): (Side.LONG, 1.0), (ETH, feed.ts(WARMUP + 1)): (Side.LONG, 1.0)}
    async with crafted_engine(cfg, feed, votes, path=path) as first:
        await play(first)
        assert [p.symbol for p in first.positions()] == [BTC]
        assert [o.symbol for o in first.working_entries()] == [ETH]

    # Both fall through their stop at 96 in the first candle after the restart.
    drop: Row = (97.0, 98.0, 95.0, 95.5)
    later = CraftedFeed({BTC: [drop], ETH: [drop]}, start=feed.ts(WARMUP + 2))
    async with crafted_engine(cfg, later, {}, path=path) as second:
        await second.start(paused_if_recovered=False)
        await second.wait()
        assert second.positions() == []
        rows = await query(second, "SELECT symbol, close_reason FROM positions ORDER BY symbol")
        assert rows == [(BTC, "stop"), (ETH, "stop")]
        await assert_checks_pass(second)
