"""A command that fails in the console shows one line, and its traceback goes to the log."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest
from harness import SteppedFeed, make_app, make_settings

from engine.runtime import CommandError


async def test_a_failed_command_logs_its_traceback_with_the_store_error_behind_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    caplog.set_level(logging.ERROR, logger="cma.tui")
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await feed.advance(300)  # the demo market until a proposal is up
        app.redraw(force=True)
        await pilot.pause()
        assert app.selected_proposal() is not None
        conn = sqlite3.connect(db)
        conn.execute(
            "CREATE TRIGGER no_decisions BEFORE INSERT ON decisions"
            " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
        conn.commit()
        conn.close()
        await pilot.press("a")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
    [record] = [r for r in caplog.records if r.name == "cma.tui"]
    assert record.getMessage().startswith("could not approve ")
    assert record.exc_info is not None
    error = record.exc_info[1]
    assert isinstance(error, CommandError)
    assert isinstance(error.__cause__, sqlite3.IntegrityError)  # the traceback behind it


async def test_a_failing_group_commit_is_a_warning_in_the_activity_pane(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await feed.advance(5)
        conn = sqlite3.connect(db)
        conn.execute(
            "CREATE TRIGGER no_equity BEFORE INSERT ON equity"
            " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
        conn.commit()
        await feed.advance(5)

        def warnings() -> list[str]:
            return [e.text for _, e in app.activity if e.kind == "WARNING"]

        for _ in range(1000):  # generous under load: the timer is 50 ms
            if warnings():
                break
            await asyncio.sleep(0.01)
        assert len(warnings()) == 1 and "disk says no" in warnings()[0], warnings()
        conn.execute("DROP TRIGGER no_equity")
        conn.commit()
        conn.close()
        await feed.advance(5)
        for _ in range(1000):
            if any("works again" in e.text for _, e in app.activity):
                break
            await asyncio.sleep(0.01)
        assert any("works again" in e.text for _, e in app.activity)
        await pilot.pause()
