"""``cma db check``: SQLite's own integrity check plus the project's invariants."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One named check and what it found."""

    name: str
    ok: bool
    detail: str


def _rows(conn: sqlite3.Connection, sql: str) -> list[tuple[object, ...]]:
    return list(conn.execute(sql).fetchall())


def run_checks(conn: sqlite3.Connection) -> list[CheckResult]:
    """Run every check on an open connection; a failing check never raises."""
    results: list[CheckResult] = []

    integrity = [str(r[0]) for r in _rows(conn, "PRAGMA integrity_check")]
    results.append(CheckResult("sqlite integrity", integrity == ["ok"], "; ".join(integrity)))

    fk = _rows(conn, "PRAGMA foreign_key_check")
    results.append(
        CheckResult("foreign keys", not fk, f"{len(fk)} dangling references" if fk else "ok")
    )

    results.append(_reconcile(conn))

    orphans = _rows(
        conn,
        "SELECT f.id FROM fills f LEFT JOIN orders o ON o.client_order_id = f.client_order_id"
        " WHERE o.client_order_id IS NULL",
    )
    results.append(
        CheckResult(
            "every fill belongs to an order",
            not orphans,
            f"fills without an order: {[r[0] for r in orphans[:10]]}" if orphans else "ok",
        )
    )

    bad_intents = _rows(
        conn,
        "SELECT d.proposal_id, COUNT(i.client_order_id) FROM decisions d"
        " LEFT JOIN order_intents i ON i.decision_id = d.id"
        " WHERE d.action = 'approve' GROUP BY d.id HAVING COUNT(i.client_order_id) != 1",
    )
    results.append(
        CheckResult(
            "every approved decision has exactly one order intent",
            not bad_intents,
            ", ".join(f"{p}: {n} intents" for p, n in bad_intents[:10]) if bad_intents else "ok",
        )
    )

    negative = [
        (r[0], r[1])
        for r in _rows(conn, "SELECT id, qty, status FROM positions")
        if Decimal(str(r[1])) < 0 or (r[2] == "open" and Decimal(str(r[1])) == 0)
    ]
    results.append(
        CheckResult(
            "no position has a negative quantity",
            not negative,
            f"positions {negative[:10]}" if negative else "ok",
        )
    )

    undecided = _rows(
        conn,
        "SELECT p.id, p.status, COUNT(d.id) FROM proposals p"
        " LEFT JOIN decisions d ON d.proposal_id = p.id GROUP BY p.id"
        " HAVING (p.status = 'pending' AND COUNT(d.id) != 0)"
        " OR (p.status != 'pending' AND COUNT(d.id) != 1)",
    )
    results.append(
        CheckResult(
            "every decided proposal has exactly one decision",
            not undecided,
            f"{undecided[:10]}" if undecided else "ok",
        )
    )

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
    results.append(
        CheckResult(
            "no order is filled beyond its quantity",
            not bad_orders,
            f"{bad_orders[:10]}" if bad_orders else "ok",
        )
    )
    return results


def _reconcile(conn: sqlite3.Connection) -> CheckResult:
    name = "cash + cost basis reconciles with realized PnL and fees"
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
