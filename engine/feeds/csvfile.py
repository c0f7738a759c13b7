"""Replay CSV files: how they are named, and every check of their text and rows.

A replay file is ``timestamp,open,high,low,close,volume`` (ms UTC) under that
header, named ``EXCHANGE_BASE-QUOTE_TIMEFRAME_*.csv``. The checks here run
before a replay starts (:func:`check_readable`, :func:`probe_file`,
:func:`replay_timeframe`) and as its rows stream (:func:`read_rows`, or
:func:`read_values` for the bare numbers, as backtest columns load them); each
failure is a :class:`ReplayError` whose message names the file, and the line
and field where there is one. The feed that plays the files is
:class:`engine.feeds.replay.ReplayFeed`.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice, pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from engine.models import Candle
from engine.timeframes import TIMEFRAMES, candle_index, candle_offset, is_aligned, timeframe_ms

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

#: A row as replays merge them: (ts, symbol index, source index, candle), so rows
#: merge by time, then symbol order.
Row = tuple[int, int, int, Candle]

#: A checked row's numbers: (ts, open, high, low, close, volume).
Values = tuple[int, float, float, float, float, float]

# Bytes read at a time when reads are watched.
_BLOCK = 1 << 16


class ReplayError(ValueError):
    """A replay input is malformed; the message names the file, line and field."""


def symbol_from_filename(name: str) -> str | None:
    """``binanceus_BTC-USDT_1m_2023-03.csv`` → ``BTC/USDT``; None when no pair is named."""
    for part in Path(name).stem.split("_"):
        match = _PAIR_RE.match(part)
        if match:
            return f"{match[1]}/{match[2]}".upper()
    return None


def file_symbol(path: Path, given: str | None = None) -> str:
    """``given``, else the pair the file's name names; a ReplayError when neither does."""
    symbol = given or symbol_from_filename(path.name)
    if symbol is None:
        raise ReplayError(
            f"{path.name}: the file name names no pair such as BTC-USDT; "
            f"name replay files {FILE_NAMING}"
        )
    return symbol


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


def read_rows(path: Path, symbol: str, key: int, index: int, tf: str) -> Iterator[Row]:
    """Parse and check one file lazily, row by row; errors name the file.

    Rows are ``symbol`` candles of timeframe ``tf``; ``key`` is the symbol's
    index in the feed and ``index`` the file's, carried in each :data:`Row`.
    """
    for ts, o, h, low, c, v in read_values(path, tf):
        yield ts, key, index, Candle(symbol, ts, o, h, low, c, v)


def read_values(
    path: Path, tf: str, on_read: Callable[[memoryview], object] | None = None
) -> Iterator[Values]:
    """Parse and check one file lazily: each row's :data:`Values`; errors name the file.

    These are the checks :func:`read_rows` makes (it reads through this).
    ``on_read(block)`` is given each block of the file's bytes as it is read
    (to count or hash exactly the bytes parsed).
    """
    name = path.name
    reader: _Reader | None = None
    try:
        with _open_text(path, on_read) as fh:
            reader = csv.reader(fh)
            yield from _parse(name, tf, reader)
    except UnicodeDecodeError:
        raise ReplayError(_not_text(path)) from None
    except csv.Error as exc:
        line = reader.line_num if reader is not None else 1
        raise ReplayError(f"{name}:{line}: not a CSV row: {exc}") from None
    except OSError as exc:
        raise unreadable(path, exc) from None


class _WatchedFile(io.FileIO):
    """A file that shows each block of bytes read from it to ``on_read``."""

    def __init__(self, path: Path, on_read: Callable[[memoryview], object]) -> None:
        super().__init__(path, "rb")
        self._on_read = on_read

    def readinto(self, buffer: Any) -> int | None:
        count = super().readinto(buffer)
        if count:
            with memoryview(buffer) as view, view.cast("B")[:count] as block:
                self._on_read(block)
        return count


def _open_text(path: Path, on_read: Callable[[memoryview], object] | None) -> TextIO:
    if on_read is None:
        return path.open(newline="", encoding="utf-8-sig")
    raw = io.BufferedReader(_WatchedFile(path, on_read), _BLOCK)
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _parse(name: str, tf: str, reader: _Reader) -> Iterator[Values]:
    # Fixed-length timeframes check alignment inline; months need the calendar.
    monthly = tf == "1M"
    step = 1 if monthly else timeframe_ms(tf)
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
        yield ts, o, h, low, c, v
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


def unreadable(path: Path, exc: OSError) -> ReplayError:
    """The error for a file the system would not let us read: ``PATH: cannot read: why``."""
    return ReplayError(f"{path}: cannot read: {_os_reason(exc)}")


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
        return str(unreadable(path, exc))
    return f"{path.name}: not a CSV text file (not UTF-8: binary data?)"


def check_readable(path: Path) -> None:
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
        raise unreadable(path, exc) from None
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


@dataclass(frozen=True, slots=True)
class Probe:
    """What the first rows of a file say, read before the file is replayed."""

    path: Path
    named: str | None  # the timeframe in the file name
    stamps: tuple[int, ...]  # the first timestamps


def probe_file(path: Path) -> Probe:
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
        raise unreadable(path, exc) from None
    return Probe(path, timeframe_from_filename(path.name), tuple(stamps))


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


def replay_timeframe(probes: Sequence[Probe], timeframe: str | None, source: str) -> str:
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
