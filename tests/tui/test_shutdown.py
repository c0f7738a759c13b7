"""A shutdown (a hang-up) that comes while the engine is still starting."""

from __future__ import annotations

import threading
from pathlib import Path

from harness import SteppedFeed, make_app, make_settings, query


async def test_a_hang_up_during_the_start_still_closes_the_store(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    app = make_app(tmp_path, SteppedFeed(), make_settings(db))
    before = set(threading.enumerate())
    async with app.run_test(size=(120, 40)) as pilot:
        while app._starting is None:
            await pilot.pause(0.001)
        assert not app._starting.done()  # the store is being opened
        app.shutdown(False)  # what SIGHUP does
        for _ in range(1000):  # until the shutdown worker has called exit()
            if app.return_code is not None:
                break
            await pilot.pause(0.01)
    assert app.return_code == 0
    # The start finished, then was stopped: the store is closed and its thread gone
    # (left open, that thread kept the process alive after the terminal went away).
    assert app.store is None
    assert app.engine is not None and app.engine.status == "stopped"
    assert [t for t in set(threading.enumerate()) - before if t.is_alive()] == []
    assert query(db, "SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL") == [(0,)]
