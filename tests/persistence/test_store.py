"""The store on real SQLite files: pragmas, migrations, permissions, one writer,
atomic units of work, the append-only log, group commit, pruning and recovery."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from crash_writer import Book

from engine.models import (
    AgentVote,
    Candle,
    Decision,
    DecisionAction,
    EquityUpdated,
    Fill,
    OrderIntent,
    OrderSide,
    Proposal,
    Side,
    TradingState,
    TradingStateChanged,
)
from engine.ports import AgentRecordRow, OpenIntent
from persistence.connection import StoreLockedError, connect_reader, connect_writer
from persistence.errors import NewerStoreError
from persistence.migrations import APPLICATION_ID, MIGRATIONS, migrate
from persistence.store import BATCH_SECONDS, DAY_MS, Store

T0 = 1_700_000_000_000
CASH = Decimal("10000")


def proposal(pid: str, symbol: str = "BTC/USDT", side: Side = Side.LONG) -> Proposal:
    return Proposal(
        id=pid,
        symbol=symbol,
        side=side,
        entry=Decimal("100.5"),
        stop=Decimal("98"),
        take_profit=Decimal("105.12345678"),
        confidence=0.72,
        size=Decimal("1.25"),
        created_at=T0,
        expires_at=T0 + 300_000,
        votes=(
            AgentVote(
                agent="momentum",
                symbol=symbol,
                direction=side,
                strength=0.8,
                rationale="RSI 28 turning",
            ),
            AgentVote(
                agent="price_action",
                symbol=symbol,
                direction=side,
                strength=0.5,
                rationale="breakout",
            ),
        ),
    )


def intent(coid: str, pid: str | None, side: OrderSide = OrderSide.BUY) -> OrderIntent:
    return OrderIntent(
        client_order_id=coid,
        proposal_id=pid,
        symbol="BTC/USDT",
        side=side,
        qty=Decimal("1.25"),
        purpose="entry" if pid else "exit",
        created_at=T0 + 1,
    )


def approve(pid: str, ts: int = T0 + 1) -> Decision:
    return Decision(
        proposal_id=pid, action=DecisionAction.APPROVE, size=Decimal("1.25"), latency_ms=900,
        decided_at=ts,
    )  # fmt: skip


def equity(ts: int, value: str = "10000") -> EquityUpdated:
    v = Decimal(value)
    return EquityUpdated(
        ts=ts, equity=v, cash=v, unrealized=Decimal(0), realized_today=Decimal(0), drawdown=0.0
    )


def candle(ts: int, symbol: str = "BTC/USDT") -> Candle:
    return Candle(symbol, ts, 100.0, 101.0, 99.0, 100.5, 12.0)


def count(path: Path, table: str) -> int:
    conn = connect_reader(path)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


async def pragma(store: Store, name: str) -> object:
    return await store.run(lambda c: c.execute(f"PRAGMA {name}").fetchone()[0])


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "cma.db")
    yield s
    await s.close()


# --- connections ------------------------------------------------------------------------


async def test_every_connection_is_wal_full_sync_with_foreign_keys_and_busy_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cma.db"
    store = await Store.open(path, busy_timeout_ms=1234)
    try:
        assert await pragma(store, "journal_mode") == "wal"
        assert await pragma(store, "synchronous") == 2
        assert await pragma(store, "foreign_keys") == 1
        assert await pragma(store, "busy_timeout") == 1234
        # ...and still so after a group commit, which relaxes sync for its batch only.
        store.record_equity(equity(T0))
        await store.flush()
        assert await pragma(store, "synchronous") == 2

        for conn in (connect_reader(path, 777), connect_writer(tmp_path / "other.db", 777)):
            try:
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
                assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
                assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 777
            finally:
                conn.close()
    finally:
        await store.close()


async def test_migrations_set_user_version_and_reopening_applies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cma.db"
    async with await Store.open(path) as store:
        assert await pragma(store, "user_version") == len(MIGRATIONS)
        await store.init_balance("USDT", CASH, T0)
    async with await Store.open(path) as store:
        assert await pragma(store, "user_version") == len(MIGRATIONS)
        assert (await store.load_state()).cash == CASH

    # migrate() on a current, stamped file only reads; no schema statement, no write.
    conn = connect_writer(path)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        assert migrate(conn) == len(MIGRATIONS)
    finally:
        conn.close()
    assert statements == ["PRAGMA user_version", "PRAGMA application_id"]


async def test_a_store_of_the_first_schema_is_upgraded_on_open_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cma.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(MIGRATIONS[0])
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO balances (currency, cash, initial_cash, updated_at) VALUES (?, ?, ?, ?)",
        ("USDT", str(CASH), str(CASH), T0),
    )
    conn.close()
    async with await Store.open(path) as store:
        assert await pragma(store, "user_version") == len(MIGRATIONS) == 2
        assert (await store.load_state()).cash == CASH
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM counterfactuals").fetchone() == (0,)
    finally:
        conn.close()


async def test_a_database_with_a_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "cma.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(NewerStoreError, match=r"newer than this cma.*upgrade cma") as raised:
        await Store.open(path)
    assert raised.value.code == 1
    # The writer's own check refuses it too (a file swapped in after the inspection).
    with pytest.raises(NewerStoreError):
        connect_writer(path)
    # The refusal changed nothing and left no lock behind.
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
    conn.close()
    assert sorted(os.listdir(tmp_path)) == ["cma.db"]
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 0")
    conn.close()
    async with await Store.open(path) as store:
        assert await pragma(store, "user_version") == len(MIGRATIONS)


async def test_store_file_is_0600_in_a_new_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "cma.db"
    old = os.umask(0o022)
    try:
        store = await Store.open(path)
    finally:
        os.umask(old)
    try:
        await store.init_balance("USDT", CASH, T0)  # so that -wal and -shm exist
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        for name in ("cma.db", "cma.db-wal", "cma.db-shm", "cma.db.lock"):
            assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name
    finally:
        await store.close()


async def test_second_open_of_the_same_file_raises_store_locked(tmp_path: Path) -> None:
    path = tmp_path / "cma.db"
    first = await Store.open(path)
    try:
        with pytest.raises(StoreLockedError, match="another cma process"):
            await Store.open(path)
        with pytest.raises(StoreLockedError):
            await Store.open(tmp_path / "." / "cma.db")
    finally:
        await first.close()
    # Closing the writer hands the file on.
    second = await Store.open(path)
    await second.close()


async def test_reader_connection_cannot_write(store: Store) -> None:
    await store.init_balance("USDT", CASH, T0)
    conn = connect_reader(store.path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("UPDATE balances SET cash = '1'")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("CREATE TABLE x (a)")
        assert conn.execute("SELECT cash FROM balances").fetchone()[0] == "10000"
    finally:
        conn.close()


# --- units of work ----------------------------------------------------------------------


async def test_unit_of_work_with_failing_statement_leaves_nothing(store: Store) -> None:
    await store.init_balance("USDT", CASH, T0)
    events_before = count(Path(store.path), "events")
    fill = Fill(
        client_order_id="c-none", symbol="BTC/USDT", side=OrderSide.BUY, qty=Decimal(1),
        price=Decimal(100), fee=Decimal("0.1"), ts=T0 + 2,
    )  # fmt: skip
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        async with store.unit_of_work() as uow:
            uow.proposal_created(proposal("prp-1"), T0)
            uow.set_state("trading_state", "HALTED")
            uow.order_filled(fill, Decimal("9899.9"))  # no such order: FK error

    path = Path(store.path)
    for table in ("proposals", "fills", "engine_state"):
        assert count(path, table) == 0, table
    assert count(path, "events") == events_before
    conn = connect_reader(path)
    assert conn.execute("SELECT cash FROM balances").fetchone()[0] == "10000"
    conn.close()

    # The writer is not left inside a transaction: the next unit commits.
    async with store.unit_of_work() as uow:
        uow.proposal_created(proposal("prp-1"), T0)
    assert count(path, "proposals") == 1
    assert count(path, "events") == events_before + 1


async def test_unit_of_work_interrupted_by_an_exception_leaves_nothing(store: Store) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.unit_of_work() as uow:
            uow.proposal_created(proposal("prp-1"), T0)
            uow.decision_made(approve("prp-1"), "BTC/USDT", Side.LONG, intent("c-1", "prp-1"))
            raise Boom
    path = Path(store.path)
    for table in ("proposals", "decisions", "order_intents", "events"):
        assert count(path, table) == 0, table


async def test_decision_proposal_status_and_intent_commit_together(store: Store) -> None:
    async with store.unit_of_work() as uow:
        uow.proposal_created(proposal("prp-1"), T0)
    # A decision on a proposal that was already decided fails whole (UNIQUE), and the
    # intent that came with it is not left behind.
    async with store.unit_of_work() as uow:
        uow.decision_made(approve("prp-1"), "BTC/USDT", Side.LONG, intent("c-1", "prp-1"))
    with pytest.raises(sqlite3.IntegrityError):
        async with store.unit_of_work() as uow:
            uow.decision_made(approve("prp-1"), "BTC/USDT", Side.LONG, intent("c-2", "prp-1"))
    conn = connect_reader(store.path)
    try:
        assert conn.execute("SELECT status FROM proposals").fetchall() == [("approved",)]
        rows = conn.execute(
            "SELECT i.client_order_id FROM order_intents i JOIN decisions d"
            " ON d.id = i.decision_id WHERE d.proposal_id = 'prp-1'"
        ).fetchall()
        assert rows == [("c-1",)]
        kinds = [r[0] for r in conn.execute("SELECT kind FROM events ORDER BY seq")]
        assert kinds == ["ProposalCreated", "DecisionMade"]
    finally:
        conn.close()


async def test_events_are_append_only(store: Store) -> None:
    async with store.unit_of_work() as uow:
        uow.proposal_created(proposal("prp-1"), T0)
    conn = connect_writer(store.path)  # a raw writer connection, not the store's
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE events SET kind = 'Forged'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM events")
        assert conn.execute("SELECT kind FROM events").fetchall() == [("ProposalCreated",)]
    finally:
        conn.close()


# --- group commit -----------------------------------------------------------------------


async def test_group_commit_writes_2500_rows_in_few_transactions(store: Store) -> None:
    statements: list[str] = []
    await store.run(lambda c: c.set_trace_callback(statements.append))
    for i in range(2500):
        store.record_equity(equity(T0 + i * 1000, str(10000 + i)))
    store.record_candles("1m", [candle(T0 + i * 60_000) for i in range(2500)])
    await store.flush()
    await store.run(lambda c: c.set_trace_callback(None))

    path = Path(store.path)
    assert count(path, "equity") == 2500
    assert count(path, "candles") == 2500
    begins = [s for s in statements if s.startswith("BEGIN")]
    print(f"{len(begins)} transactions")
    assert 1 <= len(begins) <= 5, len(begins)  # 5,000 rows: a handful of transactions
    conn = connect_reader(path)
    try:
        assert conn.execute("SELECT MAX(CAST(equity AS INTEGER)) FROM equity").fetchone() == (
            12499,
        )
    finally:
        conn.close()


async def test_buffered_rows_commit_by_themselves_within_a_fraction_of_a_second(
    store: Store,
) -> None:
    path = Path(store.path)
    reader = connect_reader(path)
    try:
        start = time.monotonic()
        for i in range(10):
            store.record_equity(equity(T0 + i))
        store.record_candles("1m", [candle(T0)])
        seen = 0
        while time.monotonic() - start < 2.0:
            await asyncio.sleep(0.01)
            seen = reader.execute("SELECT COUNT(*) FROM equity").fetchone()[0]
            if seen == 10:
                break
        elapsed = time.monotonic() - start
        assert seen == 10, "buffered equity points were never committed without flush()"
        assert elapsed < BATCH_SECONDS + 0.45, elapsed  # 50 ms timer, generous for CI
        assert reader.execute("SELECT COUNT(*) FROM candles").fetchone()[0] == 1
    finally:
        reader.close()


async def test_close_flushes_buffered_rows(tmp_path: Path) -> None:
    path = tmp_path / "cma.db"
    store = await Store.open(path)
    for i in range(7):
        store.record_equity(equity(T0 + i))
    await store.close()
    assert count(path, "equity") == 7


async def test_prune_deletes_equity_and_candles_past_retention(store: Store) -> None:
    now = T0 + 200 * DAY_MS
    for days in (120, 91, 90, 89, 1):  # exactly 90 days old is still kept
        store.record_equity(equity(now - days * DAY_MS))
    store.record_candles("1m", [candle(now - days * DAY_MS) for days in (45, 31, 30, 29, 0)])
    await store.flush()
    assert await store.prune(now, equity_days=90, candle_days=30) == (2, 2)
    conn = connect_reader(store.path)
    try:
        kept_e = [r[0] for r in conn.execute("SELECT ts FROM equity ORDER BY ts")]
        kept_c = [r[0] for r in conn.execute("SELECT ts FROM candles ORDER BY ts")]
    finally:
        conn.close()
    assert kept_e == [now - 90 * DAY_MS, now - 89 * DAY_MS, now - DAY_MS]
    assert kept_c == [now - 30 * DAY_MS, now - 29 * DAY_MS, now]


# --- recovery ---------------------------------------------------------------------------


async def test_load_state_recovers_everything_the_engine_needs(tmp_path: Path) -> None:
    path = tmp_path / "cma.db"
    book = Book(CASH)
    async with await Store.open(path) as store:
        assert (await store.load_state()).is_fresh
        await store.init_balance("USDT", CASH, T0)
        async with store.unit_of_work() as uow:
            for pid in ("prp-pending", "prp-filled", "prp-sent", "prp-new", "prp-no"):
                uow.proposal_created(proposal(pid), T0)
        async with store.unit_of_work() as uow:
            uow.decision_made(
                approve("prp-filled"), "BTC/USDT", Side.LONG, intent("c-f", "prp-filled")
            )
            uow.decision_made(approve("prp-sent"), "BTC/USDT", Side.LONG, intent("c-s", "prp-sent"))
            uow.decision_made(approve("prp-new"), "BTC/USDT", Side.LONG, intent("c-n", "prp-new"))
            uow.decision_made(
                Decision(proposal_id="prp-no", action=DecisionAction.REJECT, reason="news",
                         latency_ms=3, decided_at=T0 + 1),
                "BTC/USDT", Side.LONG, None,
            )  # fmt: skip
        async with store.unit_of_work() as uow:
            uow.order_submitted(intent("c-f", "prp-filled"), T0 + 2)
            uow.order_submitted(intent("c-s", "prp-sent"), T0 + 2)
        plan = book.plan_fill(
            "c-f", "BTC/USDT", OrderSide.BUY, Decimal("1.25"), Decimal("100.12345678"),
            Decimal("0.12515432"), T0 + 3, "prp-filled",
        )  # fmt: skip
        async with store.unit_of_work() as uow:
            plan.write(uow)
        book.apply(plan)
        async with store.unit_of_work() as uow:
            uow.trading_state_changed(
                TradingStateChanged(
                    ts=T0 + 4, old=TradingState.ACTIVE, new=TradingState.REDUCING, reason="dd"
                )
            )
            uow.set_state("equity_peak", "10012.5")
            uow.agent_records(
                [AgentRecordRow("momentum", "*", 12, 7, 3.5, -1.25, 4, 1, 0.5, -0.75)]
            )

    async with await Store.open(path) as store:
        state = await store.load_state()
    assert not state.is_fresh
    assert state.initial_cash == CASH
    assert state.cash == book.cash == CASH - Decimal("125.15432098") - Decimal("0.12515432")
    assert state.positions == list(book.positions.values())
    assert state.positions[0].proposal_id == "prp-filled"
    assert state.pending == [proposal("prp-pending")]  # votes included
    assert state.pending[0].votes[0].rationale == "RSI 28 turning"
    by_id = {o.intent.client_order_id: o for o in state.open_intents}
    assert set(by_id) == {"c-s", "c-n"}
    assert by_id["c-s"].status == "sent" and by_id["c-n"].status == "pending"
    assert by_id["c-n"].intent == intent("c-n", "prp-new")
    assert isinstance(by_id["c-s"], OpenIntent)
    assert state.records == [AgentRecordRow("momentum", "*", 12, 7, 3.5, -1.25, 4, 1, 0.5, -0.75)]
    assert state.state == {"trading_state": "REDUCING", "equity_peak": "10012.5"}
    assert state.last_ts == T0 + 4


async def test_memory_store_works_for_backtests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await Store.open(":memory:")
    try:
        await store.init_balance("USDT", CASH, T0)
        async with store.unit_of_work() as uow:
            uow.proposal_created(proposal("prp-1"), T0)
        for i in range(1500):
            store.record_equity(equity(T0 + i))
        await store.flush()
        state = await store.load_state()
        assert state.cash == CASH
        assert [p.id for p in state.pending] == ["prp-1"]
        n = await store.run(lambda c: c.execute("SELECT COUNT(*) FROM equity").fetchone()[0])
        assert n == 1500
        assert await pragma(store, "foreign_keys") == 1
    finally:
        await store.close()
    assert os.listdir(tmp_path) == []  # nothing written to disk
