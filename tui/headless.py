"""``cma run --headless``: the same engine as the console, with a status line."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

from engine.config import Settings
from engine.runtime import Engine, make_feed
from persistence.connection import StoreLockedError
from persistence.store import Store
from tui.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE, die


async def _main(settings: Settings, duration: float | None) -> int:
    try:
        feed = make_feed(settings)
    except (ValueError, OSError) as exc:
        die(str(exc), EXIT_USAGE)
    path = settings.store.resolved_path()
    try:
        store = await Store.open(path, settings.store.busy_timeout_ms)
    except StoreLockedError as exc:
        die(str(exc), EXIT_FAIL)
    try:
        engine = Engine(settings, store, feed)
    except ValueError as exc:
        await store.close()
        die(str(exc), EXIT_USAGE)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        recovery = await engine.start(paused_if_recovered=False)
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
            print(f"cma: engine stopped on an error: {engine.error}", file=sys.stderr)
            return EXIT_FAIL
        print(engine.status_line(), flush=True)
        return EXIT_OK
    finally:
        await store.close()


def run_headless(settings: Settings, duration: float | None = None) -> int:
    """Run the engine without a UI until SIGINT/SIGTERM/SIGHUP or ``duration`` seconds."""
    return asyncio.run(_main(settings, duration))
