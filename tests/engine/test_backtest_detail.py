"""Backtest behaviour as small candle tables with the trades they must give
(in the style of freqtrade's tests/optimize/test_backtest_detail.py).

Each table runs through the real engine on a ``:memory:`` store. Fifteen flat
candles (open 100, high 101, low 99, close 100) warm the ATR up to exactly 2,
so a signal on a candle closing at 100 proposes, with ``stop_atr`` 2 and
``reward_risk`` 2: a long with stop 96 and take-profit 108, a short with stop
104 and take-profit 92. The default sizing (2 % of 100,000 equity at entry 100,
full confidence) is 20 units. The paper broker charges 10 bps of slippage and a
0.1 % fee. Row 0 of each table is the signal candle.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from crafted_market import (
    FLAT,
    MIN,
    WARMUP,
    CraftedFeed,
    FakeClock,
    Row,
    assert_checks_pass,
    crafted_engine,
    play,
    query,
    settings,
    with_warmup,
)

from engine.config import Settings
from engine.models import (
    DecisionAction,
    DecisionMade,
    EngineEvent,
    RejectReason,
    Side,
    TradingState,
)
from engine.runtime import CommandError, Engine

BTC = "BTC/USDT"
SIGNAL = WARMUP  # candle index of row 0
INITIAL = Decimal("100000")
QTY = Decimal("20")
SLIP = Decimal("0.001")
FEE = Decimal("0.001")


def buy_px(price: str) -> Decimal:
    return Decimal(price) * (1 + SLIP)


def sell_px(price: str) -> Decimal:
    return Decimal(price) * (1 - SLIP)


def fee(qty: Decimal, px: Decimal) -> Decimal:
    return (qty * px * FEE).quantize(Decimal("0.00000001"))


@dataclass(frozen=True)
class Trade:
    """An expected trade: fills at these candle rows and prices, closed for ``reason``."""

    entry_row: int
    entry_px: Decimal
    exit_row: int | None = None
    exit_px: Decimal | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Case:
    name: str
    side: Side
    rows: list[Row]
    trade: Trade


CASES = [
    Case(
        "market order fills at the next candle's open, never the signal's close",
        Side.LONG,
        [FLAT, (102, 103, 101, 102), (102, 103, 101, 102)],
        Trade(1, buy_px("102")),
    ),
    Case(
        "long take-profit triggers on the high",
        Side.LONG,
        [FLAT, FLAT, (100, 108.5, 99.5, 107)],
        Trade(1, buy_px("100"), 2, sell_px("108"), "take-profit"),
    ),
    Case(
        "long stop triggers on the low",
        Side.LONG,
        [FLAT, FLAT, (100, 100.5, 95, 97)],
        Trade(1, buy_px("100"), 2, sell_px("96"), "stop"),
    ),
    Case(
        "long stop is assumed first when both trigger in one candle",
        Side.LONG,
        [FLAT, FLAT, (100, 109, 95, 104)],
        Trade(1, buy_px("100"), 2, sell_px("96"), "stop"),
    ),
    Case(
        "long gap down through the stop fills at the open",
        Side.LONG,
        [FLAT, FLAT, (90, 92, 89, 91)],
        Trade(1, buy_px("100"), 2, sell_px("90"), "stop"),
    ),
    Case(
        "long gap up through the take-profit fills at the open",
        Side.LONG,
        [FLAT, FLAT, (110, 112, 109, 111)],
        Trade(1, buy_px("100"), 2, sell_px("110"), "take-profit"),
    ),
    Case(
        "a stop inside the entry candle triggers in that candle",
        Side.LONG,
        [FLAT, (100, 100.5, 95.5, 96)],
        Trade(1, buy_px("100"), 1, sell_px("96"), "stop"),
    ),
    Case(
        "short take-profit triggers on the low",
        Side.SHORT,
        [FLAT, FLAT, (100, 100.5, 91, 93)],
        Trade(1, sell_px("100"), 2, buy_px("92"), "take-profit"),
    ),
    Case(
        "short stop triggers on the high",
        Side.SHORT,
        [FLAT, FLAT, (100, 105, 99, 104)],
        Trade(1, sell_px("100"), 2, buy_px("104"), "stop"),
    ),
    Case(
        "short stop is assumed first when both trigger in one candle",
        Side.SHORT,
        [FLAT, FLAT, (100, 105, 91, 95)],
        Trade(1, sell_px("100"), 2, buy_px("104"), "stop"),
    ),
    Case(
        "short gap up through the stop fills at the open",
        Side.SHORT,
        [FLAT, FLAT, (110, 111, 109, 110)],
        Trade(1, sell_px("100"), 2, buy_px("110"), "stop"),
    ),
]


async def _run_case(case: Case) -> None:
    feed = CraftedFeed({BTC: with_warmup(case.rows)})
    votes = {(BTC, feed.ts(SIGNAL)): (case.side, 1.0)}
    async with crafted_engine(settings(broker={"allow_shorts": True}), feed, votes) as engine:
        await play(engine)
        await _check_trade(engine, feed, case)


async def _check_trade(engine: Engine, feed: CraftedFeed, case: Case) -> None:
    t = case.trade
    entry_side = "buy" if case.side is Side.LONG else "sell"
    exit_side = "sell" if case.side is Side.LONG else "buy"

    proposals = await query(engine, "SELECT side, entry, stop, take_profit, size FROM proposals")
    stop, tp = ("96", "108") if case.side is Side.LONG else ("104", "92")
    assert [tuple(r[:1]) + tuple(Decimal(x) for x in r[1:]) for r in proposals] == [
        (case.side.value, Decimal(100), Decimal(stop), Decimal(tp), QTY)
    ]
    fills = await query(engine, "SELECT side, qty, price, fee, ts FROM fills ORDER BY id")
    expected = [(entry_side, QTY, t.entry_px, fee(QTY, t.entry_px), feed.ts(SIGNAL + t.entry_row))]
    if t.exit_row is not None:
        assert t.exit_px is not None
        expected.append(
            (exit_side, QTY, t.exit_px, fee(QTY, t.exit_px), feed.ts(SIGNAL + t.exit_row))
        )
    assert [(r[0], Decimal(r[1]), Decimal(r[2]), Decimal(r[3]), r[4]) for r in fills] == expected

    positions = await query(
        engine, "SELECT side, status, entry_price, exit_price, close_reason, realized_pnl, fees"
        " FROM positions"
    )  # fmt: skip
    assert len(positions) == 1
    side, status, entry_price, exit_price, reason, realized, fees = positions[0]
    assert (side, Decimal(entry_price)) == (case.side.value, t.entry_px)
    entry_cost = QTY * t.entry_px
    paid = fee(QTY, t.entry_px)
    if t.exit_row is None:
        assert status == "open" and exit_price is None
        held = engine.portfolio.positions[BTC]
        assert held.qty == QTY and held.cost_basis == entry_cost
        assert engine.portfolio.cash == INITIAL - case.side.sign * entry_cost - paid
    else:
        assert t.exit_px is not None
        pnl = (QTY * t.exit_px - entry_cost) * case.side.sign
        paid += fee(QTY, t.exit_px)
        assert (status, Decimal(exit_price), reason) == ("closed", t.exit_px, t.reason)
        assert (Decimal(realized), Decimal(fees)) == (pnl, paid)
        assert engine.portfolio.positions == {}
        assert engine.portfolio.cash == INITIAL + pnl - paid
    [(cash,)] = await query(engine, "SELECT cash FROM balances")
    assert Decimal(cash) == engine.portfolio.cash
    await assert_checks_pass(engine)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_crafted_candles_give_the_expected_trade(case: Case) -> None:
    await _run_case(case)


async def test_no_short_proposals_when_shorts_are_off() -> None:
    rows = with_warmup([FLAT, FLAT, FLAT])
    for allow, expected in ((False, 0), (True, 1)):
        feed = CraftedFeed({BTC: rows})
        votes = {(BTC, feed.ts(SIGNAL)): (Side.SHORT, 1.0)}
        async with crafted_engine(settings(broker={"allow_shorts": allow}), feed, votes) as engine:
            await play(engine)
            assert await query(engine, "SELECT COUNT(*) FROM proposals") == [(expected,)]
            created = await query(
                engine, "SELECT COUNT(*) FROM events WHERE kind = 'ProposalCreated'"
            )
            assert created == [(expected,)]
            await assert_checks_pass(engine)


def manual(**approval: object) -> Settings:
    return settings(approval={"policy": "manual", "ttl_seconds": 3600.0, **approval})


async def test_expiry_is_recorded_as_a_decision_with_its_latency() -> None:
    clock = FakeClock()

    async def tick(engine: Engine) -> None:
        clock.advance(1.5)

    # TTL of 3 candles: made at the close of row 0, it expires at the close of row 3.
    feed = CraftedFeed({BTC: with_warmup([FLAT] * 5)}, hooks={SIGNAL + i: tick for i in range(5)})
    votes = {(BTC, feed.ts(SIGNAL)): (Side.LONG, 1.0)}
    async with crafted_engine(manual(ttl_seconds=180.0), feed, votes, clock=clock) as engine:
        events: list[EngineEvent] = []
        engine.subscribe(events.append)
        await play(engine)
        rows = await query(
            engine,
            "SELECT d.action, d.reason, d.latency_ms, d.decided_at, d.decided_by, p.status,"
            " p.created_at, p.expires_at FROM decisions d JOIN proposals p ON p.id = d.proposal_id",
        )
        created = feed.ts(SIGNAL) + MIN
        # Shown at the close of row 0; 1.5 s ticked after rows 0, 1 and 2; row 3's close expires it.
        assert rows == [
            ("expire", "time to live ran out", 4500, created + 3 * MIN, "engine", "expired",
             created, created + 3 * MIN),
        ]  # fmt: skip
        assert engine.pending() == []
        [made] = [e for e in events if isinstance(e, DecisionMade)]
        assert made.decision.action is DecisionAction.EXPIRE and made.decision.latency_ms == 4500
        await assert_checks_pass(engine)


async def test_reject_is_recorded_with_its_reason_code_and_latency() -> None:
    clock = FakeClock()

    async def reject(engine: Engine) -> None:
        clock.advance(1.25)
        [p] = engine.pending()
        decision = await engine.reject(p.id, RejectReason.BAD_TIMING)
        assert decision.latency_ms == 1250

    feed = CraftedFeed({BTC: with_warmup([FLAT] * 3)}, hooks={SIGNAL: reject})
    votes = {(BTC, feed.ts(SIGNAL)): (Side.LONG, 1.0)}
    async with crafted_engine(manual(), feed, votes, clock=clock) as engine:
        await play(engine)
        rows = await query(
            engine,
            "SELECT d.action, d.reason, d.latency_ms, d.decided_by, p.status FROM decisions d"
            " JOIN proposals p ON p.id = d.proposal_id",
        )
        assert rows == [("reject", "bad_timing", 1250, "human", "rejected")]
        assert await query(engine, "SELECT COUNT(*) FROM order_intents") == [(0,)]
        assert await query(engine, "SELECT COUNT(*) FROM fills") == [(0,)]
        await assert_checks_pass(engine)


@pytest.mark.parametrize(
    ("requested", "approved"),
    [(Decimal("5"), Decimal("5")), (Decimal("1000"), Decimal("100"))],
    ids=["the person's quantity", "capped at 10 % of equity by the risk manager"],
)
async def test_resize_approves_the_persons_quantity_capped_by_risk(
    requested: Decimal, approved: Decimal
) -> None:
    async def resize(engine: Engine) -> None:
        [p] = engine.pending()
        assert p.size == QTY
        decision = await engine.approve(p.id, requested)
        assert decision.size == approved and decision.resized

    feed = CraftedFeed({BTC: with_warmup([FLAT, (101, 102, 100, 101)])}, hooks={SIGNAL: resize})
    votes = {(BTC, feed.ts(SIGNAL)): (Side.LONG, 1.0)}
    async with crafted_engine(manual(), feed, votes) as engine:
        await play(engine)
        decisions = await query(engine, "SELECT action, size, resized FROM decisions")
        assert [(a, Decimal(s), r) for a, s, r in decisions] == [("approve", approved, 1)]
        intents = await query(engine, "SELECT qty, status FROM order_intents")
        assert [(Decimal(q), s) for q, s in intents] == [(approved, "filled")]
        fills = await query(engine, "SELECT qty, price FROM fills")
        assert [(Decimal(q), Decimal(p)) for q, p in fills] == [(approved, buy_px("101"))]
        assert engine.portfolio.positions[BTC].qty == approved
        await assert_checks_pass(engine)


async def test_denial_when_halted_stores_order_denied_and_the_approval_keeps_one_intent() -> None:
    async def halt_then_approve(engine: Engine) -> None:
        [p] = engine.pending()
        await engine.halt("news: exchange outage")
        decision = await engine.approve(p.id)
        assert decision.action is DecisionAction.APPROVE
        with pytest.raises(CommandError, match="no longer pending"):
            await engine.approve(p.id)

    feed = CraftedFeed({BTC: with_warmup([FLAT, FLAT, FLAT])}, hooks={SIGNAL: halt_then_approve})
    votes = {(BTC, feed.ts(SIGNAL)): (Side.LONG, 1.0)}
    async with crafted_engine(manual(), feed, votes) as engine:
        events: list[str] = []
        engine.subscribe(lambda e: events.append(e.kind))
        await play(engine)
        assert engine.risk.state is TradingState.HALTED
        denied = await query(
            engine,
            "SELECT json_extract(payload, '$.reason'), json_extract(payload, '$.proposal_id')"
            " FROM events WHERE kind = 'OrderDenied'",
        )
        [(proposal_id,)] = await query(engine, "SELECT id FROM proposals")
        assert len(denied) == 1
        assert "HALTED" in denied[0][0] and "news: exchange outage" in denied[0][0]
        assert denied[0][1] == proposal_id
        assert await query(engine, "SELECT action FROM decisions") == [("approve",)]
        intents = await query(
            engine,
            "SELECT i.status, i.reason FROM order_intents i JOIN decisions d"
            " ON d.id = i.decision_id",
        )
        assert len(intents) == 1 and intents[0][0] == "denied" and "HALTED" in intents[0][1]
        assert await query(engine, "SELECT COUNT(*) FROM orders") == [(0,)]
        assert await query(engine, "SELECT COUNT(*) FROM fills") == [(0,)]
        assert engine.portfolio.cash == INITIAL
        assert "OrderDenied" in events and "TradingStateChanged" in events
        await assert_checks_pass(engine)


async def test_approving_a_proposal_the_market_has_run_past_is_denied_not_filled() -> None:
    # Entry 100, ATR 2: stop 96, take-profit 108. Two candles later the close is 110.
    async def approve_late(engine: Engine) -> None:
        [p] = engine.pending()
        assert (p.stop, p.take_profit) == (Decimal(96), Decimal(108))
        await engine.approve(p.id)

    rows = [FLAT, (100, 106, 99, 105), (105, 111, 104, 110), FLAT]
    feed = CraftedFeed({BTC: with_warmup(rows)}, hooks={SIGNAL + 2: approve_late})
    votes = {(BTC, feed.ts(SIGNAL)): (Side.LONG, 1.0)}
    async with crafted_engine(manual(), feed, votes) as engine:
        await play(engine)
        assert engine.error is None
        intents = await query(engine, "SELECT status, reason FROM order_intents")
        assert len(intents) == 1 and intents[0][0] == "denied"
        assert "past the take-profit 108" in intents[0][1]
        assert await query(engine, "SELECT COUNT(*) FROM fills") == [(0,)]
        await assert_checks_pass(engine)


async def test_auto_approves_a_queued_proposal_once_a_merge_lifts_it_over_the_threshold() -> None:
    # 0.6 is below auto_confidence 0.7: queued. The same side a candle later at 0.8
    # merges into it (inside the dedup window) and lifts it to 0.8: the policy approves.
    feed = CraftedFeed({BTC: with_warmup([FLAT] * 6)})
    votes = {
        (BTC, feed.ts(SIGNAL)): (Side.LONG, 0.6),
        (BTC, feed.ts(SIGNAL + 1)): (Side.LONG, 0.8),
    }
    async with crafted_engine(settings(), feed, votes) as engine:
        await play(engine)
        rows = await query(
            engine,
            "SELECT p.merged, p.confidence, p.status, d.action, d.decided_by, d.decided_at"
            " FROM proposals p JOIN decisions d ON d.proposal_id = p.id",
        )
        # The bug: auto decided only when a proposal was made, so this one expired.
        assert rows == [(1, 0.8, "approved", "approve", "policy", feed.ts(SIGNAL + 1))]
        assert await query(engine, "SELECT COUNT(*) FROM fills") == [(1,)]
        await assert_checks_pass(engine)
