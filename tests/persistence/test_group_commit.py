"""A failing group commit on a real SQLite file: its rows are kept and retried, the
failure is logged with its traceback and reported, and what is held is bounded."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from engine.models import Candle, EngineMessage, EquityUpdated
from persistence.connection import connect_reader
from persistence.store import Store

T0 = 1_700_000_000_000
FAIL = (
    "CREATE TRIGGER no_equity BEFORE INSERT ON equity"
    " BEGIN SELECT RAISE(ABORT, 'the disk says no'); END"
)


def equity(ts: int) -> EquityUpdated:
    v = Decimal(10_000)
    return EquityUpdated(
        ts=ts, equity=v, cash=v, unrealized=Decimal(0), realized_today=Decimal(0), drawdown=0.0
    )


def candle(ts: int) -> Candle:
    return Candle("BTC/USDT", ts, 100.0, 101.0, 99.0, 100.5, 12.0)


def rows(path: Path, table: str) -> list[int]:
    conn = connect_reader(path)
    try:
        return [r[0] for r in conn.execute(f"SELECT ts FROM {table} ORDER BY ts")]
    finally:
        conn.close()


async def until(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not callable(condition) or not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def execute(store: Store, sql: str) -> None:
    def _run(conn: sqlite3.Connection) -> None:
        conn.execute(sql)

    await store.run(_run)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "cma.db")
    yield s
    await s.close()


async def test_a_failed_group_commit_is_logged_reported_and_its_rows_stored_on_retry(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    reports: list[EngineMessage] = []
    store.set_reporter(reports.append)
    await execute(store, FAIL)
    caplog.set_level(logging.WARNING, logger="cma.store")
    for i in range(10):
        store.record_equity(equity(T0 + i))
    store.record_candles("1m", [candle(T0 + i * 60_000) for i in range(3)])

    await until(lambda: reports)
    [warning] = reports
    assert warning.level == "warning"
    assert "the disk says no" in warning.text and "13 rows kept" in warning.text
    assert warning.ts == T0 + 2 * 60_000  # market time of the newest row held
    failed = [r for r in caplog.records if r.name == "cma.store" and r.levelno == logging.ERROR]
    assert failed and failed[0].exc_info is not None  # the traceback is in the log
    path = Path(store.path)
    assert rows(path, "equity") == [] and rows(path, "candles") == []

    for i in range(10, 15):  # the run goes on while the store fails
        store.record_equity(equity(T0 + i))
    await asyncio.sleep(0.2)
    await execute(store, "DROP TRIGGER no_equity")
    await until(lambda: len(rows(path, "equity")) == 15)
    assert rows(path, "equity") == [T0 + i for i in range(15)]
    assert rows(path, "candles") == [T0 + i * 60_000 for i in range(3)]
    await until(lambda: len(reports) == 2)
    assert reports[1].level == "info" and "works again" in reports[1].text
    assert len(reports) == 2  # one warning a failure streak, not one per retry


async def test_rows_held_past_the_bound_drop_the_oldest_candles_first(store: Store) -> None:
    reports: list[EngineMessage] = []
    store.set_reporter(reports.append)
    store.max_held_rows = 50
    await execute(store, FAIL)
    for i in range(30):
        store.record_equity(equity(T0 + i))
    store.record_candles("1m", [candle(T0 + i * 60_000) for i in range(40)])
    with pytest.raises(sqlite3.IntegrityError, match="the disk says no"):
        await store.flush()
    assert "20 oldest dropped" in reports[-1].text

    await execute(store, "DROP TRIGGER no_equity")
    await store.flush()
    path = Path(store.path)
    assert rows(path, "equity") == [T0 + i for i in range(30)]
    assert rows(path, "candles") == [T0 + i * 60_000 for i in range(20, 40)]


async def test_past_the_bound_with_no_candles_left_the_oldest_equity_points_go(
    store: Store,
) -> None:
    store.max_held_rows = 10
    await execute(store, FAIL)
    for i in range(12):
        store.record_equity(equity(T0 + i))
    store.record_candles("1m", [candle(T0)])
    with pytest.raises(sqlite3.IntegrityError):
        await store.flush()
    await execute(store, "DROP TRIGGER no_equity")
    await store.flush()
    assert rows(Path(store.path), "equity") == [T0 + i for i in range(2, 12)]
    assert rows(Path(store.path), "candles") == []
