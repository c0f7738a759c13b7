"""``cma db check``: a store built through the real API passes every check; each
kind of corruption, made with raw sqlite3, fails the check that names it, and the
money reconciliation holds to the last unit over any sequence of fills."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from crash_writer import EIGHT, Book
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.models import (
    Decision,
    DecisionAction,
    OrderIntent,
    OrderSide,
    Proposal,
    Side,
)
from persistence.checks import CheckResult, run_checks
from persistence.connection import connect_reader
from persistence.store import Store, dec

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000
INITIAL = Decimal("10000")

FK = "foreign keys"
RECONCILE = "cash + cost basis reconciles with realized PnL and fees"
FILL_ORDER = "every fill belongs to an order"
ONE_INTENT = "every approved decision has exactly one order intent"
NEGATIVE = "no position has a negative quantity"
ONE_DECISION = "every decided proposal has exactly one decision"
OVERFILL = "no order is filled beyond its quantity"


def proposal(pid: str, symbol: str, side: Side, size: str) -> Proposal:
    return Proposal(
        id=pid, symbol=symbol, side=side, entry=Decimal(100), stop=Decimal(95),
        take_profit=Decimal(110), confidence=0.6, size=Decimal(size), created_at=T0,
        expires_at=T0 + 300_000,
    )  # fmt: skip


def order_intent(
    coid: str, symbol: str, side: OrderSide, qty: str, pid: str | None = None
) -> OrderIntent:
    return OrderIntent(
        client_order_id=coid, proposal_id=pid, symbol=symbol, side=side, qty=Decimal(qty),
        purpose="entry" if pid else "exit", created_at=T0,
    )  # fmt: skip


async def build_clean_store(path: Path | str) -> Store:
    """A store with every kind of row, built as the engine builds it. Left open."""
    store = await Store.open(path)
    book = Book(INITIAL)
    await store.init_balance("USDT", INITIAL, T0)
    specs = {
        "prp-a": ("BTC/USDT", Side.LONG, "2.5"),  # approved, filled, partly exited
        "prp-b": ("ETH/USDT", Side.SHORT, "4"),  # approved, filled, closed
        "prp-c": ("SOL/USDT", Side.LONG, "10"),  # rejected
        "prp-d": ("SOL/USDT", Side.SHORT, "10"),  # expired
        "prp-e": ("BTC/USDT", Side.SHORT, "1"),  # pending
        "prp-f": ("ETH/USDT", Side.LONG, "3"),  # approved, intent not sent yet
    }
    entries = {
        "prp-a": order_intent("c-a", "BTC/USDT", OrderSide.BUY, "2.5", "prp-a"),
        "prp-b": order_intent("c-b", "ETH/USDT", OrderSide.SELL, "4", "prp-b"),
        "prp-f": order_intent("c-f", "ETH/USDT", OrderSide.BUY, "3", "prp-f"),
    }
    async with store.unit_of_work() as uow:
        for pid, (symbol, side, size) in specs.items():
            uow.proposal_created(proposal(pid, symbol, side, size), T0)
    for pid, (symbol, side, _) in specs.items():
        action = {"prp-c": DecisionAction.REJECT, "prp-d": DecisionAction.EXPIRE}.get(
            pid, DecisionAction.APPROVE
        )
        if pid == "prp-e":
            continue
        async with store.unit_of_work() as uow:
            uow.decision_made(
                Decision(proposal_id=pid, action=action, latency_ms=10, decided_at=T0 + 1),
                symbol,
                side,
                entries.get(pid),
            )

    async def send_and_fill(intent: OrderIntent, price: str, fee: str) -> None:
        async with store.unit_of_work() as uow:
            uow.order_submitted(intent, T0 + 2)
        plan = book.plan_fill(
            intent.client_order_id, intent.symbol, intent.side, intent.qty, Decimal(price),
            Decimal(fee), T0 + 3, intent.proposal_id,
        )  # fmt: skip
        async with store.unit_of_work() as uow:
            plan.write(uow)
        book.apply(plan)

    await send_and_fill(entries["prp-a"], "60000.12345678", "150.00030864")
    await send_and_fill(entries["prp-b"], "3000.5", "12.002")
    exit_a = order_intent("c-ax", "BTC/USDT", OrderSide.SELL, "1.00000001")
    exit_b = order_intent("c-bx", "ETH/USDT", OrderSide.BUY, "4")
    for exit_intent in (exit_a, exit_b):
        async with store.unit_of_work() as uow:
            uow.intent_created(exit_intent)
    await send_and_fill(exit_a, "61000.33333333", "61.00033334")
    await send_and_fill(exit_b, "2950.25", "11.801")
    return store


def failing(results: list[CheckResult]) -> set[str]:
    return {r.name for r in results if not r.ok}


def check_file(path: Path) -> set[str]:
    conn = connect_reader(path)
    try:
        return failing(run_checks(conn))
    finally:
        conn.close()


def cma_db_check(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CMA_")},
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "tui", "db", "check", "--db", str(path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def raw(path: Path, *statements: str | tuple[str, tuple[object, ...]]) -> None:
    """Run statements on a plain sqlite3 connection (foreign keys off, as by default)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = OFF")
        for s in statements:
            sql, params = (s, ()) if isinstance(s, str) else s
            conn.execute(sql, params)
    finally:
        conn.close()


@pytest.fixture
async def clean_db(tmp_path: Path) -> Path:
    path = tmp_path / "clean.db"
    store = await build_clean_store(path)
    await store.close()
    return path


async def test_store_built_through_the_api_passes_every_check(
    clean_db: Path, tmp_path: Path
) -> None:
    conn = connect_reader(clean_db)
    try:
        results = run_checks(conn)
        # The store really holds what the checks are about.
        n = dict(
            conn.execute(
                "SELECT 'fills', COUNT(*) FROM fills UNION ALL"
                " SELECT 'open', COUNT(*) FROM positions WHERE status = 'open' UNION ALL"
                " SELECT 'closed', COUNT(*) FROM positions WHERE status = 'closed' UNION ALL"
                " SELECT 'decisions', COUNT(*) FROM decisions"
            ).fetchall()
        )
    finally:
        conn.close()
    assert n == {"fills": 4, "open": 1, "closed": 1, "decisions": 5}
    assert {r.name for r in results} >= {
        "sqlite integrity", FK, RECONCILE, FILL_ORDER, ONE_INTENT, NEGATIVE, ONE_DECISION,
        OVERFILL,
    }  # fmt: skip
    assert [r for r in results if not r.ok] == []

    done = cma_db_check(clean_db, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    assert "0 failed" in done.stdout


def _rebuild_intents_without_unique(path: Path) -> None:
    """Drop the UNIQUE on order_intents.decision_id, the schema's own guard."""
    conn = sqlite3.connect(path)
    sql = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'order_intents'"
    ).fetchone()[0]
    conn.close()
    assert "decision_id     INTEGER UNIQUE" in sql
    loose = sql.replace("decision_id     INTEGER UNIQUE", "decision_id     INTEGER").replace(
        "CREATE TABLE order_intents", "CREATE TABLE order_intents_loose"
    )
    raw(
        path,
        "BEGIN",
        loose,
        "INSERT INTO order_intents_loose SELECT * FROM order_intents",
        "DROP TABLE order_intents",
        "ALTER TABLE order_intents_loose RENAME TO order_intents",
        "COMMIT",
    )


def _shift(table: str, column: str, where: str, units: int) -> Callable[[Path], None]:
    """Move one exact money column by ``units`` of 1e-8."""

    def corrupt(path: Path) -> None:
        conn = sqlite3.connect(path)
        [(value,)] = conn.execute(f"SELECT {column} FROM {table} WHERE {where}").fetchall()
        conn.close()
        new = dec(Decimal(value) + units * EIGHT)
        raw(path, (f"UPDATE {table} SET {column} = ? WHERE {where}", (new,)))

    return corrupt


def _second_intent(path: Path) -> None:
    _rebuild_intents_without_unique(path)
    raw(
        path,
        "INSERT INTO order_intents (client_order_id, decision_id, proposal_id, symbol, side, qty,"
        " purpose, created_at) SELECT 'c-f2', decision_id, proposal_id, symbol, side, qty,"
        " purpose, created_at FROM order_intents WHERE client_order_id = 'c-f'",
    )


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], set[str]]] = {
    "fill whose order row is deleted": (
        lambda p: raw(p, "DELETE FROM orders WHERE client_order_id = 'c-a'"),
        {FILL_ORDER, FK},
    ),
    "cash one unit too high": (_shift("balances", "cash", "1", 1), {RECONCILE}),
    "cash one unit too low": (_shift("balances", "cash", "1", -1), {RECONCILE}),
    "cost basis one unit off": (
        _shift("positions", "cost_basis", "status = 'open'", 1),
        {RECONCILE},
    ),
    "a fee one unit off": (_shift("fills", "fee", "client_order_id = 'c-b'", -1), {RECONCILE}),
    "a fill's realized PnL differs from its position's": (
        _shift("fills", "realized_pnl", "client_order_id = 'c-ax'", 1),
        {RECONCILE},
    ),
    "a closed trade's realized PnL differs from its fills'": (
        _shift("positions", "realized_pnl", "status = 'closed'", -1),
        {RECONCILE},
    ),
    "approved decision with no intent": (
        lambda p: raw(p, "DELETE FROM order_intents WHERE client_order_id = 'c-f'"),
        {ONE_INTENT},
    ),
    "approved decision with two intents": (_second_intent, {ONE_INTENT}),
    "negative position quantity": (
        lambda p: raw(p, "UPDATE positions SET qty = '-' || qty WHERE status = 'open'"),
        {NEGATIVE},
    ),
    "open position with zero quantity": (
        lambda p: raw(p, "UPDATE positions SET qty = '0' WHERE status = 'open'"),
        {NEGATIVE},
    ),
    "decision without its proposal status update": (
        lambda p: raw(p, "UPDATE proposals SET status = 'pending' WHERE id = 'prp-c'"),
        {ONE_DECISION},
    ),
    "proposal marked decided without a decision": (
        lambda p: raw(p, "UPDATE proposals SET status = 'rejected' WHERE id = 'prp-e'"),
        {ONE_DECISION},
    ),
    "order filled beyond its quantity": (
        lambda p: raw(p, "UPDATE fills SET qty = '2.50000001' WHERE client_order_id = 'c-a'"),
        {OVERFILL},
    ),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
async def test_each_corruption_fails_its_named_check_and_cma_db_check_exits_1(
    corruption: str, clean_db: Path, tmp_path: Path
) -> None:
    corrupt, expected = CORRUPTIONS[corruption]
    assert check_file(clean_db) == set()
    corrupt(clean_db)
    assert check_file(clean_db) == expected

    done = cma_db_check(clean_db, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    for name in expected:
        assert f"FAIL  {name}" in done.stdout, done.stdout
    assert "Traceback" not in done.stderr


def test_the_schema_itself_refuses_a_second_intent_for_one_decision(clean_db: Path) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        raw(
            clean_db,
            "INSERT INTO order_intents (client_order_id, decision_id, proposal_id, symbol, side,"
            " qty, purpose, created_at) SELECT 'c-f2', decision_id, proposal_id, symbol, side,"
            " qty, purpose, created_at FROM order_intents WHERE client_order_id = 'c-f'",
        )


def test_cma_db_check_on_a_file_that_is_not_sqlite_exits_2_not_a_cma_store(
    tmp_path: Path,
) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 300)
    done = cma_db_check(path, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"cma: {path} is not a cma store (not an SQLite database)" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_value_that_is_not_a_number_fails_its_check_instead_of_raising(
    clean_db: Path,
) -> None:
    raw(clean_db, "UPDATE positions SET qty = 'twelve' WHERE id = (SELECT MIN(id) FROM positions)")
    results = {r.name: r for r in run_checks(sqlite3.connect(clean_db))}
    assert not results[NEGATIVE].ok
    assert "could not run" in results[NEGATIVE].detail
    assert results[ONE_DECISION].ok  # the checks after it still ran


# --- the money property -----------------------------------------------------------------

SYMBOLS = ("BTC/USDT", "ETH/USDT")


def eights(low_exp: int, high_exp: int) -> st.SearchStrategy[Decimal]:
    """Decimals with 8 places whose leading digit is at 10**e, e drawn evenly in
    [low_exp, high_exp], every other digit random (hypothesis alone favours tiny
    integers, and tiny amounts would never need more digits than a float has)."""
    return (
        st.integers(low_exp, high_exp)
        .flatmap(lambda e: st.integers(10 ** (e + 8), 10 ** (e + 9) - 1))
        .map(lambda n: Decimal(n) * EIGHT)
    )


fills_strategy = st.lists(
    st.tuples(
        st.sampled_from(SYMBOLS),
        st.sampled_from((OrderSide.BUY, OrderSide.SELL)),
        eights(-8, 4),  # qty 0.00000001 .. 99,999.99999999
        eights(-8, 6),  # price 0.00000001 .. 9,999,999.99999999
        st.just(Decimal(0)) | eights(-8, 1),  # fee 0 .. 99.99999999
    ),
    min_size=1,
    max_size=25,
)


async def _replay(
    fills: list[tuple[str, OrderSide, Decimal, Decimal, Decimal]], tamper: str, unit: int
) -> None:
    store = await Store.open(":memory:")
    try:
        book = Book(INITIAL)
        await store.init_balance("USDT", INITIAL, T0)
        net: dict[str, Decimal] = dict.fromkeys(SYMBOLS, Decimal(0))
        flows = Decimal(0)
        for i, (symbol, side, qty, price, fee) in enumerate(fills):
            ts = T0 + i
            intent = OrderIntent(
                client_order_id=f"c-{i}", proposal_id=None, symbol=symbol, side=side, qty=qty,
                purpose="entry", created_at=ts,
            )  # fmt: skip
            plan = book.plan_fill(intent.client_order_id, symbol, side, qty, price, fee, ts)
            async with store.unit_of_work() as uow:
                uow.intent_created(intent)
                uow.order_submitted(intent, ts)
                plan.write(uow)
            book.apply(plan)
            sign = 1 if side is OrderSide.BUY else -1
            net[symbol] += sign * qty
            flows += -sign * qty * price - fee

        # The reference accounting agrees with plain arithmetic on the fills.
        for symbol in SYMBOLS:
            pos = book.positions.get(symbol)
            assert (pos.side.sign * pos.qty if pos else Decimal(0)) == net[symbol]
        assert abs(book.cash - (INITIAL + flows)) <= len(fills) * 2 * EIGHT

        results = await store.run(run_checks)
        assert [r for r in results if not r.ok] == []
        state = await store.load_state()
        assert state.cash == book.cash
        assert {p.symbol: p for p in state.positions} == book.positions

        # One unit of 1e-8 anywhere in the money breaks the reconciliation.
        if tamper == "cash" or not book.positions:
            sql, value = "UPDATE balances SET cash = ?", book.cash + unit * EIGHT
        else:
            pos = next(iter(book.positions.values()))
            sql, value = (
                f"UPDATE positions SET cost_basis = ? WHERE status = 'open'"
                f" AND symbol = '{pos.symbol}'",
                pos.cost_basis + unit * EIGHT,
            )
        await store.run(lambda c: c.execute(sql, (dec(value),)))
        results = await store.run(run_checks)
        assert failing(results) == {RECONCILE}
    finally:
        await store.close()


@settings(max_examples=200, deadline=None)
@given(
    fills=fills_strategy,
    tamper=st.sampled_from(("cash", "cost_basis")),
    unit=st.sampled_from((1, -1)),
)
def test_any_sequence_of_fills_reconciles_exactly_and_one_unit_off_does_not(
    fills: list[tuple[str, OrderSide, Decimal, Decimal, Decimal]], tamper: str, unit: int
) -> None:
    asyncio.run(_replay(fills, tamper, unit))
