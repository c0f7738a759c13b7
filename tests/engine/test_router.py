"""The signal router and approval queue: dedup, time to live, bounds, policies, claims;
and through the real engine, the same rules with every decision stored once."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from crafted_market import (
    FLAT,
    MIN,
    WARMUP,
    CraftedFeed,
    assert_checks_pass,
    crafted_engine,
    play,
    query,
    settings,
    with_warmup,
)

from engine.models import Decision, Proposal, RejectReason, Side
from engine.router import Policy, SignalRouter, Verdict
from engine.runtime import CommandError, Engine

T0 = 1_767_225_600_000
WINDOW = 300_000
BTC, ETH, SOL = "BTC/USDT", "ETH/USDT", "SOL/USDT"


def proposal(
    pid: str,
    symbol: str = BTC,
    side: Side = Side.LONG,
    at: int = T0,
    confidence: float = 0.8,
    ttl: int = 600_000,
) -> Proposal:
    return Proposal(
        id=pid,
        symbol=symbol,
        side=side,
        entry=Decimal(100),
        stop=Decimal(96),
        take_profit=Decimal(108),
        confidence=confidence,
        size=Decimal(1),
        created_at=at,
        expires_at=at + ttl,
    )


def router(**kwargs: object) -> SignalRouter:
    params: dict[str, object] = {"max_pending": 50, "dedup_window_ms": WINDOW, **kwargs}
    return SignalRouter(**params)


# --- the router alone -------------------------------------------------------------


def test_a_second_proposal_for_the_same_symbol_and_side_inside_the_window_is_merged() -> None:
    r = router()
    first = r.offer(proposal("a", confidence=0.6))
    second = r.offer(proposal("b", at=T0 + WINDOW, confidence=0.9))
    assert not first.merged and second.merged
    assert second.proposal.id == "a"
    assert [p.id for p in r.pending()] == ["a"]
    assert r.pending()[0].merged == 1
    assert r.pending()[0].confidence == 0.9  # the stronger signal wins
    third = r.offer(proposal("c", at=T0 + 60_000, confidence=0.5))
    assert third.merged and r.pending()[0].merged == 2
    assert r.pending()[0].confidence == 0.9


def test_a_proposal_outside_the_window_or_for_another_side_or_symbol_is_queued_separately() -> None:
    r = router()
    r.offer(proposal("a"))
    assert not r.offer(proposal("late", at=T0 + WINDOW + 1)).merged
    assert not r.offer(proposal("short", side=Side.SHORT, at=T0 + 1)).merged
    assert not r.offer(proposal("eth", symbol=ETH, at=T0 + 1)).merged
    assert [p.id for p in r.pending()] == ["a", "late", "short", "eth"]


def test_a_zero_window_never_merges() -> None:
    r = router(dedup_window_ms=0)
    r.offer(proposal("a"))
    assert not r.offer(proposal("b", at=T0 + 1)).merged
    assert len(r) == 2


def test_due_claims_every_proposal_whose_time_to_live_ran_out() -> None:
    r = router()
    r.offer(proposal("short-lived", ttl=60_000))
    r.offer(proposal("long-lived", symbol=ETH, ttl=600_000))
    assert r.due(T0 + 59_999) == []
    assert [p.id for p in r.due(T0 + 60_000)] == ["short-lived"]
    assert [p.id for p in r.pending()] == ["long-lived"]
    assert r.claim("short-lived") is None  # claimed by due(): nobody else can decide it
    assert r.due(T0 + 60_000) == []
    assert [p.id for p in r.due(T0 + 600_000)] == ["long-lived"]
    assert len(r) == 0


def test_a_full_queue_expires_the_oldest_first() -> None:
    r = router(max_pending=3)
    for i, symbol in enumerate((BTC, ETH, SOL)):
        assert r.offer(proposal(f"p{i}", symbol=symbol, at=T0 + i)).evicted == ()
    offered = r.offer(proposal("p3", symbol="XRP/USDT", at=T0 + 3))
    assert [p.id for p in offered.evicted] == ["p0"]
    assert [p.id for p in r.pending()] == ["p1", "p2", "p3"]
    assert r.claim("p0") is None  # evicted proposals are already claimed for their expiry
    offered = r.offer(proposal("p4", symbol="ADA/USDT", at=T0 + 4))
    assert [p.id for p in offered.evicted] == ["p1"]


@pytest.mark.parametrize(
    ("policy", "below", "confidence", "verdict"),
    [
        (Policy.MANUAL, "queue", 1.0, Verdict.QUEUE),
        (Policy.AUTO, "queue", 0.7, Verdict.APPROVE),
        (Policy.AUTO, "queue", 0.95, Verdict.APPROVE),
        (Policy.AUTO, "queue", 0.69, Verdict.QUEUE),
        (Policy.AUTO, "reject", 0.69, Verdict.REJECT),
        (Policy.QUEUE_ONLY, "queue", 1.0, Verdict.QUEUE),
        (Policy.QUEUE_ONLY, "reject", 0.1, Verdict.QUEUE),
    ],
)
def test_policy_verdicts(policy: Policy, below: str, confidence: float, verdict: Verdict) -> None:
    r = router(policy=policy, auto_confidence=0.7, below_confidence=below)
    assert r.verdict(proposal("a", confidence=confidence)) is verdict


def test_claim_release_done() -> None:
    r = router()
    for i in range(3):
        r.offer(proposal(f"p{i}", symbol=(BTC, ETH, SOL)[i], at=T0 + i))
    claimed = r.claim("p0")
    assert claimed is not None and claimed.id == "p0"
    assert r.claim("p0") is None  # a claimed proposal cannot be claimed twice
    assert r.get("p0") is claimed  # still known while its decision is written
    assert [p.id for p in r.pending()] == ["p1", "p2"]
    r.release("p0")  # its decision could not be stored: back in the queue, oldest first
    assert [p.id for p in r.pending()] == ["p0", "p1", "p2"]
    assert r.claim("p0") is not None
    r.done("p0")
    assert r.get("p0") is None and r.claim("p0") is None
    r.release("p0")  # releasing a decided proposal does not resurrect it
    assert [p.id for p in r.pending()] == ["p1", "p2"]


def test_restored_proposals_come_back_oldest_first() -> None:
    r = router()
    r.restore([proposal("new", at=T0 + 5), proposal("old", symbol=ETH, at=T0)])
    assert [p.id for p in r.pending()] == ["old", "new"]


# --- through the engine -------------------------------------------------------------

SIGNAL = WARMUP


async def test_engine_merges_a_repeated_signal_inside_the_window_and_stores_it_once() -> None:
    rows = with_warmup([FLAT] * 4)
    for window, proposals in ((300.0, 1), (0.0, 2)):
        feed = CraftedFeed({BTC: rows})
        votes = {
            (BTC, feed.ts(SIGNAL)): (Side.LONG, 0.5),
            (BTC, feed.ts(SIGNAL + 2)): (Side.LONG, 0.9),
        }
        approval = {"policy": "manual", "dedup_window_seconds": window}
        async with crafted_engine(settings(approval=approval), feed, votes) as engine:
            await play(engine)
            rows_ = await query(engine, "SELECT merged, confidence, status FROM proposals")
            if proposals == 1:
                assert rows_ == [(1, 0.9, "pending")]
                merged = await query(
                    engine, "SELECT COUNT(*) FROM events WHERE kind = 'ProposalMerged'"
                )
                assert merged == [(1,)]
            else:
                assert sorted(rows_) == [(0, 0.5, "pending"), (0, 0.9, "pending")]
            assert len(engine.pending()) == proposals
            await assert_checks_pass(engine)


async def test_engine_expires_the_oldest_proposal_when_the_queue_is_full() -> None:
    symbols = (BTC, ETH, SOL)
    feed = CraftedFeed({s: with_warmup([FLAT] * 3) for s in symbols})
    # One signal per symbol, a candle apart: BTC is the oldest.
    votes = {(s, feed.ts(SIGNAL + i)): (Side.LONG, 1.0) for i, s in enumerate(symbols)}
    approval = {"policy": "manual", "max_pending": 2}
    async with crafted_engine(
        settings(approval=approval, feed={"symbols": symbols}), feed, votes
    ) as engine:
        await play(engine)
        rows = await query(
            engine,
            "SELECT p.symbol, p.status, d.action, d.reason FROM proposals p"
            " LEFT JOIN decisions d ON d.proposal_id = p.id ORDER BY p.created_at",
        )
        assert rows == [
            (BTC, "expired", "expire", "queue full: oldest expired first"),
            (ETH, "pending", None, None),
            (SOL, "pending", None, None),
        ]
        assert [p.symbol for p in engine.pending()] == [ETH, SOL]
        await assert_checks_pass(engine)


@pytest.mark.parametrize(
    ("approval", "expected"),
    [
        ({"policy": "auto", "auto_confidence": 0.7}, [("approve", None, "policy")]),
        (
            {"policy": "auto", "auto_confidence": 0.95, "below_confidence": "reject"},
            [("reject", "policy", "policy")],
        ),
        ({"policy": "auto", "auto_confidence": 0.95, "below_confidence": "queue"}, []),
        ({"policy": "manual"}, []),
        ({"policy": "queue-only", "ttl_seconds": 120.0}, [("expire", None, "engine")]),
    ],
    ids=["auto-approve", "auto-reject-below", "auto-queue-below", "manual", "queue-only"],
)
async def test_engine_policies_decide_as_configured(
    approval: dict[str, object], expected: list[tuple[str, str | None, str]]
) -> None:
    feed = CraftedFeed({BTC: with_warmup([FLAT] * 4)})
    votes = {(BTC, feed.ts(SIGNAL)): (Side.LONG, 0.9)}
    async with crafted_engine(settings(approval=approval), feed, votes) as engine:
        await play(engine)
        rows = await query(engine, "SELECT action, reason, decided_by FROM decisions")
        if expected and expected[0][0] == "expire":
            rows = [(a, None, by) for a, _, by in rows]
        assert rows == expected
        assert len(engine.pending()) == (0 if expected else 1)
        await assert_checks_pass(engine)


async def test_queue_only_never_approves_and_expires_everything(tmp_path: Path) -> None:
    symbols = (BTC, ETH, SOL)
    feed = CraftedFeed({s: with_warmup([FLAT] * 8) for s in symbols})
    votes = {(s, feed.ts(SIGNAL + i)): (Side.LONG, 1.0) for i, s in enumerate(symbols)}
    cfg = settings(
        approval={"policy": "queue-only", "auto_confidence": 0.0, "ttl_seconds": 120.0},
        feed={"symbols": symbols},
    )
    async with crafted_engine(cfg, feed, votes, path=str(tmp_path / "cma.db")) as engine:
        await play(engine)
        rows = await query(engine, "SELECT action, COUNT(*) FROM decisions GROUP BY action")
        assert rows == [("expire", 3)]
        assert await query(engine, "SELECT COUNT(*) FROM order_intents") == [(0,)]
        assert engine.pending() == []
        await assert_checks_pass(engine)


async def test_concurrent_approvals_and_rejections_decide_a_proposal_exactly_once(
    tmp_path: Path,
) -> None:
    outcomes: list[Decision | BaseException] = []

    async def race(engine: Engine) -> None:
        [p] = engine.pending()
        calls = [
            engine.approve(p.id) if i % 3 == 0
            else engine.approve(p.id, Decimal("1")) if i % 3 == 1
            else engine.reject(p.id, RejectReason.DISAGREE)
            for i in range(30)
        ]  # fmt: skip
        tasks = [asyncio.create_task(c) for c in calls]
        outcomes.extend(await asyncio.gather(*tasks, return_exceptions=True))

    feed = CraftedFeed({BTC: with_warmup([FLAT] * 3)}, hooks={SIGNAL: race})
    votes = {(BTC, feed.ts(SIGNAL)): (Side.LONG, 1.0)}
    path = str(tmp_path / "cma.db")
    async with crafted_engine(settings(approval={"policy": "manual"}), feed, votes, path=path) as e:
        await play(e)
        decided = [o for o in outcomes if isinstance(o, Decision)]
        errors = [o for o in outcomes if not isinstance(o, Decision)]
        assert len(decided) == 1 and len(errors) == 29
        assert all(isinstance(x, CommandError) and "no longer pending" in str(x) for x in errors)
        rows = await query(e, "SELECT proposal_id, action FROM decisions")
        assert rows == [(decided[0].proposal_id, decided[0].action.value)]
        made = await query(e, "SELECT COUNT(*) FROM events WHERE kind = 'DecisionMade'")
        assert made == [(1,)]
        intents = await query(e, "SELECT COUNT(*) FROM order_intents")
        assert intents == [(1 if decided[0].action.value == "approve" else 0,)]
        await assert_checks_pass(e)


async def test_concurrent_decisions_on_many_proposals_each_store_one_decision(
    tmp_path: Path,
) -> None:
    symbols = (BTC, ETH, SOL, "XRP/USDT", "BNB/USDT")

    async def race(engine: Engine) -> None:
        pending = engine.pending()
        assert len(pending) == len(symbols)
        calls = []
        for p in pending:
            calls += [engine.reject(p.id, RejectReason.NEWS) for _ in range(5)]
            calls += [engine.approve(p.id) for _ in range(5)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert sum(isinstance(r, Decision) for r in results) == len(symbols)
        assert all(isinstance(r, Decision | CommandError) for r in results)

    feed = CraftedFeed({s: with_warmup([FLAT] * 3) for s in symbols}, hooks={SIGNAL: race})
    votes = {(s, feed.ts(SIGNAL)): (Side.LONG, 1.0) for s in symbols}
    cfg = settings(
        approval={"policy": "manual"},
        feed={"symbols": symbols},
        risk={"max_correlation": 1.0, "max_open_positions": 10},
    )
    async with crafted_engine(cfg, feed, votes, path=str(tmp_path / "cma.db")) as engine:
        await play(engine)
        rows = await query(
            engine, "SELECT proposal_id, COUNT(*) FROM decisions GROUP BY proposal_id"
        )
        assert len(rows) == len(symbols) and all(n == 1 for _, n in rows)
        assert engine.pending() == []
        await assert_checks_pass(engine)


async def test_expiry_and_a_late_approval_race_for_the_same_proposal() -> None:
    """A person approving after the time to live ran out is told it is gone."""

    async def late(engine: Engine) -> None:
        [(pid,)] = await query(engine, "SELECT id FROM proposals")
        with pytest.raises(CommandError, match="no longer pending"):
            await engine.approve(pid)

    feed = CraftedFeed({BTC: with_warmup([FLAT] * 4)}, hooks={SIGNAL + 2: late})
    votes = {(BTC, feed.ts(SIGNAL)): (Side.LONG, 1.0)}
    approval = {"policy": "manual", "ttl_seconds": 2 * MIN / 1000}
    async with crafted_engine(settings(approval=approval), feed, votes) as engine:
        await play(engine)
        assert await query(engine, "SELECT action FROM decisions") == [("expire",)]
        await assert_checks_pass(engine)
