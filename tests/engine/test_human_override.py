"""A record without edge holds auto approval back, but a person may still approve:
the statistics are overridden, the limits are not."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from crafted_market import (
    FLAT,
    CraftedFeed,
    assert_checks_pass,
    crafted_engine,
    query,
    settings,
    with_warmup,
)

from engine.models import Side
from engine.ports import AgentRecordRow
from engine.runtime import Engine
from persistence.store import Store

BTC = "BTC/USDT"
SIGNAL = 15


async def _seed_losing_record(path: Path) -> None:
    # 40 counterfactual trades, 4 small wins, 36 losses: Kelly is 0.
    store = await Store.open(path)
    await store.init_balance("USDT", Decimal("100000"), 0)
    rows = [
        AgentRecordRow(
            "scripted", symbol, cf_trades=40, cf_wins=4, cf_sum_win=0.01, cf_sum_loss=0.5
        )
        for symbol in (BTC, "*")
    ]
    async with store.unit_of_work() as uow:
        uow.agent_records(rows)
    await store.close()


async def test_no_edge_proposal_is_shown_with_the_reason_and_auto_does_not_approve_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cma.db"
    await _seed_losing_record(path)
    feed = CraftedFeed({BTC: with_warmup([FLAT, FLAT])})
    votes = {(BTC, feed.ts(SIGNAL)): (Side.LONG, 1.0)}
    async with crafted_engine(settings(), feed, votes, path=str(path)) as engine:
        await engine.start(paused_if_recovered=False)
        await engine.wait()
        await engine.stop()
        rows = await query(engine, "SELECT size, risk_note, status FROM proposals")
        assert len(rows) == 1
        size, note, status = rows[0]
        assert Decimal(size) == 0 and note.startswith("no edge") and status == "pending"
        assert await query(engine, "SELECT COUNT(*) FROM decisions") == [(0,)]


async def test_person_approving_against_a_record_without_edge_gets_the_default_size(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cma.db"
    await _seed_losing_record(path)

    sizes: list[Decimal | None] = []

    async def approve(engine: Engine) -> None:
        [p] = engine.pending()
        assert p.size == 0 and p.risk_note.startswith("no edge")
        decision = await engine.approve(p.id)
        # The default fraction, 2 % of 100,000 at entry 100 (20 BTC), scaled by the
        # confidence the losing record leaves (its weight is low), not denied.
        sizes.append(decision.size)
        assert decision.size is not None
        assert abs(decision.size - Decimal(20) * Decimal(repr(p.confidence))) < Decimal("0.001")

    feed = CraftedFeed({BTC: with_warmup([FLAT, FLAT])}, hooks={SIGNAL: approve})
    votes = {(BTC, feed.ts(SIGNAL)): (Side.LONG, 1.0)}
    manual = settings(approval={"policy": "manual"})
    async with crafted_engine(manual, feed, votes, path=str(path)) as engine:
        await engine.start(paused_if_recovered=False)
        await engine.wait()
        await engine.stop()
        assert engine.error is None
        intents = await query(engine, "SELECT qty, status FROM order_intents")
        assert [(Decimal(q), s) for q, s in intents] == [(sizes[0], "filled")]
        await assert_checks_pass(engine)
