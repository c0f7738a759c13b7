"""``cma data fetch``: an exchange's candle history, paged into a CSV file or the store.

``cma data fetch --exchange binance --symbol BTC/USDT --timeframe 1m --since 2024-01-01
[--until 2024-02-01] [--output FILE.csv | DIR]`` asks the exchange (REST, ``fetch_ohlcv``,
as many candles a page as the exchange gives, ccxt's rate limiter on) for every *closed*
candle from ``--since`` up to (not including) ``--until`` or now, and writes them:

- with ``--output FILE.csv``: to that CSV file in the shared format
  (``timestamp,open,high,low,close,volume``, the timestamp is the open time in ms, UTC);
  ``--output DIR`` names the file like the shared data,
  ``EXCHANGE_BASE-QUOTE_TF_SINCE.csv`` (``cma run --files`` replays it as it is);
- without ``--output``: into the store's candle table (``--db``), where ``cma backtest
  --candles`` reads them.

It resumes: a second run continues after the newest candle already in the file (or the
store) in the range, so nothing is fetched twice and nothing is skipped. Every page is
appended as whole lines and flushed, so Ctrl-C (exit 130) leaves a valid file; a line cut
short by a harder kill is dropped on the next run. On a terminal a progress line on
stderr shows the candles fetched of those expected, the speed and the time left.

Bad arguments exit 2 naming them (an unknown exchange, a symbol that is not BASE/QUOTE or
not listed, a timeframe the exchange lacks, ``--since`` in the future, ``--until`` not
after ``--since``, an output that cannot be written). A network failure that outlasts the
retries exits 1 with one redacted line.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tui.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE, die

if TYPE_CHECKING:
    from engine.config import Settings
    from persistence.store import Store

__all__ = ["add_data_parser", "data_command", "default_name"]

HEADER = "timestamp,open,high,low,close,volume"
#: Page size for exchanges that do not say theirs (ccxt's ``features``).
DEFAULT_PAGE = 500


def add_data_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``cma data`` and its ``fetch`` action; the values are checked by the command."""
    data = sub.add_parser("data", parents=[common], help="download candle history")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    fetch = actions.add_parser(
        "fetch",
        parents=[common],
        help="page an exchange's candles into a CSV file or the store (resumes)",
        description="Fetch an exchange's closed candles from --since to --until (or now) "
        "into a CSV file (--output) or the store's candle table (--db). A second run "
        "continues where the first stopped.",
    )
    fetch.add_argument("--exchange", metavar="ID", help="ccxt exchange id (default exchange.id)")
    fetch.add_argument("--symbol", metavar="BASE/QUOTE", required=True, help="e.g. BTC/USDT")
    fetch.add_argument("--timeframe", metavar="TF", help="e.g. 1m, 5m, 1h (default feed.timeframe)")
    fetch.add_argument("--since", metavar="DATE", required=True, help="first candle time, UTC")
    fetch.add_argument("--until", metavar="DATE", help="stop before this time, UTC (default now)")
    fetch.add_argument(
        "--output",
        metavar="FILE.csv|DIR/",
        help="CSV file to write or extend; a directory (made if named with a trailing /): "
        "the shared data's file name in it; default: the store's candle table",
    )


def data_command(args: argparse.Namespace) -> int:
    """``cma data fetch``."""
    assert args.data_command == "fetch"
    import asyncio

    settings, request = _request(args)
    try:
        return asyncio.run(_fetch(settings, request, sys.stderr))
    except _Refused as exc:
        die(str(exc), exc.code)


# ---------------------------------------------------------------- the request


@dataclass(frozen=True)
class FetchRequest:
    """What to fetch: ``since`` and ``until`` are ms (``until`` exclusive, None: now)."""

    exchange: str
    symbol: str
    timeframe: str
    since: int
    until: int | None
    output: Path | None


class _Refused(Exception):
    """A ``cma: ...`` line and its exit code, raised inside the event loop."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _request(args: argparse.Namespace) -> tuple[Settings, FetchRequest]:
    """Every argument checked before the network is touched; exit 2 naming the bad one."""
    from engine.config import CCXT_TIMEFRAMES, check_symbol
    from tui.backtest_cmd import parse_when
    from tui.subcommands import settings_from_args

    overrides: dict[str, Any] = {}
    if args.exchange is not None:
        overrides["exchange"] = {"id": args.exchange}
    settings = settings_from_args(args, **overrides)
    try:
        symbol = check_symbol(args.symbol)
    except ValueError as exc:
        die(f"--symbol: {exc}")
    timeframe = args.timeframe or settings.feed.timeframe
    if timeframe not in CCXT_TIMEFRAMES:
        die(f"--timeframe must be one of {', '.join(CCXT_TIMEFRAMES)}; got {timeframe!r}")
    since = parse_when("--since", args.since)
    if since > time.time() * 1000:
        die(f"--since {args.since} is in the future")
    until = None if args.until is None else parse_when("--until", args.until)
    if until is not None and until <= since:
        die(f"--until {args.until} must be after --since {args.since}")
    output = args.output
    if output is not None:
        output = _output_path(output, settings.exchange.id, symbol, timeframe, since)
    request = FetchRequest(settings.exchange.id, symbol, timeframe, since, until, output)
    return settings, request


def default_name(exchange: str, symbol: str, timeframe: str, since: int) -> str:
    """The shared data's file name: ``binance_BTC-USDT_1m_2024-01-01.csv``."""
    day = datetime.fromtimestamp(since / 1000, UTC).strftime("%Y-%m-%d")
    return f"{exchange}_{symbol.replace('/', '-')}_{timeframe}_{day}.csv"


def _output_path(text: str, exchange: str, symbol: str, timeframe: str, since: int) -> Path:
    """The file ``--output`` names (a directory: the default name in it; one named with
    a trailing slash is made), or exit 2 when it cannot be written."""
    output = Path(text)
    if text.endswith(("/", os.sep)) and not output.exists():
        if not output.parent.is_dir():
            die(f"--output {text}: directory {output.parent} does not exist")
        try:
            output.mkdir()
        except OSError as exc:
            die(f"--output {text}: cannot make the directory: {exc.strerror}")
    if output.is_dir():
        output = output / default_name(exchange, symbol, timeframe, since)
    parent = output.parent
    if not parent.is_dir():
        die(f"--output {output}: directory {parent} does not exist")
    if output.exists():
        if not output.is_file():
            die(f"--output {output}: not a regular file")
        if not os.access(output, os.W_OK):
            die(f"--output {output}: not writable")
        with output.open(encoding="utf-8", errors="replace") as handle:
            first = handle.readline().strip()
        if first and first != HEADER:
            die(f"--output {output} exists and is not a candle CSV (its header is not {HEADER})")
    elif not os.access(parent, os.W_OK):
        die(f"--output {output}: directory {parent} is not writable")
    return output


# ---------------------------------------------------------------- where candles go


class CsvSink:
    """Appends whole lines to a CSV file in the shared format, flushed per page."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: TextIO | None = None

    def open(self) -> int | None:
        """Open for appending; return the newest timestamp already in the file.

        A last line cut short (the process was killed mid-write) is dropped first.
        """
        last: int | None = None
        if self.path.exists() and self.path.stat().st_size:
            data = self.path.read_bytes()
            if not data.endswith(b"\n"):
                cut = data.rfind(b"\n") + 1
                with self.path.open("r+b") as handle:
                    handle.truncate(cut)
                data = data[:cut]
            for line in reversed(data.splitlines()[1:]):
                head = line.split(b",", 1)[0]
                if head.strip():
                    last = int(head)
                    break
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self._handle = self.path.open("a", encoding="utf-8", newline="")
        if fresh:
            self._handle.write(HEADER + "\n")
            self._handle.flush()
        return last

    async def write(self, rows: list[list[Any]]) -> None:
        assert self._handle is not None
        self._handle.write("".join(_line(row) for row in rows))
        self._handle.flush()

    async def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def describe(self) -> str:
        return str(self.path)


class StoreSink:
    """Writes into the store's candle table, committed per page."""

    def __init__(self, settings: Settings, symbol: str, timeframe: str) -> None:
        self.settings = settings
        self.symbol, self.timeframe = symbol, timeframe
        self._store: Store | None = None

    async def open(self, since: int, until: int | None) -> int | None:
        from persistence.errors import StoreFileError
        from persistence.store import Store

        s = self.settings.store
        try:
            self._store = await Store.open(s.resolved_path(), s.busy_timeout_ms)
        except StoreFileError as exc:
            raise _Refused(str(exc), exc.code) from None
        end = until if until is not None else 2**62
        sql = (
            "SELECT MAX(ts) FROM candles WHERE symbol = ? AND timeframe = ? AND ts >= ? AND ts < ?"
        )
        args = (self.symbol, self.timeframe, since, end)
        row = await self._store.run(lambda conn: conn.execute(sql, args).fetchone())
        return None if row[0] is None else int(row[0])

    async def write(self, rows: list[list[Any]]) -> None:
        from engine.models import Candle

        assert self._store is not None
        candles = [Candle(self.symbol, int(r[0]), *(float(v or 0.0) for v in r[1:6])) for r in rows]
        self._store.record_candles(self.timeframe, candles)
        await self._store.flush()

    async def close(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            await store.close()

    def describe(self) -> str:
        return str(self.settings.store.resolved_path())


def _line(row: list[Any]) -> str:
    return ",".join([str(int(row[0])), *(_number(v) for v in row[1:6])]) + "\n"


def _number(value: Any) -> str:
    """A price or volume as the shared files write it: the shortest text that reads back
    as the same float (``23140.0``, ``9e-05``)."""
    return repr(float(value or 0.0))


# ---------------------------------------------------------------- fetching


#: Exit code after Ctrl-C (128 + SIGINT), as ``cma`` gives for an interrupt.
EXIT_INTERRUPTED = 130


async def _fetch(settings: Settings, req: FetchRequest, stream: TextIO) -> int:
    """Run :func:`_fetch_pages` with Ctrl-C stopping it at its next request: what was
    written stays (whole lines) and the exit code is :data:`EXIT_INTERRUPTED`."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        return await _fetch_pages(settings, req, stream, stop)
    except _Interrupted:
        return EXIT_INTERRUPTED
    finally:
        loop.remove_signal_handler(signal.SIGINT)


class _Interrupted(Exception):
    """Ctrl-C: the request under way was dropped."""


async def _until_stopped(call: Any, stop: Any) -> Any:
    """``await call()``, or raise :class:`_Interrupted` as soon as ``stop`` is set."""
    import asyncio

    if stop.is_set():
        raise _Interrupted
    work = asyncio.ensure_future(call())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if work.done():
        return work.result()
    work.cancel()
    await asyncio.gather(work, return_exceptions=True)
    raise _Interrupted


async def _fetch_pages(settings: Settings, req: FetchRequest, stream: TextIO, stop: Any) -> int:
    from engine.exchange.errors import describe, retry_read
    from engine.exchange.session import ExchangeSetupError, close_exchange, open_exchange, spec_of
    from engine.timeframes import candle_index, candle_open, floor_ts
    from tui.backtest_cmd import ProgressLine

    tf = req.timeframe

    def after(ts: int) -> int:
        return candle_open(candle_index(ts, tf) + 1, tf)

    def before(ts: int) -> int:
        return candle_open(candle_index(ts, tf) - 1, tf)

    try:
        exchange = open_exchange(spec_of(settings.exchange), pro=False)
    except ExchangeSetupError as exc:
        raise _Refused(str(exc).replace("exchange.id:", "--exchange:", 1), EXIT_USAGE) from None
    sink: CsvSink | StoreSink = (
        CsvSink(req.output) if req.output is not None else StoreSink(settings, req.symbol, tf)
    )
    progress = ProgressLine(stream)
    fetched = 0
    total = 0
    done = 0
    finished = False
    try:
        try:
            markets = await _until_stopped(
                lambda: retry_read(exchange.load_markets, what="markets", exchange=exchange), stop
            )
            if req.symbol not in markets:
                raise _Refused(f"--symbol: {exchange.id} does not list {req.symbol}", EXIT_USAGE)
            timeframes = exchange.timeframes or {}
            if timeframes and tf not in timeframes:
                raise _Refused(
                    f"--timeframe: {exchange.id} has no {tf} candles; it has "
                    f"{', '.join(timeframes)}",
                    EXIT_USAGE,
                )
            if exchange.has.get("fetchTime"):
                now = int(
                    await _until_stopped(
                        lambda: retry_read(exchange.fetch_time, what="time", exchange=exchange),
                        stop,
                    )
                )
            else:
                now = int(exchange.milliseconds())
            first = candle_open(candle_index(req.since - 1, tf) + 1, tf)  # the first open >= since
            last = before(now)  # the newest closed candle
            if req.until is not None:
                last = min(last, floor_ts(req.until - 1, tf))  # opened before --until
            if first > now:
                raise _Refused(
                    f"--since is after {exchange.id}'s clock: nothing has closed yet", EXIT_USAGE
                )
            if req.output is not None:
                assert isinstance(sink, CsvSink)
                had = sink.open()
            else:
                assert isinstance(sink, StoreSink)
                had = await sink.open(req.since, req.until)
            total = max(0, candle_index(last, tf) - candle_index(first, tf) + 1)
            cursor = first if had is None or had < first else after(had)
            done = max(0, min(total, candle_index(cursor, tf) - candle_index(first, tf)))
            limit = int(
                exchange.feature_value(req.symbol, "fetchOHLCV", "limit", DEFAULT_PAGE)
                or DEFAULT_PAGE
            )
            progress.start(f"{req.symbol} {tf}")
            progress.update(done, total)
            while cursor <= last:
                fetch = functools.partial(
                    exchange.fetch_ohlcv, req.symbol, tf, since=cursor, limit=limit
                )
                rows = await _until_stopped(
                    functools.partial(retry_read, fetch, what="candles", exchange=exchange), stop
                )
                page = [r for r in rows if cursor <= int(r[0]) <= last]
                if not page:
                    break
                await sink.write(page)
                fetched += len(page)
                cursor = after(int(page[-1][0]))
                done = min(total, candle_index(cursor, tf) - candle_index(first, tf))
                progress.update(done, total)
                if len(rows) < limit and int(rows[-1][0]) < last:
                    break  # the exchange has no more
            finished = True
        except _Refused:
            raise
        except Exception as exc:
            import ccxt

            if not isinstance(exc, ccxt.BaseError):
                raise
            secrets = [s for s in (exchange.apiKey, exchange.secret) if s]
            message = f"fetching from {exchange.id} failed: {describe(exc, secrets)}"
            raise _Refused(message, EXIT_FAIL) from None
    finally:
        progress.clear()
        await sink.close()
        await close_exchange(exchange)
        if not finished and fetched:
            print(
                f"stopped after {fetched:,} candles in {sink.describe()}; "
                "run the same command again to resume",
                file=stream,
                flush=True,
            )
    print(
        f"{req.symbol} {tf} from {exchange.id}: {fetched:,} candles fetched, "
        f"{done:,} of {total:,} in range in {sink.describe()}"
    )
    return EXIT_OK
