"""A replay stopped and started again on its store carries on as one run would.

The restart skips the candles before the store's market time; they warm the agents up
again (as an exchange's history does), so what is stored afterwards is what one
uninterrupted run stores: the same decisions, fills and positions, by content and in
order. Without the warm-up the agents start cold and the runs part ways.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from shared_data import shared_data_dir
from support import ROOT, home_env

PAIRS = ("ETH-BTC", "LTC-BTC")

CONTENT = (
    "SELECT p.symbol, p.side, p.entry, p.stop, p.take_profit, p.size, p.created_at,"
    " d.action, d.size, d.reason, d.decided_by, d.decided_at"
    " FROM decisions d JOIN proposals p ON p.id = d.proposal_id ORDER BY d.id",
    "SELECT symbol, side, qty, price, fee, realized_pnl, ts FROM fills ORDER BY id",
    "SELECT symbol, side, opened_at, status, entry_price, qty, cost_basis, stop, take_profit,"
    " closed_at, exit_price, close_reason, realized_pnl, fees FROM positions ORDER BY id",
)


def cut(folder: Path, rows: int) -> list[Path]:
    """The first ``rows`` candles of each pair's shared file, under its own name."""
    folder.mkdir()
    files = []
    for pair in PAIRS:
        name = f"binance_{pair}_5m_2018-01.csv"
        lines = (shared_data_dir() / name).read_text().splitlines(keepends=True)
        (folder / name).write_text("".join(lines[: rows + 1]))
        files.append(folder / name)
    return files


def replay(
    tmp_path: Path, db: Path, files: list[Path], *, start: tuple[str, ...] = ("-m", "tui")
) -> int:
    """``cma run --headless`` replaying ``files`` at full speed into ``db``, trading
    (auto policy, confidence 0.3); its exit code: 0, or -SIGKILL where ``start`` (how
    python runs the CLI) kills it."""
    env = home_env(tmp_path, PYTHONPATH=str(ROOT), CMA_APPROVAL__AUTO_CONFIDENCE="0.3")
    done = subprocess.run(
        [sys.executable, *start, "run", "--headless", "--feed", "replay", "--speed", "max",
         "--policy", "auto", "--db", str(db), "--files", *map(str, files)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
    return done.returncode


def content(db: Path, queries: tuple[str, ...] = CONTENT) -> list[list[Any]]:
    """What ``queries`` read from ``db`` (read-only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [conn.execute(sql).fetchall() for sql in queries]
    finally:
        conn.close()


def test_a_replay_restarted_on_its_store_stores_what_one_uninterrupted_run_stores(
    tmp_path: Path,
) -> None:
    whole, half = cut(tmp_path / "whole", 2000), cut(tmp_path / "half", 800)
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    assert replay(tmp_path, one, whole) == 0
    assert replay(tmp_path, two, half) == 0  # stops after 800 candles a pair
    first = content(two)
    assert replay(tmp_path, two, whole) == 0  # started again: skips those, goes on
    decisions, fills, positions = content(one)
    assert len(first[0]) >= 3 and len(decisions) >= len(first[0]) + 3, (first, decisions)
    assert len(fills) >= 10, fills
    assert content(two) == [decisions, fills, positions]
