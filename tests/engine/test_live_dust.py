"""Dust after a live exit: on Binance spot without BNB a buy's fee is taken in the base
currency, so the position holds a quantity off the market's step. The exit sends it
rounded down to the step; what it leaves (too small to trade) is written off: the
position closes, the store keeps the dust, and a restart's reconciliation counts it as
held. Real ccxt against the local exchange, real store files."""

from __future__ import annotations

import asyncio
import os
import sys
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import pytest
from crafted_market import FLAT, WARMUP, CraftedFeed, FakeClock, ScriptedAgent, query, settings
from crafted_market import assert_checks_pass as checks_pass
from crafted_market import with_warmup as warm
from fake_binance import TEST_API_KEY, TEST_API_SECRET, FakeBinance, client
from hypothesis import given
from hypothesis import strategies as st
from shared_data import shared_data_dir
from test_live_engine import BTC, DATA, live_engine, live_settings, wait_for

from engine.broker import PaperBroker
from engine.core import TradingCore
from engine.events import EngineMessage, OrderSubmitted, PositionClosed
from engine.exchange.broker import Remote
from engine.exchange.gate import LiveGate
from engine.exchange.reconcile import Reconciliation, reconcile_exchange
from engine.models import Candle, Fill, OrderIntent, OrderSide, Side
from engine.step import Step
from engine.wiring import load_agents
from persistence.store import Store


def held(fake: FakeBinance, asset: str) -> Decimal:
    free, locked = fake.balances[asset]
    return free + locked


async def test_the_exit_leaves_dust_the_store_writes_off_and_a_restart_counts_as_held(
    tmp_path: Path,
) -> None:
    async with FakeBinance(
        [shared_data_dir() / DATA],
        api_key=TEST_API_KEY,
        api_secret=TEST_API_SECRET,
        buy_fee_in_base=True,
    ) as fake:
        market = fake.markets["BTCUSDT"]
        ScriptedAgent.script = {(BTC, market.candles[fake.cursor].ts): (Side.LONG, 1.0)}
        step = market.step_size
        cfg = live_settings(fake.url, tmp_path)
        async with live_engine(cfg) as (engine, _):
            messages: list[str] = []
            engine.subscribe(
                lambda e: messages.append(e.text) if isinstance(e, EngineMessage) else None
            )
            await engine.start()
            await wait_for(lambda: engine.feed.warmup_batches > 0 and engine._batches >= 30)
            await fake.advance()  # the signal candle closes: one buy order
            await wait_for(lambda: fake.orders_received == 1)
            await fake.advance()  # it fills at the next open, its fee taken in BTC
            await wait_for(lambda: BTC in engine.portfolio.positions)
            [buy] = fake.orders.values()
            pos = engine.portfolio.positions[BTC]
            fee_base = (buy.executed * Decimal("0.001")).quantize(Decimal("1e-8"))
            assert pos.qty == buy.executed - fee_base == held(fake, "BTC")
            assert pos.qty % step != 0  # off the step: an exit cannot sell all of it

            await engine.close_position(BTC)
            sent = pos.qty.quantize(step, rounding=ROUND_DOWN)
            dust = pos.qty - sent
            [(intent_qty,)] = await query(
                engine, "SELECT qty FROM order_intents WHERE purpose = 'exit'"
            )
            assert Decimal(intent_qty) == sent  # what the store says went out
            await wait_for(lambda: fake.orders_received == 2)
            await fake.advance()
            await wait_for(lambda: BTC not in engine.portfolio.positions)
            await engine.synced()
            sell = fake.orders[max(fake.orders, key=lambda k: fake.orders[k].order_id)]
            assert sell.quantity == sent and sell.status == "FILLED"
            # The position is closed, the dust left on the exchange is what the store keeps.
            assert held(fake, "BTC") == dust == engine.core.dust["BTC"]
            [(stored,)] = await query(
                engine, "SELECT value FROM engine_state WHERE key = 'dust:BTC'"
            )
            assert Decimal(stored) == dust
            said = [m for m in messages if m.startswith("dust ")]
            assert len(said) == 1 and said[0].startswith(f"dust {dust} BTC left on the exchange")
            # The exit's realized PnL is its proceeds less the whole cost basis.
            [(pnl, exit_qty, price)] = await query(
                engine, "SELECT realized_pnl, qty, price FROM fills WHERE side = 'sell'"
            )
            proceeds = (Decimal(exit_qty) * Decimal(price)).quantize(Decimal("0.00000001"))
            assert Decimal(pnl) == proceeds - pos.cost_basis
            [(closed_pnl, status)] = await query(
                engine, "SELECT realized_pnl, status FROM positions"
            )
            assert (Decimal(closed_pnl), status) == (Decimal(pnl), "closed")
            await engine.stop()
            await checks_pass(engine)
        ScriptedAgent.script = {}
        async with live_engine(cfg) as (engine, _):
            recovery = await engine.start()
            # The dust the store wrote off is held: no balance difference, not paused.
            assert recovery.differences == []
            assert engine.status == "running" and engine.core.dust == {"BTC": dust}
            await engine.stop()
    # ``cma db check`` itself, on the store file the two runs left.
    check = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("cma")),
        "db",
        "check",
        "--db",
        str(cfg.store.resolved_path()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")},
    )
    out, _ = await asyncio.wait_for(check.communicate(), 60)
    assert check.returncode == 0 and "cash + cost basis reconciles" in out.decode(), out


def _remote(filled: Decimal, fee_base: Decimal, price: Decimal) -> Remote:
    return Remote(
        client_order_id="ord-1",
        symbol=BTC,
        side=OrderSide.BUY,
        status="closed",
        amount=filled,
        filled=filled,
        average=price,
        fee=fee_base * price,
        ts=1,
        fee_base=fee_base,
    )


@pytest.fixture(scope="module")
def markets() -> Any:
    """A ccxt binance with the local exchange's BTC/USDT market loaded over HTTP (the
    server is gone after: the order gate only reads the markets)."""

    async def load() -> Any:
        async with FakeBinance([shared_data_dir() / DATA]) as fake:
            exchange = client(fake, pro=False, keys=False)
            try:
                await exchange.load_markets()
            finally:
                await exchange.close()
            return exchange

    return asyncio.run(load())


@given(
    steps=st.integers(min_value=1, max_value=10_000_000),
    fee_rate=st.sampled_from([Decimal("0.001"), Decimal("0.00075"), Decimal("0.0002")]),
    price=st.decimals(min_value=1000, max_value=100_000, places=2),
)
def test_fee_in_base_then_the_exit_leaves_only_dust_exactly(
    markets: Any, steps: int, fee_rate: Decimal, price: Decimal
) -> None:
    gate = LiveGate(markets, settings().exchange)
    step = Decimal(str(markets.market(BTC)["precision"]["amount"]))
    bought = step * steps
    fee_base = (bought * fee_rate).quantize(Decimal("1e-8"))
    fill = _remote(bought, fee_base, price).fill()
    assert fill is not None
    qty = fill.qty  # what the position holds
    sent = gate.fit_exit(BTC, qty, price)
    if isinstance(sent, str):
        # Too small to trade at all: nothing is sent, all of it is dust.
        assert "rounds to 0" in sent or "below the" in sent
        sent, dust = Decimal(0), qty
    else:
        dust = qty - sent
        assert sent % step == 0 and 0 <= dust < step
        # What the exit leaves is never tradable: it is written off, not kept.
        assert dust == 0 or isinstance(gate.fit_exit(BTC, dust, price), str)
    assert bought - fee_base == qty == sent + dust
    assert qty.as_tuple().exponent >= -8  # exact: no digit beyond the fee's 8 decimals


DIP = (100.0, 100.5, 80.0, 85.0)  # through any long's stop


async def live_core(markets: Any, store: Store) -> tuple[TradingCore, list[Candle], OrderIntent]:
    """A core beside the exchange's order gate (the exchange fills its orders through
    ``apply_fill``) on a new store, whose first candles past the warm-up made one entry
    order (stored)."""
    cfg = settings(approval={"policy": "auto"})
    await store.init_balance("USDT", cfg.risk.initial_cash, 0)
    feed = CraftedFeed({BTC: warm([FLAT, FLAT, DIP, FLAT])})
    ScriptedAgent.script = {(BTC, feed.ts(WARMUP)): (Side.LONG, 1.0)}
    core = TradingCore(
        cfg,
        currency="USDT",
        tf_ms=60_000,
        agent_classes=load_agents(cfg),
        new_work=store.begin_work,
        market=PaperBroker(cfg.broker.fee_rate, cfg.broker.slippage_bps, matching=False),
        clock=FakeClock(),
    )
    core.order_gate = LiveGate(markets, cfg.exchange)
    core.proposing = True
    candles = [c for batch in feed.iter_batches() for c in batch]
    steps = [step for candle in candles[: WARMUP + 1] for step in core.on_candle(candle)]
    [entry] = [i for s in steps for i in s.send]
    await commit(store, steps)
    return core, candles, entry


async def commit(store: Store, steps: list[Step]) -> None:
    for step in steps:
        await store.commit(step.work)


def fill_of(intent: OrderIntent, qty: str, price: str, fee: str, ts: int) -> Fill:
    return Fill(
        client_order_id=intent.client_order_id,
        symbol=intent.symbol,
        side=intent.side,
        qty=Decimal(qty),
        price=Decimal(price),
        fee=Decimal(fee),
        ts=ts,
    )


async def test_the_exit_fill_and_its_dust_are_one_unit_of_work(
    markets: Any, tmp_path: Path
) -> None:
    async with await Store.open(str(tmp_path / "dust.db")) as store:
        core, candles, entry = await live_core(markets, store)
        # The buy's fee taken in BTC: the position holds 0.12345 - 0.00012345.
        opened = core.apply_fill(fill_of(entry, "0.12333655", "100", "0.012345", candles[0].ts))
        [exit_step] = [core.close_position(BTC)]
        [intent] = exit_step.send
        assert intent.qty == Decimal("0.12333")  # rounded down to the step
        step = core.apply_fill(fill_of(intent, "0.12333", "101", "0.01245633", candles[1].ts))
        ops = step.work.ops  # type: ignore[attr-defined]  # the store's own unit of work
        # The fill, the closed position and the dust kept: one transaction, never split.
        sql = " ".join(statement for statement, _ in ops)
        assert "INSERT INTO fills" in sql and "status = 'closed'" in sql
        assert ("dust:BTC", "0.00000655") in [args for _, args in ops]
        await commit(store, [opened, exit_step, step])
        await checks_pass(store)
        [closed] = [e for e in step.events if isinstance(e, PositionClosed)]
        assert closed.qty == Decimal("0.12333655")
        assert closed.realized_pnl == Decimal("0.12333") * 101 - Decimal("12.333655")


async def test_a_stop_hit_on_a_dust_only_position_sends_nothing_and_closes_it(
    markets: Any, tmp_path: Path
) -> None:
    async with await Store.open(str(tmp_path / "dust.db")) as store:
        core, candles, entry = await live_core(markets, store)
        # The exchange filled only a sliver of the entry (then cancelled the rest).
        sliver = Decimal("0.000004")
        steps = [core.apply_fill(fill_of(entry, "0.000004", "100", "0.0000004", candles[0].ts))]
        assert core.portfolio.positions[BTC].qty == sliver
        for candle in candles[WARMUP + 1 :]:
            steps += core.on_candle(candle)
            steps += core.after_batch(candle.ts + 60_000)
        await commit(store, steps)
        # Nothing was sent, nothing is closing: the dust position closed at once.
        assert not any(s.send for s in steps)
        assert not any(isinstance(e, OrderSubmitted) for s in steps for e in s.events)
        assert BTC not in core.portfolio.positions and not core.closing(BTC)
        [closed] = [e for s in steps for e in s.events if isinstance(e, PositionClosed)]
        assert closed.reason == "stop, written off as dust" and closed.qty == sliver
        assert closed.realized_pnl == -Decimal("0.0004")  # its cost, at zero proceeds
        said = [e.text for s in steps for e in s.events if isinstance(e, EngineMessage)]
        assert [t for t in said if t.startswith("dust ")] == [
            "dust 0.000004 BTC left on the exchange: too small to trade (amount 0.000004 BTC"
            " rounds to 0 at step 0.00001); BTC/USDT closed, the dust written off at zero"
            " proceeds"
        ]
        assert core.dust == {"BTC": sliver}
        await checks_pass(store)
        state = await store.load_state()
        assert state.state["dust:BTC"] == "0.000004"
        assert Decimal(state.state["dust_written_off"]) == Decimal("0.0004")


async def test_reconciliation_counts_written_off_dust_as_held_and_reports_the_rest(
    fake_binance: FakeBinance,
) -> None:
    from engine.exchange.broker import ExchangeBroker

    fake_binance.balances["BTC"] = [Decimal("0.0000077"), Decimal(0)]
    fake_binance.balances["USDT"] = [Decimal(100), Decimal(0)]
    exchange = client(fake_binance)
    try:
        broker = ExchangeBroker(exchange)
        found = Reconciliation()
        args: dict[str, Any] = {
            "known": [], "symbols": [BTC], "positions": [], "cash": Decimal(100),
            "currency": "USDT",
        }  # fmt: skip
        await reconcile_exchange(broker, found, dust={"BTC": Decimal("0.0000077")}, **args)
        assert found.differences == []
        found = Reconciliation()
        await reconcile_exchange(broker, found, dust={"BTC": Decimal("0.000005")}, **args)
        assert found.differences == [
            "BTC: the exchange holds 0.0000077, the account's position is 0"
            " and dust 0.000005 written off"
        ]
    finally:
        await exchange.close()


def test_an_exit_refused_for_another_reason_still_goes_out_rounded_down(markets: Any) -> None:
    gate = LiveGate(markets, settings().exchange)
    # Above the market's maximum amount: not dust; the exchange says why it refuses it.
    assert gate.fit_exit(BTC, Decimal("9000001.1234567"), Decimal(1)) == Decimal("9000001.12345")
    assert gate.fit_exit(BTC, Decimal("0.0001234567"), Decimal(100_000)) == Decimal("0.00012")
    assert gate.fit_exit(BTC, Decimal("0.0000412"), Decimal(100_000)) == (
        "notional 4.00 USDT below the minimum 5 USDT"
    )
