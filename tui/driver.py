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

:func:`restore_terminal_now` puts the terminal back in one go, for a process about to
end at once (a second signal, :mod:`tui.stopping`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import termios
from typing import Any, ClassVar

from textual.drivers.linux_driver import LinuxDriver

from tui import compat


class HangUpSafeDriver(LinuxDriver):
    """:class:`LinuxDriver` that never blocks on a terminal that has gone away."""

    _gone = False
    _suspended = False
    #: The app's event loop, where ``terminal_gone`` is called (not Driver's own
    #: ``_loop``, a private attribute).
    _app_loop: asyncio.AbstractEventLoop | None = None
    #: The driver in application mode now (what :func:`restore_terminal_now` restores).
    active: ClassVar[HangUpSafeDriver | None] = None

    def start_application_mode(self) -> None:
        self._app_loop = asyncio.get_running_loop()
        HangUpSafeDriver.active = self
        # LinuxDriver.start_application_mode has no annotations (Textual 8.2).
        super().start_application_mode()  # type: ignore[no-untyped-call]

    def stop_application_mode(self) -> None:
        if HangUpSafeDriver.active is self:
            HangUpSafeDriver.active = None
        super().stop_application_mode()

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


#: What leaves application mode, as LinuxDriver.stop_application_mode and the mouse and
#: paste switches write it: mouse reports, bracketed paste and focus events off, line wrap
#: on, the Kitty keyboard protocol popped, the main screen back, the cursor shown.
_LEAVE = (
    "\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l\x1b[?2004l\x1b[?1004l\x1b[?7h"
    "\x1b[<u\x1b[?1049l\x1b[?25h"
)


def restore_terminal_now() -> None:
    """Put the console's terminal back as it was (modes, screen, cursor) at once, by the
    file descriptors, not through the writer thread: for a process about to end without
    shutting the app down. Nothing to do when no console is in application mode."""
    driver = HangUpSafeDriver.active
    if driver is None or driver._gone:
        return
    if driver.attrs_before is not None:
        # The terminal may be gone (a hang-up): nothing left to restore then.
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(driver.fileno, termios.TCSANOW, driver.attrs_before)
    # The same (a closed or missing stderr): the process is about to end anyway.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.write(sys.__stderr__.fileno(), _LEAVE.encode())  # type: ignore[union-attr]
