"""The restart test: a running headless engine killed with SIGKILL comes back with the
state the store held, and goes on without duplicating an order or a fill.
And in process: a graceful stop and a new engine on the same store."""

from __future__ import annotations

import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from crafted_market import (
    FLAT,
    MIN,
    WARMUP,
    CraftedFeed,
    assert_checks_pass,
    crafted_engine,
    query,
    settings,
    with_warmup,
)

from engine.models import RejectReason, Side, TradingState
from engine.runtime import Engine
from persistence.checks import run_checks
from persistence.connection import connect_reader

ROOT = Path(__file__).resolve().parents[2]
KILLS = 4
RUN_AT_LEAST = 0.5  # seconds each run trades before the kill
RECOVERED = re.compile(r"^recovered: (\d+) open positions, (\d+) pending proposals, trading (\w+)$")


def cma_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
    env.update(
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        PYTHONPATH=str(ROOT),
        # Trade often, and keep proposals alive long enough to be pending at a kill.
        CMA_APPROVAL__AUTO_CONFIDENCE="0.45",
        CMA_APPROVAL__TTL_SECONDS="36000",
        CMA_ENGINE__STATUS_INTERVAL_SECONDS="0.5",
    )
    return env


class Headless:
    """A ``cma run --headless`` subprocess whose stdout lines are collected as they come."""

    def __init__(self, db: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tui", "run", "--headless", "--policy", "auto",
             "--speed", "max", "--db", str(db)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no line matching {pattern.pattern!r}; stderr: {self.stderr()}"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            match = pattern.match(line)
            if match:
                return match

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)


@dataclass(frozen=True)
class Snapshot:
    """What the store holds (read after the writer is dead)."""

    cash: Decimal
    positions: dict[str, tuple[int, str, Decimal, Decimal]]  # symbol → id, side, qty, cost
    pending: set[str]
    records: dict[tuple[str, str], tuple[int, int]]  # trades, cf_trades
    open_orders: set[str]
    last_fill: int
    last_event: int
    market_ts: int  # the latest market time in the event log
    trading_state: str


def read(db: Path, fn: Callable[[sqlite3.Connection], Any]) -> Any:
    conn = connect_reader(db)
    try:
        return fn(conn)
    finally:
        conn.close()


def snapshot(conn: sqlite3.Connection) -> Snapshot:
    (cash,) = conn.execute("SELECT cash FROM balances").fetchone()
    return Snapshot(
        cash=Decimal(cash),
        positions={
            r[0]: (r[1], r[2], Decimal(r[3]), Decimal(r[4]))
            for r in conn.execute(
                "SELECT symbol, id, side, qty, cost_basis FROM positions WHERE status = 'open'"
            )
        },
        pending={r[0] for r in conn.execute("SELECT id FROM proposals WHERE status = 'pending'")},
        records={
            (r[0], r[1]): (r[2], r[3])
            for r in conn.execute("SELECT agent, symbol, trades, cf_trades FROM agent_records")
        },
        open_orders={
            r[0] for r in conn.execute("SELECT client_order_id FROM orders WHERE status = 'open'")
        },
        last_fill=conn.execute("SELECT COALESCE(MAX(id), 0) FROM fills").fetchone()[0],
        last_event=conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0],
        market_ts=conn.execute("SELECT COALESCE(MAX(ts), 0) FROM events").fetchone()[0],
        trading_state=dict(conn.execute("SELECT key, value FROM engine_state").fetchall()).get(
            "trading_state", TradingState.ACTIVE.value
        ),
    )


def checks_pass(conn: sqlite3.Connection) -> None:
    failed = [r for r in run_checks(conn) if not r.ok]
    assert not failed, failed
    dup = conn.execute(
        "SELECT client_order_id, COUNT(*) FROM fills GROUP BY client_order_id HAVING COUNT(*) > 1"
    ).fetchall()
    assert dup == [], f"orders filled more than once: {dup}"
    dup = conn.execute(
        "SELECT proposal_id, COUNT(*) FROM order_intents WHERE proposal_id IS NOT NULL"
        " GROUP BY proposal_id HAVING COUNT(*) > 1"
    ).fetchall()
    assert dup == [], f"proposals with more than one order: {dup}"


def busy(db: Path, after: Snapshot | None) -> bool:
    """The store holds an open position and a pending proposal, and the engine has moved
    on since ``after`` (new events and a new fill)."""
    after_event, after_fill = (after.last_event, after.last_fill) if after else (0, 0)
    if not db.exists():
        return False
    try:
        return bool(
            read(
                db,
                lambda c: c.execute(
                    "SELECT (SELECT COUNT(*) FROM positions WHERE status = 'open') > 0"
                    " AND (SELECT COUNT(*) FROM proposals WHERE status = 'pending') > 0"
                    " AND (SELECT COALESCE(MAX(seq), 0) FROM events) > ?"
                    " AND (SELECT COALESCE(MAX(id), 0) FROM fills) > ?",
                    (after_event + 20, after_fill),
                ).fetchone()[0],
            )
        )
    except sqlite3.OperationalError:  # not migrated yet
        return False


def wait_busy(db: Path, after: Snapshot | None, proc: Headless, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not busy(db, after):
        assert proc.proc.poll() is None, f"engine exited early: {proc.stderr()}"
        assert time.monotonic() < deadline, "the engine never held a position and a proposal"
        time.sleep(0.01)


def fill_cash_delta(conn: sqlite3.Connection, after_fill: int) -> Decimal:
    """How fills after ``after_fill`` moved cash (buy: −notional − fee; sell: +notional − fee)."""
    total = Decimal(0)
    for side, qty, price, fee in conn.execute(
        "SELECT side, qty, price, fee FROM fills WHERE id > ? ORDER BY id", (after_fill,)
    ):
        notional = (Decimal(qty) * Decimal(price)).quantize(Decimal("0.00000001"))
        total += (-notional if side == "buy" else notional) - Decimal(fee)
    return total


def test_sigkill_and_restart_go_on_with_the_same_state(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    env = cma_env(tmp_path)
    at_kill: Snapshot | None = None
    for round_ in range(KILLS + 1):
        engine = Headless(db, env)
        try:
            if at_kill is not None:
                # It tells what it recovered: exactly what the store held at the kill.
                m = engine.wait_line(RECOVERED, timeout=15)
                assert (int(m[1]), int(m[2])) == (len(at_kill.positions), len(at_kill.pending))
                assert m[3] == at_kill.trading_state
            engine.wait_line(re.compile(r"^cma headless: PAPER on sim"), timeout=15)
            time.sleep(RUN_AT_LEAST)  # let it trade a while before looking for a moment to kill
            wait_busy(db, at_kill, engine)
            if round_ == KILLS:
                assert engine.terminate() == 0, engine.stderr()
            else:
                engine.kill()
        finally:
            if engine.proc.poll() is None:
                engine.proc.kill()
                engine.proc.wait()
        read(db, checks_pass)
        now: Snapshot = read(db, snapshot)
        if at_kill is not None:
            _went_on_from(db, at_kill, now)
        at_kill = now
    assert at_kill is not None and at_kill.records, "no learning record was ever kept"


def _went_on_from(db: Path, before: Snapshot, after: Snapshot) -> None:
    """The restarted engine continued from ``before``: same cash, positions, proposals."""
    assert after.last_event > before.last_event
    # Market time never goes back: the demo market plays through what was traded.
    first_ts = read(
        db,
        lambda c: c.execute(
            "SELECT MIN(ts) FROM events WHERE seq > ? AND kind != 'EngineMessage'",
            (before.last_event,),
        ).fetchone()[0],
    )
    assert first_ts >= before.market_ts
    first_equity = read(
        db,
        lambda c: c.execute(
            "SELECT MIN(ts) FROM equity WHERE session_id = (SELECT MAX(id) FROM sessions)"
        ).fetchone()[0],
    )
    assert first_equity is None or first_equity > before.market_ts
    # Cash moved only by fills made after the restart: it went on from the stored cash.
    delta = read(db, lambda c: fill_cash_delta(c, before.last_fill))
    assert after.cash == before.cash + delta
    # A position open at the kill is the same row, unless a later fill closed or changed it.
    changed = read(
        db,
        lambda c: {
            r[0]
            for r in c.execute(
                "SELECT DISTINCT symbol FROM fills WHERE id > ?", (before.last_fill,)
            )
        },
    )
    for symbol, held in before.positions.items():
        if symbol not in changed:
            assert after.positions.get(symbol) == held
    # A proposal pending at the kill was recovered (the count the engine printed); if it
    # was decided after the restart, it was decided once (checks_pass).
    # An order open at the kill was filled at most once after it, never sent again.
    for coid in before.open_orders:
        n = read(
            db, lambda c, coid=coid: c.execute(
                "SELECT COUNT(*) FROM fills WHERE client_order_id = ?", (coid,)
            ).fetchone()[0],
        )  # fmt: skip
        assert n <= 1
    # The learning record survived: no agent's count went backwards.
    for key, (trades, cf_trades) in before.records.items():
        assert key in after.records
        assert after.records[key][0] >= trades and after.records[key][1] >= cf_trades


# --- in process: a graceful stop and a new engine on the same store -------------------

SIGNAL = WARMUP
BTC, ETH, SOL, XRP = "BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"
SYMBOLS = (BTC, ETH, SOL, XRP)
TP_HIT = (100.0, 108.5, 99.5, 107.0)


async def test_a_graceful_stop_keeps_everything_for_the_next_engine(tmp_path: Path) -> None:
    async def decide(engine: Engine) -> None:
        by_symbol = {p.symbol: p for p in engine.pending()}
        await engine.approve(by_symbol[BTC].id)  # fills at the next open
        await engine.reject(by_symbol[SOL].id, RejectReason.WEAK_SIGNAL)  # followed on paper

    async def approve_then_halt(engine: Engine) -> None:
        [xrp] = [p for p in engine.pending() if p.symbol == XRP]
        await engine.approve(xrp.id)  # the feed ends before its fill: an open order
        await engine.halt("going home")

    path = str(tmp_path / "cma.db")
    tables = {s: with_warmup([FLAT, FLAT, FLAT, FLAT]) for s in SYMBOLS}
    tables[SOL] = with_warmup([FLAT, FLAT, TP_HIT, FLAT])
    feed = CraftedFeed(tables, hooks={SIGNAL: decide, SIGNAL + 3: approve_then_halt})
    votes = {(s, feed.ts(SIGNAL)): (Side.LONG, 1.0) for s in SYMBOLS}
    cfg = settings(approval={"policy": "manual", "on_stop": "keep"}, feed={"symbols": SYMBOLS})
    async with crafted_engine(cfg, feed, votes, path=path) as first:
        await first.start()
        await first.wait()
        await first.stop()
        positions = first.positions()
        pending = first.pending()
        cash = first.portfolio.cash
        records = dict(first.learning.records)
        assert [p.symbol for p in positions] == [BTC]
        assert [p.symbol for p in pending] == [ETH]
        assert records[("scripted", SOL)].cf_wins == 1
        assert first.risk.state is TradingState.HALTED
        [xrp_order] = await first.broker.open_orders()
        await assert_checks_pass(first)

    resume_at = feed.ts(len(tables[BTC]))
    later = CraftedFeed({s: [FLAT, FLAT] for s in SYMBOLS}, start=resume_at)
    async with crafted_engine(cfg, later, {}, path=path) as second:
        recovery = await second.start()
        assert not recovery.is_fresh
        assert recovery.positions == positions
        assert recovery.pending == pending
        assert recovery.trading_state is TradingState.HALTED
        assert second.risk.state is TradingState.HALTED
        assert second.portfolio.cash == cash
        assert second.learning.records == records
        assert any(xrp_order.client_order_id in note for note in recovery.notes)
        await second.wait()
        # HALTED stays HALTED: only a command leaves it.
        assert second.risk.state is TradingState.HALTED
        # The order open at the stop filled once, at the first open after the restart.
        fills = await query(
            second, "SELECT ts FROM fills WHERE client_order_id = ?", xrp_order.client_order_id
        )
        assert fills == [(resume_at,)]
        assert {p.symbol for p in second.positions()} == {BTC, XRP}
        await second.resume_trading("back at the desk")
        assert second.risk.state is TradingState.ACTIVE
        await second.stop()
        await assert_checks_pass(second)
        states = await query(
            second,
            "SELECT json_extract(payload, '$.new') FROM events"
            " WHERE kind = 'TradingStateChanged' ORDER BY seq",
        )
        assert states == [("HALTED",), ("ACTIVE",)]


async def test_on_stop_expire_expires_pending_proposals_before_the_next_start(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "cma.db")
    feed = CraftedFeed({BTC: with_warmup([FLAT, FLAT])})
    votes = {(BTC, feed.ts(SIGNAL)): (Side.LONG, 1.0)}
    cfg = settings(approval={"policy": "manual", "on_stop": "expire"})
    async with crafted_engine(cfg, feed, votes, path=path) as first:
        await first.start()
        await first.wait()
        assert len(first.pending()) == 1
        await first.stop()
        assert first.pending() == []
        assert await query(first, "SELECT action, reason FROM decisions") == [
            ("expire", "time to live ran out")
        ]
    later = CraftedFeed({BTC: [FLAT]}, start=feed.ts(WARMUP + 2) + MIN)
    async with crafted_engine(cfg, later, {}, path=path) as second:
        recovery = await second.start()
        assert recovery.pending == [] and second.pending() == []
        await second.wait()
        await second.stop()
        await assert_checks_pass(second)
