"""A terminal driver that lets the console exit when its terminal goes away.

When a terminal hangs up (``tmux kill-session``, a dropped SSH link) the
kernel sends SIGHUP *and* SIGCONT, writes to the tty fail with EIO and reads
return end-of-file. Textual's :class:`~textual.drivers.linux_driver.LinuxDriver`
(8.2) then wedges the process:

* its writer thread dies on the first EIO, but the app keeps queueing writes
  into the writer's bounded queue (30 entries); the 31st ``put`` blocks the
  event loop forever, typically inside ``App._shutdown`` while it tears down a
  screen stack, so the app never exits;
* the SIGCONT handler "resumes" application mode on the dead tty, which starts
  a fresh writer thread the blocked ``put`` never reaches.

This subclass drops output once the writer thread is gone, never waits on a
dead writer at close, ignores SIGCONT unless it follows a suspend (ctrl+z),
and tells the app (``terminal_gone``) so it shuts down as on a hang-up. The
private parts of LinuxDriver it needs go through :mod:`tui.compat`.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

from textual.drivers.linux_driver import LinuxDriver

from tui import compat


class HangUpSafeDriver(LinuxDriver):
    """:class:`LinuxDriver` that never blocks on a terminal that has gone away."""

    _gone = False
    _suspended = False
    #: The app's event loop, where ``terminal_gone`` is called (not Driver's own
    #: ``_loop``, a private attribute).
    _app_loop: asyncio.AbstractEventLoop | None = None

    def start_application_mode(self) -> None:
        self._app_loop = asyncio.get_running_loop()
        # LinuxDriver.start_application_mode has no annotations (Textual 8.2).
        super().start_application_mode()  # type: ignore[no-untyped-call]

    def write(self, data: str) -> None:
        writer = compat.writer_thread(self)
        if writer is not None and not writer.is_alive():
            # Only the event loop's thread writes, so a writer alive at this check
            # can take at most one more item: the queue can never fill behind it.
            self._terminal_gone()
            return
        super().write(data)

    def close(self) -> None:
        writer = compat.writer_thread(self)
        if writer is not None and not writer.is_alive():
            return  # stop() would queue a sentinel no thread ever reads
        super().close()

    def suspend_application_mode(self) -> None:
        self._suspended = True
        super().suspend_application_mode()

    def resume_application_mode(self) -> None:
        self._suspended = False
        super().resume_application_mode()

    def _sigcont_application(self, *args: Any) -> None:
        # A hang-up sends SIGCONT with SIGHUP: resume only what a ctrl+z suspended.
        if self._suspended and not self._gone:
            super()._sigcont_application(*args)

    def _terminal_gone(self) -> None:
        if self._gone:
            return
        self._gone = True
        callback = getattr(compat.driver_app(self), "terminal_gone", None)
        if callback is not None and self._app_loop is not None:
            self._app_loop.call_soon_threadsafe(callback)


def on_hang_up(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` on SIGHUP and SIGTERM (the terminal or the SSH link is gone, or
    the process is asked to end); returns what removes those handlers again."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGHUP, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, callback)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(sig)

    def remove() -> None:
        while installed:
            loop.remove_signal_handler(installed.pop())

    return remove
