"""``reports.build_report`` against real stores: every figure checked against the rows.

The stores come from real ``cma backtest`` runs (conftest); the live case runs a
real ``cma run --headless`` writing its store while reports are built from it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import pytest
from report_helpers import CMA, clean_env

from engine.backtest.metrics import compute_results
from reports import FORMATS, ReportError, build_report
from reports.model import OVERALL
from reports.render import render


def rows(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql, params).fetchall()


def test_trades_are_the_sessions_closed_positions_with_their_money(stores: dict[str, Path]) -> None:
    db = stores["mixed"]
    report = build_report(db, 1)
    expected = rows(
        db,
        "SELECT p.id, p.realized_pnl, p.fees, p.proposal_id FROM positions p"
        " JOIN proposals pr ON pr.id = p.proposal_id"
        " WHERE pr.session_id = 1 AND p.status = 'closed' ORDER BY p.id",
    )
    assert len(expected) >= 5
    got = sorted(report.trades, key=lambda t: t.position_id)
    assert [t.position_id for t in got] == [r[0] for r in expected]
    for t, (_, realized, fees, pid) in zip(got, expected, strict=True):
        assert t.realized_pnl == Decimal(str(realized))
        assert t.fees == Decimal(str(fees))
        assert t.net_pnl == t.realized_pnl - t.fees
        assert t.proposal_id == pid
        assert t.votes and all(v.agent for v in t.votes)
        assert set(t.agents) <= {v.agent for v in t.votes if v.direction == t.side}
        assert t.qty is not None and t.qty > 0 and t.ret is not None
    assert report.results is not None
    assert report.results.trades == len(expected)
    assert report.results.net_pnl == sum((t.net_pnl for t in got), Decimal(0))


def test_the_headline_is_compute_results_of_the_stored_equity(stores: dict[str, Path]) -> None:
    db = stores["mixed"]
    report = build_report(db, 1)
    points = rows(db, "SELECT ts, equity FROM equity WHERE session_id = 1 ORDER BY ts")
    assert [p.ts for p in report.equity] == [int(p[0]) for p in points]
    assert report.results is not None
    assert report.results.start_equity == Decimal(str(points[0][1]))
    assert report.results.end_equity == Decimal(str(points[-1][1]))
    again = compute_results(
        [int(p[0]) for p in points],
        [Decimal(str(p[1])) for p in points],
        [],
        timeframe=report.results.timeframe_ms,
    )
    assert report.results.total_return == again.total_return
    assert report.results.max_drawdown == again.max_drawdown
    assert "stored equity points" in report.results_note


def test_every_decision_is_there_with_who_made_it_and_its_latency(stores: dict[str, Path]) -> None:
    db = stores["mixed"]
    report = build_report(db, 1)
    expected = rows(
        db,
        "SELECT pr.id, pr.status, d.action, d.decided_by, d.latency_ms FROM proposals pr"
        " LEFT JOIN decisions d ON d.proposal_id = pr.id WHERE pr.session_id = 1",
    )
    got = {
        d.proposal_id: (d.status, d.action, d.decided_by, d.latency_ms) for d in report.decisions
    }
    assert got == {r[0]: tuple(r[1:]) for r in expected}
    assert {d.status for d in report.decisions} >= {"approved", "rejected"}


def test_the_denials_are_the_denied_orders_with_their_reasons(stores: dict[str, Path]) -> None:
    db = stores["mixed"]
    report = build_report(db, 1)
    expected = rows(db, "SELECT client_order_id, reason FROM order_intents WHERE status = 'denied'")
    assert expected, "the mixed backtest should have a risk denial"
    assert sorted((d.client_order_id, d.reason) for d in report.denials) == sorted(expected)
    assert all(d.reason for d in report.denials)


def test_the_human_edge_counts_approved_trades_and_rejected_counterfactuals(
    stores: dict[str, Path],
) -> None:
    db = stores["mixed"]
    report = build_report(db, 1)
    edge = report.edge
    assert edge.overall.name == OVERALL
    approved = [t for t in report.trades if t.proposal_status == "approved"]
    assert edge.overall.approved.count == len(approved)
    assert edge.overall.approved.net_pnl == sum((t.net_pnl for t in approved), Decimal(0))
    cf = rows(
        db,
        "SELECT c.ret FROM counterfactuals c JOIN proposals pr ON pr.id = c.proposal_id"
        " WHERE pr.session_id = 1 AND pr.status = 'rejected'",
    )
    assert cf, "the person's rejections should have been followed"
    assert edge.overall.rejected.count == len(cf)
    assert edge.overall.rejected.total_return == pytest.approx(sum(float(r[0]) for r in cf))
    assert edge.overall.rejected.net_pnl is None  # counterfactuals carry no money
    assert edge.overall.expired.count == 0
    rejected = sum(1 for d in report.decisions if d.status == "rejected")
    assert edge.declined_open == rejected - len(cf)
    approvals = sum(1 for d in report.decisions if d.status == "approved")
    assert edge.approved_open + edge.approved_no_trade + len(approved) == approvals
    open_now = rows(
        db,
        "SELECT COUNT(*) FROM positions p JOIN proposals pr ON pr.id = p.proposal_id"
        " WHERE pr.session_id = 1 AND p.status = 'open'",
    )[0][0]
    assert edge.approved_open == open_now == report.open_positions
    assert edge.declined_by == {"human": rejected}
    for row in edge.by_agent:
        assert row.approved.count == sum(1 for t in approved if row.name in t.agents)


def test_expired_proposals_show_what_they_would_have_earned(stores: dict[str, Path]) -> None:
    db = stores["expired"]
    report = build_report(db, 1)
    n = rows(
        db,
        "SELECT COUNT(*) FROM counterfactuals c JOIN proposals pr ON pr.id = c.proposal_id"
        " WHERE pr.status = 'expired'",
    )[0][0]
    assert n and report.edge.overall.expired.count == n
    assert report.edge.overall.approved.count == 0
    assert report.edge.overall.approved.mean_return is None
    assert all(d.action == "expire" for d in report.decisions)


def test_a_session_that_is_not_there_or_a_store_that_is_not_one_is_a_report_error(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ReportError, match="no session 7"):
        build_report(stores["mixed"], 7)
    with pytest.raises(ReportError, match="no store"):
        build_report(tmp_path / "missing.db", 1)
    text = tmp_path / "notes.db"
    text.write_text("not a database\n" * 100)
    with pytest.raises(ReportError, match=r"not a cma store|damaged"):
        build_report(text, 1)


def test_only_named_fields_of_the_config_reach_the_report(mixed_copy: Path) -> None:
    """The secrets guard at its source: a config_json stuffed with secrets in every
    place a field could hide gives a report holding none of them, in no format."""
    secret = "FAKE-SECRET-7c1d"
    with closing(sqlite3.connect(mixed_copy)) as conn:
        config = json.loads(conn.execute("SELECT config_json FROM sessions").fetchone()[0])
        config["exchange"] = {"api_key": secret, "api_secret": secret, "id": secret}
        config["store"]["path"] = f"/home/{secret}/cma.db"
        config["feed"]["exchange"] = secret
        config["feed"]["files"] = [f"/data/{secret}.csv"]
        config["ui"] = {"keymap": {"approve": secret}}
        config["extra"] = secret
        conn.execute("UPDATE sessions SET config_json = ?", (json.dumps(config),))
        conn.commit()
    report = build_report(mixed_copy, 1)
    assert report.session.symbols == ("ETH/BTC", "LTC/BTC")
    assert report.session.agents == ("price_action", "momentum")
    for fmt in FORMATS:
        assert secret.encode() not in render(report, fmt), fmt


def _has_sessions(db: Path) -> bool:
    """Whether the store's tables are there yet (read-only, never creating anything)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        conn.execute("SELECT 1 FROM sessions LIMIT 1")
        return True
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def test_a_report_is_built_while_a_running_console_writes_its_store(tmp_path: Path) -> None:
    """A real ``cma run --headless`` holds the store (WAL, its lock) and writes it;
    reports built meanwhile succeed, see its session, and see it grow."""
    db = tmp_path / "live.db"
    proc = subprocess.Popen(
        [CMA, "run", "--headless", "--policy", "auto", "--speed", "max", "--duration", "40s",
         "--db", str(db)],
        env=clean_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        seen: list[int] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(seen) < 5:
            if not Path(f"{db}-wal").exists() or not _has_sessions(db):
                # The store is still being made (its tables come in the first transaction
                # after WAL is on: under load a read can fall in between).
                time.sleep(0.1)
                continue
            try:
                report = build_report(db, 1)
            except ReportError as exc:
                if "no session 1" in str(exc):
                    time.sleep(0.1)
                    continue
                raise
            assert proc.poll() is None, "the writer should still be running"
            assert report.session.kind == "paper" and report.session.ended_at is None
            seen.append(len(report.equity))
            time.sleep(0.5)
        assert len(seen) == 5, f"too few reports built while the writer ran: {seen}"
        assert seen == sorted(seen) and seen[-1] > seen[0], seen
        assert Path(f"{db}.lock").exists()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    final = build_report(db, 1)
    assert len(final.equity) >= seen[-1]


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A headless demo session with the auto policy: it adds to open positions."""
    home = tmp_path_factory.mktemp("demo")
    done = subprocess.run(
        [CMA, "run", "--headless", "--policy", "auto", "--speed", "max", "--duration", "4s"],
        env=clean_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return home / "data" / "cma" / "cma.db"


def test_a_proposal_that_added_to_an_open_position_counts_in_that_trade(
    demo_store: Path,
) -> None:
    report = build_report(demo_store, 1)
    fills = rows(
        demo_store,
        "SELECT f.symbol, f.qty, f.ts, oi.purpose, oi.proposal_id FROM fills f"
        " JOIN order_intents oi ON oi.client_order_id = f.client_order_id",
    )
    own: dict[object, Decimal] = {}
    for _, qty, _, purpose, pid in fills:
        if purpose == "entry":
            own[pid] = own.get(pid, Decimal(0)) + Decimal(str(qty))
    added = 0
    for t in report.trades:
        # What the position's exits sold or bought back is what all its entries made.
        exits = sum(
            (
                Decimal(str(q))
                for sym, q, ts, purpose, _ in fills
                if sym == t.symbol and purpose == "exit" and t.entry_ts <= int(str(ts)) <= t.exit_ts
            ),
            Decimal(0),
        )
        assert t.qty == exits, t
        added += t.qty != own[t.proposal_id]
    assert added, "the session must add to an open position to prove anything"
    # Every approved proposal whose entry filled into a closed trade counts once, and
    # the approved money is the trades' money (all entries were approved).
    edge = report.edge
    entered = {pid for _, _, _, purpose, pid in fills if purpose == "entry"}
    approved = {d.proposal_id for d in report.decisions if d.status == "approved"}
    assert edge.approved_no_trade == len(approved - entered)
    assert edge.overall.approved.count + edge.approved_open == len(approved & entered)
    assert edge.overall.approved.net_pnl == sum((t.net_pnl for t in report.trades), Decimal(0))
