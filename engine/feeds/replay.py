"""Replays of recorded candles: CSV files, or the candles table of the store.

Several inputs play as one market: their rows merge in timestamp order and
rows with equal timestamps form one batch. Rows stream one at a time, so
memory stays flat however long the input. A row that is not a valid candle
raises :class:`ReplayError`; nothing is skipped or repaired. A candle missing
inside a symbol's series is a gap: nothing is emitted for it, it is counted
in ``gaps`` and reported to ``on_gap`` when the series resumes. Candles
missing before a series starts or after it ends are not gaps (the market may
have listed the symbol late or the recording may stop early).

How a CSV file is named, read and checked is :mod:`engine.feeds.csvfile`'s.
"""

from __future__ import annotations

import heapq
import math
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from itertools import pairwise
from os import PathLike
from pathlib import Path

from engine.feeds.base import GapCallback, SyncFeed
from engine.feeds.csvfile import (
    CSV_HEADER,
    FILE_NAMING,
    ReplayError,
    Row,
    candle_problem,
    check_readable,
    file_symbol,
    probe_file,
    read_rows,
    replay_timeframe,
    symbol_from_filename,
    timeframe_from_filename,
)
from engine.models import Candle
from engine.timeframes import candle_index, candle_open

# The CSV names, still importable from here.
__all__ = [
    "CSV_HEADER",
    "FILE_NAMING",
    "ReplayError",
    "ReplayFeed",
    "StoreReplayFeed",
    "candle_problem",
    "quote_of",
    "symbol_from_filename",
    "timeframe_from_filename",
]

_INF = math.inf
# SQLite's integer range, for an open-ended ts window.
_TS_MIN, _TS_MAX = -(2**63), 2**63 - 1


def quote_of(symbol: str) -> str:
    """``ETH/BTC`` → ``BTC``: the currency a symbol is priced in."""
    return symbol.rpartition("/")[2]


class _MergedReplay(SyncFeed):
    """Merges per-source row streams into batches and finds gaps per symbol."""

    def _merge(self, streams: Sequence[Iterator[Row]]) -> Iterator[list[Candle]]:
        self.gaps.clear()
        merged: Iterable[Row] = streams[0] if len(streams) == 1 else heapq.merge(*streams)
        last: list[int | None] = [None] * len(self.symbols)
        step = self.timeframe_ms
        try:
            batch: list[Candle] = []
            batch_ts: int | None = None
            for ts, key, _, candle in merged:
                if ts != batch_ts:
                    if batch:
                        if self._closed:
                            return
                        yield batch
                        batch = []
                    batch_ts = ts
                prev = last[key]
                if prev is not None and ts - prev != step:
                    self._step(key, prev, ts)
                last[key] = ts
                batch.append(candle)
            if batch and not self._closed:
                yield batch
        finally:
            for stream in streams:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()

    def _step(self, key: int, prev: int, ts: int) -> None:
        """Handle a series that did not advance by exactly one candle."""
        symbol, tf = self.symbols[key], self.timeframe
        if ts <= prev:
            raise ReplayError(f"{symbol}: candle {ts} repeats or precedes candle {prev}")
        missing = candle_index(ts, tf) - candle_index(prev, tf) - 1
        if missing > 0:
            self._gap(symbol, candle_open(candle_index(prev, tf) + 1, tf), missing)


@dataclass(frozen=True, slots=True)
class _Source:
    path: Path
    symbol: str
    key: int  # index of the symbol in Feed.symbols


class ReplayFeed(_MergedReplay):
    """Candles from CSV files (``timestamp,open,high,low,close,volume``, ms UTC) as one market.

    Files are named ``EXCHANGE_BASE-QUOTE_TIMEFRAME_*.csv``
    (``binanceus_BTC-USDT_1m_2023-03.csv`` → ``BTC/USDT``, ``1m``); ``symbols``
    may map file names to symbols instead. The timeframe is the one the file
    names say; ``timeframe`` is used where they say none, and one that differs
    from a file name is an error (``timeframe_from`` names where it came from,
    for the message). With neither, it is the spacing of the first
    timestamps, which is checked against the timeframe in every case. Several
    files of one symbol (consecutive months, say) join into one series.

    The constructor checks each file exists and is readable UTF-8 text before
    anything else, then validates every row once (see :meth:`validate`), so a
    bad file fails before the first candle; pass ``validate=False`` to defer
    the row checks to the streaming pass, which makes them again either way.
    Every error is a :class:`ReplayError` whose message starts with the file.
    """

    name = "replay"

    def __init__(
        self,
        files: Sequence[str | PathLike[str]],
        speed: float | None = None,
        symbols: Mapping[str, str] | None = None,
        timeframe: str | None = None,
        on_gap: GapCallback | None = None,
        *,
        validate: bool = True,
        timeframe_from: str = "timeframe",
    ) -> None:
        # A lone path is a str, itself a Sequence: take it as one file, not characters.
        paths = [Path(files)] if isinstance(files, str | PathLike) else [Path(f) for f in files]
        if not paths:
            raise ValueError("ReplayFeed needs at least one file")
        for path in paths:
            check_readable(path)  # "not found" before any complaint about the name
        names = symbols or {}
        file_symbols: list[str] = []
        for path in paths:
            file_symbols.append(file_symbol(path, names.get(path.name) or names.get(str(path))))
        timeframe = replay_timeframe(
            [probe_file(path) for path in paths], timeframe, timeframe_from
        )
        super().__init__(list(dict.fromkeys(file_symbols)), timeframe, speed=speed, on_gap=on_gap)
        keys = {symbol: key for key, symbol in enumerate(self.symbols)}
        self.files = tuple(paths)
        self._sources = tuple(
            _Source(path, symbol, keys[symbol])
            for path, symbol in zip(paths, file_symbols, strict=True)
        )
        #: Data rows across all files, once :meth:`validate` has run.
        self.row_count: int | None = None
        if validate:
            self.validate()

    def quotes(self) -> dict[str, list[Path]]:
        """The files by the currency their symbol is quoted in."""
        out: dict[str, list[Path]] = {}
        for source in self._sources:
            out.setdefault(quote_of(source.symbol), []).append(source.path)
        return out

    def validate(self) -> int:
        """Check every row of every file once; return the number of candles.

        Raises :class:`ReplayError` at the first malformed row, for a file with
        no candle after its header, or when two files of one symbol overlap in time.
        """
        total = 0
        spans: dict[str, list[tuple[int, int, Path]]] = {}
        for index, source in enumerate(self._sources):
            first: int | None = None
            ts = 0
            count = 0
            for ts, _, _, _ in self._rows(index, source):
                if first is None:
                    first = ts
                count += 1
            total += count
            if first is not None:
                spans.setdefault(source.symbol, []).append((first, ts, source.path))
        for symbol, ranges in spans.items():
            ranges.sort()
            for (_, end, path), (start, _, other) in pairwise(ranges):
                if start <= end:
                    raise ReplayError(
                        f"{other.name}: its {symbol} candles from {start} overlap "
                        f"{path.name}, which runs to {end}"
                    )
        self.row_count = total
        self.last_ts = max((end for ranges in spans.values() for _, end, _ in ranges), default=None)
        return total

    def iter_batches(self) -> Iterator[list[Candle]]:
        """Stream the files merged in timestamp order, one batch per timestamp."""
        return self._merge([self._rows(i, s) for i, s in enumerate(self._sources)])

    def _rows(self, index: int, source: _Source) -> Iterator[Row]:
        """One file's rows, parsed and checked lazily (see :func:`read_rows`)."""
        return read_rows(source.path, source.symbol, source.key, index, self.timeframe)


class StoreReplayFeed(_MergedReplay):
    """Candles from the store's ``candles`` table, opened read-only, as one market.

    Plays ``timeframe`` candles of ``symbols`` with ``start_ts <= ts < end_ts``
    (either bound may be None). Rows are checked as they stream, like CSV rows.
    """

    name = "store"

    def __init__(
        self,
        db_path: str | PathLike[str],
        symbols: Sequence[str],
        timeframe: str,
        speed: float | None = None,
        start_ts: int | None = None,
        end_ts: int | None = None,
        on_gap: GapCallback | None = None,
    ) -> None:
        super().__init__(symbols, timeframe, speed=speed, on_gap=on_gap)
        if not self.symbols:
            raise ValueError("StoreReplayFeed needs at least one symbol")
        self.db_path = Path(db_path)
        if not self.db_path.is_file():
            raise FileNotFoundError(f"no store at {self.db_path}")
        self.start_ts = start_ts
        self.end_ts = end_ts
        try:
            with closing(self._connect()) as conn:
                conn.execute(
                    "SELECT symbol, timeframe, ts, open, high, low, close, volume "
                    "FROM candles LIMIT 0"
                )
        except sqlite3.Error as exc:
            raise ReplayError(f"{self.db_path.name}: no usable candles table ({exc})") from exc

    def _connect(self) -> sqlite3.Connection:
        # A file: URI with mode=ro: the replay can never write to the store.
        uri = f"{self.db_path.resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True)

    def iter_batches(self) -> Iterator[list[Candle]]:
        """Stream the candles in ts order, one batch per timestamp."""
        conn = self._connect()
        try:
            streams = [self._rows(conn, key) for key in range(len(self.symbols))]
            yield from self._merge(streams)
        finally:
            conn.close()

    def _rows(self, conn: sqlite3.Connection, key: int) -> Iterator[Row]:
        """One symbol's candles, walking the primary key in ts order."""
        symbol, tf = self.symbols[key], self.timeframe
        start = _TS_MIN if self.start_ts is None else self.start_ts
        end = _TS_MAX if self.end_ts is None else self.end_ts
        cursor = conn.execute(
            "SELECT ts, open, high, low, close, volume FROM candles "
            "WHERE symbol = ? AND timeframe = ? AND ts >= ? AND ts < ? ORDER BY ts",
            (symbol, tf, start, end),
        )
        prev: float = -_INF
        try:
            for row in cursor:
                problem = _store_row_problem(row, prev, tf)
                if problem is not None:
                    raise ReplayError(f"{self.db_path.name}: {symbol} {tf} {row[0]}: {problem}")
                ts, o, h, low, c, v = row
                prev = ts
                yield ts, key, 0, Candle(symbol, ts, float(o), float(h), float(low), float(c), v)
        finally:
            cursor.close()


def _store_row_problem(row: tuple[object, ...], prev_ts: float, tf: str) -> str | None:
    """Why a row of the candles table is not a valid next candle, or None."""
    ts = row[0]
    if not isinstance(ts, int):
        return f"ts {ts!r} is not an integer"
    values: list[float] = []
    for field, value in zip(CSV_HEADER[1:], row[1:], strict=True):
        if value is None:
            return f"{field} is NULL"
        if not isinstance(value, int | float):
            return f"{field} {value!r} is not a number"
        values.append(float(value))
    o, h, low, c, v = values
    return candle_problem(ts, o, h, low, c, v, prev_ts, tf)
