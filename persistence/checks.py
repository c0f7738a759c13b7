"""``cma db check``: SQLite's own integrity check plus the project's invariants."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One named check and what it found."""

    name: str
    ok: bool
    detail: str


INTEGRITY = "sqlite integrity"
FOREIGN_KEYS = "foreign keys"
RECONCILE = "cash + cost basis reconciles with realized PnL and fees"
FILL_ORDER = "every fill belongs to an order"
ONE_INTENT = "every approved decision has exactly one order intent"
NEGATIVE = "no position has a negative quantity"
ONE_DECISION = "every decided proposal has exactly one decision"
OVERFILL = "no order is filled beyond its quantity"


def _rows(conn: sqlite3.Connection, sql: str) -> list[tuple[object, ...]]:
    return list(conn.execute(sql).fetchall())


def run_checks(conn: sqlite3.Connection) -> list[CheckResult]:
    """Run every check on an open connection; a failing check never raises.

    A check that cannot run at all (a damaged page, a value that is not a number)
    is a failed check that says why, so ``cma db check`` reports every problem.
    """
    results: list[CheckResult] = []
    for name, check in _CHECKS:
        try:
            results.append(check(conn))
        except (sqlite3.Error, ArithmeticError, ValueError, TypeError) as exc:
            results.append(CheckResult(name, False, f"could not run: {exc}"))
    return results


def _integrity(conn: sqlite3.Connection) -> CheckResult:
    integrity = [str(r[0]) for r in _rows(conn, "PRAGMA integrity_check")]
    return CheckResult(INTEGRITY, integrity == ["ok"], "; ".join(integrity))


def _foreign_keys(conn: sqlite3.Connection) -> CheckResult:
    fk = _rows(conn, "PRAGMA foreign_key_check")
    return CheckResult(FOREIGN_KEYS, not fk, f"{len(fk)} dangling references" if fk else "ok")


def _fills_have_orders(conn: sqlite3.Connection) -> CheckResult:
    orphans = _rows(
        conn,
        "SELECT f.id FROM fills f LEFT JOIN orders o ON o.client_order_id = f.client_order_id"
        " WHERE o.client_order_id IS NULL",
    )
    return CheckResult(
        FILL_ORDER,
        not orphans,
        f"fills without an order: {[r[0] for r in orphans[:10]]}" if orphans else "ok",
    )


def _one_intent(conn: sqlite3.Connection) -> CheckResult:
    bad_intents = _rows(
        conn,
        "SELECT d.proposal_id, COUNT(i.client_order_id) FROM decisions d"
        " LEFT JOIN order_intents i ON i.decision_id = d.id"
        " WHERE d.action = 'approve' GROUP BY d.id HAVING COUNT(i.client_order_id) != 1",
    )
    return CheckResult(
        ONE_INTENT,
        not bad_intents,
        ", ".join(f"{p}: {n} intents" for p, n in bad_intents[:10]) if bad_intents else "ok",
    )


def _no_negative(conn: sqlite3.Connection) -> CheckResult:
    negative = [
        (r[0], r[1])
        for r in _rows(conn, "SELECT id, qty, status FROM positions")
        if Decimal(str(r[1])) < 0 or (r[2] == "open" and Decimal(str(r[1])) == 0)
    ]
    return CheckResult(NEGATIVE, not negative, f"positions {negative[:10]}" if negative else "ok")


def _one_decision(conn: sqlite3.Connection) -> CheckResult:
    undecided = _rows(
        conn,
        "SELECT p.id, p.status, COUNT(d.id) FROM proposals p"
        " LEFT JOIN decisions d ON d.proposal_id = p.id GROUP BY p.id"
        " HAVING (p.status = 'pending' AND COUNT(d.id) != 0)"
        " OR (p.status != 'pending' AND COUNT(d.id) != 1)",
    )
    return CheckResult(ONE_DECISION, not undecided, f"{undecided[:10]}" if undecided else "ok")


def _not_overfilled(conn: sqlite3.Connection) -> CheckResult:
    overfilled = _rows(
        conn,
        "SELECT o.client_order_id, o.qty, GROUP_CONCAT(f.qty, ' ') FROM orders o"
        " JOIN fills f ON f.client_order_id = o.client_order_id GROUP BY o.client_order_id",
    )
    bad_orders = [
        str(r[0])
        for r in overfilled
        if sum((Decimal(q) for q in str(r[2]).split()), Decimal(0)) > Decimal(str(r[1]))
    ]
    return CheckResult(OVERFILL, not bad_orders, f"{bad_orders[:10]}" if bad_orders else "ok")


def _reconcile(conn: sqlite3.Connection) -> CheckResult:
    name = RECONCILE
    balances = _rows(conn, "SELECT cash, initial_cash FROM balances")
    if not balances:
        fills = _rows(conn, "SELECT COUNT(*) FROM fills")
        ok = int(str(fills[0][0])) == 0
        return CheckResult(name, ok, "no balance yet" if ok else "fills exist without a balance")
    cash = sum((Decimal(str(r[0])) for r in balances), Decimal(0))
    initial = sum((Decimal(str(r[1])) for r in balances), Decimal(0))
    held = Decimal(0)
    realized = Decimal(0)
    for side, cost, pnl, status in _rows(
        conn, "SELECT side, cost_basis, realized_pnl, status FROM positions"
    ):
        if status == "open":
            sign = 1 if side == "long" else -1
            held += sign * Decimal(str(cost))
        realized += Decimal(str(pnl))
    fees = sum((Decimal(str(r[0])) for r in _rows(conn, "SELECT fee FROM fills")), Decimal(0))
    fill_pnl = sum(
        (Decimal(str(r[0])) for r in _rows(conn, "SELECT realized_pnl FROM fills")), Decimal(0)
    )
    # Dust positions closed with no fill (live: too small to trade) realized their cost
    # basis as a loss that no fill carries (engine/core.py keeps the sum).
    written_off = sum(
        (
            Decimal(str(r[0]))
            for r in _rows(conn, "SELECT value FROM engine_state WHERE key = 'dust_written_off'")
        ),
        Decimal(0),
    )
    fill_pnl -= written_off
    lhs = cash + held
    rhs = initial + realized - fees
    problems = []
    if lhs != rhs:
        problems.append(
            f"cash {cash} + cost basis {held} = {lhs}, but initial {initial}"
            f" + realized {realized} - fees {fees} = {rhs} (off by {lhs - rhs})"
        )
    if fill_pnl != realized:
        problems.append(f"fills realized {fill_pnl} != positions realized {realized}")
    return CheckResult(name, not problems, "; ".join(problems) if problems else f"cash {cash}")


_CHECKS: tuple[tuple[str, Callable[[sqlite3.Connection], CheckResult]], ...] = (
    (INTEGRITY, _integrity),
    (FOREIGN_KEYS, _foreign_keys),
    (RECONCILE, _reconcile),
    (FILL_ORDER, _fills_have_orders),
    (ONE_INTENT, _one_intent),
    (NEGATIVE, _no_negative),
    (ONE_DECISION, _one_decision),
    (OVERFILL, _not_overfilled),
)
