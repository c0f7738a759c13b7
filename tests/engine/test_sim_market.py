"""The demo market is worth watching: its phases are what they say, the shipped agents
find their edge, so the console keeps proposing sized trades, and an unattended auto
run trades several symbols.

The engine tests run the real engine on the default settings' market (seed 7, the
five default symbols, 1m candles), on a real SQLite store, with no mocks.
"""

from __future__ import annotations

import asyncio
import math
import signal
import sqlite3
import statistics
import subprocess
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

from test_headless import ROOT, cma, env_for

from engine.config import Settings
from engine.feeds.sim import SIM_EPOCH_MS, SimFeed
from engine.runtime import SIM_WARMUP_BATCHES, Engine
from persistence.connection import connect_reader
from persistence.store import Store

MIN = 60_000
#: A 20-minute console session at the default speed (60 market seconds a wall second,
#: 1m candles) goes live after its warm-up and then sees 1,200 candles per symbol.
SESSION_BATCHES = 20 * 60
QUARTER = SESSION_BATCHES // 4


def test_trends_drift_their_way_while_drifts_and_ranges_go_nowhere() -> None:
    """Two weeks of the market: per phase, the mean move in standard deviations (a trend's
    signed its way), where prices went, and correlation in calm and in turbulence."""
    feed = SimFeed(limit=14 * 24 * 60)
    moves: dict[str, list[float]] = defaultdict(list)
    btc_eth: dict[str, tuple[list[float], list[float]]] = {"calm": ([], []), "turbulent": ([], [])}
    first: dict[str, float] = {}
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    for batch in feed.iter_batches():
        for candle, phase in zip(batch, feed.phases, strict=True):
            move = math.log(candle.close / candle.open)
            kind = phase.split()[0]
            moves[kind].append(-move if phase == "trend down" else move)
            start = first.setdefault(candle.symbol, candle.open)
            low[candle.symbol] = min(low.get(candle.symbol, math.inf), candle.low / start)
            high[candle.symbol] = max(high.get(candle.symbol, 0.0), candle.high / start)
        btc, eth = btc_eth[feed.regime]
        btc.append(math.log(batch[0].close / batch[0].open))
        eth.append(math.log(batch[1].close / batch[1].open))
    drift = {k: statistics.mean(v) / statistics.pstdev(v) for k, v in moves.items()}
    assert drift["trend"] > 0.15, drift
    assert abs(drift["drift"]) < 0.02 and abs(drift["range"]) < 0.02, drift
    # Time is shared between the phases: none is rare.
    total = sum(len(v) for v in moves.values())
    assert all(len(v) > 0.15 * total for v in moves.values()), {k: len(v) for k, v in moves.items()}
    # Plausible prices: nowhere near zero or a hundredfold after two weeks.
    assert min(low.values()) > 0.4 and max(high.values()) < 2.5, (low, high)
    calm, turbulent = (statistics.correlation(*btc_eth[r]) for r in ("calm", "turbulent"))
    assert turbulent > calm > 0.3, (calm, turbulent)


def _phases(limit: int) -> dict[tuple[str, int], str]:
    """Each symbol's phase on each candle of the first ``limit`` batches (seed 7)."""
    feed = SimFeed(limit=limit)
    seen: dict[tuple[str, int], str] = {}
    for batch in feed.iter_batches():
        for candle, phase in zip(batch, feed.phases, strict=True):
            seen[(candle.symbol, candle.ts)] = phase.split()[0]
    return seen


async def _session(db: Path) -> None:
    """The engine over the candles a 20-minute console session sees, unpaced; a person
    who approves whatever is proposed (the auto policy at confidence 0)."""
    settings = Settings(approval={"policy": "auto", "auto_confidence": 0.0})
    feed = SimFeed(limit=SIM_WARMUP_BATCHES + SESSION_BATCHES)
    feed.warmup_batches = SIM_WARMUP_BATCHES  # as the console's paced demo has
    store = await Store.open(str(db))
    try:
        engine = Engine(settings, store, feed)
        await engine.start()
        await engine.wait()
        await engine.stop()
        assert engine.error is None
    finally:
        await store.close()


def test_a_20_minute_console_session_proposes_sized_trades_throughout(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    asyncio.run(_session(db))
    live = SIM_EPOCH_MS + SIM_WARMUP_BATCHES * MIN
    conn = connect_reader(db)
    try:
        proposals = conn.execute("SELECT symbol, created_at, size FROM proposals").fetchall()
        fills = conn.execute("SELECT ts FROM fills").fetchall()
    finally:
        conn.close()
    phases = _phases(SIM_WARMUP_BATCHES + SESSION_BATCHES)

    made, sized, filled = Counter[int](), Counter[int](), Counter[int]()
    by_phase, sized_by_phase = Counter[str](), Counter[str]()
    for symbol, created_at, size in proposals:
        # A proposal is made as its candle closes: created_at is the next candle's open.
        quarter = (created_at - MIN - live) // (QUARTER * MIN)
        assert 0 <= quarter < 4
        phase = phases[(symbol, created_at - MIN)]
        made[quarter] += 1
        by_phase[phase] += 1
        if Decimal(size) > 0:
            sized[quarter] += 1
            sized_by_phase[phase] += 1
    for (ts,) in fills:
        filled[(ts - live) // (QUARTER * MIN)] += 1

    report = f"made {made}, sized {sized}, filled {filled}, by phase {by_phase} {sized_by_phase}"
    # Proposals all session long, and most of them sized, in every quarter.
    assert all(made[q] >= 5 for q in range(4)), report
    assert all(sized[q] >= made[q] / 2 for q in range(4)), report
    assert sum(sized.values()) >= 0.75 * sum(made.values()), report
    assert all(filled[q] >= 2 for q in range(4)), report
    # Every kind of phase shows up, and in each most proposals are sized.
    assert set(by_phase) == {"drift", "trend", "range"}, report
    assert all(sized_by_phase[p] > by_phase[p] / 2 for p in by_phase), report


def test_a_headless_auto_run_at_max_speed_trades_several_symbols(tmp_path: Path) -> None:
    """The candles of an hour of console at the default speed (60 market hours), played
    at --speed max with the auto policy's default threshold (0.7): trades on several
    symbols, in the first half and in the second."""
    db = tmp_path / "cma.db"
    batches = 60 * 60
    end = SIM_EPOCH_MS + batches * MIN
    proc = subprocess.Popen(
        cma("run", "--headless", "--policy", "auto", "--speed", "max", "--db", str(db)),
        cwd=ROOT, env=env_for(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        stored = 0
        while stored < end and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if db.exists():
                conn = connect_reader(db)
                try:
                    stored = conn.execute("SELECT MAX(ts) FROM candles").fetchone()[0] or 0
                except sqlite3.OperationalError:  # the store is still being created
                    stored = 0
                finally:
                    conn.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert stored >= end, f"only {(stored - SIM_EPOCH_MS) // MIN} candles in 60 s: {out}"
    conn = connect_reader(db)
    try:
        fills = conn.execute("SELECT symbol, ts FROM fills WHERE ts < ?", (end,)).fetchall()
    finally:
        conn.close()
    half = end - batches // 2 * MIN
    traded = {symbol for symbol, _ in fills}
    # Still trading on several symbols once the agents' records (and Kelly) rule the size:
    # on the old random walk, only two symbols traded in the second half.
    late = {symbol for symbol, ts in fills if ts >= half}
    assert len(traded) >= 3 and len(late) >= 3, fills
