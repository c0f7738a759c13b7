"""Helpers for the store-file tests: real stores, other applications' databases, and
what "untouched" means (same bytes, mode, mtime, and no new file beside it)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from engine.models import Candle
from persistence.store import Store

#: cma's mark on its stores, pinned here: changing it would orphan every store made.
APPLICATION_ID = 0x434D4131
T0 = 1_700_000_000_000
CASH = Decimal("2500")
# Header bytes whose every single-bit flip SQLite or cma must notice: the magic, the
# page size, the reserved-space and payload fractions, the page count, the schema
# version and the application id.
DETECTABLE_HEADER = (*range(0, 18), *range(20, 24), *range(28, 32), *range(60, 72))


@dataclass(frozen=True)
class Snapshot:
    """A file's bytes, mode and mtime, and its directory's names: what "untouched" means."""

    data: bytes | None
    mode: int
    mtime_ns: int
    siblings: tuple[str, ...]


def snapshot(path: Path) -> Snapshot:
    st_ = path.stat()
    data = path.read_bytes() if stat.S_ISREG(st_.st_mode) else None
    return Snapshot(data, st_.st_mode, st_.st_mtime_ns, tuple(sorted(os.listdir(path.parent))))


def build_store(path: Path) -> None:
    """A real store with a session, a balance and enough candles for several pages."""

    async def build() -> None:
        async with await Store.open(path) as store:
            await store.begin_session("paper", "sim", "{}", T0)
            await store.init_balance("USDT", CASH, T0)
            store.record_candles(
                "1m",
                [Candle("BTC/USDT", T0 + i * 60_000, 100.0, 101.0, 99.0, 100.5, 7.0)
                 for i in range(600)],
            )  # fmt: skip
            await store.flush()

    asyncio.run(build())


def foreign_db(path: Path, app_id: int = 0, version: int = 0) -> None:
    """Another application's database: a table of its own, no rows."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute(f"PRAGMA application_id = {app_id}")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


def set_pragma(path: Path, name: str, value: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA {name} = {value}")
    conn.close()


def pragma(path: Path, name: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        conn.close()


class Content(bytes):
    """Bytes with a short repr, so that hypothesis reports stay readable."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes>"
