"""Candles kept in the store (by a sim or exchange feed), read back as backtest columns."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from engine.backtest.data import Columns, DataError
from persistence.errors import StoreFileError
from persistence.storefile import inspect_store, open_readonly

__all__ = ["load_store_columns", "stored_series"]


def stored_series(path: Path) -> list[tuple[str, str, int]]:
    """The (symbol, timeframe, candle count) series the store at ``path`` holds."""
    with _reading(path) as conn:
        rows = conn.execute(
            "SELECT symbol, timeframe, COUNT(*) FROM candles GROUP BY symbol, timeframe"
            " ORDER BY symbol, timeframe"
        ).fetchall()
    return [(str(s), str(tf), int(n)) for s, tf, n in rows]


def load_store_columns(path: Path, symbol: str, timeframe: str) -> Columns:
    """``symbol``'s ``timeframe`` candles in the store at ``path``, oldest first.

    Raises :class:`DataError` naming the store and what it does hold when it holds
    none of them.
    """
    with _reading(path) as conn:
        rows = conn.execute(
            "SELECT ts, open, high, low, close, volume FROM candles"
            " WHERE symbol = ? AND timeframe = ? ORDER BY ts",
            (symbol, timeframe),
        ).fetchall()
    if not rows:
        held = ", ".join(f"{s} {tf} ({n:,})" for s, tf, n in stored_series(path)) or "none"
        raise DataError(f"{path}: no {symbol} {timeframe} candles in the store (it holds: {held})")
    table = np.array(rows, dtype=np.float64)
    return Columns(
        symbol,
        timeframe,
        np.array([r[0] for r in rows], dtype=np.int64),
        table[:, 1].copy(),
        table[:, 2].copy(),
        table[:, 3].copy(),
        table[:, 4].copy(),
        table[:, 5].copy(),
    )


@contextmanager
def _reading(path: Path) -> Iterator[sqlite3.Connection]:
    """The store at ``path``, read-only, the project's way (no file made or left beside
    it); DataError naming it when it is missing or not a cma store with candles."""
    if not path.is_file():
        raise DataError(f"{path}: no such store file")
    try:
        inspect_store(path, deep=False)
        with open_readonly(path) as conn:
            conn.execute("SELECT 1 FROM candles LIMIT 1")
            yield conn
    except (StoreFileError, sqlite3.Error) as exc:
        raise DataError(f"{path}: not a cma store with candles ({exc})") from None
