"""``cma backtest``: the engine's core over history, the session stored at the end.

The command loads the settings as ``cma run`` does, resolves the agents, loads
each CSV (one symbol per file, one timeframe for all) into columns through the
content-hash cache, and each ``--candles`` symbol from the store that kept it
(the config's store unless ``--candles-from`` names another), cuts them to
``--from``/``--to``, runs
:class:`engine.backtest.driver.Backtest` synchronously in the main thread, and
stores what it did as one session (mode ``backtest``): the session row first,
then, after the run, the account's opening cash, every unit of work in ONE
transaction, the equity points and the session's end. It prints the results
and ``session N``.

The store keeps one account (cash, open positions, trading state), so a
backtest refuses a store that already holds one (from ``cma run`` or an earlier
backtest): its units of work would overwrite that account. Without ``--db`` each
backtest gets a new store of its own, in ``backtests/`` beside the configured
store; the command prints its path.

Every input a person can fix (a bad file, row or field, an empty date range,
an unknown agent, a bad number) exits 2 with one ``cma: ...`` line before the
store is opened. On a terminal a one-line progress bar on stderr shows the
percentage, the speed and the time left; piped, nothing but the results.

Ctrl-C stops the run after the current candle: what was done is stored and
printed with a note saying where it stopped (exit 0). A second Ctrl-C during
the run quits at once and stores nothing (exit 130). While the results are
being stored, Ctrl-C is ignored: the store gets all of the run or none of it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from tui.cli import EXIT_FAIL, EXIT_OK, die, seconds_of

if TYPE_CHECKING:
    import sqlite3

    from engine.backtest.data import Columns
    from engine.backtest.driver import Approval, ApprovalMode, Backtest, BacktestRun
    from engine.config import Check, Problem, Settings
    from persistence.store import Store

__all__ = ["ProgressLine", "backtest_command", "parse_when", "progress_text"]

#: The forms ``--from`` and ``--to`` accept (UTC).
WHEN_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M")
#: At most this many redraws of the progress line per second.
REDRAWS_PER_SECOND = 10
_ERASE = "\r\x1b[K"

log = logging.getLogger("cma.backtest")


# ---------------------------------------------------------------- the request


def parse_when(option: str, text: str) -> int:
    """``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM`` (UTC; a space for the T too, as the stop
    note prints it) as epoch ms; exit 2 naming ``option``."""
    for form in WHEN_FORMATS:
        try:
            when = datetime.strptime(text.strip(), form).replace(tzinfo=UTC)
        except ValueError:
            continue
        return int(when.timestamp()) * 1000
    die(f"{option} must be a UTC date YYYY-MM-DD or YYYY-MM-DDTHH:MM, got {text!r}")


def _fraction(option: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also refuses nan
        die(f"{option} must be a number from 0 to 1, got {text!r}")
    return value


def _delay_ms(text: str) -> int:
    """Market seconds (``90``, ``1.5``), or with a unit (``30s``, ``5m``, ``1h``), as ms."""
    try:
        seconds = seconds_of(text)
    except ValueError:
        seconds = math.nan
    if not 0.0 <= seconds <= 366 * 86_400:  # also refuses nan and inf
        die(f"--delay must be market seconds from 0 to a year, e.g. 30, 30s or 5m, got {text!r}")
    return round(seconds * 1000)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        die(f"--seed must be a whole number, 0 or more, got {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class Request:
    """What the command line asks for, checked (nothing loaded or opened yet)."""

    files: tuple[Path, ...]
    #: Symbols whose candles come from a store (``--candles``), that store, and the
    #: timeframe asked for (None: the files', or the one the store holds).
    candles: tuple[str, ...]
    candle_store: Path | None
    timeframe: str | None
    start: int | None
    end: int | None
    approval: Approval
    #: ``agents.enabled`` and ``agents.user`` from ``--agents`` (None: the config's).
    agents: tuple[tuple[str, ...], tuple[str, ...]] | None
    audit: bool

    def overrides(self) -> dict[str, dict[str, Any]]:
        """The settings this request overrides (what the stored session's config says)."""
        out: dict[str, dict[str, Any]] = {}
        if self.agents is not None:
            out["agents"] = {"enabled": self.agents[0], "user": self.agents[1]}
        if self.approval.threshold is not None:
            out["approval"] = {"auto_confidence": self.approval.threshold}
        return out


def read_request(args: argparse.Namespace) -> Request:
    """Check every option that needs no file or store; exit 2 with one line on the first
    problem."""
    from engine.backtest.driver import Approval
    from engine.config import check_symbol
    from engine.timeframes import TIMEFRAMES

    if not args.data and args.candles is None:
        die("give candles: --data FILE... (CSV files) or --candles SYMBOL,... (from a store)")
    candles: list[str] = []
    for name in (args.candles or "").split(","):
        if not name.strip():
            continue
        try:
            symbol = check_symbol(name.strip())
        except ValueError as exc:
            die(f"--candles: {exc}")
        if symbol in candles:
            die(f"--candles lists {symbol} twice")
        candles.append(symbol)
    if args.candles is not None and not candles:
        die(f"--candles names no symbol, got {args.candles!r}")
    if args.candles_from is not None and not candles:
        die("--candles-from needs --candles SYMBOL,...")
    if args.timeframe is not None and args.timeframe not in TIMEFRAMES:
        die(f"--timeframe must be one of {', '.join(TIMEFRAMES)}, got {args.timeframe!r}")
    if args.timeframe is not None and not candles:
        die("--timeframe applies to --candles (a file's name says its timeframe)")
    start = parse_when("--from", args.start) if args.start is not None else None
    end = parse_when("--to", args.end) if args.end is not None else None
    if start is not None and end is not None and start >= end:
        die(f"--from {args.start} is not before --to {args.end}: the range is empty")
    mode: ApprovalMode = args.approve or "threshold"
    given = {
        "--threshold": (args.threshold, "threshold"),
        "--delay": (args.delay, "person"),
        "--reject-rate": (args.reject_rate, "person"),
        "--seed": (args.seed, "person"),
    }
    for option, (value, needs) in given.items():
        if value is not None and mode != needs:
            die(f"{option} applies to --approve {needs}, not --approve {mode}")
    approval = Approval(
        mode=mode,
        threshold=None if args.threshold is None else _fraction("--threshold", args.threshold),
        delay_ms=0 if args.delay is None else _delay_ms(args.delay),
        reject_rate=0.0
        if args.reject_rate is None
        else _fraction("--reject-rate", args.reject_rate),
        seed=0 if args.seed is None else _seed(args.seed),
    )
    agents = None if args.agents is None else _agent_names(args.agents)
    return Request(
        tuple(args.data or ()),
        tuple(candles),
        args.candles_from,
        args.timeframe,
        start,
        end,
        approval,
        agents,
        args.audit,
    )


def _agent_names(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``--agents``: built-in names and dotted paths of user agents, each once."""
    from engine.agents.loader import BUILTIN_AGENTS

    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        die(f"--agents names no agent, got {text!r}; built-in agents are {_known()}")
    builtin: list[str] = []
    user: list[str] = []
    for name in names:
        if names.count(name) > 1:
            die(f"--agents lists {name!r} twice")
        if name in BUILTIN_AGENTS:
            builtin.append(name)
        elif ":" in name or "." in name:
            _importable(name)  # then built and checked with the settings
            user.append(name)
        else:
            import difflib

            close = difflib.get_close_matches(name, list(BUILTIN_AGENTS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            die(
                f"unknown agent {name!r}{hint}; built-in agents are {_known()}, "
                "and a user agent is named package.module:ClassName"
            )
    return tuple(builtin), tuple(user)


def _importable(path: str) -> None:
    """Exit 2 with one line unless ``path`` imports as a concrete agent class."""
    from engine.agents.loader import load_agent_class

    try:
        load_agent_class(path)
    except ValueError as exc:
        die(f"--agents: {exc}")
    except Exception as exc:  # the user's module ran and raised: say what
        die(f"--agents: importing {path!r} raised {type(exc).__name__}: {exc}")


def config_checks(request: Request) -> Check:
    """:func:`tui.validate.check_settings`, but with ``--agents`` the config's
    ``agents.params`` of agents it leaves out are no problem: a config that tunes
    several agents backtests any one of them."""
    from engine.agents.loader import load_agent_class
    from tui.validate import check_settings

    if request.agents is None:
        return check_settings
    builtin, user = request.agents
    running = set(builtin)
    for path in user:
        try:
            running.add(load_agent_class(path).name)
        except Exception:  # check_settings names the path and says why
            continue

    def checks(settings: Settings) -> list[Problem]:
        return [
            p
            for p in check_settings(settings)
            if not (p.field.startswith("agents.params.") and p.field.split(".")[2] not in running)
        ]

    return checks


def _known() -> str:
    from engine.agents.loader import BUILTIN_AGENTS

    return ", ".join(sorted(BUILTIN_AGENTS))


# ---------------------------------------------------------------- the progress line


def _clock_text(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def progress_text(
    label: str, done: int, total: int, elapsed: float, width: int, *, unit: str = "candles"
) -> str:
    """One progress line at most ``width - 1`` columns: label, percent, bar, speed, ETA.

    ``unit`` "bytes" shows MB/s, "trials" trials/min, anything else ``N unit/s``.
    """
    share = min(1.0, done / total) if total > 0 else 1.0
    rate = done / elapsed if elapsed > 0 else math.nan
    if unit == "bytes":
        speed = f"{rate / 1e6:,.1f} MB/s" if math.isfinite(rate) else "- MB/s"
    elif unit == "trials":  # seconds each: a rate per minute reads better
        speed = f"{rate * 60:,.1f} trials/min" if math.isfinite(rate) else "- trials/min"
    else:
        speed = f"{rate:,.0f} {unit}/s" if math.isfinite(rate) else f"- {unit}/s"
    eta = (total - done) / rate if rate > 0 else math.inf
    head = f"{label} {share * 100:5.1f}% "
    tail = f" {speed}  ETA {_clock_text(eta)}"
    room = width - 1 - len(head) - len(tail) - 2
    if room < 5:  # a narrow terminal: no bar, and the label cut if need be
        return f"{head}{tail.strip()}"[: max(0, width - 1)]
    filled = round(room * share)
    return f"{head}[{'#' * filled}{'-' * (room - filled)}]{tail}"


class ProgressLine:
    """One line on ``stream`` when it is a terminal, redrawn at most
    :data:`REDRAWS_PER_SECOND` times a second and erased by :meth:`clear`; on any
    other stream it writes nothing at all."""

    def __init__(
        self,
        stream: TextIO,
        *,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.enabled = _is_terminal(stream) if enabled is None else enabled
        self._clock = clock
        self._label = ""
        self._unit = "candles"
        self._started = clock()
        self._last = -math.inf
        self._drawn = False
        self.note = ""
        self._noted = False

    def say(self, note: str) -> None:
        """Add ``note`` to the line from its next update on, drawn then at once. Safe in a
        signal handler: it writes nothing itself."""
        self.note, self._noted = note, True

    def start(self, label: str, unit: str = "candles") -> None:
        """Begin a new task: its speed and ETA count from now."""
        self._label, self._unit, self.note, self._noted = label, unit, "", False
        self._started = self._clock()
        self._last = -math.inf

    def update(self, done: int, total: int) -> None:
        """Show ``done`` of ``total``, unless the line was drawn less than a tenth of a
        second ago (the last update before :meth:`clear` may so never show: it is erased)."""
        if not self.enabled:
            return
        now = self._clock()
        if now - self._last < 1.0 / REDRAWS_PER_SECOND and not self._noted:
            return
        self._last, self._noted = now, False
        # Two columns spare: the terminal echoes Ctrl-C as "^C" after the line, and a
        # line it wrapped could no longer be erased by a carriage return.
        width = _width(self.stream) - 2
        # The note keeps its room: the bar narrows for it (a narrow terminal cuts the end).
        note = f"  {self.note}" if self.note else ""
        elapsed = now - self._started
        text = progress_text(self._label, done, total, elapsed, width - len(note), unit=self._unit)
        text = f"{text}{note}"[: width - 1]
        self.stream.write(f"\r{text}\x1b[K")
        self.stream.flush()
        self._drawn = True

    def clear(self) -> None:
        """Erase the line (if one was drawn)."""
        if self._drawn:
            self.stream.write(_ERASE)
            self.stream.flush()
            self._drawn = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream
        return False


def _width(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


# ---------------------------------------------------------------- loading


def load_all(request: Request, bar: ProgressLine) -> list[Columns]:
    """Each file's and each stored symbol's candles, cut to the request's dates; exit 2
    naming the file (or store) on any problem: the file itself, a second source for one
    symbol, another timeframe, no candles in the range, two quote currencies."""
    from engine.assembly import account_currency
    from engine.backtest.data import DataError, ReplayError, load_columns

    loaded: list[tuple[str, Columns]] = []
    for path in request.files:
        bar.start(f"loading {path.name}", unit="bytes")
        try:
            loaded.append((path.name, load_columns(path, progress=bar.update)))
        except ReplayError as exc:
            die(str(exc))
        finally:
            bar.clear()
    if request.candles:
        loaded += _stored(request, loaded[0][1].timeframe if loaded else None)
    out: list[Columns] = []
    seen: dict[str, str] = {}
    for label, columns in loaded:
        if columns.symbol in seen:
            die(
                f"{label}: a second source for {columns.symbol} (after {seen[columns.symbol]});"
                " give one per symbol"
            )
        seen[columns.symbol] = label
        first_label, first = loaded[0]
        if columns.timeframe != first.timeframe:
            die(
                f"{label}: its candles are {columns.timeframe}, but {first_label}'s are "
                f"{first.timeframe}; backtest one timeframe at a time"
            )
        try:
            out.append(columns.between(request.start, request.end))
        except DataError as exc:
            die(f"{label}: {exc}")
    by_quote: dict[str, list[Path]] = {}
    for columns, path in zip(out, request.files, strict=False):  # the files come first
        by_quote.setdefault(columns.symbol.rpartition("/")[2], []).append(path)
    try:
        account_currency([c.symbol for c in out], None if request.candles else by_quote)
    except ValueError as exc:  # one account holds one currency
        die(str(exc))
    return out


def _stored(request: Request, files_timeframe: str | None) -> list[tuple[str, Columns]]:
    """The ``--candles`` symbols from the store, at ``--timeframe``, else the files'
    timeframe, else the one timeframe the store holds of each."""
    from engine.backtest.data import DataError
    from persistence.candles import load_store_columns, stored_series

    store = request.candle_store
    assert store is not None  # backtest_command fills it in
    out: list[tuple[str, Columns]] = []
    try:
        held = stored_series(store)
        for symbol in request.candles:
            timeframe = request.timeframe or files_timeframe
            if timeframe is None:
                kept = [tf for s, tf, _ in held if s == symbol]
                if len(kept) > 1:
                    die(
                        f"{store}: holds {symbol} candles of {', '.join(kept)}; "
                        "choose one with --timeframe"
                    )
                timeframe = kept[0] if kept else "1m"  # none: the error names what is held
            out.append((f"{symbol} in {store.name}", load_store_columns(store, symbol, timeframe)))
    except DataError as exc:
        die(str(exc))
    return out


# ---------------------------------------------------------------- Ctrl-C


class StopFlag:
    """Set by the first SIGINT; the second raises KeyboardInterrupt (quit at once), and
    so does SIGTERM or SIGHUP (the terminal went away); unless :attr:`storing`, when
    every one of them is ignored."""

    def __init__(self, on_first: Callable[[], None] = lambda: None) -> None:
        self.is_set = False
        self.storing = False
        self._on_first = on_first

    def __call__(self) -> bool:
        return self.is_set

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.storing:
            return
        if self.is_set or signum != signal.SIGINT:
            raise KeyboardInterrupt
        self.is_set = True
        self._on_first()


#: The signals :func:`first_interrupt_stops` takes over.
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def first_interrupt_stops(flag: StopFlag) -> Iterator[StopFlag]:
    """While inside, SIGINT, SIGTERM and SIGHUP go to ``flag`` (the run is synchronous
    in this thread: a handler of the event loop would never run)."""
    before = {sig: signal.signal(sig, flag._handle) for sig in SIGNALS}
    try:
        yield flag
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------- the run


def _now_ms() -> int:
    return round(time.time() * 1000)


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _forget_session(conn: sqlite3.Connection, session_id: int) -> None:
    """Remove the session row of a run that stored nothing (a second Ctrl-C, an error)."""
    conn.execute(
        "DELETE FROM sessions WHERE id = ?"
        " AND NOT EXISTS (SELECT 1 FROM events WHERE session_id = ?)",
        (session_id, session_id),
    )


async def _backtest(
    settings: Settings,
    columns: Sequence[Columns],
    request: Request,
    bar: ProgressLine,
    log_file: Path | None,
) -> tuple[BacktestRun, int]:
    from engine.assembly import load_agents
    from engine.backtest.driver import Backtest
    from persistence.errors import StoreFileError
    from persistence.store import Store

    try:
        store = await Store.open(settings.store.resolved_path(), settings.store.busy_timeout_ms)
    except StoreFileError as exc:
        die(str(exc), exc.code)
    try:
        if not (await store.load_state()).is_fresh:
            # The store keeps ONE account (cash, open positions, trading state): a
            # backtest's would overwrite it and break the store's reconciliation.
            die(
                f"the store {store.path} already holds an account (from cma run or an "
                "earlier backtest), which the backtest's would overwrite; "
                "pass --db with a new file"
            )
        try:
            backtest = Backtest(
                settings,
                columns,
                agent_classes=load_agents(settings),
                approval=request.approval,
                # Without --audit the event log leaves out what the tables hold.
                new_work=functools.partial(store.begin_work, log=request.audit),
                audit=request.audit,
            )
        except ValueError as exc:
            die(str(exc))
        return await _run_and_store(backtest, store, settings, bar, log_file)
    finally:
        await store.close()


async def _run_and_store(
    backtest: Backtest,
    store: Store,
    settings: Settings,
    bar: ProgressLine,
    log_file: Path | None,
) -> tuple[BacktestRun, int]:
    """Begin the session, run; then store the account, every unit of work (ONE
    transaction), the equity points and the session's end. From the session's
    beginning to the run's end, the first Ctrl-C stops the run and a second quits
    (the session row is removed); while storing, Ctrl-C is ignored: the store then
    holds all of the run or none of it."""
    flag = StopFlag(lambda: bar.say("stopping (Ctrl-C again quits, storing nothing)"))
    with first_interrupt_stops(flag):
        from engine.config.sections import SECRET_FIELDS

        config = settings.model_dump_json(exclude=SECRET_FIELDS)
        feed = "replay" if settings.feed.kind == "replay" else "store"
        session_id = await store.begin_session("backtest", feed, config, _now_ms())
        bar.start("backtest")
        try:
            run: BacktestRun = backtest.run(progress=bar.update, should_stop=flag)
        except KeyboardInterrupt:
            flag.storing = True
            bar.clear()
            await store.run(_forget_session, session_id)
            raise
        except Exception as exc:
            flag.storing = True
            bar.clear()
            log.exception("the backtest failed")
            await store.run(_forget_session, session_id)
            where = "" if log_file is None else f" (traceback in {_shown(log_file)})"
            die(f"the backtest failed: {type(exc).__name__}: {exc}{where}", EXIT_FAIL)
        flag.storing = True
        bar.clear()
        first_ts = min(int(c.ts[0]) for c in backtest.columns)
        await store.init_balance(run.currency, settings.risk.initial_cash, first_ts)
        if run.works:
            await store.commit(*run.works)  # one transaction: all of it or none
        for point in run.points:  # the equity curve, as the live shell records it
            store.record_equity(point)
        await store.flush()
        await store.end_session(_now_ms())
    return run, session_id


def _shown(path: Path) -> str:
    from tui.logs import shown

    return shown(path)


def backtest_command(args: argparse.Namespace) -> int:
    """``cma backtest``: see the module docstring."""
    from engine.backtest.metrics import format_results
    from persistence.errors import StoreFileError
    from persistence.storefile import inspect_store
    from tui.logs import secrets_of, setup_logging
    from tui.subcommands import settings_from_args

    request = read_request(args)
    overrides = request.overrides()
    # The same checks as `cma run`: agents import and build, the config is whole.
    settings = settings_from_args(args, check=config_checks(request), **overrides)
    if request.candles and request.candle_store is None:
        # The store `cma run` keeps candles in: the config's, whatever --db says.
        config_only = argparse.Namespace(config=getattr(args, "config", None))
        store = settings_from_args(config_only).store.resolved_path()
        request = dataclasses.replace(request, candle_store=store)
    bar = ProgressLine(sys.stderr)
    columns = load_all(request, bar)
    feed: dict[str, Any] = {
        "symbols": tuple(c.symbol for c in columns),
        "timeframe": columns[0].timeframe,
    }
    if request.files:
        feed |= {"kind": "replay", "files": request.files}
    settings = settings_from_args(args, check=False, **{**overrides, "feed": feed})
    if getattr(args, "db", None) is None:
        # A store keeps one account: each backtest gets a store of its own by default.
        from reports.sessions import backtests_dir

        path = new_backtest_store(backtests_dir(settings.store.resolved_path()))
        store_settings = settings.store.model_copy(update={"path": path})
        settings = settings.model_copy(update={"store": store_settings})
    try:
        inspect_store(settings.store.resolved_path())
    except StoreFileError as exc:
        die(str(exc), exc.code)
    log_file = setup_logging(secrets=secrets_of(settings))
    run, session_id = asyncio.run(_backtest(settings, columns, request, bar, log_file))
    for message in run.messages:  # an agent switched off, say: one line each, as headless
        print(f"{message.level}: {message.text}", file=sys.stderr)
    if run.stopped:
        stop_ts = int(run.ts[-1]) if len(run.ts) else run.results.start_ts
        print(f"stopped at {_when(stop_ts)} UTC: {run.candles:,} of {run.total:,} candles")
    print(format_results(run.results), end="")
    print(f"store {_shown(settings.store.resolved_path())}")
    print(f"session {session_id}")
    return EXIT_OK


def new_backtest_store(folder: Path) -> Path:
    """A store file no backtest has used, in ``folder`` (made 0700): named by the UTC
    time, with a number added when two start in the same second."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path = folder / f"backtest-{stamp}.db"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"backtest-{stamp}-{n}.db"
    return path
