"""A replay stopped and started again on its store carries on as one run would.

The restart skips the candles before the store's market time; they warm the agents up
again (as an exchange's history does), so what is stored afterwards is what one
uninterrupted run stores: the same decisions, fills and positions, by content and in
order. Without the warm-up the agents start cold and the runs part ways.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from shared_data import shared_data_dir

ROOT = Path(__file__).resolve().parents[2]
PAIRS = ("ETH-BTC", "LTC-BTC")

CONTENT = (
    "SELECT p.symbol, p.side, p.entry, p.stop, p.take_profit, p.size, p.created_at,"
    " d.action, d.size, d.reason, d.decided_by, d.decided_at"
    " FROM decisions d JOIN proposals p ON p.id = d.proposal_id ORDER BY d.id",
    "SELECT symbol, side, qty, price, fee, realized_pnl, ts FROM fills ORDER BY id",
    "SELECT symbol, side, opened_at, status, entry_price, qty, cost_basis, stop, take_profit,"
    " closed_at, exit_price, close_reason, realized_pnl, fees FROM positions ORDER BY id",
)


def _cut(folder: Path, rows: int) -> list[Path]:
    """The first ``rows`` candles of each pair's shared file, under its own name."""
    folder.mkdir()
    files = []
    for pair in PAIRS:
        name = f"binance_{pair}_5m_2018-01.csv"
        lines = (shared_data_dir() / name).read_text().splitlines(keepends=True)
        (folder / name).write_text("".join(lines[: rows + 1]))
        files.append(folder / name)
    return files


def _replay(tmp_path: Path, db: Path, files: list[Path]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
    env.update(
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        PYTHONPATH=str(ROOT),
        CMA_APPROVAL__AUTO_CONFIDENCE="0.3",  # it trades
    )
    done = subprocess.run(
        [sys.executable, "-m", "tui", "run", "--headless", "--feed", "replay", "--speed", "max",
         "--policy", "auto", "--db", str(db), "--files", *map(str, files)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _content(db: Path) -> list[list[Any]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [conn.execute(sql).fetchall() for sql in CONTENT]
    finally:
        conn.close()


def test_a_replay_restarted_on_its_store_stores_what_one_uninterrupted_run_stores(
    tmp_path: Path,
) -> None:
    whole, half = _cut(tmp_path / "whole", 2000), _cut(tmp_path / "half", 800)
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    _replay(tmp_path, one, whole)
    _replay(tmp_path, two, half)  # stops after 800 candles a pair
    first = _content(two)
    _replay(tmp_path, two, whole)  # started again: skips those, goes on
    decisions, fills, positions = _content(one)
    assert len(first[0]) >= 3 and len(decisions) >= len(first[0]) + 3, (first, decisions)
    assert len(fills) >= 10, fills
    assert _content(two) == [decisions, fills, positions]
