"""The console session: it builds the feed off the event loop (the console draws and answers
keys while a replay file is parsed, and quitting meanwhile exits cleanly), says why a start
failed with its exit code, and stops the engine and closes the store once.

No timing: the feed factory (the real ``make_feed`` on a large generated replay file)
runs in the session's worker thread and is held there on an Event until the test has
seen the first frame and a key handled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import SESSION_STARTED, WALL_CLOCK, make_settings, query
from textual.pilot import Pilot

from engine.config import Settings
from engine.feeds.base import Feed
from engine.feeds.sim import SimFeed
from engine.models import EngineEvent
from engine.runtime import make_feed
from tui.app import CmaApp
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.screens.modals import QuitDialog
from tui.session import ConsoleSession, StartError
from tui.widgets.status import StatusBar

#: Rows in the generated replay file (4.5 MB of CSV; make_feed parses and checks it in ~0.3 s).
ROWS = 100_000
T0 = 1_515_560_100_000
MIN = 60_000


def big_replay(tmp_path: Path) -> Path:
    path = tmp_path / "x_ABC-USDT_1m.csv"
    with path.open("w") as out:
        out.write("timestamp,open,high,low,close,volume\n")
        for i in range(ROWS):
            price = 100 + (i % 50) / 10
            out.write(f"{T0 + i * MIN},{price},{price + 0.5},{price - 0.5},{price + 0.1},5\n")
    return path


class HeldFactory:
    """The real ``make_feed``, which tells when it runs and waits for ``release`` first."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()
        self.thread: threading.Thread | None = None

    def __call__(self, settings: Settings) -> Feed:
        self.thread = threading.current_thread()
        self.running.set()
        assert self.release.wait(60), "the test never released the feed"
        feed = make_feed(settings)  # every row parsed and checked, still in this thread
        self.returned.set()
        return feed


def console(tmp_path: Path, factory: Callable[[Settings], Feed]) -> tuple[CmaApp, Path]:
    db = tmp_path / "cma.db"
    settings = make_settings(db, feed={"kind": "replay", "files": [big_replay(tmp_path)]})
    app = CmaApp(
        settings,
        feed_factory=factory,
        wall_clock=lambda: WALL_CLOCK,
        session_started=SESSION_STARTED,
        engine_clock=lambda: 0.0,
        state_path=tmp_path / "ui-state.json",
        signal_handlers=False,
        cursor_blink=False,
    )
    return app, db


async def until(pilot: Pilot[int], condition: Callable[[], bool]) -> None:
    for _ in range(3000):
        if condition():
            return
        await pilot.pause(0.01)
    raise AssertionError("the app never got there")


async def test_the_first_frame_and_keys_come_while_the_feed_is_built(tmp_path: Path) -> None:
    factory = HeldFactory()
    app, _ = console(tmp_path, factory)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, factory.running.is_set)
            # The feed is being built in a thread of its own, after the first full frame.
            assert factory.thread is not threading.current_thread()
            assert app.first_frame.done
            assert isinstance(app.screen, MainScreen)
            assert app.main.query_one(StatusBar).is_mounted
            # A key is handled meanwhile: help opens and closes again.
            await pilot.press("question_mark")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen))
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, MainScreen))
            assert not factory.returned.is_set() and app.engine is None
            factory.release.set()
            await until(pilot, lambda: app.engine is not None and app.engine.status == "running")
            assert factory.returned.is_set()
            assert app.engine is not None and app.engine.feed.symbols == ("ABC/USDT",)
    finally:
        factory.release.set()
    assert app.store is None and app.engine is not None and app.engine.status == "stopped"


async def test_quitting_while_the_feed_is_built_exits_cleanly(tmp_path: Path) -> None:
    factory = HeldFactory()
    app, db = console(tmp_path, factory)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, factory.running.is_set)
            await pilot.press("q")
            await until(pilot, lambda: isinstance(app.screen, QuitDialog))
            await pilot.press("l")
            # Quit does not wait for the parse: the start is cancelled, nothing was opened.
            await until(pilot, lambda: app.return_code is not None)
            assert not factory.returned.is_set()
    finally:
        factory.release.set()
    assert app.return_code == 0
    assert app.engine is None and app.store is None
    assert not db.exists()  # the store was never opened
    assert app.session.starting is not None and app.session.starting.cancelled()
    # The parsing thread finishes on its own and its feed is dropped.
    assert factory.returned.wait(60)


async def test_a_start_that_fails_says_why_with_its_exit_code_and_leaves_nothing_open(
    tmp_path: Path,
) -> None:
    # A feed that cannot be built (the replay file is missing): a usage error, exit code 2.
    missing = make_settings(
        tmp_path / "cma.db", feed={"kind": "replay", "files": [tmp_path / "gone_ABC-USDT_1m.csv"]}
    )
    session = ConsoleSession(missing)
    with pytest.raises(StartError, match=r"gone_ABC-USDT_1m\.csv") as failed:
        await session.start()
    assert failed.value.code == 2
    assert session.store is None and session.engine is None
    await session.stop()
    assert not (tmp_path / "cma.db").exists()

    # A store file that is not a cma store: the store's own message and code (2).
    other = tmp_path / "notes.db"
    other.write_text("not a database\n" * 100)
    session = ConsoleSession(make_settings(other), feed=SimFeed(limit=5))
    with pytest.raises(StartError) as failed:
        await session.start()
    assert failed.value.code == 2 and str(failed.value)
    assert session.store is None and session.engine is None
    await session.stop()
    await session.stop()  # safe to call again


async def test_a_session_runs_the_engine_and_stops_it_once(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    session = ConsoleSession(make_settings(db), feed=SimFeed(limit=50))
    events: list[EngineEvent] = []
    recovery = await session.start(events.append, paused_if_recovered=False)
    assert recovery.is_fresh
    engine = session.engine
    assert engine is not None and session.store is not None
    await engine.wait()
    assert events  # the subscriber heard the engine from its start
    await session.stop()
    assert session.store is None and engine.status == "stopped"
    heard = len(events)
    await session.stop()
    assert len(events) == heard  # stopped once; the subscriber is gone
    assert query(db, "SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL") == [(0,)]
