"""Candles a feed kept in the store come back as backtest columns."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from engine.backtest.data import DataError
from engine.models import Candle
from persistence.candles import load_store_columns, stored_series
from persistence.store import Store

T0 = 1_767_225_600_000


async def test_stored_candles_load_as_columns_in_time_order(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    store = await Store.open(db)
    candles = [
        Candle("BTC/USDT", T0 + i * 60_000, 100 + i, 101 + i, 99 + i, 100.5 + i, 2.0 + i)
        for i in range(50)
    ]
    store.record_candles("1m", list(reversed(candles[:25])) + candles[25:])
    store.record_candles("5m", [Candle("ETH/USDT", T0, 1, 2, 0.5, 1.5, 3)])
    await store.close()
    before = os.listdir(tmp_path)

    cols = load_store_columns(db, "BTC/USDT", "1m")
    assert (cols.symbol, cols.timeframe, len(cols)) == ("BTC/USDT", "1m", 50)
    assert cols.ts.tolist() == [c.ts for c in candles]
    assert np.array_equal(cols.close, [c.close for c in candles])
    assert stored_series(db) == [("BTC/USDT", "1m", 50), ("ETH/USDT", "5m", 1)]
    with pytest.raises(DataError, match=r"no BTC/USDT 5m candles .*BTC/USDT 1m \(50\)"):
        load_store_columns(db, "BTC/USDT", "5m")
    # Read-only: nothing is made or left beside the store.
    assert sorted(os.listdir(tmp_path)) == sorted(before)


def test_a_missing_or_foreign_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such store file"):
        load_store_columns(tmp_path / "none.db", "BTC/USDT", "1m")
    other = tmp_path / "other.db"
    other.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(DataError, match="not a cma store"):
        load_store_columns(other, "BTC/USDT", "1m")
