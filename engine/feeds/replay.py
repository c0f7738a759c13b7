"""Replays of recorded candles: CSV files, or the candles table of the store.

Several inputs play as one market: their rows merge in timestamp order and
rows with equal timestamps form one batch. Rows stream one at a time, so
memory stays flat however long the input. A row that is not a valid candle
raises :class:`ReplayError`; nothing is skipped or repaired. A candle missing
inside a symbol's series is a gap: nothing is emitted for it, it is counted
in ``gaps`` and reported to ``on_gap`` when the series resumes. Candles
missing before a series starts or after it ends are not gaps (the market may
have listed the symbol late or the recording may stop early).
"""

from __future__ import annotations

import csv
import heapq
import math
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from itertools import islice, pairwise
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from engine.feeds.base import GapCallback, SyncFeed
from engine.models import Candle
from engine.timeframes import TIMEFRAMES, candle_index, candle_offset, candle_open, is_aligned

if TYPE_CHECKING:
    from _csv import Reader as _Reader

#: The header every replay CSV starts with.
CSV_HEADER: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume")

#: How a replay file is named: the pair and timeframe come from the name.
FILE_NAMING = "EXCHANGE_BASE-QUOTE_TIMEFRAME_*.csv, e.g. binance_BTC-USDT_1m_2023-03.csv"

# Rows read up front to see a file's timeframe in the spacing of its timestamps.
_SPACING_ROWS = 64

# A pair such as BTC-USDT in a file name; the base needs a letter so 2023-03 is no pair.
_PAIR_RE = re.compile(r"^([A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*)-([A-Za-z0-9]+)$")
_INF = math.inf
# SQLite's integer range, for an open-ended ts window.
_TS_MIN, _TS_MAX = -(2**63), 2**63 - 1

# (ts, symbol index, source index, candle): merges by time, then symbol order.
_Row = tuple[int, int, int, Candle]


class ReplayError(ValueError):
    """A replay input is malformed; the message names the file, line and field."""


def quote_of(symbol: str) -> str:
    """``ETH/BTC`` → ``BTC``: the currency a symbol is priced in."""
    return symbol.rpartition("/")[2]


def symbol_from_filename(name: str) -> str | None:
    """``binanceus_BTC-USDT_1m_2023-03.csv`` → ``BTC/USDT``; None when no pair is named."""
    for part in Path(name).stem.split("_"):
        match = _PAIR_RE.match(part)
        if match:
            return f"{match[1]}/{match[2]}".upper()
    return None


def timeframe_from_filename(name: str) -> str | None:
    """``binanceus_BTC-USDT_1m_2023-03.csv`` → ``1m``; None when no timeframe is named."""
    for part in Path(name).stem.split("_"):
        if part in TIMEFRAMES:
            return part
    return None


def _aligned(ts: int, tf: str) -> bool:
    """``is_aligned``, False for a timestamp outside the calendar (a month needs one)."""
    try:
        return is_aligned(ts, tf)
    except (OverflowError, OSError, ValueError):
        return False


def _index(ts: int, tf: str) -> int | None:
    """``candle_index``, None for a timestamp outside the calendar."""
    try:
        return candle_index(ts, tf)
    except (OverflowError, OSError, ValueError):
        return None


def candle_problem(
    ts: int, o: float, h: float, low: float, c: float, v: float, prev_ts: float, tf: str
) -> str | None:
    """Why these numbers are not a valid next candle after ``prev_ts``, or None if they are."""
    for field, value in (("open", o), ("high", h), ("low", low), ("close", c), ("volume", v)):
        if not math.isfinite(value):
            return f"{field} {value} is not a finite number"
    for field, value in (("open", o), ("high", h), ("low", low), ("close", c)):
        if value <= 0:
            return f"{field} {value} is not positive"
    if h < low:
        return f"high {h} is below low {low}"
    for field, value in (("open", o), ("close", c)):
        if not low <= value <= h:
            return f"{field} {value} is outside [low {low}, high {h}]"
    if v < 0:
        return f"volume {v} is negative"
    if ts <= prev_ts:
        return f"timestamp {ts} is not after the previous candle's {int(prev_ts)}"
    if not _aligned(ts, tf):
        return f"timestamp {ts} is not aligned to the {tf} timeframe"
    return None


def _csv_row_problem(row: list[str], prev_ts: float, tf: str) -> str:
    """Describe what is wrong with a CSV row the fast path rejected."""
    if len(row) != len(CSV_HEADER):
        return f"expected {len(CSV_HEADER)} fields ({','.join(CSV_HEADER)}), got {len(row)}"
    raw = [field.strip() for field in row]
    try:
        ts = int(raw[0])
    except ValueError:
        return f"timestamp {raw[0]!r} is not an integer number of milliseconds"
    values: list[float] = []
    for field, text in zip(CSV_HEADER[1:], raw[1:], strict=True):
        try:
            value = float(text)
        except ValueError:
            return f"{field} {text!r} is not a number"
        if not math.isfinite(value):
            return f"{field} {text!r} is not a finite number"
        values.append(value)
    o, h, low, c, v = values
    problem = candle_problem(ts, o, h, low, c, v, prev_ts, tf)
    if problem is None:  # unreachable while the fast path and this agree
        return f"malformed row {','.join(row)!r}"
    # Quote the file's own text rather than Python's rendering of the float.
    for field, text, value in zip(CSV_HEADER[1:], raw[1:], values, strict=True):
        problem = problem.replace(f"{field} {value}", f"{field} {text}")
    return problem


class _MergedReplay(SyncFeed):
    """Merges per-source row streams into batches and finds gaps per symbol."""

    def _merge(self, streams: Sequence[Iterator[_Row]]) -> Iterator[list[Candle]]:
        self.gaps.clear()
        merged: Iterable[_Row] = streams[0] if len(streams) == 1 else heapq.merge(*streams)
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


@dataclass(frozen=True, slots=True)
class _Probe:
    """What the first rows of a file say, read before the file is replayed."""

    path: Path
    named: str | None  # the timeframe in the file name
    stamps: tuple[int, ...]  # the first timestamps


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
            _check_readable(path)  # "not found" before any complaint about the name
        names = symbols or {}
        file_symbols: list[str] = []
        for path in paths:
            symbol = names.get(path.name) or names.get(str(path)) or symbol_from_filename(path.name)
            if symbol is None:
                raise ReplayError(
                    f"{path.name}: the file name names no pair such as BTC-USDT; "
                    f"name replay files {FILE_NAMING}"
                )
            file_symbols.append(symbol)
        timeframe = _replay_timeframe([_probe(path) for path in paths], timeframe, timeframe_from)
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

    def _rows(self, index: int, source: _Source) -> Iterator[_Row]:
        """Parse and check one file lazily, row by row; errors name the file."""
        name = source.path.name
        reader: _Reader | None = None
        try:
            with source.path.open(newline="", encoding="utf-8-sig") as fh:
                reader = csv.reader(fh)
                yield from self._parse(name, index, source, reader)
        except UnicodeDecodeError:
            raise ReplayError(_not_text(source.path)) from None
        except csv.Error as exc:
            line = reader.line_num if reader is not None else 1
            raise ReplayError(f"{name}:{line}: not a CSV row: {exc}") from None
        except OSError as exc:
            raise ReplayError(f"{source.path}: cannot read: {_os_reason(exc)}") from None

    def _parse(self, name: str, index: int, source: _Source, reader: _Reader) -> Iterator[_Row]:
        symbol, key, tf = source.symbol, source.key, self.timeframe
        # Fixed-length timeframes check alignment inline; months need the calendar.
        monthly = tf == "1M"
        step = 1 if monthly else self.timeframe_ms
        offset = candle_offset(tf)
        _check_header(name, next(reader, None))
        prev: float = -_INF
        for row in reader:
            try:
                ts_s, o_s, h_s, l_s, c_s, v_s = row
                ts = int(ts_s)
                o, h, low, c = float(o_s), float(h_s), float(l_s), float(c_s)
                v = float(v_s)
            except ValueError:
                problem = _csv_row_problem(row, prev, tf)
                raise ReplayError(f"{name}:{reader.line_num}: {problem}") from None
            if (
                not (0.0 < low <= o <= h < _INF and low <= c <= h and 0.0 <= v < _INF)
                or ts <= prev
                or (ts - offset) % step
                or (monthly and not _aligned(ts, tf))
            ):
                problem = _csv_row_problem(row, prev, tf)
                raise ReplayError(f"{name}:{reader.line_num}: {problem}")
            prev = ts
            yield ts, key, index, Candle(symbol, ts, o, h, low, c, v)
        if prev == -_INF:
            raise ReplayError(f"{name}: no candles after the header")


def _check_header(name: str, header: list[str] | None) -> None:
    if header is None:
        raise ReplayError(f"{name}:1: the file is empty; expected the header")
    if [h.strip().lower() for h in header] != list(CSV_HEADER):
        raise ReplayError(
            f"{name}:1: expected the header {','.join(CSV_HEADER)}, got {','.join(header)!r}"
        )


def _os_reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def _not_text(path: Path) -> str:
    """The message for a file that does not decode as UTF-8, naming its first bad line.

    Text is decoded in blocks, so the reader's line count is not where the bad
    byte is: the file is read again, line by line, on this error path only.
    """
    try:
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return (
                        f"{path.name}:{number}: not a CSV text file "
                        f"(no UTF-8 at byte {exc.start + 1} of the line: binary data?)"
                    )
    except OSError as exc:
        return f"{path}: cannot read: {_os_reason(exc)}"
    return f"{path.name}: not a CSV text file (not UTF-8: binary data?)"


def _check_readable(path: Path) -> None:
    """Raise ReplayError unless ``path`` is a readable regular file that starts as UTF-8 text."""
    try:
        if not path.exists():
            raise ReplayError(f"{path}: not found")
        if path.is_dir():
            raise ReplayError(f"{path}: is a directory, not a CSV file")
        if not path.is_file():
            # A pipe or a device could not be read the two times a replay reads a file.
            raise ReplayError(f"{path}: not a regular file")
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read: {_os_reason(exc)}") from None
    if b"\0" in head:
        raise ReplayError(
            f"{path.name}: not a CSV text file "
            f"(a NUL byte at byte {head.index(0) + 1}: binary data?)"
        )
    try:
        # A multibyte character cut at the end of the sample is not an error.
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            raise ReplayError(_not_text(path)) from None


def _probe(path: Path) -> _Probe:
    """The file's header, and the timeframe its name says and its first timestamps."""
    stamps: list[int] = []
    reader: _Reader | None = None
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            _check_header(path.name, next(reader, None))
            for row in islice(reader, _SPACING_ROWS):
                try:
                    stamps.append(int(row[0]))
                except (ValueError, IndexError):
                    break  # the row check names it, with its line
    except UnicodeDecodeError:
        raise ReplayError(_not_text(path)) from None
    except csv.Error as exc:
        line = reader.line_num if reader is not None else 1
        raise ReplayError(f"{path.name}:{line}: not a CSV row: {exc}") from None
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read: {_os_reason(exc)}") from None
    return _Probe(path, timeframe_from_filename(path.name), tuple(stamps))


def _fits(stamps: Sequence[int], tf: str) -> bool:
    """Whether timestamps could be ``tf`` candles: most are aligned to it, and, when all
    are, they are not exactly a coarser timeframe (which is aligned to every finer one).

    A lone bad row does not make a file misfit: the row check names that row.
    """
    if len(stamps) < 2:
        return True
    misaligned = sum(not _aligned(ts, tf) for ts in stamps)
    if misaligned * 2 > len(stamps):
        return False
    return misaligned > 0 or _spacing(stamps) in (None, tf)


def _spacing(stamps: Sequence[int]) -> str | None:
    """The one timeframe these timestamps are exactly, or None (too few, gaps everywhere)."""
    if len(stamps) < 2 or not all(a < b for a, b in pairwise(stamps)):
        return None
    for tf in TIMEFRAMES:
        if not all(_aligned(ts, tf) for ts in stamps):
            continue
        index = [_index(ts, tf) for ts in stamps]
        if any(a is not None and b is not None and b - a == 1 for a, b in pairwise(index)):
            return tf
    return None


def _lie(stamps: Sequence[int]) -> str:
    """How the first timestamps lie, for a message."""
    spaced = _spacing(stamps)
    if spaced is not None:
        return f"its first timestamps are {spaced} apart"
    if len(stamps) < 2:
        return "it has too few candles to tell its timeframe"
    return "its first timestamps show no one timeframe"


def _replay_timeframe(probes: Sequence[_Probe], timeframe: str | None, source: str) -> str:
    """The timeframe the files are replayed at: their names', else ``timeframe``, else the
    spacing of their first timestamps; any disagreement is a ReplayError naming the file."""
    named = [(p.path.name, p.named) for p in probes if p.named is not None]
    for (name_a, tf_a), (name_b, tf_b) in pairwise(named):
        if tf_a != tf_b:
            raise ReplayError(
                f"{name_b}: the file name says {tf_b}, but {name_a} says {tf_a}; "
                "replay one timeframe at a time"
            )
    if named:
        name, tf = named[0]
        if timeframe is not None and timeframe != tf:
            raise ReplayError(f"{name}: the file name says {tf}, but {source} is {timeframe}")
        timeframe = tf
    if timeframe is None:
        spaced = [(p, found) for p in probes if (found := _spacing(p.stamps)) is not None]
        if not spaced:
            first = probes[0]
            raise ReplayError(
                f"{first.path.name}: the file name names no timeframe and {_lie(first.stamps)}; "
                f"name replay files {FILE_NAMING}, or set {source}"
            )
        timeframe = spaced[0][1]
    assert timeframe is not None
    for probe in probes:
        if not _fits(probe.stamps, timeframe):
            said = (
                f"the file name says {probe.named}"
                if probe.named is not None
                else f"the timeframe is {timeframe}"
            )
            raise ReplayError(f"{probe.path.name}: {said}, but {_lie(probe.stamps)}")
    return timeframe


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

    def _rows(self, conn: sqlite3.Connection, key: int) -> Iterator[_Row]:
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
