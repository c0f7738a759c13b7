"""The commit pipeline: Steps stored in order, each announced only once stored; a failed
commit of the candle loop stops it, a failed command undoes itself; stop drains it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import pytest
from crafted_market import (
    FLAT,
    CraftedFeed,
    FakeClock,
    ScriptedAgent,
    crafted_engine,
    query,
    settings,
    with_warmup,
)
from test_order_tracker import proposal

from engine.broker import PaperBroker
from engine.marks import Marks
from engine.models import (
    EngineEvent,
    EngineMessage,
    EngineStateChanged,
    OrderFilled,
    OrderIntent,
    ProposalCreated,
    RejectReason,
    Side,
)
from engine.pipeline import CommitPipeline, PipelineStopped
from engine.runtime import CommandError, Engine
from engine.step import Step
from persistence.store import Store

BTC = "BTC/USDT"


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = await Store.open(":memory:")
    try:
        yield s
    finally:
        await s.close()


def created(store: Store, pid: str) -> Step:
    work = store.begin_work()
    return Step(work, [work.proposal_created(proposal(pid), 0)])


async def stored_ids(store: Store) -> list[str]:
    rows = await store.run(
        lambda c: c.execute("SELECT id FROM proposals ORDER BY rowid").fetchall()
    )
    return [r[0] for r in rows]


async def test_steps_are_stored_in_order_and_announced_only_once_stored(store: Store) -> None:
    heard: list[tuple[str, list[str]]] = []
    pending: list[asyncio.Task[list[str]]] = []

    def announce(events: list[EngineEvent]) -> None:
        for e in events:
            assert isinstance(e, ProposalCreated)
            # What the store holds right now, read on its own writer after this call.
            pending.append(asyncio.ensure_future(stored_ids(store)))
            heard.append((e.proposal.id, []))

    pipeline = CommitPipeline(store, PaperBroker(Decimal(0), Decimal(0)), announce, print)
    pipeline.start()
    for i in range(5):
        await pipeline.put(created(store, f"p{i}"))
    assert [pid for pid, _ in heard] != [f"p{i}" for i in range(5)]  # the loop ran ahead
    await pipeline.close()
    assert [pid for pid, _ in heard] == [f"p{i}" for i in range(5)]
    seen = [await t for t in pending]
    for i, ids in enumerate(seen):
        assert f"p{i}" in ids  # stored before it was announced
    assert await stored_ids(store) == [f"p{i}" for i in range(5)]


async def test_a_failed_commit_of_the_loop_stops_the_pipeline_and_keeps_a_prefix(
    store: Store,
) -> None:
    errors: list[BaseException] = []
    heard: list[str] = []

    def announce(events: list[EngineEvent]) -> None:
        heard.extend(e.proposal.id for e in events if isinstance(e, ProposalCreated))

    pipeline = CommitPipeline(store, PaperBroker(Decimal(0), Decimal(0)), announce, errors.append)
    pipeline.start()
    await pipeline.put(created(store, "a"))
    await pipeline.drain()
    # Queued in a row, these three go into one transaction: the same id again fails it.
    await pipeline.put(created(store, "b"))
    await pipeline.put(created(store, "a"))
    await pipeline.put(created(store, "c"))
    with pytest.raises(Exception, match="UNIQUE"):
        await pipeline.drain()
    assert len(errors) == 1
    with pytest.raises(PipelineStopped):
        await pipeline.put(created(store, "d"))
    assert heard == ["a"]
    assert await stored_ids(store) == ["a"]  # nothing of the failed group, nothing after


async def test_a_failed_command_runs_its_undo_and_the_pipeline_goes_on(store: Store) -> None:
    undone: list[str] = []
    pipeline = CommitPipeline(store, PaperBroker(Decimal(0), Decimal(0)), lambda e: None, print)
    pipeline.start()
    await pipeline.put(created(store, "a"))
    bad = created(store, "a")
    bad.on_failed = lambda: undone.append("a")
    with pytest.raises(Exception, match="UNIQUE"):
        await pipeline.run(bad)
    assert undone == ["a"]
    await pipeline.put(created(store, "b"))
    await pipeline.close()
    assert await stored_ids(store) == ["a", "b"]


async def test_the_loop_waits_only_while_the_queue_is_full(store: Store) -> None:
    pipeline = CommitPipeline(store, PaperBroker(Decimal(0), Decimal(0)), lambda e: None, print, 2)
    pipeline.start()
    await pipeline.put(created(store, "a"))
    await pipeline.put(created(store, "b"))  # two queued: full
    third = asyncio.ensure_future(pipeline.put(created(store, "c")))
    await asyncio.sleep(0)
    assert not third.done()
    await third  # room once the first is stored
    await pipeline.close()
    assert await stored_ids(store) == ["a", "b", "c"]


async def test_a_step_with_nothing_to_store_and_nothing_ahead_is_announced_at_once(
    store: Store,
) -> None:
    heard: list[EngineEvent] = []
    pipeline = CommitPipeline(store, PaperBroker(Decimal(0), Decimal(0)), heard.extend, print)
    pipeline.start()
    message = EngineMessage(ts=0, text="hello")
    await pipeline.put(Step(store.begin_work(), [message]))
    assert heard == [message]
    await pipeline.close()


@asynccontextmanager
async def one_pending_and_no_decisions_table() -> AsyncIterator[tuple[Engine, str]]:
    """An engine with one pending proposal whose store can no longer take a decision."""
    feed = CraftedFeed({BTC: with_warmup([FLAT, FLAT])})
    votes = {(BTC, feed.ts(15)): (Side.LONG, 1.0)}
    async with crafted_engine(settings(approval={"policy": "manual"}), feed, votes) as engine:
        await engine.start()
        await engine.wait()
        [p] = engine.pending()
        store = engine.store
        assert isinstance(store, Store)
        await store.run(lambda c: c.execute("DROP TABLE decisions"))
        yield engine, p.id


async def test_an_approval_that_cannot_be_stored_is_pending_again_with_no_order() -> None:
    async with one_pending_and_no_decisions_table() as (engine, pid):
        with pytest.raises(CommandError, match="could not store the approval"):
            await engine.approve(pid)
        assert [q.id for q in engine.pending()] == [pid]
        assert engine.working_entries() == []
        assert await engine.broker.open_orders() == []


async def test_a_rejection_that_cannot_be_stored_is_pending_again_and_not_followed() -> None:
    async with one_pending_and_no_decisions_table() as (engine, pid):
        with pytest.raises(CommandError, match="could not store the rejection"):
            await engine.reject(pid, RejectReason.NEWS)
        assert [q.id for q in engine.pending()] == [pid]
        # Not counted as a rejected proposal's paper trade: a person may still approve it.
        assert engine.learning.followed == 0


async def test_stop_drains_the_pipeline_before_the_session_ends() -> None:
    feed = CraftedFeed({BTC: with_warmup([FLAT, FLAT, FLAT])})
    votes = {(BTC, feed.ts(15)): (Side.LONG, 1.0)}
    async with crafted_engine(settings(), feed, votes) as engine:
        heard: list[EngineEvent] = []
        engine.subscribe(heard.append)
        await engine.start()
        await engine.wait()
        await engine.stop(close_positions=True)
        last = heard[-1]
        assert isinstance(last, EngineStateChanged) and last.state == "stopped"
        fills = [e for e in heard if isinstance(e, OrderFilled)]
        assert len(fills) == 2  # the entry, and the close at the last mark on stop
        assert await query(engine, "SELECT COUNT(*) FROM fills") == [(2,)]
        [(ended,)] = await query(engine, "SELECT ended_at FROM sessions")
        assert ended is not None


class LiveRecorder(PaperBroker):
    """A paper market that says it is live: what the port's submit sees, and whether the
    order's intent was already stored then."""

    live = True

    def __init__(self) -> None:
        super().__init__(Decimal(0), Decimal(0))
        self.store: Store | None = None
        self.sent: list[tuple[str, bool]] = []

    async def submit(self, intent: OrderIntent) -> None:
        assert self.store is not None
        coid = intent.client_order_id
        rows = await self.store.run(
            lambda c: c.execute(
                "SELECT 1 FROM order_intents WHERE client_order_id = ?", (coid,)
            ).fetchall()
        )
        self.sent.append((coid, bool(rows)))


async def test_a_live_broker_gets_each_order_only_once_its_intent_is_stored() -> None:
    feed = CraftedFeed({BTC: with_warmup([FLAT, FLAT, FLAT])})
    ScriptedAgent.script = {(BTC, feed.ts(15)): (Side.LONG, 1.0)}
    cfg = settings(approval={"policy": "auto"})
    broker = LiveRecorder()
    store = await Store.open(":memory:")
    broker.store = store
    try:
        engine = Engine(cfg, store, feed, broker=broker, clock=FakeClock())
        feed.engine = engine
        assert engine.mode == "LIVE"
        await engine.start()
        await engine.wait()
        assert [p.symbol for p in engine.positions()] == [BTC]
        await engine.close_position(BTC)
        await engine.stop()
        intents = await query(engine, "SELECT client_order_id FROM order_intents ORDER BY rowid")
        assert [coid for coid, _ in broker.sent] == [row[0] for row in intents]
        assert len(broker.sent) == 2 and all(stored for _, stored in broker.sent)
    finally:
        await store.close()


def test_marks_keep_the_close_and_make_the_decimal_when_read() -> None:
    marks = Marks()
    marks.set(BTC, 100.5)
    assert BTC in marks and len(marks) == 1 and list(marks) == [BTC]
    assert marks[BTC] == Decimal("100.5") and marks.get(BTC) == Decimal("100.5")
    marks.set(BTC, 101.25)
    assert marks[BTC] == Decimal("101.25")  # a new close replaces the Decimal made before
    marks["ETH/USDT"] = Decimal("7.1")
    assert marks.get("ETH/USDT") == Decimal("7.1")
    assert marks.get("XRP/USDT") is None and marks.get("XRP/USDT", Decimal(1)) == Decimal(1)
    with pytest.raises(KeyError):
        marks["XRP/USDT"]
