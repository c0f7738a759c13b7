"""A failing group commit reaches the engine's subscribers (the console's activity pane)
as a warning, and the headless run prints it."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from crafted_market import FLAT, CraftedFeed, settings

from engine.models import EngineEvent, EngineMessage, EquityUpdated
from engine.runtime import Engine
from persistence.store import Store
from tui.headless import _error_printer


async def test_a_failed_group_commit_is_an_engine_warning_printed_by_headless(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = await Store.open(tmp_path / "cma.db")
    try:
        engine = Engine(settings(), store, CraftedFeed({"BTC/USDT": [FLAT] * 3}))
        seen: list[EngineEvent] = []
        engine.subscribe(seen.append)
        engine.subscribe(_error_printer(engine, None))
        await engine.start()
        await engine.wait()

        def fail(conn: sqlite3.Connection) -> None:
            conn.execute(
                "CREATE TRIGGER no_equity BEFORE INSERT ON equity"
                " BEGIN SELECT RAISE(ABORT, 'the disk says no'); END"
            )

        await store.run(fail)
        v = Decimal(10_000)
        store.record_equity(
            EquityUpdated(
                ts=engine.market_ts + 1, equity=v, cash=v, unrealized=Decimal(0),
                realized_today=Decimal(0), drawdown=0.0,
            )
        )  # fmt: skip
        with pytest.raises(sqlite3.IntegrityError):
            await store.flush()
        warnings = [e for e in seen if isinstance(e, EngineMessage) and e.level == "warning"]
        assert len(warnings) == 1 and "the disk says no" in warnings[0].text
        assert "warning: store: saving equity points and candles failed" in capsys.readouterr().err

        await store.run(lambda conn: conn.execute("DROP TRIGGER no_equity"))
        await engine.stop()  # its flush stores the held row
        assert any(isinstance(e, EngineMessage) and "works again" in e.text for e in seen), seen
    finally:
        await store.close()
