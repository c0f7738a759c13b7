"""The console: one Textual app that runs the engine in its own event loop.

Data flow: the engine calls :meth:`CmaApp._on_engine_event` (a plain callback)
for every stored event; the callback records what must not be lost (equity
points) and posts a Textual message. Handlers only note which panes are
stale; a timer redraws stale panes at most ``ui.max_fps`` times a second by
reading the engine's in-memory views, so a burst of events costs one frame.

Commands (approve, reject, close, ...) run in workers of the ``commands``
group. Each awaits the engine, which returns only once the store has the
change; until then the proposal stays on screen marked as in progress, and a
failure becomes an error notification (see :meth:`CmaApp._worker_changed`)
with the proposal still pending.

Test hooks: ``feed`` (e.g. ``SimFeed(limit=N)``), ``wall_clock`` and
``session_started`` (the session clock in the status bar), ``engine_clock``
(decision latency), ``state_path`` (the remembered theme), ``theme_search``
(where theme files are read), ``signal_handlers`` and ``cursor_blink``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.driver import Driver
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer
from textual.worker import Worker, WorkerState

from engine.config import Settings
from engine.models import (
    DecisionMade,
    EngineEvent,
    EngineMessage,
    EngineStateChanged,
    EquityUpdated,
    OrderDenied,
    OrderFilled,
    OrderSubmitted,
    Position,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    Proposal,
    ProposalCreated,
    ProposalMerged,
    RejectReason,
    TradingState,
    TradingStateChanged,
)
from tui import compat
from tui import format as fmt
from tui.activity import ActivityEntry, describe, reason_label
from tui.messages import EngineEventPosted, EquityTicked
from tui.screens.main import MainScreen
from tui.theming import (
    CMA_VARIABLES,
    DEFAULT_THEME,
    THEMES_DIR,
    ThemeProblem,
    choose_theme,
    default_state_path,
    fallback_theme,
    load_themes,
    read_ui_state,
    theme_dirs,
    write_ui_state,
)
from tui.widgets.panes import ActivityPane, EquityPane, EquitySeries, RiskPane
from tui.widgets.status import StatusBar

if TYPE_CHECKING:
    from engine.account import EquitySnapshot
    from engine.feeds.base import Feed
    from engine.risk import RiskCheck
    from engine.runtime import Engine, Recovery
    from persistence.store import Store
    from tui.screens.modals import QuitChoice

log = logging.getLogger("cma.tui")

#: Activity lines kept in memory (newest first).
ACTIVITY_LIMIT = 500
#: Longest wait, in seconds, for the first full frame before deferred work runs anyway.
FIRST_FRAME_WAIT = 1.0

_PROPOSAL_EVENTS = (ProposalCreated, ProposalMerged, DecisionMade)
_POSITION_EVENTS = (OrderFilled, PositionOpened, PositionChanged, PositionClosed, OrderSubmitted)


class StartError(Exception):
    """The console could not start its engine; ``code`` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


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

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "request_quit", "Quit", id="quit", tooltip="Quit (asks about open positions)"),
        Binding(
            "ctrl+q",
            "request_quit",
            "Quit",
            id="quit-ctrl",
            show=False,
            priority=True,
            tooltip="Quit (asks about open positions)",
        ),
        Binding(
            "question_mark,f1",
            "help",
            "Help",
            id="help",
            tooltip="Every key of this screen",
        ),
        Binding(
            "ctrl+p",
            "command_palette",
            "Palette",
            id="command-palette",
            show=False,
            priority=True,
            tooltip="Command palette: every action, and themes",
        ),
    ]

    def __init__(
        self,
        settings: Settings,
        *,
        feed: Feed | None = None,
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
        self._feed = feed
        self._duration = duration
        self._wall_clock = wall_clock
        self.session_started = wall_clock() if session_started is None else session_started
        self._engine_clock = engine_clock
        self._state_path = state_path if state_path is not None else default_state_path()
        self._signal_handlers = signal_handlers
        self._installed_signals: list[signal.Signals] = []

        self.engine: Engine | None = None
        self.store: Store | None = None
        self.recovery: Recovery | None = None
        self.main = MainScreen()
        self.equity_series = EquitySeries()
        self.activity: deque[tuple[int, ActivityEntry]] = deque(maxlen=ACTIVITY_LIMIT)
        self._activity_seq = 0
        self._last_equity: EquityUpdated | EquitySnapshot | None = None
        #: Proposals with a decision in flight: id → (proposal, what is being done).
        self.inflight: dict[str, tuple[Proposal, str]] = {}
        self._dirty: set[str] = set()
        self._command_labels: dict[Worker[Any], str] = {}
        self._shutting_down = False
        self._stopped = False
        self._notices: list[tuple[str, SeverityLevel]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._starting: asyncio.Task[Recovery] | None = None
        self._start_requested = asyncio.Event()
        self._first_frame_done = False
        self._after_first_frame: list[Callable[[], object]] = []

        self._setup_themes(theme, theme_search)
        self._setup_keymap()

    # ---- themes and keys ------------------------------------------------------------

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(CMA_VARIABLES)

    def _setup_themes(self, override: str | None, search: Sequence[Path] | None) -> None:
        themes, problems = load_themes(search if search is not None else theme_dirs())
        for theme in themes:
            self.register_theme(theme)
        if DEFAULT_THEME not in self.available_themes:
            self.register_theme(fallback_theme())
        #: The shipped themes and the user's own (the palette offers these, not Textual's).
        self.cma_themes: list[str] = sorted({DEFAULT_THEME, *(t.name for t in themes)})
        ui = self.settings.ui
        explicit = override or (ui.theme if "theme" in ui.model_fields_set else None)
        remembered = read_ui_state(self._state_path).get("theme")
        wanted = choose_theme(explicit, remembered if isinstance(remembered, str) else None)
        for problem in problems:
            self._notices.append((str(problem), "error"))
        if wanted not in self.available_themes:
            broken = [p for p in problems if p.path.stem == wanted]
            why = "is broken (see above)" if broken else "does not exist"
            self._notices.append(
                (f"theme {wanted!r} {why}: using {DEFAULT_THEME} instead", "warning")
            )
            wanted = DEFAULT_THEME
        self._set_initial_theme(wanted)
        self.theme_problems: list[ThemeProblem] = problems

    def _set_initial_theme(self, name: str) -> None:
        """Start with theme ``name`` without the full stylesheet rebuild a theme change costs.

        Setting ``App.theme`` schedules ``refresh_css`` (reparse everything, about 20 ms
        before the first frame). Before the app runs there is nothing to refresh: this
        does what the theme watcher does, but gives the stylesheet, not yet parsed, the
        theme's variables directly (:func:`tui.compat.apply_theme_before_start`).
        """
        self.set_reactive(App.theme, name)
        try:
            variables = self.get_css_variables()
        except Exception as exc:  # a shipped theme edited in place: Textual raises many kinds
            if name == DEFAULT_THEME:
                self.register_theme(fallback_theme())
            self._notices.append(
                (f"theme {name!r} cannot be drawn ({exc}): using {DEFAULT_THEME}", "error")
            )
            self._set_initial_theme(DEFAULT_THEME)
            return
        compat.apply_theme_before_start(self, variables)

    def _setup_keymap(self) -> None:
        keymap = dict(self.settings.ui.keymap)
        if not keymap:
            return
        unknown = sorted(set(keymap) - known_binding_ids())
        for binding_id in unknown:
            del keymap[binding_id]
        if unknown:
            self._notices.append(
                (f"ui.keymap: no binding with id {', '.join(unknown)} (see ? for ids)", "warning")
            )
        if keymap:
            self.set_keymap(keymap)

    def _remember_theme(self, theme: Any) -> None:
        try:
            write_ui_state(self._state_path, {"theme": theme.name})
        except OSError as exc:
            self.notify(
                f"could not remember the theme: {exc.strerror}", severity="warning", markup=False
            )

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
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, self._hang_up, sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    continue
                self._installed_signals.append(sig)
        self.set_interval(1 / self.settings.ui.max_fps, self._frame)
        self.set_interval(1.0, self._second)
        self._second()
        # The store and the engine start after the first frame is on screen: importing
        # the engine and opening the store (WAL setup, fsyncs) would otherwise delay it.
        self.after_first_frame(self._begin_start)
        self.call_after_refresh(self._watch_first_frame, time.monotonic())
        self._do_boot()

    def after_first_frame(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once the first full frame is on screen (at once if it is).

        For work that blocks the event loop a while (imports, opening the store):
        done earlier, it would hold back the first frame.
        """
        if self._first_frame_done:
            self.call_after_refresh(callback)
        else:
            self._after_first_frame.append(callback)

    def _watch_first_frame(self, since: float) -> None:
        # The footer fills in its keys a refresh or two after the first paint; the
        # frame is full once they are mounted and one more refresh has drawn them.
        # Bounded: a footer that never fills in (a closing app) waits a second at most.
        footers = self.main.query(Footer) if self.main.is_mounted else None
        ready = footers is not None and bool(footers) and bool(footers.first().children)
        if not (ready or time.monotonic() - since > FIRST_FRAME_WAIT):
            self.call_after_refresh(self._watch_first_frame, since)
            return
        self._first_frame_done = True
        waiting, self._after_first_frame = self._after_first_frame, []
        for callback in waiting:
            self.call_after_refresh(callback)

    def _begin_start(self) -> None:
        if self._starting is None and not self._shutting_down and not self._stopped:
            # (Shutting down before the first frame: open nothing that no one would close.)
            self._starting = asyncio.create_task(self._start_engine(), name="cma-start")
            self._start_requested.set()

    async def on_unmount(self) -> None:
        # However the app ends (quit, hang-up, an exception, a test leaving run_test),
        # the engine stops gracefully and the store is closed; positions stay open
        # unless the quit dialog already closed them.
        if self._installed_signals:
            loop = asyncio.get_running_loop()
            for sig in self._installed_signals:
                loop.remove_signal_handler(sig)
            self._installed_signals.clear()
        if self._starting is not None:
            await asyncio.wait([self._starting])
            if not self._starting.cancelled():
                self._starting.exception()  # retrieved: the boot worker reported it
        await self.stop_engine(close_positions=False)
        if self._unsubscribe is not None:
            self._unsubscribe()

    async def _start_engine(self) -> Recovery:
        """Open the store, build the engine and start it; raises StartError on a known failure.

        It runs as a plain task, not a worker: if the app closes meanwhile it
        still finishes (never leaving a store half-open), and on_unmount stops
        what it started.
        """
        from engine.runtime import Engine, StoreMismatchError, make_feed
        from persistence.errors import StoreFileError
        from persistence.store import Store

        settings = self.settings
        try:
            feed = self._feed if self._feed is not None else make_feed(settings)
        except (ValueError, OSError) as exc:
            raise StartError(str(exc), 2) from None
        try:
            store = await Store.open(settings.store.resolved_path(), settings.store.busy_timeout_ms)
        except StoreFileError as exc:  # locked (1), damaged (1), not a cma store (2)
            raise StartError(str(exc), exc.code) from None
        self.store = store
        try:
            engine = Engine(settings, store, feed, clock=self._engine_clock)
        except ValueError as exc:
            raise StartError(str(exc), 2) from None
        self.engine = engine
        self._unsubscribe = engine.subscribe(self._on_engine_event)
        try:
            return await engine.start(paused_if_recovered=True)
        except StoreMismatchError as exc:  # another currency, or a replay older than the store
            raise StartError(str(exc), 2) from None

    @work(group="engine", exclusive=True, exit_on_error=False, name="start the engine")
    async def _do_boot(self) -> None:
        await self._start_requested.wait()
        assert self._starting is not None
        try:
            recovery = await asyncio.shield(self._starting)
        except StartError as exc:
            self.exit(exc.code, return_code=exc.code, message=f"cma: {exc}")
            return
        engine = self.engine
        assert engine is not None
        self.recovery = recovery
        self._last_equity = engine.equity_snapshot()
        self._dirty.update(("proposals", "positions", "risk", "equity", "status"))
        if not recovery.needs_attention:
            # Nothing to decide: the engine runs already; what it noted is worth a toast.
            self._notices += [(note, "information") for note in recovery.notes]
            self.show_notices()
        else:
            from tui.screens.recovery import RecoveryScreen

            await self.push_screen(
                RecoveryScreen(
                    recovery.positions,
                    recovery.pending,
                    recovery.trading_state,
                    recovery.notes,
                    marks=engine.marks,
                    market_ts=engine.market_ts,
                ),
                callback=self._recovered,
            )
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

    def _hang_up(self, sig: signal.Signals) -> None:
        # The terminal (or the SSH link) is gone: nothing can be asked, so positions stay open.
        self.shutdown(False)

    def terminal_gone(self) -> None:
        """The driver found the terminal gone (writes fail): shut down as on a hang-up."""
        self.shutdown(False)

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
        """Stop the engine and close the store once (safe to call again).

        A start still under way (the store opening) is waited for first: stopping
        before it finished would leave its store open, and the store's thread would
        keep the process alive after the app has gone (a hang-up during start).
        """
        if self._starting is not None and not self._starting.done():
            await asyncio.wait([self._starting])
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.engine is not None:
                await self.engine.stop(close_positions=close_positions)
        finally:
            if self.store is not None:
                store, self.store = self.store, None
                await store.close()

    # ---- engine events ----------------------------------------------------------

    def _on_engine_event(self, event: EngineEvent) -> None:
        """The engine's subscriber: called in this loop for every stored event."""
        if isinstance(event, EquityUpdated):
            self.equity_series.add(event.ts, float(event.equity), event.drawdown)
            self.post_message(EquityTicked(event))
        else:
            self.post_message(EngineEventPosted(event))

    @on(EquityTicked)
    def _equity_ticked(self, message: EquityTicked) -> None:
        self._last_equity = message.event
        self._dirty.update(("equity", "risk", "positions", "proposals", "status"))

    @on(EngineEventPosted)
    def _engine_event(self, message: EngineEventPosted) -> None:
        event = message.event
        entry = describe(event)
        if entry is not None:
            self._activity_seq += 1
            self.activity.appendleft((self._activity_seq, entry))
            self._dirty.add("activity")
        if isinstance(event, _PROPOSAL_EVENTS):
            self._dirty.add("proposals")
        if isinstance(event, _POSITION_EVENTS):
            self._dirty.update(("positions", "risk", "equity"))
        if isinstance(event, (OrderDenied, TradingStateChanged)):
            self._dirty.add("risk")
        if isinstance(event, (EngineStateChanged, TradingStateChanged)):
            self._dirty.add("status")
        if isinstance(event, EngineMessage) and event.level == "error":
            self.notify(fmt.one_line(event.text), severity="error", timeout=30, markup=False)

    # ---- drawing ----------------------------------------------------------------

    def _frame(self) -> None:
        if self._dirty:
            self.redraw()

    def _second(self) -> None:
        # Drawn by the next frame, so the clock and the chart never add frames of their own.
        self._dirty.update(("clock", "chart"))

    def _show_session_clock(self) -> None:
        if self.main.ready:
            status = self.main.query_one(StatusBar)
            status.set_session(self._wall_clock() - self.session_started)

    def _replot(self, force: bool = False) -> None:
        if not self.main.ready:
            return
        for pane in self.main.query(EquityPane):
            pane.replot(force=force)

    def redraw(self, force: bool = False) -> None:
        """Redraw stale panes (all of them with ``force``) from the engine's views."""
        main = self.main
        if not main.ready:
            return
        screen = self.screen
        refresh_live = getattr(screen, "refresh_live", None)  # a screen with live figures
        if refresh_live is not None:
            refresh_live()
        main_visible = screen is main or (
            isinstance(screen, ModalScreen) and self.screen_stack[-2:-1] == [main]
        )
        if not (main_visible or force):
            return
        dirty = {"proposals", "positions", "risk", "equity", "activity", "status", "clock", "chart"}
        if not force:
            dirty &= self._dirty
        self._dirty.clear()
        engine = self.engine
        with self.batch_update():
            if "clock" in dirty:
                self._show_session_clock()
            if "chart" in dirty:
                self._replot()
            if "activity" in dirty:
                for activity in main.query(ActivityPane):
                    activity.show(self.activity)
            if engine is None:
                return
            market_ts = engine.market_ts
            if "proposals" in dirty:
                main.proposals.show(
                    self.proposal_view(), market_ts, self.busy_words(), engine.feed.speed
                )
            if "positions" in dirty:
                main.positions.show(engine.positions(), engine.marks, market_ts)
            if "risk" in dirty:
                for risk in main.query(RiskPane):
                    risk.show(engine.risk_snapshot())
            if "equity" in dirty:
                for equity in main.query(EquityPane):
                    equity.show(self._last_equity)
            if "status" in dirty:
                status = main.query_one(StatusBar)
                status.set_mode(engine.mode)
                feed = engine.feed
                status.set_feed(
                    f"{engine.feed_name} {feed.timeframe} · {len(feed.symbols)} symbols"
                )
                status.set_engine(engine.status)
                status.set_policy(engine.policy, engine.auto_confidence)
                status.set_market(market_ts)
                main.set_class(engine.risk_snapshot().state is TradingState.HALTED, "-halted")
            main.update_keys()
        if force:
            self._show_session_clock()
            self._replot(force=True)

    # ---- views the screens read -------------------------------------------------

    @property
    def market_ts(self) -> int:
        return self.engine.market_ts if self.engine is not None else 0

    def proposal_view(self) -> list[Proposal]:
        """Pending proposals, plus those whose decision is still being stored, oldest first."""
        if self.engine is None:
            return []
        pending = self.engine.pending()
        if not self.inflight:
            return pending
        ids = {p.id for p in pending}
        extra = [p for p, _ in self.inflight.values() if p.id not in ids]
        return sorted([*pending, *extra], key=lambda p: p.created_at)

    def busy_words(self) -> dict[str, str]:
        return {pid: word for pid, (_, word) in self.inflight.items()}

    def busy_word(self, proposal_id: str) -> str | None:
        entry = self.inflight.get(proposal_id)
        return entry[1] if entry is not None else None

    def find_pending(self, proposal_id: str) -> Proposal | None:
        if self.engine is None:
            return None
        for p in self.engine.pending():
            if p.id == proposal_id:
                return p
        return None

    def selected_proposal(self) -> Proposal | None:
        if not self.main.ready:
            return None
        return self.main.proposals.selected

    def selected_proposal_id(self) -> str | None:
        selected = self.selected_proposal()
        return selected.id if selected is not None else None

    def selected_position(self) -> Position | None:
        if not self.main.ready:
            return None
        return self.main.positions.selected

    def has_positions(self) -> bool:
        """Whether close-all has anything to do: open positions or working entry orders."""
        return bool(
            self.engine is not None and (self.engine.positions() or self.engine.working_entries())
        )

    # ---- commands ---------------------------------------------------------------

    def _run_command(self, label: str, worker: Worker[Any]) -> None:
        self._command_labels[worker] = label

    def _engine_or_warn(self) -> Engine | None:
        if self.engine is None:
            self.notify("the engine is still starting", severity="warning")
        return self.engine

    def approve(self, proposal: Proposal, qty: Decimal | None = None) -> None:
        """Approve ``proposal`` (at ``qty`` if given); shown done once stored."""
        if self._engine_or_warn() is None:
            return
        if proposal.id in self.inflight:
            self.notify("that proposal is already being decided", severity="warning")
            return
        self.inflight[proposal.id] = (proposal, "approve…")
        self._dirty.add("proposals")
        self.redraw()
        what = f"approve {fmt.one_line(proposal.symbol, 20)} {proposal.side.value}"
        self._run_command(what, self._do_approve(proposal, qty))

    @work(group="commands", exclusive=False, exit_on_error=False)
    async def _do_approve(self, proposal: Proposal, qty: Decimal | None) -> None:
        assert self.engine is not None
        try:
            await self.engine.approve(proposal.id, qty)
        finally:
            self.inflight.pop(proposal.id, None)
            self._dirty.add("proposals")

    def reject(self, proposal: Proposal, reason: RejectReason) -> None:
        """Reject ``proposal`` with ``reason``; shown done once stored."""
        if self._engine_or_warn() is None:
            return
        if proposal.id in self.inflight:
            self.notify("that proposal is already being decided", severity="warning")
            return
        self.inflight[proposal.id] = (proposal, "reject…")
        self._dirty.add("proposals")
        self.redraw()
        what = f"reject {fmt.one_line(proposal.symbol, 20)} ({reason_label(reason.value)})"
        self._run_command(what, self._do_reject(proposal, reason))

    @work(group="commands", exclusive=False, exit_on_error=False)
    async def _do_reject(self, proposal: Proposal, reason: RejectReason) -> None:
        assert self.engine is not None
        try:
            await self.engine.reject(proposal.id, reason)
        finally:
            self.inflight.pop(proposal.id, None)
            self._dirty.add("proposals")

    def ask_reject(self, proposal: Proposal) -> None:
        def picked(reason: RejectReason | None) -> None:
            if reason is not None:
                self.reject(proposal, reason)

        from tui.screens.modals import RejectDialog

        self.push_screen(RejectDialog(proposal), picked)

    def ask_resize(self, proposal: Proposal) -> None:
        def entered(qty: Decimal | None) -> None:
            if qty is not None:
                self.approve(proposal, qty)

        from tui.screens.modals import ResizeDialog

        engine = self.engine
        preview = None
        if engine is not None:

            def preview(qty: Decimal) -> RiskCheck:
                return engine.preview_entry(proposal.id, qty)

        self.push_screen(ResizeDialog(proposal, preview), entered)

    def show_detail(self, proposal: Proposal) -> None:
        from tui.screens.detail import ProposalDetailScreen

        self.push_screen(ProposalDetailScreen(proposal))

    def ask_policy(self) -> None:
        engine = self._engine_or_warn()
        if engine is None:
            return

        def chosen(choice: tuple[str, float | None] | None) -> None:
            if choice is not None:
                policy, confidence = choice
                self._run_command(f"switch to {policy}", self._do_set_policy(policy, confidence))

        from tui.screens.modals import PolicyDialog

        self.push_screen(PolicyDialog(engine.policy, engine.auto_confidence), chosen)

    @work(group="commands", exclusive=False, exit_on_error=False)
    async def _do_set_policy(self, policy: str, confidence: float | None) -> None:
        assert self.engine is not None
        await self.engine.set_policy(policy, confidence)
        self._dirty.add("status")

    def ask_close_position(self, position: Position) -> None:
        if self._engine_or_warn() is None:
            return
        symbol = position.symbol
        message = Text(
            f"Close {fmt.one_line(symbol, 20)} {position.side.value} {fmt.qty(position.qty)}"
            " with a market order at the next price?"
        )

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._run_command(
                    f"close {fmt.one_line(symbol, 20)}", self._do_close_position(symbol)
                )

        from tui.screens.modals import ConfirmDialog

        self.push_screen(ConfirmDialog("Close position", message, yes="Close it"), confirmed)

    @work(group="commands", exclusive=False, exit_on_error=False)
    async def _do_close_position(self, symbol: str) -> None:
        assert self.engine is not None
        await self.engine.close_position(symbol)
        self._dirty.update(("positions", "risk"))

    def working_entry_count(self) -> int:
        """Entry orders not yet filled, counting approvals still being stored."""
        if self.engine is None:
            return 0
        approving = sum(1 for _, word in self.inflight.values() if word.startswith("approve"))
        return len(self.engine.working_entries()) + approving

    def ask_close_all(self) -> None:
        engine = self._engine_or_warn()
        if engine is None:
            return
        n = len(engine.positions())
        entries = self.working_entry_count()
        if n == 0 and entries == 0:
            self.notify("there are no open positions or working entry orders")
            return
        from tui.screens.modals import holdings, plural

        def each(count: int, noun: str) -> str:
            return f"the {noun}" if count == 1 else f"all {plural(count, noun)}"

        steps = []
        if entries:
            steps.append(f"cancel {each(entries, 'working entry order')}")
        if n:
            steps.append(f"close {each(n, 'open position')} at the next prices")
        question = ", then ".join(steps)
        lines = [f"You have {holdings(n, entries)}.", f"{question[0].upper()}{question[1:]}?"]
        for order in engine.working_entries()[:5]:
            lines.append(
                f"  entry {fmt.one_line(order.symbol, 20)} {order.side.value}"
                f" {fmt.qty(order.qty)}, fills at the next price"
            )
        message = Text("\n".join(lines))
        title = "Close all positions" if n else "Cancel working entry orders"
        yes = "Close all" if n else "Cancel them"

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._run_command("close all", self._do_close_all())

        from tui.screens.modals import ConfirmDialog

        self.push_screen(ConfirmDialog(title, message, yes=yes), confirmed)

    @work(group="commands", exclusive=False, exit_on_error=False)
    async def _do_close_all(self) -> None:
        assert self.engine is not None
        await self.engine.close_all()
        self._dirty.update(("positions", "risk"))

    def toggle_pause(self) -> None:
        engine = self._engine_or_warn()
        if engine is None:
            return
        if engine.status == "paused":
            engine.resume()
        elif engine.status == "running":
            engine.pause()
        else:
            self.notify(f"the engine is {engine.status}", severity="warning", markup=False)
        self._dirty.add("status")
        self.redraw()

    def ask_halt(self) -> None:
        engine = self._engine_or_warn()
        if engine is None:
            return
        state = engine.risk_snapshot().state
        if state is TradingState.ACTIVE:
            title, yes = "Halt trading", "Halt"
            message = Text(
                "Halt trading? No new entries until you resume; open positions keep their"
                " stops and take-profits."
            )
        else:
            title, yes = "Resume trading", "Resume"
            message = Text(f"Trading is {state.value}. Resume normal trading (ACTIVE)?")

        def confirmed(ok: bool | None) -> None:
            if ok:
                if state is TradingState.ACTIVE:
                    self._run_command("halt trading", self._do_halt())
                else:
                    self._run_command("resume trading", self._do_resume_trading())

        from tui.screens.modals import ConfirmDialog

        self.push_screen(ConfirmDialog(title, message, yes=yes), confirmed)

    @work(group="commands", exclusive=False, exit_on_error=False)
    async def _do_halt(self) -> None:
        assert self.engine is not None
        await self.engine.halt("halted by hand")
        self._dirty.update(("risk", "status"))

    @work(group="commands", exclusive=False, exit_on_error=False)
    async def _do_resume_trading(self) -> None:
        assert self.engine is not None
        await self.engine.resume_trading("resumed by hand")
        self._dirty.update(("risk", "status"))

    def export_report(self) -> None:
        self.notify(
            "Report export is not available yet in this version.",
            title="Export report",
            severity="warning",
        )

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        """Turn a failed command (or engine start) into an error the person sees."""
        worker = event.worker
        if event.state not in (WorkerState.ERROR, WorkerState.SUCCESS, WorkerState.CANCELLED):
            return
        label = self._command_labels.pop(worker, None) or worker.name or "background work"
        self._dirty.add("proposals")
        if event.state is not WorkerState.ERROR:
            return
        from engine.runtime import CommandError

        error = worker.error
        log.error("could not %s", label, exc_info=error)  # the notice shows one line
        if isinstance(error, CommandError):
            text = f"Could not {label}: {error}"
        else:
            text = f"Could not {label}: internal error: {type(error).__name__}: {error}"
        self.notify(fmt.one_line(text, 400), severity="error", timeout=15, markup=False)

    # ---- app-wide actions -------------------------------------------------------

    def action_help(self) -> None:
        from tui.screens.detail import ProposalDetailScreen
        from tui.screens.help import HelpScreen
        from tui.screens.recovery import RecoveryScreen

        screen = self.screen
        if isinstance(screen, HelpScreen):
            return
        from tui.screens.modals import FloorConfirmDialog

        titles = {
            MainScreen: "main screen",
            ProposalDetailScreen: "proposal detail",
            RecoveryScreen: "restart summary",
            FloorConfirmDialog: "low threshold",
        }
        title = titles.get(type(screen), type(screen).__name__.removesuffix("Dialog").lower())
        if isinstance(screen, ModalScreen) and title != type(screen).__name__.lower():
            title = f"{title} dialog"
        self.push_screen(HelpScreen(screen, title))

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

        self.push_screen(QuitDialog(n, self.working_entry_count()), chosen)

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


#: Main-screen actions offered in the command palette: (title, help, action).
MAIN_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("Approve proposal", "Approve the selected proposal at its size", "approve"),
    ("Reject proposal", "Reject the selected proposal with a reason", "reject"),
    ("Resize and approve", "Change the selected proposal's size, then approve", "resize"),
    ("Proposal detail", "Every field and vote of the selected proposal", "detail"),
    ("Switch approval policy", "Manual ↔ auto above a confidence", "policy"),
    ("Close position", "Close the selected position", "close_position"),
    ("Close all positions", "Cancel working entry orders, close every position", "close_all"),
    ("Pause or resume engine", "No new proposals while paused", "pause"),
    ("Halt or resume trading", "Stop new entries, or resume", "halt"),
    ("Export report", "Export a session report", "export"),
    ("Next pane", "Move to the next pane", "next_pane"),
)


def binding_classes() -> list[type[Any]]:
    """Every class of the console that defines key bindings."""
    from tui.screens import modals
    from tui.screens.detail import ProposalDetailScreen
    from tui.screens.help import HelpScreen
    from tui.screens.recovery import RecoveryScreen
    from tui.widgets.table import VirtualTable

    return [
        CmaApp,
        MainScreen,
        ProposalDetailScreen,
        RecoveryScreen,
        HelpScreen,
        VirtualTable,
        modals.Dialog,
        modals.ConfirmDialog,
        modals.RejectDialog,
        modals.ResizeDialog,
        modals.PolicyDialog,
        modals.FloorConfirmDialog,
        modals.QuitDialog,
    ]


def known_binding_ids() -> set[str]:
    """Every binding id the console defines (what ``ui.keymap`` may remap)."""
    return {
        binding.id
        for cls in binding_classes()
        for binding in cls.BINDINGS
        if isinstance(binding, Binding) and binding.id
    }


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
