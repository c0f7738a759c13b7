"""SIGINT, SIGTERM and SIGHUP: one graceful stop, and a second signal that exits at once.

The console and the headless run share this. The first of the three signals calls
``graceful`` on the event loop: it stops taking proposals, lets the store finish or
abandon its transactions, closes the exchange sessions and leaves or closes the
positions as configured (``engine.close_positions_on_stop``). A second signal, while that
stop is under way, ends the process at once with :data:`~tui.cli.EXIT_INTERRUPTED`
(after ``before_exit``, which puts the console's terminal back): nothing stored is lost,
as the store is crash-safe (``cma db check``), and the next start recovers. A second
SIGHUP does not count: a hang-up often arrives twice (from the kernel and from the login
shell passing it on), and nobody asked for haste.

The handlers are plain :func:`signal.signal` handlers, as ``asyncio.Runner``'s own for
SIGINT: Python runs them in the main thread between two bytecodes, so a second signal
works even while something holds the event loop (a user agent stuck in a computation),
where a handler of ``loop.add_signal_handler`` would wait for the loop. They do only
what is safe there: a write to a file descriptor, ``call_soon_threadsafe``, ``os._exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any

from tui.cli import EXIT_INTERRUPTED

#: The signals that stop cma gracefully (a second one exits at once).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignals:
    """The graceful stop on the first signal, :func:`os._exit` on the next.

    ``graceful`` is called on the loop with the signal received. ``announce`` writes a
    line to stderr on each signal (headless: the journal shows why it stopped; the
    console's screen has no room for it). ``before_exit`` runs just before the
    immediate exit; it must not raise (what it raises is ignored) nor take long.
    """

    def __init__(
        self,
        graceful: Callable[[signal.Signals], object],
        *,
        announce: bool = False,
        before_exit: Callable[[], object] | None = None,
    ) -> None:
        self._graceful = graceful
        self._announce = announce
        self._before_exit = before_exit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[signal.Signals, Any] = {}
        #: The first signal received (None: none yet).
        self.received: signal.Signals | None = None

    def install(self) -> StopSignals:
        """Handle the three signals from now on (call it on the loop, in the main thread:
        elsewhere, as in a test's thread, nothing is installed)."""
        self._loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals are not ours to take
                break
        return self

    def remove(self) -> None:
        """Put back the handlers found at :meth:`install` (safe to call again)."""
        while self._previous:
            sig, handler = self._previous.popitem()
            # Not the main thread, or a handler installed from C (None): leave it as it is.
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        sig = signal.Signals(signum)
        if self.received is None and self._loop is not None and not self._loop.is_closed():
            self.received = sig
            if self._announce:
                _say(f"cma: {sig.name}: stopping gracefully (a second signal exits at once)")
            self._loop.call_soon_threadsafe(self._graceful, sig)
            return
        if sig is signal.SIGHUP:
            # A hang-up often comes twice (the kernel, then the login shell passing it on
            # to its jobs): not a person asking for haste. SIGINT or SIGTERM is.
            if self._announce:
                _say("cma: SIGHUP: already stopping (SIGINT or SIGTERM exits at once)")
            return
        self.exit_now(sig)

    def exit_now(self, sig: signal.Signals) -> None:
        """End the process at once with :data:`~tui.cli.EXIT_INTERRUPTED`."""
        if self._before_exit is not None:
            # Exiting at once whatever happens: a terminal that cannot be restored is not
            # a reason to stay.
            with contextlib.suppress(BaseException):
                self._before_exit()
        _say(
            f"cma: {sig.name} again: exiting at once (code {EXIT_INTERRUPTED}); the store "
            "is crash-safe and the next start recovers"
        )
        os._exit(EXIT_INTERRUPTED)


def _say(line: str) -> None:
    """One line on stderr, written by the descriptor (a signal may have interrupted a
    ``print``: Python's buffered stream would refuse the reentrant call)."""
    with contextlib.suppress(OSError):  # no stderr (closed): the exit code still says it
        os.write(2, f"{line}\n".encode())
