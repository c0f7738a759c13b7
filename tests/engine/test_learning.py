"""The learning agent: each agent's record, real and counterfactual, its weight, and
its survival across a restart of the engine."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from crafted_market import (
    FLAT,
    WARMUP,
    CraftedFeed,
    assert_checks_pass,
    crafted_engine,
    play,
    query,
    settings,
    with_warmup,
)

from engine.learning import MAX_HOLD_CANDLES, OVERALL, LearningAgent
from engine.models import AgentVote, Candle, Proposal, RejectReason, Side, evolve
from engine.ports import AgentRecordRow
from engine.runtime import Engine

BTC = "BTC/USDT"
T0 = 1_767_225_600_000
MIN = 60_000


def proposal(side: Side = Side.LONG, votes: tuple[tuple[str, Side], ...] = ()) -> Proposal:
    long = side is Side.LONG
    return Proposal(
        id="prp-1",
        symbol=BTC,
        side=side,
        entry=Decimal(100),
        stop=Decimal(96 if long else 104),
        take_profit=Decimal(108 if long else 92),
        confidence=0.8,
        size=Decimal(1),
        created_at=T0,
        expires_at=T0 + 300_000,
        votes=tuple(
            AgentVote(agent=a, symbol=BTC, direction=d, strength=0.9, rationale="x")
            for a, d in votes
        ),
    )


def bar(i: int, o: float, h: float, lo: float, c: float) -> Candle:
    return Candle(BTC, T0 + i * MIN, o, h, lo, c, 1.0)


def test_a_declined_proposal_whose_take_profit_is_hit_is_a_counterfactual_win_for_its_voters() -> (
    None
):
    agent = LearningAgent()
    agent.follow(proposal(votes=(("momentum", Side.LONG), ("contrarian", Side.SHORT))))
    assert agent.followed == 1
    assert agent.on_candle(bar(1, 100, 101, 99, 100)) == 0
    assert agent.on_candle(bar(2, 100, 108.5, 99.5, 108)) == 1
    assert agent.followed == 0
    for key in (("momentum", BTC), ("momentum", OVERALL)):
        rec = agent.records[key]
        assert (rec.trades, rec.cf_trades, rec.cf_wins) == (0, 1, 1)
        assert rec.cf_sum_win == pytest.approx(0.08)
    # The agent that voted against the proposal is not credited with it.
    assert ("contrarian", BTC) not in agent.records
    rows = agent.take_dirty()
    assert {(r.agent, r.symbol, r.cf_wins) for r in rows} == {
        ("momentum", BTC, 1),
        ("momentum", OVERALL, 1),
    }
    assert agent.take_dirty() == []


@pytest.mark.parametrize(
    ("side", "candle", "ret"),
    [
        (Side.LONG, (100, 101, 95, 97), -0.04),  # stop
        (Side.LONG, (100, 109, 95, 104), -0.04),  # both: the stop first
        (Side.LONG, (90, 91, 89, 90), -0.10),  # gap through the stop: the open
        (Side.LONG, (110, 111, 109, 110), 0.10),  # gap through the take-profit: the open
        (Side.SHORT, (100, 100.5, 91, 93), 0.08),  # take-profit
        (Side.SHORT, (100, 105, 91, 95), -0.04),  # both: the stop first
    ],
)
def test_counterfactual_exits_follow_the_paper_brokers_rules(
    side: Side, candle: tuple[float, float, float, float], ret: float
) -> None:
    agent = LearningAgent()
    agent.follow(proposal(side, votes=(("a", side),)))
    assert agent.on_candle(bar(1, *candle)) == 1
    rec = agent.records[("a", BTC)]
    assert rec.cf_trades == 1
    assert (rec.cf_sum_win - rec.cf_sum_loss) == pytest.approx(ret)


def test_a_counterfactual_never_closed_by_stop_or_target_closes_after_the_holding_limit() -> None:
    agent = LearningAgent()
    agent.follow(proposal(votes=(("a", Side.LONG),)))
    for i in range(MAX_HOLD_CANDLES - 1):
        assert agent.on_candle(bar(i, 100, 101, 99, 100)) == 0
    assert agent.on_candle(bar(MAX_HOLD_CANDLES, 100, 103, 99, 102)) == 1
    assert agent.records[("a", BTC)].cf_sum_win == pytest.approx(0.02)


def test_a_proposal_without_a_vote_for_its_side_is_not_followed() -> None:
    agent = LearningAgent()
    agent.follow(proposal(votes=(("a", Side.SHORT),)))
    assert agent.followed == 0


def test_weight_is_one_without_a_record_and_moves_with_it() -> None:
    agent = LearningAgent()
    assert agent.weight("a", BTC) == 1.0
    for _ in range(3):
        agent.on_trade_closed(proposal(votes=(("a", Side.LONG),)), BTC, 0.05)
    up = agent.weight("a", BTC)
    assert up == pytest.approx(2 * (3 + 2) / (3 + 4))
    assert up > 1.0
    for _ in range(5):
        agent.on_trade_closed(proposal(votes=(("a", Side.LONG),)), BTC, -0.02)
    down = agent.weight("a", BTC)
    assert down < up and down == pytest.approx(2 * (3 + 2) / (8 + 4))
    # Another symbol without 10 trades of its own borrows the overall record.
    assert agent.weight("a", "ETH/USDT") == down
    assert agent.weight("unknown", BTC) == 1.0
    assert agent.records[("a", BTC)].trades == 8


def test_the_per_symbol_record_takes_over_after_ten_trades() -> None:
    agent = LearningAgent()
    votes = (("a", Side.LONG),)
    for _ in range(10):
        agent.on_trade_closed(proposal(votes=votes), BTC, -0.01)
    eth = evolve(proposal(votes=votes), symbol="ETH/USDT")
    for _ in range(10):
        agent.on_trade_closed(eth, "ETH/USDT", 0.01)
    assert agent.weight("a", BTC) == pytest.approx(2 * 2 / 14)
    assert agent.weight("a", "ETH/USDT") == pytest.approx(2 * 12 / 14)
    assert agent.weight("a", "SOL/USDT") == pytest.approx(2 * 12 / 24)


def test_edge_pools_real_and_counterfactual_trades_of_the_agents_behind_a_proposal() -> None:
    agent = LearningAgent()
    assert agent.edge(proposal(votes=(("a", Side.LONG),))) is None
    p = proposal(votes=(("a", Side.LONG), ("b", Side.LONG), ("c", Side.SHORT)))
    agent.restore(
        [
            AgentRecordRow("a", OVERALL, trades=4, wins=3, sum_win=0.3, sum_loss=0.05),
            AgentRecordRow("b", OVERALL, cf_trades=2, cf_wins=0, cf_sum_loss=0.04),
            AgentRecordRow("c", OVERALL, trades=100, wins=100, sum_win=10.0),
        ]
    )
    edge = agent.edge(p)
    assert edge is not None
    assert edge.trades == 6 and edge.win_rate == pytest.approx(0.5)
    assert edge.avg_win == pytest.approx(0.1)
    assert edge.avg_loss == pytest.approx(0.03)


# --- through the engine, and across a restart -----------------------------------------

SIGNAL = WARMUP


async def test_a_rejected_proposal_hitting_its_take_profit_is_stored_and_restored(
    tmp_path: Path,
) -> None:
    async def reject(engine: Engine) -> None:
        [p] = engine.pending()
        await engine.reject(p.id, RejectReason.DISAGREE)

    path = str(tmp_path / "cma.db")
    rows = with_warmup([FLAT, FLAT, (100, 108.5, 99.5, 107), FLAT])
    feed = CraftedFeed({BTC: rows}, hooks={SIGNAL: reject})
    votes = {(BTC, feed.ts(SIGNAL)): (Side.LONG, 1.0)}
    cfg = settings(approval={"policy": "manual"})
    async with crafted_engine(cfg, feed, votes, path=path) as engine:
        await play(engine)
        assert engine.learning.records[("scripted", BTC)].cf_trades == 1
        stored = await query(
            engine,
            "SELECT agent, symbol, trades, wins, cf_trades, cf_wins, cf_sum_win, cf_sum_loss"
            " FROM agent_records ORDER BY symbol",
        )
        assert stored == [
            ("scripted", "*", 0, 0, 1, 1, pytest.approx(0.08), 0.0),
            ("scripted", BTC, 0, 0, 1, 1, pytest.approx(0.08), 0.0),
        ]
        weight = engine.learning.weight("scripted", BTC)
        assert weight == pytest.approx(2 * 3 / 5)
        records = dict(engine.learning.records)
        await assert_checks_pass(engine)

    later = CraftedFeed({BTC: [FLAT]}, start=feed.ts(len(rows)))
    async with crafted_engine(cfg, later, {}, path=path) as again:
        recovery = await again.start()
        assert not recovery.is_fresh
        assert again.learning.records == records
        assert again.learning.weight("scripted", BTC) == weight
        await again.wait()
        await again.stop()
        await assert_checks_pass(again)


async def test_an_expired_proposal_is_followed_and_a_closed_trade_counts_as_real(
    tmp_path: Path,
) -> None:
    """One proposal expires into a counterfactual loss; a later one is approved and wins."""
    rows = with_warmup(
        [FLAT, FLAT, FLAT, (100, 100.5, 95, 97), FLAT, FLAT, FLAT, (100, 112, 99.5, 111)]
    )
    feed = CraftedFeed({BTC: rows})
    votes = {
        (BTC, feed.ts(SIGNAL)): (Side.LONG, 0.5),  # below auto confidence: queued, expires
        (BTC, feed.ts(SIGNAL + 4)): (Side.LONG, 1.0),  # approved, fills, hits its target
    }
    approval = {"policy": "auto", "auto_confidence": 0.7, "ttl_seconds": 120.0}
    async with crafted_engine(
        settings(approval=approval), feed, votes, path=str(tmp_path / "cma.db")
    ) as engine:
        await play(engine)
        decisions = await query(engine, "SELECT action FROM decisions ORDER BY id")
        assert decisions == [("expire",), ("approve",)]
        rec = engine.learning.records[("scripted", BTC)]
        assert (rec.cf_trades, rec.cf_wins) == (1, 0)
        assert rec.cf_sum_loss == pytest.approx(0.04)
        assert (rec.trades, rec.wins) == (1, 1)
        # The real return is net PnL over cost: fees and slippage included.
        [(pnl, fees, cost)] = await query(
            engine,
            "SELECT p.realized_pnl, p.fees, f.qty * f.price FROM positions p"
            " JOIN fills f ON f.ts = p.opened_at",
        )
        assert rec.sum_win == pytest.approx(
            float((Decimal(pnl) - Decimal(fees)) / Decimal(str(cost)))
        )
        stored = await query(
            engine,
            "SELECT trades, wins, cf_trades, cf_wins FROM agent_records WHERE symbol = ?",
            BTC,
        )
        assert stored == [(1, 1, 1, 0)]
        await assert_checks_pass(engine)


@pytest.mark.parametrize(
    ("candles", "reason", "exit_price"),
    [
        ([bar(1, 100, 108.5, 99.5, 108)], "take_profit", 108.0),
        ([bar(1, 100, 101, 95, 97)], "stop", 96.0),
        ([bar(i, 100, 101, 99, 100.5) for i in range(1, MAX_HOLD_CANDLES + 1)], "time", 100.5),
    ],
)
def test_each_closed_counterfactual_is_handed_to_the_store_once_with_how_it_ended(
    candles: list[Candle], reason: str, exit_price: float
) -> None:
    agent = LearningAgent()
    agent.follow(proposal(votes=(("momentum", Side.LONG), ("trend", Side.LONG))))
    assert agent.take_closed() == []
    for c in candles:
        agent.on_candle(c)
    (row,) = agent.take_closed()
    assert (row.proposal_id, row.symbol, row.side, row.agents) == (
        "prp-1",
        BTC,
        "long",
        ("momentum", "trend"),
    )
    assert (row.exit_reason, row.exit_price, row.closed_at) == (reason, exit_price, candles[-1].ts)
    assert row.ret == pytest.approx((exit_price - 100) / 100)
    assert agent.take_closed() == []
