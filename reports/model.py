"""A session's report, read from its store: :func:`build_report` -> :class:`Report`.

Everything a report holds is in the frozen records below, each with an explicit
list of fields. That list is the secrets guard: nothing is copied wholesale from
the configuration or from a row. Of ``sessions.config_json`` only the named,
known-safe fields of :class:`SessionInfo` are read (symbols, timeframe, agents,
approval policy); keys, secrets, paths and the rest of the settings never reach
a report.

The store is read through :func:`persistence.storefile.open_readonly` inside one
read transaction, so a report is a consistent snapshot even while the console's
engine writes (WAL mode: the reader sees the last commit before it began and
never blocks the writer).

What belongs to a session:

- its equity points (``equity.session_id``), in time order (a repeated
  timestamp keeps its last point);
- its proposals (``proposals.session_id``), their decisions, their order intents;
- its trades: the positions whose proposal belongs to it, plus positions without
  a proposal opened inside its market time span (its first to last equity point);
- its counterfactuals: the rows of the ``counterfactuals`` table whose proposal
  belongs to it.

Returns are fractions of the entry price: a real trade's is its net pnl (after
fees) over what its entry fills cost; a counterfactual's is the learning
agent's ``(exit - entry) / entry * side sign``, with no fees.
"""

from __future__ import annotations

import json
import math
import sqlite3
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path
from typing import Any

from engine.backtest.metrics import (
    UNATTRIBUTED,
    ClosedTrade,
    Results,
    compute_results,
    format_duration,
)
from engine.models import Side
from engine.timeframes import timeframe_ms
from persistence.errors import StoreFileError
from persistence.storefile import open_readonly, store_error

#: The version of the report's JSON form (docs/report-schema.md).
SCHEMA_VERSION = 1

#: The name of the overall row of the human edge.
OVERALL = "all agents"

_ZERO = Decimal(0)


class ReportError(Exception):
    """The report cannot be built: the store cannot be read or the session is not in it."""


# ---------------------------------------------------------------- the records


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Which session this is; only these named fields of its settings."""

    ref: str
    """How ``cma report`` names it: ``N`` or ``STEM:N`` (a backtest's store)."""
    store: str
    """The store file's name (not its whole path)."""
    session_id: int
    kind: str
    """paper, live or backtest (``sessions.mode``)."""
    feed: str
    symbols: tuple[str, ...]
    timeframe: str
    agents: tuple[str, ...]
    policy: str
    started_at: int
    """Wall-clock ms when the session began."""
    ended_at: int | None
    first_ts: int | None
    """Market time of its first equity point (ms)."""
    last_ts: int | None


@dataclass(frozen=True, slots=True)
class Vote:
    agent: str
    direction: str
    strength: float
    rationale: str


@dataclass(frozen=True, slots=True)
class Trade:
    """One closed position, with the proposal and the votes behind it."""

    position_id: int
    symbol: str
    side: str
    qty: Decimal | None
    """What the entry fills bought or sold (None when no entry fill is recorded)."""
    entry_ts: int
    exit_ts: int
    entry_price: Decimal
    exit_price: Decimal
    close_reason: str
    realized_pnl: Decimal
    """Before fees."""
    fees: Decimal
    net_pnl: Decimal
    ret: float | None
    """Net pnl over the entry's cost: a fraction of entry (None when that cost is unknown)."""
    proposal_id: str | None
    proposal_status: str | None
    confidence: float | None
    agents: tuple[str, ...]
    """The agents that voted the trade's side."""
    votes: tuple[Vote, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """A proposal and what was decided about it (action None: still pending)."""

    proposal_id: str
    symbol: str
    side: str
    confidence: float
    created_at: int
    status: str
    action: str | None
    decided_by: str | None
    latency_ms: int | None
    decided_at: int | None
    reason: str | None
    size: Decimal | None
    resized: bool
    risk_note: str


@dataclass(frozen=True, slots=True)
class Denial:
    """An order the risk engine denied, with its reason."""

    ts: int
    client_order_id: str
    proposal_id: str | None
    symbol: str
    side: str
    qty: Decimal
    purpose: str
    reason: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """One proposal's result for the human edge: a real trade or a counterfactual."""

    status: str
    """approved, rejected or expired."""
    agents: tuple[str, ...]
    ret: float
    """A fraction of entry."""
    net_pnl: Decimal | None
    """Money, for approved trades only (counterfactuals have none)."""


@dataclass(frozen=True, slots=True)
class EdgeFigure:
    """What one group of outcomes earned, with the count behind it."""

    count: int
    wins: int
    mean_return: float | None
    """Mean return per proposal, a fraction of entry (None without outcomes)."""
    total_return: float
    """Sum of the returns (fractions of entry)."""
    net_pnl: Decimal | None
    """Sum of the net pnl (approved only)."""


@dataclass(frozen=True, slots=True)
class EdgeRow:
    """One agent's (or all agents') approved, rejected and expired figures."""

    name: str
    approved: EdgeFigure
    rejected: EdgeFigure
    expired: EdgeFigure


@dataclass(frozen=True, slots=True)
class HumanEdge:
    """What approving earned beside what declining would have earned."""

    overall: EdgeRow
    by_agent: tuple[EdgeRow, ...]
    approved_open: int
    """Approved proposals whose position is still open."""
    approved_no_trade: int
    """Approved proposals that opened no position (the risk engine denied the order, or
    it was never filled)."""
    declined_open: int
    """Rejected or expired proposals with no counterfactual outcome yet (still followed
    on paper, or dropped)."""
    declined_by: dict[str, int]
    """Declined proposals by who decided (human, policy, engine)."""


@dataclass(frozen=True, slots=True)
class EquityPoint:
    ts: int
    equity: Decimal
    drawdown: float


@dataclass(frozen=True, slots=True)
class Report:
    """Everything a report shows, in the order it shows it."""

    schema_version: int
    generated_at: int
    session: SessionInfo
    results: Results | None
    """None when the session has no equity point to compute them from."""
    results_note: str
    """Where the results come from, or why there are none."""
    edge: HumanEdge
    trades: tuple[Trade, ...]
    open_positions: int
    decisions: tuple[Decision, ...]
    denials: tuple[Denial, ...]
    equity: tuple[EquityPoint, ...]


# ---------------------------------------------------------------- the human edge


def _figure(outcomes: Sequence[Outcome], money: bool) -> EdgeFigure:
    rets = [o.ret for o in outcomes]
    total = math.fsum(rets)
    pnl: Decimal | None = None
    if money:
        pnl = sum((o.net_pnl for o in outcomes if o.net_pnl is not None), _ZERO)
    return EdgeFigure(
        count=len(rets),
        wins=sum(1 for r in rets if r > 0),
        mean_return=total / len(rets) if rets else None,
        total_return=total,
        net_pnl=pnl,
    )


def _row(name: str, outcomes: Sequence[Outcome]) -> EdgeRow:
    return EdgeRow(
        name=name,
        approved=_figure([o for o in outcomes if o.status == "approved"], money=True),
        rejected=_figure([o for o in outcomes if o.status == "rejected"], money=False),
        expired=_figure([o for o in outcomes if o.status == "expired"], money=False),
    )


def human_edge(
    outcomes: Sequence[Outcome],
    *,
    approved_open: int = 0,
    approved_no_trade: int = 0,
    declined_open: int = 0,
    declined_by: dict[str, int] | None = None,
) -> HumanEdge:
    """The human edge of ``outcomes``: overall, and per agent (each outcome counts in
    full for every agent that voted its side, so the agents' rows can add up to more
    than the overall when agents agreed; one no agent voted is under ``(none)``)."""
    per_agent: dict[str, list[Outcome]] = {}
    for o in outcomes:
        for name in dict.fromkeys(o.agents) or (UNATTRIBUTED,):
            per_agent.setdefault(name, []).append(o)
    return HumanEdge(
        overall=_row(OVERALL, outcomes),
        by_agent=tuple(_row(name, per_agent[name]) for name in sorted(per_agent)),
        approved_open=approved_open,
        approved_no_trade=approved_no_trade,
        declined_open=declined_open,
        declined_by=dict(sorted((declined_by or {}).items())),
    )


# ---------------------------------------------------------------- reading the store


def _dec(text: Any) -> Decimal:
    try:
        return Decimal(str(text))
    except InvalidOperation:
        raise ReportError(f"the store holds a malformed amount {text!r}") from None


def _opt_dec(text: Any) -> Decimal | None:
    return None if text is None else _dec(text)


def _votes(text: str) -> tuple[Vote, ...]:
    try:
        data = json.loads(text)
    except ValueError:
        return ()
    votes: list[Vote] = []
    for v in data if isinstance(data, list) else ():
        if isinstance(v, dict):
            votes.append(
                Vote(
                    agent=str(v.get("agent", "")),
                    direction=str(v.get("direction", "")),
                    strength=float(v.get("strength", 0.0)),
                    rationale=str(v.get("rationale", "")),
                )
            )
    return tuple(votes)


def _names(text: str) -> tuple[str, ...]:
    try:
        data = json.loads(text)
    except ValueError:
        return ()
    return tuple(str(x) for x in data) if isinstance(data, list) else ()


def safe_config(text: str) -> tuple[tuple[str, ...], str, tuple[str, ...], str]:
    """Only symbols, timeframe, agents and policy, read by name from ``config_json``."""
    try:
        data = json.loads(text)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}

    def section(name: str) -> dict[str, Any]:
        value = data.get(name)
        return value if isinstance(value, dict) else {}

    feed, agents, approval = section("feed"), section("agents"), section("approval")

    def strings(value: Any) -> tuple[str, ...]:
        return tuple(str(x) for x in value) if isinstance(value, list) else ()

    symbols = strings(feed.get("symbols"))
    timeframe = str(feed.get("timeframe", "1m"))
    names = strings(agents.get("enabled")) + tuple(
        # A user agent is named by its class, not by where its module lives.
        str(p).rsplit(":", 1)[-1]
        for p in strings(agents.get("user"))
    )
    policy = str(approval.get("policy", ""))
    return symbols, timeframe, names, policy


def _session_row(conn: sqlite3.Connection, session_id: int) -> sqlite3.Row:
    row = conn.execute(
        "SELECT id, started_at, ended_at, mode, feed, config_json FROM sessions WHERE id = ?",
        (session_id,),
    ).fetchone()
    if row is None:
        raise ReportError(f"no session {session_id} in this store")
    return row  # type: ignore[no-any-return]


def _equity(conn: sqlite3.Connection, session_id: int) -> tuple[EquityPoint, ...]:
    last: dict[int, EquityPoint] = {}
    for ts, equity, dd in conn.execute(
        "SELECT ts, equity, drawdown FROM equity WHERE session_id = ? ORDER BY ts, rowid",
        (session_id,),
    ):
        last[int(ts)] = EquityPoint(int(ts), _dec(equity), float(dd))
    return tuple(last.values())


_TRADES_SQL = """
SELECT p.id, p.symbol, p.side, p.entry_price, p.opened_at, p.closed_at, p.exit_price,
       p.close_reason, p.realized_pnl, p.fees, p.proposal_id,
       pr.status, pr.confidence, pr.votes_json
FROM positions p LEFT JOIN proposals pr ON pr.id = p.proposal_id
WHERE p.status = 'closed'
  AND (pr.session_id = :sid OR (p.proposal_id IS NULL AND p.opened_at BETWEEN :a AND :b))
ORDER BY p.closed_at, p.id
"""

_OPEN_SQL = """
SELECT COUNT(*) FROM positions p LEFT JOIN proposals pr ON pr.id = p.proposal_id
WHERE p.status = 'open'
  AND (pr.session_id = :sid OR (p.proposal_id IS NULL AND p.opened_at BETWEEN :a AND :b))
"""

_ENTRY_FILLS_SQL = """
SELECT oi.proposal_id, f.symbol, f.qty, f.price, f.ts
FROM fills f JOIN order_intents oi ON oi.client_order_id = f.client_order_id
JOIN proposals pr ON pr.id = oi.proposal_id
WHERE oi.purpose = 'entry' AND pr.session_id = ?
ORDER BY f.ts, f.id
"""

#: Each position's entry fills: proposal id -> (quantity, cost), in fill order.
Entries = dict[str, tuple[Decimal, Decimal]]


def _entries(conn: sqlite3.Connection, session_id: int) -> dict[int, Entries]:
    """The entry fills of the session's proposals, by the position they went into.

    A fill belongs to the position of its symbol opened last at or before it (a
    symbol has one position open at a time), so a proposal that added to a position
    opened by another counts in that position, with its own quantity and cost.
    """
    opened: dict[str, tuple[list[int], list[int]]] = {}
    for pos_id, symbol, at in conn.execute(
        "SELECT id, symbol, opened_at FROM positions ORDER BY symbol, opened_at, id"
    ):
        times, ids = opened.setdefault(str(symbol), ([], []))
        times.append(int(at))
        ids.append(int(pos_id))
    out: dict[int, Entries] = {}
    for pid, symbol, qty, price, ts in conn.execute(_ENTRY_FILLS_SQL, (session_id,)):
        times, ids = opened.get(str(symbol), ([], []))
        k = bisect_right(times, int(ts)) - 1
        if k < 0:
            continue
        q, p = _dec(qty), _dec(price)
        fills = out.setdefault(ids[k], {})
        had_q, had_c = fills.get(str(pid), (_ZERO, _ZERO))
        fills[str(pid)] = (had_q + q, had_c + q * p)
    return out


def _trades(
    conn: sqlite3.Connection, session_id: int, span: tuple[int, int]
) -> tuple[tuple[Trade, ...], dict[int, Entries]]:
    """The session's closed trades, and each one's entry fills by proposal."""
    entries = _entries(conn, session_id)
    trades: list[Trade] = []
    params = {"sid": session_id, "a": span[0], "b": span[1]}
    for r in conn.execute(_TRADES_SQL, params):
        (pos_id, symbol, side, entry_price, opened, closed, exit_price, reason, realized, fees,
         pid, status, confidence, votes_json) = r  # fmt: skip
        votes = _votes(votes_json) if votes_json else ()
        realized_d, fees_d = _dec(realized), _dec(fees)
        net = realized_d - fees_d
        fills = entries.get(int(pos_id), {})
        qty = sum((q for q, _ in fills.values()), _ZERO) if fills else None
        cost = sum((c for _, c in fills.values()), _ZERO)
        ret = float(net / cost) if cost else None
        trades.append(
            Trade(
                position_id=int(pos_id),
                symbol=str(symbol),
                side=str(side),
                qty=qty,
                entry_ts=int(opened),
                exit_ts=max(int(closed), int(opened)),
                entry_price=_dec(entry_price),
                exit_price=_dec(exit_price if exit_price is not None else entry_price),
                close_reason=str(reason or ""),
                realized_pnl=realized_d,
                fees=fees_d,
                net_pnl=net,
                ret=ret,
                proposal_id=None if pid is None else str(pid),
                proposal_status=None if status is None else str(status),
                confidence=None if confidence is None else float(confidence),
                agents=tuple(dict.fromkeys(v.agent for v in votes if v.direction == side)),
                votes=votes,
            )
        )
    return tuple(trades), entries


_DECISIONS_SQL = """
SELECT pr.id, pr.symbol, pr.side, pr.confidence, pr.created_at, pr.status, pr.risk_note,
       d.action, d.decided_by, d.latency_ms, d.decided_at, d.reason, d.size, d.resized
FROM proposals pr LEFT JOIN decisions d ON d.proposal_id = pr.id
WHERE pr.session_id = ?
ORDER BY pr.created_at, pr.rowid
"""


def _decisions(conn: sqlite3.Connection, session_id: int) -> tuple[Decision, ...]:
    out: list[Decision] = []
    for r in conn.execute(_DECISIONS_SQL, (session_id,)):
        (pid, symbol, side, conf, created, status, note, action, by, latency, decided_at,
         reason, size, resized) = r  # fmt: skip
        out.append(
            Decision(
                proposal_id=str(pid),
                symbol=str(symbol),
                side=str(side),
                confidence=float(conf),
                created_at=int(created),
                status=str(status),
                action=None if action is None else str(action),
                decided_by=None if by is None else str(by),
                latency_ms=None if latency is None else int(latency),
                decided_at=None if decided_at is None else int(decided_at),
                reason=None if reason is None else str(reason),
                size=_opt_dec(size),
                resized=bool(resized),
                risk_note=str(note or ""),
            )
        )
    return tuple(out)


_DENIALS_SQL = """
SELECT oi.created_at, oi.client_order_id, oi.proposal_id, oi.symbol, oi.side, oi.qty,
       oi.purpose, oi.reason
FROM order_intents oi LEFT JOIN proposals pr ON pr.id = oi.proposal_id
WHERE oi.status = 'denied'
  AND (pr.session_id = :sid OR (oi.proposal_id IS NULL AND oi.created_at BETWEEN :a AND :b))
ORDER BY oi.created_at, oi.rowid
"""


def _denials(
    conn: sqlite3.Connection, session_id: int, span: tuple[int, int]
) -> tuple[Denial, ...]:
    params = {"sid": session_id, "a": span[0], "b": span[1]}
    return tuple(
        Denial(
            ts=int(ts),
            client_order_id=str(coid),
            proposal_id=None if pid is None else str(pid),
            symbol=str(symbol),
            side=str(side),
            qty=_dec(qty),
            purpose=str(purpose),
            reason=str(reason or ""),
        )
        for ts, coid, pid, symbol, side, qty, purpose, reason in conn.execute(_DENIALS_SQL, params)
    )


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


_CF_SQL = """
SELECT pr.status, c.agents_json, c.ret
FROM counterfactuals c JOIN proposals pr ON pr.id = c.proposal_id
WHERE pr.session_id = ? AND pr.status IN ('rejected', 'expired')
ORDER BY c.closed_at, c.proposal_id
"""


def _edge(
    conn: sqlite3.Connection,
    session_id: int,
    trades: Sequence[Trade],
    entries: dict[int, Entries],
    decisions: Sequence[Decision],
) -> HumanEdge:
    """Each approved proposal whose entry filled into a closed trade earned that trade's
    return, and the share of its net pnl that its entry's cost was of the trade's."""
    approved = {d.proposal_id for d in decisions if d.status == "approved"}
    # The agents behind each approved proposal in a trade: the trade's own proposal's are
    # on the trade; only those that added to a position opened by another are read here.
    agents_of = {t.proposal_id: t.agents for t in trades if t.proposal_id in approved}
    added = {pid for fills in entries.values() for pid in fills if pid in approved}
    added -= agents_of.keys()
    if added:
        for pid, side, votes_json in conn.execute(
            "SELECT id, side, votes_json FROM proposals WHERE session_id = ?"
            " AND status = 'approved'",
            (session_id,),
        ):
            if pid in added:
                agents_of[str(pid)] = tuple(
                    dict.fromkeys(v.agent for v in _votes(votes_json) if v.direction == side)
                )
    outcomes: list[Outcome] = []
    closed_approved: set[str] = set()
    for t in trades:
        fills = [(pid, cost) for pid, (_, cost) in entries.get(t.position_id, {}).items()]
        total = sum((cost for _, cost in fills), _ZERO)
        if t.ret is None or not total:
            continue
        mine = [(pid, cost) for pid, cost in fills if pid in agents_of]
        given = _ZERO
        for k, (pid, cost) in enumerate(mine):
            # The last share is what is left, so the shares add up to the net pnl exactly
            # when every entry was approved.
            last = k == len(mine) - 1 and len(mine) == len(fills)
            share = t.net_pnl - given if last else t.net_pnl * cost / total
            given += share
            closed_approved.add(pid)
            outcomes.append(Outcome("approved", agents_of[pid], t.ret, share))
    declined = [d for d in decisions if d.status in ("rejected", "expired")]
    followed = 0
    if _has_table(conn, "counterfactuals"):
        for status, agents_json, ret in conn.execute(_CF_SQL, (session_id,)):
            outcomes.append(Outcome(str(status), _names(agents_json), float(ret), None))
            followed += 1
    by: dict[str, int] = {}
    for d in declined:
        key = d.decided_by or "unknown"
        by[key] = by.get(key, 0) + 1
    traded = {pid for fills in entries.values() for pid in fills}
    return human_edge(
        outcomes,
        approved_open=len((traded & approved) - closed_approved),
        approved_no_trade=len(approved - traded),
        declined_open=max(len(declined) - followed, 0),
        declined_by=by,
    )


def _closed_trades(trades: Iterable[Trade]) -> list[ClosedTrade]:
    return [
        ClosedTrade(
            symbol=t.symbol,
            side=Side(t.side),
            qty=t.qty if t.qty else Decimal(1),  # only checked, never used by the results
            entry_ts=t.entry_ts,
            exit_ts=t.exit_ts,
            entry_price=t.entry_price,
            exit_price=t.exit_price,
            realized_pnl=t.realized_pnl,
            fees=t.fees,
            agents=t.agents,
        )
        for t in trades
    ]


def _results(
    equity: Sequence[EquityPoint], trades: Sequence[Trade], timeframe: str
) -> tuple[Results | None, str]:
    """The results from the stored equity points. A backtest stores about one point
    every 200 candles (every candle with ``--audit``), so the ratios are annualised by
    the points' own spacing (their median interval), not the candles' timeframe."""
    if not equity:
        return None, "no equity point was recorded in this session"
    ts = [p.ts for p in equity]
    try:
        period = timeframe_ms(timeframe)
    except ValueError:
        period = 60_000
    if len(ts) > 1:
        gaps = sorted(b - a for a, b in pairwise(ts))
        period = max(gaps[len(gaps) // 2], 1)
    try:
        results = compute_results(
            ts, [p.equity for p in equity], _closed_trades(trades), timeframe=period
        )
    except ValueError as exc:
        return None, f"the results cannot be computed: {exc}"
    note = (
        f"from {len(ts):,} stored equity points, one about every {format_duration(period)}"
        " (volatility, Sharpe, Sortino and drawdown are measured on them)"
    )
    return results, note


def read_report(
    conn: sqlite3.Connection, session_id: int, *, ref: str, store_name: str, now_ms: int
) -> Report:
    """The report of ``session_id`` from an open connection (one read transaction)."""
    conn.execute("BEGIN")
    try:
        row = _session_row(conn, session_id)
        symbols, timeframe, agents, policy = safe_config(str(row["config_json"]))
        equity = _equity(conn, session_id)
        if equity:
            span = (equity[0].ts, equity[-1].ts)
        else:
            span = (int(row["started_at"]), int(row["ended_at"] or now_ms))
        trades, entries = _trades(conn, session_id, span)
        decisions = _decisions(conn, session_id)
        edge = _edge(conn, session_id, trades, entries, decisions)
        denials = _denials(conn, session_id, span)
        open_positions = int(
            conn.execute(_OPEN_SQL, {"sid": session_id, "a": span[0], "b": span[1]}).fetchone()[0]
        )
    finally:
        conn.execute("COMMIT")
    results, note = _results(equity, trades, timeframe)
    info = SessionInfo(
        ref=ref,
        store=store_name,
        session_id=session_id,
        kind=str(row["mode"]),
        feed=str(row["feed"]),
        symbols=symbols,
        timeframe=timeframe,
        agents=agents,
        policy=policy,
        started_at=int(row["started_at"]),
        ended_at=None if row["ended_at"] is None else int(row["ended_at"]),
        first_ts=equity[0].ts if equity else None,
        last_ts=equity[-1].ts if equity else None,
    )
    return Report(
        schema_version=SCHEMA_VERSION,
        generated_at=now_ms,
        session=info,
        results=results,
        results_note=note,
        edge=edge,
        trades=trades,
        open_positions=open_positions,
        decisions=decisions,
        denials=denials,
        equity=equity,
    )


def build_report(
    store_path: Path | str, session_id: int, *, ref: str | None = None, now_ms: int | None = None
) -> Report:
    """The report of session ``session_id`` of the store at ``store_path``.

    Reads through the read-only opening, so the store may be open by a running
    console meanwhile. Safe from a worker thread (no asyncio). Raises
    :class:`ReportError` when the session is not there or the store cannot be read.
    """
    import time

    path = Path(store_path)
    if not path.is_file():
        raise ReportError(f"no store at {path}")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        with open_readonly(path) as conn:
            conn.row_factory = sqlite3.Row
            return read_report(
                conn, session_id, ref=ref or str(session_id), store_name=path.name, now_ms=now
            )
    except sqlite3.Error as exc:
        raise ReportError(str(store_error(path, exc))) from None
    except StoreFileError as exc:
        raise ReportError(str(exc)) from None
