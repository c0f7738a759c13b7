"""One symbol's candles as numpy columns, loaded once from a replay CSV and cached.

:func:`load_columns` reads a replay CSV (the format, naming and every row
check are :mod:`engine.feeds.csvfile`'s, so a file a replay accepts loads and
one it rejects fails with the same :class:`ReplayError`) into :class:`Columns`.
The arrays are cached under ``cache_dir`` (default ``$XDG_CACHE_HOME/cma/candles``)
as one ``.npy`` file per file content: the key is the sha256 of the CSV's bytes
and the timeframe it is read at, so a touched file still hits and an edited one
misses. A cache file is written to a temporary name and renamed, and opened
memory-mapped; one that is damaged (its checksum, size or header disagree) or
of another format version is parsed again and replaced, never trusted.

The cache file is an int64 array of shape ``(6, n + 1)``: column 0 is the
header (:data:`FORMAT_MAGIC`, :data:`FORMAT_VERSION`, ``n``, the CRC-32 of the
data, the CSV's size, 0); row 0 then holds the timestamps and rows 1 to 5 the
bits of the float64 open, high, low, close and volume.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.feeds.csvfile import (
    CSV_HEADER,
    ReplayError,
    check_readable,
    file_symbol,
    probe_file,
    read_values,
    replay_timeframe,
    unreadable,
)
from engine.timeframes import timeframe_ms

__all__ = [
    "FORMAT_MAGIC",
    "FORMAT_VERSION",
    "Columns",
    "DataError",
    "Progress",
    "ReplayError",
    "default_cache_dir",
    "load_columns",
    "save_csv",
    "tile",
]

#: The first header number of every cache file: ``cma-cndl`` as a little-endian int64.
FORMAT_MAGIC = int.from_bytes(b"cma-cndl", "little")
#: The layout of cache files; a file of another version is rebuilt.
FORMAT_VERSION = 1
_FIELDS = ("ts", "open", "high", "low", "close", "volume")
_HEADER = 6  # numbers in the header column (one per row)

#: ``progress(done_bytes, total_bytes)``, called while a CSV is parsed.
Progress = Callable[[int, int], object]

Int64s = NDArray[np.int64]
Floats = NDArray[np.float64]


class DataError(ValueError):
    """A request the candles cannot meet, such as a time range with none in it."""


def _read_only(values: NDArray[Any]) -> NDArray[Any]:
    view = values.view(np.ndarray)
    view.flags.writeable = False
    return view


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True, slots=True, eq=False)
class Columns:
    """One symbol's candles as equal-length, read-only arrays, oldest first.

    ``ts`` is each candle's open time (int64 ms UTC); the prices and volume are
    float64. A loaded file's arrays are views of the memory-mapped cache file.
    """

    symbol: str
    timeframe: str
    ts: Int64s
    open: Floats
    high: Floats
    low: Floats
    close: Floats
    volume: Floats

    def __post_init__(self) -> None:
        n = len(self.ts)
        for field in _FIELDS:
            dtype = np.int64 if field == "ts" else np.float64
            values = np.asarray(getattr(self, field))
            if values.dtype != dtype or values.ndim != 1 or len(values) != n:
                raise ValueError(
                    f"Columns.{field}: expected {n} {np.dtype(dtype)} values, "
                    f"got {values.shape} {values.dtype}"
                )
            object.__setattr__(self, field, _read_only(values))

    def __len__(self) -> int:
        return len(self.ts)

    def between(self, start: int | None = None, end: int | None = None) -> Columns:
        """The candles with ``start <= ts < end`` (ms; None leaves that side open).

        Raises :class:`DataError` naming the dates when no candle is in the range
        or ``start`` is not before ``end``.
        """
        if start is not None and end is not None and start >= end:
            raise DataError(
                f"the range from {_when(start)} to {_when(end)} UTC is empty: "
                "the start must be before the end"
            )
        lo = 0 if start is None else int(np.searchsorted(self.ts, start, side="left"))
        hi = len(self) if end is None else int(np.searchsorted(self.ts, end, side="left"))
        if lo >= hi:
            since = "the start" if start is None else _when(start)
            until = "the end" if end is None else _when(end)
            held = (
                f"its candles run from {_when(int(self.ts[0]))} to {_when(int(self.ts[-1]))} UTC"
                if len(self)
                else "it has none"
            )
            raise DataError(
                f"{self.symbol} has no {self.timeframe} candles from {since} to {until} UTC "
                f"({held})"
            )
        return self._slice(slice(lo, hi))

    def _slice(self, part: slice) -> Columns:
        return Columns(
            self.symbol,
            self.timeframe,
            self.ts[part],
            self.open[part],
            self.high[part],
            self.low[part],
            self.close[part],
            self.volume[part],
        )


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cma/candles`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cma" / "candles"


def load_columns(
    path: str | PathLike[str],
    *,
    cache_dir: str | PathLike[str] | None = None,
    progress: Progress | None = None,
    timeframe: str | None = None,
    symbol: str | None = None,
) -> Columns:
    """One replay CSV's candles as :class:`Columns`, from the cache when it holds them.

    The symbol and timeframe come from the file name as for a replay (``symbol``
    and ``timeframe`` stand in where the name says none; a ``timeframe`` that
    differs from the name's is an error). Every problem with the file is a
    :class:`ReplayError` naming it, and the line and field where there is one.
    ``progress(done_bytes, total_bytes)`` is called as the file is parsed; a cache
    hit parses nothing and does not call it.
    """
    path = Path(path)
    check_readable(path)
    symbol = file_symbol(path, symbol)
    tf = replay_timeframe([probe_file(path)], timeframe, "timeframe")
    try:
        with path.open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise unreadable(path, exc) from None
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    table = _open_cached(folder / _cache_name(digest, tf), size)
    if table is None:
        # The key is the hash of the bytes parsed, in case the file changed since.
        table, digest = _parse(path, tf, size, progress)
        cached = folder / _cache_name(digest, tf)
        with contextlib.suppress(OSError):  # an unwritable cache only costs speed
            _store(folder, cached, table)
            mapped = _open_cached(cached, int(table[4, 0]))
            if mapped is not None:
                table = mapped
    return _columns(symbol, tf, table)


def _cache_name(digest: str, tf: str) -> str:
    return f"{digest}-{tf}.npy"


def _columns(symbol: str, tf: str, table: Int64s) -> Columns:
    rows = [table[row, 1:] for row in range(_HEADER)]
    floats = [row.view(np.float64) for row in rows[1:]]
    return Columns(symbol, tf, rows[0], *floats)


def _checksum(table: Int64s) -> int:
    crc = 0
    for row in range(_HEADER):
        crc = zlib.crc32(np.ascontiguousarray(table[row, 1:]).data, crc)
    return crc


def _open_cached(cached: Path, size: int) -> Int64s | None:
    """The cache file's table, memory-mapped, or None when it is absent or not to be trusted."""
    try:
        table = np.load(cached, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if (
        not isinstance(table, np.ndarray)
        or table.dtype != np.dtype("<i8")
        or table.ndim != 2
        or table.shape[0] != _HEADER
        or table.shape[1] < 2
    ):
        return None
    header = [int(value) for value in table[:, 0]]
    n = table.shape[1] - 1
    if header[:3] != [FORMAT_MAGIC, FORMAT_VERSION, n] or header[4] != size:
        return None
    if header[3] != _checksum(table):
        return None
    return table


def _parse(path: Path, tf: str, size: int, progress: Progress | None) -> tuple[Int64s, str]:
    """Parse the CSV (every check a replay makes) into a cache table in memory; return it
    and the sha256 of the bytes parsed. ``size`` is the expected total, for ``progress``."""
    hasher = hashlib.sha256()
    done = 0

    def on_read(block: memoryview) -> None:
        nonlocal done
        hasher.update(block)
        done += len(block)
        if progress is not None:
            progress(done, max(size, done))

    stamps = array("q")
    prices = [array("d") for _ in CSV_HEADER[1:]]
    add_ts = stamps.append
    add_o, add_h, add_l, add_c, add_v = (column.append for column in prices)
    for ts, o, h, low, c, v in read_values(path, tf, on_read):
        add_ts(ts)
        add_o(o)
        add_h(h)
        add_l(low)
        add_c(c)
        add_v(v)
    n = len(stamps)
    table = np.empty((_HEADER, n + 1), dtype=np.int64)
    table[0, 1:] = np.frombuffer(stamps, dtype=np.int64)
    for row, column in enumerate(prices, start=1):
        table[row, 1:] = np.frombuffer(column, dtype=np.int64)
    table[:, 0] = (FORMAT_MAGIC, FORMAT_VERSION, n, 0, done, 0)
    table[3, 0] = _checksum(table)
    return table, hasher.hexdigest()


def _store(folder: Path, cached: Path, table: Int64s) -> None:
    """Write the table to ``cached`` atomically: a temporary file in the folder, renamed."""
    if not folder.is_dir():
        folder.mkdir(parents=True, mode=0o700, exist_ok=True)
        folder.chmod(0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{cached.stem}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, table, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, cached)
    except BaseException:
        with contextlib.suppress(OSError):  # the temporary file may never have been made
            os.unlink(tmp)
        raise


def tile(columns: Columns, n: int, *, start: int = 0) -> Columns:
    """``columns`` repeated to ``n`` candles, for benchmarks and tests.

    Every other copy runs backwards with open and close swapped, so each copy
    starts at the price the previous one ended on; timestamps always go forward,
    one candle apart, from the first candle's. ``start`` skips that many candles
    of the tiling, so a long one can be made a part at a time:
    ``tile(c, k, start=i)`` is candles ``i`` to ``i + k`` of ``tile(c, i + k)``.
    """
    if n < 1:
        raise ValueError(f"tile needs at least one candle, got {n}")
    if start < 0:
        raise ValueError(f"tile starts at candle 0 or later, not {start}")
    m = len(columns)
    if m == 0:
        raise ValueError(f"{columns.symbol}: no candles to tile")
    if columns.timeframe == "1M":
        raise ValueError("tile needs a fixed-length timeframe; months vary")
    index = np.arange(start, start + n, dtype=np.int64)
    copy, k = np.divmod(index, m)
    backwards = (copy % 2).astype(bool)
    source = np.where(backwards, m - 1 - k, k)
    opens, closes = columns.open[source], columns.close[source]
    return Columns(
        columns.symbol,
        columns.timeframe,
        columns.ts[0] + index * timeframe_ms(columns.timeframe),
        np.where(backwards, closes, opens),
        columns.high[source],
        columns.low[source],
        np.where(backwards, opens, closes),
        columns.volume[source],
    )


def save_csv(columns: Columns, path: str | PathLike[str]) -> None:
    """Write ``columns`` as a replay CSV whose numbers read back exactly."""
    values = zip(
        columns.ts.tolist(),
        columns.open.tolist(),
        columns.high.tolist(),
        columns.low.tolist(),
        columns.close.tolist(),
        columns.volume.tolist(),
        strict=True,
    )
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join(CSV_HEADER) + "\n")
        fh.writelines(f"{ts},{o!r},{h!r},{lo!r},{c!r},{v!r}\n" for ts, o, h, lo, c, v in values)
