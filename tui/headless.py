"""``cma run --headless``: the same engine as the console, with a status line.

Status lines go to stdout. An error the engine reports while it runs (an
agent switched off, say) is one line on stderr; its traceback is in the log
file, never on the terminal.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

from engine.config import Settings
from engine.models import EngineEvent, EngineMessage, TradingState
from engine.runtime import Engine
from persistence.errors import is_disk_full
from tui.cli import EXIT_DISK_FULL, EXIT_FAIL, EXIT_HALTED, EXIT_OK, die
from tui.logs import shown
from tui.session import ConsoleSession, StartError
from tui.stopping import StopSignals


def _error_printer(engine: Engine, log_file: Path | None) -> Callable[[EngineEvent], None]:
    """An engine subscriber printing each error and warning message as one line on stderr."""
    where = f" (traceback in {shown(log_file)})" if log_file is not None else ""

    def on_event(event: EngineEvent) -> None:
        if not isinstance(event, EngineMessage):
            return
        if event.level == "warning":  # a failed group commit, a cancelled order
            print(f"warning: {event.text}", file=sys.stderr, flush=True)
        # An error that stops the engine is said once, with the exit code, by _main.
        elif event.level == "error" and engine.error is None:
            print(f"{event.text}{where}", file=sys.stderr, flush=True)

    return on_event


async def _main(settings: Settings, duration: float | None, log_file: Path | None) -> int:
    session = ConsoleSession(settings)
    stop = asyncio.Event()
    # The first of SIGINT, SIGTERM, SIGHUP stops gracefully; a second exits at once.
    signals = StopSignals(lambda sig: stop.set(), announce=True).install()
    printer: Callable[[EngineEvent], None] | None = None

    def on_event(event: EngineEvent) -> None:
        nonlocal printer
        if printer is None:
            assert session.engine is not None  # built before it sends its first event
            printer = _error_printer(session.engine, log_file)
        printer(event)

    try:
        try:
            recovery = await session.start(on_event, paused_if_recovered=False)
        except StartError as exc:
            die(str(exc), exc.code)  # the finally below closes what was opened
        engine = session.engine
        assert engine is not None and session.feed is not None
        if recovery.needs_attention:  # as the console shows its restart summary
            print(
                f"recovered: {len(recovery.positions)} open positions, "
                f"{len(recovery.pending)} pending proposals, trading {recovery.trading_state}",
                flush=True,
            )
        # A fresh live store has notes too: what the exchange holds that it does not know.
        for note in recovery.notes:
            print(f"  {note}", flush=True)
        print(
            f"cma headless: {engine.mode} on {engine.feed_name} "
            f"({', '.join(session.feed.symbols)}), policy {engine.policy}, "
            f"store {settings.store.resolved_path()}",
            flush=True,
        )
        if session.metrics_url is not None:
            print(f"metrics on {session.metrics_url}", flush=True)
        deadline = None if duration is None else time.monotonic() + duration
        interval = settings.engine.status_interval_seconds
        done = asyncio.ensure_future(engine.wait())
        while not stop.is_set() and not done.done():
            timeout = interval
            if deadline is not None:
                timeout = min(timeout, max(0.0, deadline - time.monotonic()))
            waiter = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, done}, timeout=timeout, return_when="FIRST_COMPLETED")
            waiter.cancel()
            print(engine.status_line(), flush=True)
            if deadline is not None and time.monotonic() >= deadline:
                break
        if done.done():
            done.exception()  # retrieved: engine.error is reported below
        else:
            done.cancel()
        full = await _stop(session)
        if full is not None or is_disk_full(engine.error):
            _say_disk_full(settings, full or engine.error)
            return EXIT_DISK_FULL
        if engine.error is not None:
            where = "" if log_file is None else f" (traceback in {shown(log_file)})"
            print(f"cma: engine stopped on an error: {engine.error}{where}", file=sys.stderr)
            return EXIT_FAIL
        print(engine.status_line(), flush=True)
        if engine.risk.state is TradingState.HALTED:
            # Restarting would not trade either: say so, with a code systemd does not
            # restart on (deploy/cma.service: RestartPreventExitStatus).
            print(
                f"cma: trading HALTED: {engine.risk.state_reason} (exit {EXIT_HALTED}; "
                "resume trading in the console once the cause is dealt with)",
                file=sys.stderr,
            )
            return EXIT_HALTED
        return EXIT_OK
    finally:
        try:
            await session.stop(close_positions=None)
        finally:
            signals.remove()


async def _stop(session: ConsoleSession) -> BaseException | None:
    """Stop the engine and close the store; the error if the disk is full (the store's
    last flush of equity points and candles cannot be written: it is closed all the same,
    and what it holds is intact)."""
    full: BaseException | None = None
    engine = session.engine
    assert engine is not None

    async def close_session() -> None:
        await session.stop(close_positions=None)

    for stop in (engine.stop, close_session):
        try:
            await stop()
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            full = full or exc
    return full


def _say_disk_full(settings: Settings, exc: BaseException | None) -> None:
    print(
        f"cma: disk full: the store {settings.store.resolved_path()} cannot be written "
        f"({exc}); trading stopped, and what the store holds is intact (cma db check); "
        f"free some space and start again (exit {EXIT_DISK_FULL})",
        file=sys.stderr,
        flush=True,
    )


def run_headless(
    settings: Settings, duration: float | None = None, log_file: Path | None = None
) -> int:
    """Run the engine without a UI until SIGINT/SIGTERM/SIGHUP or ``duration`` seconds;
    returns the exit code: 0, 1 (the engine stopped on an error),
    :data:`~tui.cli.EXIT_HALTED` (it ended with trading HALTED) or
    :data:`~tui.cli.EXIT_DISK_FULL` (a full disk under the store stopped it).

    ``log_file`` is where tracebacks go (:func:`tui.logs.setup_logging`), for the messages.
    """
    return asyncio.run(_main(settings, duration, log_file))
