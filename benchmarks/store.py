"""What the Store costs over plain sqlite3, on the same schema, pragmas and disk.

Run: ``.venv/bin/python benchmarks/store.py [--dir DIR] [--units N] [--rows N]``

Two measurements, each through ``persistence.store.Store`` and through plain
``sqlite3`` (opened with ``persistence.connection.connect_writer``, so WAL and
``synchronous=FULL`` are identical), alternating sides over a few rounds:

1. Durable units of work per second. One unit: a proposal exists; decision +
   order intent + order + fill + position + cash + their events, in ONE
   transaction. Store: one ``async with store.unit_of_work()`` through the API
   (building the events and their JSON is part of its cost). Plain: the very
   same SQL statements and parameters, prepared beforehand, between
   ``BEGIN IMMEDIATE`` and ``COMMIT``.
2. Batched rows per second: equity points. Store: ``record_equity`` per point
   (yielding to the loop every 1,000, as an engine does between candles) and a
   final ``flush()``; it group-commits 1,000 rows or 50 ms a transaction.
   Plain: ``executemany`` in 1,000-row transactions, each row built from its
   point with the same TEXT encoding inside the timing (both sides start from
   the same ``EquityUpdated`` points). The Store commits these batches with
   ``synchronous=NORMAL`` (market data, not money), so the ratio is taken
   against plain sqlite3 doing the same. For reference it also prints plain
   sqlite3 with every row prepared before the clock starts (the bare cost of
   executemany), and with ``synchronous=FULL`` per batch. Each plain variant
   writes its own file so every table grows alike.

It prints figures; it is not a test and exits 0 unless something crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.models import (  # noqa: E402
    Decision,
    DecisionAction,
    EquityUpdated,
    Fill,
    OrderIntent,
    OrderSide,
    Position,
    Proposal,
    Side,
    q_cash,
)
from persistence.connection import connect_writer  # noqa: E402
from persistence.store import Store, UnitOfWork  # noqa: E402

T0 = 1_700_000_000_000
UNIT_TARGET = 0.50
ROWS_TARGET = 0.60
BATCH = 1000


# --- one unit of work's domain objects, built ahead for both sides ----------------------


class Unit:
    __slots__ = ("cash", "decision", "fill", "intent", "position", "proposal", "ts")

    def __init__(self, tag: str, i: int, cash: Decimal) -> None:
        ts = T0 + i
        symbol = f"S{tag}{i}/USDT"  # one open position per symbol: a new symbol each unit
        qty, price = Decimal("0.12345678"), Decimal("60123.45678901")
        notional = q_cash(qty * price)
        fee = q_cash(notional * Decimal("0.001"))
        self.ts = ts
        self.proposal = Proposal(
            id=f"prp-{tag}-{i}", symbol=symbol, side=Side.LONG, entry=price,
            stop=Decimal("59000"), take_profit=Decimal("62000"), confidence=0.7, size=qty,
            created_at=ts, expires_at=ts + 300_000,
        )  # fmt: skip
        self.decision = Decision(
            proposal_id=self.proposal.id, action=DecisionAction.APPROVE, size=qty,
            latency_ms=850, decided_at=ts, decided_by="human",
        )  # fmt: skip
        self.intent = OrderIntent(
            client_order_id=f"c-{tag}-{i}", proposal_id=self.proposal.id, symbol=symbol,
            side=OrderSide.BUY, qty=qty, purpose="entry", created_at=ts,
        )  # fmt: skip
        self.cash = cash - notional - fee
        self.fill = Fill(
            client_order_id=self.intent.client_order_id, symbol=symbol, side=OrderSide.BUY,
            qty=qty, price=price, fee=fee, ts=ts,
        )  # fmt: skip
        self.position = Position(
            symbol=symbol, side=Side.LONG, qty=qty, entry_price=price, cost_basis=notional,
            opened_at=ts, proposal_id=self.proposal.id, fees=fee,
        )  # fmt: skip

    def write(self, uow: UnitOfWork) -> None:
        uow.decision_made(self.decision, self.proposal.symbol, Side.LONG, self.intent)
        uow.order_submitted(self.intent, self.ts)
        uow.order_filled(self.fill, self.cash)
        uow.position_opened(self.position, self.ts)


def make_units(tag: str, n: int) -> list[Unit]:
    cash = Decimal("1000000000")
    units = []
    for i in range(n):
        unit = Unit(tag, i, cash)
        cash = unit.cash
        units.append(unit)
    return units


def proposals_ops(units: list[Unit]) -> list[tuple[str, tuple[object, ...]]]:
    uow = UnitOfWork(None)
    for u in units:
        uow.proposal_created(u.proposal, u.ts)
    return uow.ops


# --- measurement 1: durable units of work ------------------------------------------------


def plain_units(conn: sqlite3.Connection, units: list[Unit]) -> float:
    prepared = []
    for u in units:  # the very statements the Store would run, prepared untimed
        uow = UnitOfWork(None)
        u.write(uow)
        prepared.append(uow.ops)
    start = time.perf_counter()
    for ops in prepared:
        conn.execute("BEGIN IMMEDIATE")
        for sql, params in ops:
            conn.execute(sql, params)
        conn.execute("COMMIT")
    return time.perf_counter() - start


async def store_units(store: Store, units: list[Unit]) -> float:
    start = time.perf_counter()
    for u in units:
        async with store.unit_of_work() as uow:
            u.write(uow)
    return time.perf_counter() - start


def setup_plain(conn: sqlite3.Connection, units: list[Unit]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT OR IGNORE INTO balances VALUES ('USDT', '1000000000', '1000000000', 0)")
    for sql, params in proposals_ops(units):
        conn.execute(sql, params)
    conn.execute("COMMIT")


async def setup_store(store: Store, units: list[Unit]) -> None:
    await store.init_balance("USDT", Decimal("1000000000"), 0)
    async with store.unit_of_work() as uow:
        for u in units:
            uow.proposal_created(u.proposal, u.ts)


# --- measurement 2: batched rows ---------------------------------------------------------


def equity_events(n: int, offset: int) -> list[EquityUpdated]:
    out = []
    for i in range(n):
        out.append(
            EquityUpdated(
                ts=T0 + offset + i, equity=Decimal("100000.12345678") + i,
                cash=Decimal("99000.5"), unrealized=Decimal("1000.62345678"),
                realized_today=Decimal(0), drawdown=0.0123,
            )
        )  # fmt: skip
    return out


def _row(e: EquityUpdated) -> tuple[object, ...]:
    # The same exact TEXT encoding the Store uses.
    return (
        e.ts, None, format(e.equity, "f"), format(e.cash, "f"), format(e.unrealized, "f"),
        e.drawdown,
    )  # fmt: skip


_INSERT_EQUITY = (
    "INSERT INTO equity (ts, session_id, equity, cash, unrealized, drawdown)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


def plain_rows(
    conn: sqlite3.Connection, events: list[EquityUpdated], sync: str, prepared: bool
) -> float:
    """executemany in 1,000-row transactions; rows built from the events inside the
    timing (what any writer of these points must do) unless ``prepared``."""
    rows = [_row(e) for e in events] if prepared else None
    start = time.perf_counter()
    conn.execute(f"PRAGMA synchronous = {sync}")
    try:
        for i in range(0, len(events), BATCH):
            chunk = rows[i : i + BATCH] if rows is not None else map(_row, events[i : i + BATCH])
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT_EQUITY, chunk)
            conn.execute("COMMIT")
    finally:
        conn.execute("PRAGMA synchronous = FULL")
    return time.perf_counter() - start


async def store_rows(store: Store, events: list[EquityUpdated]) -> float:
    start = time.perf_counter()
    for i, e in enumerate(events, 1):
        store.record_equity(e)
        if i % BATCH == 0:
            await asyncio.sleep(0)  # an engine yields between candles
    await store.flush()
    return time.perf_counter() - start


# --- the run -----------------------------------------------------------------------------


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="cma-bench-", dir=os.path.realpath(args.dir)))
    try:
        asyncio.run(measure(work, args))
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def measure(work: Path, args: argparse.Namespace) -> None:
    rounds, n_units, n_rows = args.rounds, args.units, args.rows
    per_units, per_rows = n_units // rounds, n_rows // rounds
    same_disk = os.stat(work).st_dev == os.stat(ROOT).st_dev
    print(f"files under {work} (both sides; same device as the repo: {same_disk})")
    print(
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} cpus; {rounds} rounds, sides alternating"
    )

    plain = connect_writer(work / "plain.db")
    others = {name: connect_writer(work / f"plain-{name}.db") for name in ("prepared", "full")}
    store = await Store.open(work / "store.db")
    try:
        t_plain = t_store = 0.0
        for r in range(rounds):
            pu, su = make_units(f"p{r}", per_units), make_units(f"s{r}", per_units)
            setup_plain(plain, pu)
            await setup_store(store, su)
            if r % 2 == 0:
                t_store += await store_units(store, su)
                t_plain += plain_units(plain, pu)
            else:
                t_plain += plain_units(plain, pu)
                t_store += await store_units(store, su)
        units_store = per_units * rounds / t_store
        units_plain = per_units * rounds / t_plain

        variants = {
            "plain": ("NORMAL", False),
            "prepared": ("NORMAL", True),
            "full": ("FULL", False),
        }
        t_rows = {"store": 0.0, **dict.fromkeys(variants, 0.0)}
        for r in range(rounds):
            events = equity_events(per_rows, r * per_rows)
            order = list(t_rows) if r % 2 == 0 else list(reversed(t_rows))
            for name in order:
                if name == "store":
                    t_rows[name] += await store_rows(store, events)
                else:
                    sync, prepared = variants[name]
                    conn = others.get(name, plain)
                    t_rows[name] += plain_rows(conn, events, sync, prepared)
        rows = {k: per_rows * rounds / v for k, v in t_rows.items()}
    finally:
        for conn in (plain, *others.values()):
            conn.close()
        await store.close()

    def line(metric: str, s: float, p: float, target: float | None) -> str:
        ratio = s / p
        verdict = "" if target is None else ("PASS" if ratio >= target else "FAIL")
        tgt = "" if target is None else f">= {target:.2f}"
        return f"{metric:44} {s:>12,.0f} {p:>14,.0f} {ratio:>7.2f} {tgt:>8} {verdict:>6}"

    print()
    print(f"{'metric':44} {'store':>12} {'plain sqlite3':>14} {'ratio':>7} {'target':>8} {'':>6}")
    print(line(f"durable units/s ({per_units * rounds:,} each)", units_store, units_plain,
               UNIT_TARGET))  # fmt: skip
    print(line(f"batched rows/s ({per_rows * rounds:,} equity points)", rows["store"],
               rows["plain"], ROWS_TARGET))  # fmt: skip
    print("  for reference, the same plain side with:")
    print(line("    rows prepared before the clock starts", rows["store"], rows["prepared"], None))
    print(line("    synchronous=FULL for every batch", rows["store"], rows["full"], None))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--dir", default="/tmp", help="where the temp dir goes (default /tmp)")
    p.add_argument("--units", type=int, default=2000, help="units of work per side")
    p.add_argument("--rows", type=int, default=200_000, help="equity points per side")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    return p.parse_args()


if __name__ == "__main__":
    main(parse())
