"""The ten 2018 files replay together as one market through the real engine; with a
correlation limit, entries correlated with an open position are denied, and without
it none are.

The policy is ``auto``. A signal the risk manager would deny is still proposed (size 0,
with the reason as its risk note) and waits for a person; here the person approves each
such proposal anyway, right after the candle that made it, and the approval is denied:
an ``OrderDenied`` event in the store with its reason.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from shared_data import shared_data_dir

from engine.config import Settings
from engine.feeds.base import SyncFeed
from engine.feeds.replay import ReplayFeed
from engine.models import Candle
from engine.runtime import CommandError, Engine
from persistence.checks import run_checks
from persistence.store import Store

DATA = shared_data_dir()
FILES = sorted(DATA.glob("binance_*-BTC_5m_2018-01.csv"))
DENIAL = re.compile(r"correlation (-?\d\.\d\d) with (?:(?:long|short) )?([A-Z]+/BTC)")


class PersonAfterEachBatch(SyncFeed):
    """The replay of ``files``; after each batch a person approves every proposal held
    back for correlation."""

    name = "replay"

    def __init__(self, files: list[Path]) -> None:
        self.replay = ReplayFeed(files)
        super().__init__(self.replay.symbols, self.replay.timeframe)
        self.engine: Engine | None = None
        self.approved = 0

    def iter_batches(self) -> Iterator[list[Candle]]:
        return self.replay.iter_batches()

    async def batches(self) -> AsyncIterator[list[Candle]]:
        for batch in self.iter_batches():
            if self._closed:
                return
            yield batch
            assert self.engine is not None
            for p in self.engine.pending():
                if "correlation" in p.risk_note:
                    try:
                        await self.engine.approve(p.id)
                    except CommandError:
                        continue
                    self.approved += 1


async def replay(max_correlation: float) -> tuple[dict[str, Any], PersonAfterEachBatch, int]:
    settings = Settings(
        approval={"policy": "auto", "auto_confidence": 0.3},
        agents={"min_confidence": 0.2},
        # The default fraction throughout: a losing record would otherwise deny every
        # entry for want of an edge, and nothing would be left to correlate.
        risk={"max_correlation": max_correlation, "min_trades_for_kelly": 1_000_000},
        feed={"kind": "replay", "files": tuple(FILES), "speed": "max"},
    )
    feed = PersonAfterEachBatch(FILES)
    store = await Store.open(":memory:")
    try:
        engine = Engine(settings, store, feed)
        feed.engine = engine
        await engine.start()
        await engine.wait()
        await engine.stop()
        found = await store.run(_findings)
        return found, feed, engine.candles_seen
    finally:
        await store.close()


def _findings(conn: sqlite3.Connection) -> dict[str, Any]:
    failed = [r for r in run_checks(conn) if not r.ok]
    denials = conn.execute(
        "SELECT ts, json_extract(payload, '$.symbol'), json_extract(payload, '$.reason'),"
        " json_extract(payload, '$.proposal_id') FROM events WHERE kind = 'OrderDenied'"
    ).fetchall()
    held_back = conn.execute(
        "SELECT COUNT(*) FROM proposals WHERE risk_note LIKE '%correlation%'"
    ).fetchone()[0]
    fills = conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0]
    open_at: dict[tuple[str, int], bool] = {}
    for ts, _, reason, _ in denials:
        m = DENIAL.search(reason)
        if m is None:
            continue
        # The symbol named was held (or its entry was on its way) when the denial came.
        other = m[2]
        held = conn.execute(
            "SELECT COUNT(*) FROM positions WHERE symbol = ? AND opened_at <= ?"
            " AND (closed_at IS NULL OR closed_at >= ?)",
            (other, ts, ts),
        ).fetchone()[0]
        entering = conn.execute(
            "SELECT COUNT(*) FROM orders WHERE symbol = ? AND created_at <= ? AND updated_at >= ?",
            (other, ts, ts),
        ).fetchone()[0]
        open_at[(other, ts)] = bool(held or entering)
    intents = conn.execute(
        "SELECT i.status FROM order_intents i JOIN events e"
        " ON json_extract(e.payload, '$.client_order_id') = i.client_order_id"
        " WHERE e.kind = 'OrderDenied'"
    ).fetchall()
    return {
        "failed": failed,
        "denials": denials,
        "held_back": held_back,
        "fills": fills,
        "open_at": open_at,
        "intents": {s for (s,) in intents},
    }


async def test_the_ten_2018_files_replay_together_and_correlated_entries_are_denied() -> None:
    assert len(FILES) == 10
    found, feed, candles = await replay(max_correlation=0.5)
    assert feed.replay.row_count == candles == 57_546  # every candle of the ten files
    assert len(feed.symbols) == 10
    assert found["failed"] == []
    assert found["fills"] > 0
    assert found["held_back"] > 0
    correlated = [d for d in found["denials"] if DENIAL.search(d[2])]
    assert correlated, found["denials"][:5]
    assert feed.approved >= len(correlated)
    for _, symbol, reason, proposal_id in correlated:
        m = DENIAL.search(reason)
        assert m is not None
        assert abs(float(m[1])) >= 0.5  # shown to two places
        assert m[2] != symbol
        assert proposal_id is not None
    assert all(found["open_at"].values()), found["open_at"]
    assert found["intents"] == {"denied"}


async def test_without_a_correlation_limit_no_entry_is_denied_for_correlation() -> None:
    found, feed, candles = await replay(max_correlation=1.0)
    assert candles == 57_546
    assert found["failed"] == []
    assert found["fills"] > 0
    assert found["held_back"] == 0
    assert feed.approved == 0
    assert not [d for d in found["denials"] if "correlation" in d[2]]
