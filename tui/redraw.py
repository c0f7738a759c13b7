"""When the console draws: the redraw scheduler, and the wait for the first frame.

The redraw scheduler: which panes are stale, and drawing them at most ``ui.max_fps``
times a second.

Engine events only :meth:`~RedrawScheduler.mark` panes stale; a timer draws the
stale ones from the engine's in-memory views, so a burst of events costs one
frame. The session clock and the charts are marked once a second and drawn by
the next frame, so they never add frames of their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual.screen import ModalScreen, Screen
from textual.widgets import Footer

from engine.models import TradingState
from tui import format as fmt
from tui.widgets.panes import ActivityPane, EquityPane, RiskPane
from tui.widgets.status import StatusBar

if TYPE_CHECKING:
    from textual.app import App

    from engine.runtime import Engine
    from tui.app import CmaApp

#: Every part of the main screen drawn on its own.
PARTS = frozenset(
    {"proposals", "positions", "risk", "equity", "activity", "status", "clock", "chart"}
)


class RedrawScheduler:
    """Draws the stale parts of ``app``'s main screen, on a frame timer or at once."""

    def __init__(self, app: CmaApp) -> None:
        self.app = app
        self.dirty: set[str] = set()

    def mark(self, *parts: str) -> None:
        """Note ``parts`` (see :data:`PARTS`) as stale: the next frame draws them."""
        self.dirty.update(parts)

    def start(self, max_fps: float) -> None:
        """Start the frame and the once-a-second timers."""
        self.app.set_interval(1 / max_fps, self.frame)
        self.app.set_interval(1.0, self.second)
        self.second()

    def frame(self) -> None:
        if self.dirty:
            self.redraw()

    def second(self) -> None:
        self.dirty.update(("clock", "chart"))

    def show_session_clock(self) -> None:
        app = self.app
        if app.main.ready:
            status = app.main.query_one(StatusBar)
            status.set_session(app.session_seconds())
            engine = app.engine
            if engine is not None:
                self.show_feed(status, engine)

    @staticmethod
    def show_feed(status: StatusBar, engine: Engine) -> None:
        """The feed part: its name, or how long an exchange feed has been silent, and an
        open circuit breaker (both in the warning colour)."""
        feed = engine.feed
        text = f"{engine.feed_name} {feed.timeframe} · {len(feed.symbols)} symbols"
        warn = False
        stale = feed.staleness()
        if stale is not None:
            text, warn = f"{engine.feed_name} STALE {fmt.clock(stale)}", True
        if engine.breaker_open:
            text, warn = f"{text} · BREAKER OPEN", True
        status.set_feed(text, warn=warn)

    def replot(self, force: bool = False) -> None:
        """Redraw the charts if their series changed (all of them with ``force``)."""
        if not self.app.main.ready:
            return
        for pane in self.app.main.query(EquityPane):
            pane.replot(force=force)

    def redraw(self, force: bool = False) -> None:
        """Redraw stale panes (all of them with ``force``) from the engine's views."""
        app = self.app
        main = app.main
        if not main.ready:
            return
        screen = app.screen
        refresh_live = getattr(screen, "refresh_live", None)  # a screen with live figures
        if refresh_live is not None:
            refresh_live()
        main_visible = screen is main or (
            isinstance(screen, ModalScreen) and app.screen_stack[-2:-1] == [main]
        )
        if not (main_visible or force):
            return
        dirty = set(PARTS) if force else self.dirty & PARTS
        self.dirty.clear()
        engine = app.engine
        with app.batch_update():
            if "clock" in dirty:
                self.show_session_clock()
            if "chart" in dirty:
                self.replot()
            if "activity" in dirty:
                for activity in main.query(ActivityPane):
                    activity.show(app.activity)
            if engine is None:
                return
            market_ts = engine.market_ts
            if "proposals" in dirty:
                commands = app.commands
                main.proposals.show(
                    commands.proposal_view(), market_ts, commands.busy_words(), engine.feed.speed
                )
            if "positions" in dirty:
                main.positions.show(engine.positions(), engine.marks, market_ts)
            if "risk" in dirty:
                for risk in main.query(RiskPane):
                    risk.show(engine.risk_snapshot())
            if "equity" in dirty:
                for equity in main.query(EquityPane):
                    equity.show(app.events.last_equity)
            if "status" in dirty:
                status = main.query_one(StatusBar)
                status.set_mode(engine.mode)
                self.show_feed(status, engine)
                status.set_engine(engine.status)
                status.set_policy(engine.policy, engine.auto_confidence)
                status.set_market(market_ts)
                main.set_class(engine.risk_snapshot().state is TradingState.HALTED, "-halted")
            main.update_keys(bool(engine.positions() or engine.working_entries()))
        if force:
            self.show_session_clock()
            self.replot(force=True)


#: Longest wait, in seconds, for the first full frame before deferred work runs anyway.
FIRST_FRAME_WAIT = 1.0


class FirstFrame:
    """Holds back work that blocks the event loop a while (imports, opening the store)
    until the first full frame is on screen: done earlier, it would delay that frame."""

    def __init__(self, app: App[Any], main: Screen[Any]) -> None:
        self.app = app
        self.main = main
        #: Whether the first full frame is on screen.
        self.done = False
        self._waiting: list[Callable[[], object]] = []

    def then(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once the first full frame is on screen (at once if it is)."""
        if self.done:
            self.app.call_after_refresh(callback)
        else:
            self._waiting.append(callback)

    def watch(self) -> None:
        """Start watching for the first full frame (from the app's mount)."""
        self.app.call_after_refresh(self._check, time.monotonic())

    def _check(self, since: float) -> None:
        # The footer fills in its keys a refresh or two after the first paint; the
        # frame is full once they are mounted and one more refresh has drawn them.
        # Bounded: a footer that never fills in (a closing app) waits a second at most.
        footers = self.main.query(Footer) if self.main.is_mounted else None
        ready = footers is not None and bool(footers) and bool(footers.first().children)
        if not (ready or time.monotonic() - since > FIRST_FRAME_WAIT):
            self.app.call_after_refresh(self._check, since)
            return
        self.done = True
        waiting, self._waiting = self._waiting, []
        for callback in waiting:
            self.app.call_after_refresh(callback)
