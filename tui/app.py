"""The console: one Textual app, the composition root of its parts.

* :class:`~tui.session.ConsoleSession` builds the feed (in a worker thread), opens
  the store, builds and starts the engine, and stops it all (shared with headless);
* the engine calls :meth:`~tui.engine_events.EngineEvents.on_event` (a plain callback)
  for every stored event; it records what must not be lost (equity points, activity)
  and marks panes stale for :class:`~tui.redraw.RedrawScheduler`, which draws them at
  most ``ui.max_fps`` times a second from the engine's in-memory views;
* screens post :class:`~tui.messages.CommandRequested`, and
  :class:`~tui.console_commands.ConsoleCommands` runs it (dialogs, then a worker);
* themes boot in :func:`tui.theming.boot_themes`.

Test hooks: ``feed`` (e.g. ``SimFeed(limit=N)``) or ``feed_factory`` (builds it in the
session's thread), ``wall_clock`` and ``session_started`` (the session clock in the
status bar), ``engine_clock`` (decision latency), ``state_path`` (the remembered
theme), ``theme_search`` (where theme files are read), ``signal_handlers`` and
``cursor_blink``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import BindingType
from textual.driver import Driver
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker

from engine.config import Settings
from engine.models import Position, Proposal
from tui import format as fmt
from tui.console_commands import MAIN_COMMANDS, ConsoleCommands
from tui.engine_events import EngineEvents
from tui.keys import APP_BINDINGS, binding_classes, known_binding_ids, usable_keymap
from tui.messages import CommandRequested, EngineEventPosted, EquityTicked
from tui.redraw import FirstFrame, RedrawScheduler
from tui.screens.main import MainScreen
from tui.session import ConsoleSession, FeedFactory, StartError
from tui.stopping import StopSignals
from tui.theming import CMA_VARIABLES, THEMES_DIR, boot_themes, default_state_path, remember_theme

if TYPE_CHECKING:
    from engine.feeds.base import Feed
    from engine.runtime import Engine, Recovery
    from persistence.store import Store
    from tui.screens.modals import QuitChoice

__all__ = [
    "MAIN_COMMANDS",
    "CmaApp",
    "StartError",
    "binding_classes",
    "known_binding_ids",
    "run_console",
    "run_console_async",
]

log = logging.getLogger("cma.tui")


class CmaApp(App[int]):
    """The Crypto Market Agents console: the engine, the store and the screens of one session.

    The theme is the explicit one (``theme`` here, ``--theme`` or ``ui.theme``
    in the config), else the one last picked in the palette, else cma-dark;
    see :mod:`tui.theming`. Keys are remapped by ``ui.keymap`` (binding id →
    keys); unknown ids are reported, not fatal.
    """

    CSS_PATH: ClassVar[str] = str(THEMES_DIR / "cma.tcss")
    TITLE = "cma"
    SUB_TITLE = "Crypto Market Agents"
    BINDINGS: ClassVar[list[BindingType]] = list(APP_BINDINGS)

    def __init__(
        self,
        settings: Settings,
        *,
        feed: Feed | None = None,
        feed_factory: FeedFactory | None = None,
        theme: str | None = None,
        duration: float | None = None,
        wall_clock: Callable[[], float] = time.time,
        session_started: float | None = None,
        engine_clock: Callable[[], float] = time.monotonic,
        state_path: Path | None = None,
        theme_search: Sequence[Path] | None = None,
        signal_handlers: bool = True,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        #: Whether text inputs blink their cursor (off for stable snapshots).
        self.cursor_blink = cursor_blink
        self.settings = settings
        self.session = ConsoleSession(
            settings, feed=feed, feed_factory=feed_factory, engine_clock=engine_clock
        )
        self._duration = duration
        self._wall_clock = wall_clock
        self.session_started = wall_clock() if session_started is None else session_started
        self._state_path = state_path if state_path is not None else default_state_path()
        self._signal_handlers = signal_handlers
        self._remove_signal_handlers: Callable[[], None] = lambda: None

        self.recovery: Recovery | None = None
        self.redraws = RedrawScheduler(self)
        self.events = EngineEvents(self.post_message, self.redraws.mark, self._engine_error)
        self.equity_series = self.events.equity_series
        self.activity = self.events.activity
        self.commands = ConsoleCommands(self)
        self.main = MainScreen(self.equity_series, lambda: self.redraw(force=True))
        self._shutting_down = False
        self._starting: asyncio.Task[Recovery] | None = None
        self._start_requested = asyncio.Event()
        self.first_frame = FirstFrame(self, self.main)

        ui = settings.ui
        explicit = theme or (ui.theme if "theme" in ui.model_fields_set else None)
        themes = boot_themes(self, explicit, theme_search, self._state_path)
        #: The shipped themes and the user's own (the palette offers these, not Textual's).
        self.cma_themes = themes.names
        self.theme_problems = themes.problems
        self._notices: list[tuple[str, SeverityLevel]] = themes.notices
        keymap, unknown = usable_keymap(settings.ui.keymap)
        if unknown is not None:
            self._notices.append((unknown, "warning"))
        if keymap:
            self.set_keymap(keymap)

    # ---- themes and keys ------------------------------------------------------------

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(CMA_VARIABLES)

    def _remember_theme(self, theme: Any) -> None:
        problem = remember_theme(self._state_path, theme.name)
        if problem is not None:
            self.notify(problem, severity="warning", markup=False)

    # ---- lifecycle --------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return self.main

    def get_driver_class(self) -> type[Driver]:
        driver = super().get_driver_class()
        from textual.drivers.linux_driver import LinuxDriver

        if driver is LinuxDriver:  # not a TEXTUAL_DRIVER of the user's choice
            from tui.driver import HangUpSafeDriver

            return HangUpSafeDriver
        return driver

    def on_mount(self) -> None:
        # The notices (themes, keymap) wait for the restart summary: toasts would cover it.
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self._signal_handlers:
            # SIGINT, SIGTERM, SIGHUP: one graceful stop; a second signal exits at once.
            from tui.driver import restore_terminal_now

            signals = StopSignals(self._signalled, before_exit=restore_terminal_now)
            self._remove_signal_handlers = signals.install().remove
        self.redraws.start(self.settings.ui.max_fps)
        # The store and the engine start after the first frame is on screen: importing
        # the engine and opening the store (WAL setup, fsyncs) would otherwise delay it.
        self.first_frame.watch()
        self.first_frame.then(self._begin_start)
        self._do_boot()

    def after_first_frame(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once the first full frame is on screen (see :class:`FirstFrame`)."""
        self.first_frame.then(callback)

    def _begin_start(self) -> None:
        if self._starting is None and not (self._shutting_down or self.session.stopped):
            # (Shutting down before the first frame: open nothing that no one would close.)
            self._starting = self.session.begin(self.events.on_event, paused_if_recovered=True)
            self._start_requested.set()

    async def on_unmount(self) -> None:
        # However the app ends (quit, hang-up, an exception, a test leaving run_test),
        # the engine stops gracefully and the store is closed; positions stay open
        # unless the quit dialog already closed them.
        self._remove_signal_handlers()
        await self.stop_engine(close_positions=False)

    @work(group="engine", exclusive=True, exit_on_error=False, name="start the engine")
    async def _do_boot(self) -> None:
        await self._start_requested.wait()
        assert self._starting is not None
        try:
            recovery = await asyncio.shield(self._starting)
        except asyncio.CancelledError:
            if self._starting.cancelled():
                return  # quit while the feed was being built: nothing started
            raise  # this worker itself was cancelled (a shutdown)
        except StartError as exc:
            self.exit(exc.code, return_code=exc.code, message=f"cma: {exc}")
            return
        engine = self.engine
        assert engine is not None
        self.recovery = recovery
        self.events.last_equity = engine.equity_snapshot()
        self.redraws.mark("proposals", "positions", "risk", "equity", "status")
        url = self.session.metrics_url
        if url is not None:  # where to point Prometheus, once, as the log says it
            base = url.removesuffix("/metrics")
            self._notices.append(
                (f"metrics on {url} (health: {base}/healthz, {base}/readyz)", "information")
            )
        if not recovery.needs_attention:
            # Nothing to decide: the engine runs already; what it noted is worth a toast.
            self._notices += [(note, "information") for note in recovery.notes]
            self.show_notices()
        else:
            from tui.screens.recovery import RecoveryScreen

            await self.push_screen(RecoveryScreen.after(recovery, engine), self._recovered)
        if self._duration is not None:
            self.set_timer(self._duration, lambda: self.shutdown(None))
        self.redraw(force=True)

    def _recovered(self, resume: bool | None) -> None:
        if resume and self.engine is not None:
            self.engine.resume()
            self.redraw(force=True)
        self.show_notices()

    def show_notices(self) -> None:
        """Show the notices gathered at start (theme, keymap, recovery notes) as toasts."""
        notices, self._notices = self._notices, []
        for message, severity in notices:
            self.notify(message, severity=severity, timeout=10, markup=False)

    def _signalled(self, sig: object) -> None:
        # SIGINT, SIGTERM or SIGHUP (the terminal or the SSH link is gone): nobody may be
        # there to ask, so positions stay open or are closed as configured.
        self.shutdown(None)

    def terminal_gone(self) -> None:
        """The driver found the terminal gone (writes fail): shut down as on a hang-up."""
        self.shutdown(None)

    def shutdown(self, close_positions: bool | None) -> None:
        """Stop the engine gracefully (closing positions if asked), close the store, exit."""
        if self._shutting_down:
            return
        self._shutting_down = True
        self._do_shutdown(close_positions)

    @work(group="shutdown", exclusive=True, exit_on_error=False, name="shut down")
    async def _do_shutdown(self, close_positions: bool | None) -> None:
        self.workers.cancel_group(self, "engine")
        code = 0
        message: str | None = None
        try:
            await self.stop_engine(close_positions)
        except Exception as exc:
            log.exception("the engine did not stop cleanly")
            code, message = 1, f"cma: the engine did not stop cleanly: {exc}"
        self.exit(code, return_code=code, message=message)

    async def stop_engine(self, close_positions: bool | None = False) -> None:
        """Stop the engine and close the store once (safe to call again); see
        :meth:`ConsoleSession.stop`."""
        await self.session.stop(close_positions)

    # ---- engine events ----------------------------------------------------------

    @on(EquityTicked)
    def _equity_ticked(self, message: EquityTicked) -> None:
        self.events.equity_ticked(message.event)

    @on(EngineEventPosted)
    def _engine_event(self, message: EngineEventPosted) -> None:
        self.events.posted(message.event)

    def _engine_error(self, text: str) -> None:
        self.notify(fmt.one_line(text), severity="error", timeout=30, markup=False)

    # ---- views (the redraw, the commands and the detail screen read these) ----------

    @property
    def engine(self) -> Engine | None:
        return self.session.engine

    @property
    def store(self) -> Store | None:
        return self.session.store

    @property
    def market_ts(self) -> int:
        return self.engine.market_ts if self.engine is not None else 0

    @property
    def inflight(self) -> dict[str, tuple[Proposal, str]]:
        return self.commands.inflight

    def session_seconds(self) -> float:
        """How long this console has been open (the status bar's session clock)."""
        return self._wall_clock() - self.session_started

    def redraw(self, force: bool = False) -> None:
        """Redraw stale panes (all of them with ``force``); see :class:`RedrawScheduler`."""
        self.redraws.redraw(force)

    def _replot(self, force: bool = False) -> None:
        self.redraws.replot(force)

    def busy_word(self, proposal_id: str) -> str | None:
        return self.commands.busy_word(proposal_id)

    def find_pending(self, proposal_id: str) -> Proposal | None:
        if self.engine is None:
            return None
        return next((p for p in self.engine.pending() if p.id == proposal_id), None)

    def selected_proposal(self) -> Proposal | None:
        return self.main.selected_proposal

    def selected_proposal_id(self) -> str | None:
        selected = self.main.selected_proposal
        return selected.id if selected is not None else None

    def selected_position(self) -> Position | None:
        return self.main.selected_position

    # ---- commands ---------------------------------------------------------------

    @on(CommandRequested)
    def _command_requested(self, message: CommandRequested) -> None:
        self.commands.run(message.command, message.subject)

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        self.commands.worker_changed(event)

    def show_detail(self, proposal: Proposal) -> None:
        self.commands.show_detail(proposal)

    def ask_close_position(self, position: Position) -> None:
        self.commands.ask_close_position(position)

    # ---- app-wide actions -------------------------------------------------------

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen, help_title

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen, help_title(self.screen)))

    def action_request_quit(self) -> None:
        """Ask what to do with open positions, then shut down gracefully."""
        from tui.screens.modals import QuitDialog

        if self._shutting_down:
            return
        if isinstance(self.screen, QuitDialog):
            return
        n = len(self.engine.positions()) if self.engine is not None else 0

        def chosen(choice: QuitChoice | None) -> None:
            if choice is not None:
                self.shutdown(choice == "close")

        self.push_screen(QuitDialog(n, self.commands.working_entry_count()), chosen)

    async def action_quit(self) -> None:
        self.action_request_quit()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for theme in self.cma_themes:
            yield SystemCommand(
                f"Theme: {theme}",
                f"Switch to the {theme} theme (remembered)",
                lambda name=theme: setattr(self, "theme", name),
            )
        yield SystemCommand("Help", "Every key of this screen", self.action_help)
        if isinstance(screen, MainScreen):
            for title, help_text, action in MAIN_COMMANDS:
                yield SystemCommand(title, help_text, lambda a=action: screen.run_action(a))


async def run_console_async(settings: Settings, duration: float | None = None, **hooks: Any) -> int:
    """Run the console until it exits; the engine is stopped and the store closed whatever
    way the app ended (quit, hang-up, an error)."""
    app = CmaApp(settings, duration=duration, **hooks)
    try:
        await app.run_async()
    finally:
        try:
            await app.stop_engine(close_positions=False)
        except Exception as exc:  # the store is crash-only: a failed stop loses nothing stored
            log.exception("the engine did not stop cleanly")
            print(f"cma: the engine did not stop cleanly: {exc}")
    return app.return_code or 0


def run_console(settings: Settings, duration: float | None = None) -> int:
    """``cma`` / ``cma run``: open the console on the configured market; returns the exit code."""
    return asyncio.run(run_console_async(settings, duration))
