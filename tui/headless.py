"""``cma run --headless``: the same engine as the console, with a status line.

Status lines go to stdout. An error the engine reports while it runs (an
agent switched off, say) is one line on stderr; its traceback is in the log
file, never on the terminal.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from engine.config import Settings
from engine.models import EngineEvent, EngineMessage
from engine.runtime import Engine, StoreMismatchError, make_feed
from persistence.errors import StoreFileError
from persistence.store import Store
from tui.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE, die
from tui.logs import shown


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
    try:
        feed = make_feed(settings)
    except (ValueError, OSError) as exc:
        die(str(exc), EXIT_USAGE)
    path = settings.store.resolved_path()
    try:
        store = await Store.open(path, settings.store.busy_timeout_ms)
    except StoreFileError as exc:  # locked (1), damaged (1), not a cma store (2)
        die(str(exc), exc.code)
    try:
        engine = Engine(settings, store, feed)
    except ValueError as exc:
        await store.close()
        die(str(exc), EXIT_USAGE)
    engine.subscribe(_error_printer(engine, log_file))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            recovery = await engine.start(paused_if_recovered=False)
        except StoreMismatchError as exc:
            die(str(exc), EXIT_USAGE)
        if recovery.needs_attention:  # as the console shows its restart summary
            print(
                f"recovered: {len(recovery.positions)} open positions, "
                f"{len(recovery.pending)} pending proposals, trading {recovery.trading_state}",
                flush=True,
            )
        if not recovery.is_fresh:
            for note in recovery.notes:
                print(f"  {note}", flush=True)
        print(
            f"cma headless: {engine.mode} on {engine.feed_name} "
            f"({', '.join(feed.symbols)}), policy {engine.policy}, store {path}",
            flush=True,
        )
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
        await engine.stop()
        if engine.error is not None:
            where = "" if log_file is None else f" (traceback in {shown(log_file)})"
            print(f"cma: engine stopped on an error: {engine.error}{where}", file=sys.stderr)
            return EXIT_FAIL
        print(engine.status_line(), flush=True)
        return EXIT_OK
    finally:
        await store.close()


def run_headless(
    settings: Settings, duration: float | None = None, log_file: Path | None = None
) -> int:
    """Run the engine without a UI until SIGINT/SIGTERM/SIGHUP or ``duration`` seconds.

    ``log_file`` is where tracebacks go (:func:`tui.logs.setup_logging`), for the messages.
    """
    return asyncio.run(_main(settings, duration, log_file))
