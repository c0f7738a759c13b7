"""The crash-only store: one writer, units of work, group-committed data.

Money moves (decision, intent, fill, position, cash) commit durably, one unit
of work per transaction, with ``synchronous=FULL``. High-rate data (candles,
equity points) is buffered and group-committed by the same writer: up to
1,000 rows or 50 ms a transaction. Each transaction is one hop to the writer
thread: aiosqlite costs about 50 µs a call, so nothing awaits one ``execute``
per row. A failed group commit keeps its rows for the next one (at most
:data:`MAX_HELD_ROWS`), logs its traceback and reports a warning through the
callback the engine sets (:meth:`Store.set_reporter`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from engine import observe
from engine.events import (
    DecisionMade,
    EngineEvent,
    EngineMessage,
    EquityUpdated,
    OrderDenied,
    OrderFilled,
    OrderSubmitted,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    ProposalCreated,
    ProposalMerged,
    TradingStateChanged,
)
from engine.models import (
    Candle,
    Decision,
    DecisionAction,
    Fill,
    OrderIntent,
    OrderSide,
    Position,
    Proposal,
    Side,
)
from engine.ports import (
    BATCH_TS,
    AgentRecordRow,
    CounterfactualRow,
    OpenIntent,
    RecoveredState,
    StorePort,
)
from engine.ports import UnitOfWork as WorkPort
from engine.timeframes import DAY_MS
from persistence.aio import Writer
from persistence.connection import MEMORY, WriterLock, connect_writer
from persistence.errors import StoreFileError
from persistence.payload import event_payload, vote_of, votes_json
from persistence.storefile import inspect_store

T = TypeVar("T")
E = TypeVar("E", bound=EngineEvent)
Op = tuple[str, tuple[Any, ...]]

BATCH_ROWS = 1000
BATCH_SECONDS = 0.05
#: Rows a failing group commit holds for its retry, at most (about 30 MB); past it
#: the oldest candles go first (a feed can fetch them again), then the oldest equity
#: points, and the warning says how many went.
MAX_HELD_ROWS = 100_000
#: The longest wait between retries of a failing group commit.
MAX_RETRY_SECONDS = 5.0


def dec(value: Decimal) -> str:
    """Decimal to TEXT without exponent notation."""
    return format(value, "f")


log = logging.getLogger("cma.store")

_INSERT_EVENT = "INSERT INTO events (ts, session_id, kind, payload) VALUES (?, ?, ?, ?)"
_STATUS_OF = {
    DecisionAction.APPROVE: "approved",
    DecisionAction.REJECT: "rejected",
    DecisionAction.EXPIRE: "expired",
}


#: Event kinds whose every field is also in a table row (see ``UnitOfWork(log=False)``).
_PROJECTED = frozenset(
    {
        "ProposalCreated",
        "DecisionMade",
        "OrderSubmitted",
        "OrderFilled",
        "PositionOpened",
        "PositionChanged",
        "PositionClosed",
    }
)


class UnitOfWork:
    """Collects the statements of one state change; see :mod:`engine.ports`."""

    __slots__ = ("_log", "_session_id", "ops")

    def __init__(self, session_id: int | None, *, log: bool = True) -> None:
        self._session_id = session_id
        #: False: the events whose every field is in a table (proposals, decisions,
        #: orders, fills, positions) go to their tables only, not also to the event
        #: log. A backtest without its audit trail stores them so.
        self._log = log
        self.ops: list[Op] = []

    def __len__(self) -> int:
        return len(self.ops)

    def event(self, event: E) -> E:
        """Append ``event`` to the log; return it so the caller emits what was stored."""
        if not self._log and event.kind in _PROJECTED:
            return event
        self.ops.append(
            (_INSERT_EVENT, (event.ts, self._session_id, event.kind, event_payload(event)))
        )
        return event

    def proposal_created(self, proposal: Proposal, ts: int) -> ProposalCreated:
        p = proposal
        votes = votes_json(p.votes)
        self.ops.append(
            (
                "INSERT INTO proposals (id, session_id, symbol, side, entry, stop, take_profit,"
                " confidence, size, created_at, expires_at, merged, votes_json, risk_note)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    p.id, self._session_id, p.symbol, p.side.value, dec(p.entry), dec(p.stop),
                    dec(p.take_profit), p.confidence, dec(p.size), p.created_at, p.expires_at,
                    p.merged, votes, p.risk_note,
                ),
            )
        )  # fmt: skip
        return self.event(ProposalCreated(ts=ts, proposal=proposal))

    def proposal_merged(self, event: ProposalMerged) -> ProposalMerged:
        self.ops.append(
            (
                "UPDATE proposals SET merged = ?, confidence = ? WHERE id = ?",
                (event.merged, event.confidence, event.proposal_id),
            )
        )
        return self.event(event)

    def decision_made(
        self, decision: Decision, symbol: str, side: Side, intent: OrderIntent | None
    ) -> DecisionMade:
        d = decision
        self.ops.append(
            (
                "INSERT INTO decisions (proposal_id, action, reason, size, resized, latency_ms,"
                " decided_at, decided_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    d.proposal_id, d.action.value, d.reason,
                    None if d.size is None else dec(d.size), int(d.resized), d.latency_ms,
                    d.decided_at, d.decided_by,
                ),
            )
        )  # fmt: skip
        self.ops.append(
            (
                "UPDATE proposals SET status = ? WHERE id = ? AND status = 'pending'",
                (_STATUS_OF[d.action], d.proposal_id),
            )
        )
        # The intent finds its decision by proposal id inside the same transaction.
        if intent is not None:
            self._intent(intent, decision_sql="(SELECT id FROM decisions WHERE proposal_id = ?)")
        return self.event(DecisionMade(ts=d.decided_at, decision=d, symbol=symbol, side=side))

    def _intent(self, intent: OrderIntent, decision_sql: str | None = None) -> None:
        i = intent
        decision_value = decision_sql if decision_sql is not None else "NULL"
        params: tuple[Any, ...] = (
            i.client_order_id,
            *((i.proposal_id,) if decision_sql is not None else ()),
            i.proposal_id, i.symbol, i.side.value, dec(i.qty), i.purpose, i.reason, i.created_at,
        )  # fmt: skip
        self.ops.append(
            (
                "INSERT INTO order_intents (client_order_id, decision_id, proposal_id, symbol,"
                f" side, qty, purpose, reason, created_at) VALUES (?, {decision_value}, ?, ?,"
                " ?, ?, ?, ?, ?)",
                params,
            )
        )

    def intent_created(self, intent: OrderIntent) -> None:
        self._intent(intent)

    def order_denied(self, event: OrderDenied) -> OrderDenied:
        if event.client_order_id is not None:
            self.ops.append(
                (
                    "UPDATE order_intents SET status = 'denied', reason = ?"
                    " WHERE client_order_id = ?",
                    (event.reason, event.client_order_id),
                )
            )
        return self.event(event)

    def order_submitted(self, intent: OrderIntent, ts: int) -> OrderSubmitted:
        i = intent
        self.ops.append(
            (
                "INSERT INTO orders (client_order_id, symbol, side, qty, status, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, 'open', ?, ?)",
                (i.client_order_id, i.symbol, i.side.value, dec(i.qty), ts, ts),
            )
        )
        self.ops.append(
            (
                "UPDATE order_intents SET status = 'sent' WHERE client_order_id = ?",
                (i.client_order_id,),
            )
        )
        return self.event(OrderSubmitted(ts=ts, intent=intent))

    def intent_cancelled(self, client_order_id: str, ts: int, reason: str) -> EngineMessage:
        self.ops.append(
            (
                "UPDATE order_intents SET status = 'cancelled', reason = ?"
                " WHERE client_order_id = ?",
                (reason, client_order_id),
            )
        )
        self.ops.append(
            (
                "UPDATE orders SET status = 'cancelled', updated_at = ? WHERE client_order_id = ?",
                (ts, client_order_id),
            )
        )
        return self.event(
            EngineMessage(
                ts=ts, level="warning", text=f"order {client_order_id} cancelled: {reason}"
            )
        )

    def order_filled(self, fill: Fill, cash: Decimal) -> OrderFilled:
        f = fill
        self.ops.append(
            (
                "INSERT INTO fills (client_order_id, symbol, side, qty, price, fee, realized_pnl,"
                " ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    f.client_order_id, f.symbol, f.side.value, dec(f.qty), dec(f.price), dec(f.fee),
                    dec(f.realized_pnl), f.ts,
                ),
            )
        )  # fmt: skip
        self.ops.append(
            (
                "UPDATE orders SET status = 'filled', filled_qty = qty, updated_at = ?"
                " WHERE client_order_id = ?",
                (f.ts, f.client_order_id),
            )
        )
        self.ops.append(
            (
                "UPDATE order_intents SET status = 'filled' WHERE client_order_id = ?",
                (f.client_order_id,),
            )
        )
        self.ops.append(
            (
                "UPDATE balances SET cash = ?, updated_at = ?",
                (dec(cash), f.ts),
            )
        )
        return self.event(OrderFilled(ts=f.ts, fill=f))

    def position_opened(self, position: Position, ts: int) -> PositionOpened:
        p = position
        self.ops.append(
            (
                "INSERT INTO positions (symbol, side, qty, entry_price, cost_basis, stop,"
                " take_profit, opened_at, realized_pnl, fees, proposal_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    p.symbol, p.side.value, dec(p.qty), dec(p.entry_price), dec(p.cost_basis),
                    None if p.stop is None else dec(p.stop),
                    None if p.take_profit is None else dec(p.take_profit),
                    p.opened_at, dec(p.realized_pnl), dec(p.fees), p.proposal_id,
                ),
            )
        )  # fmt: skip
        return self.event(PositionOpened(ts=ts, position=position))

    def position_changed(self, position: Position, ts: int) -> PositionChanged:
        p = position
        self.ops.append(
            (
                "UPDATE positions SET qty = ?, entry_price = ?, cost_basis = ?, stop = ?,"
                " take_profit = ?, realized_pnl = ?, fees = ?"
                " WHERE symbol = ? AND status = 'open'",
                (
                    dec(p.qty), dec(p.entry_price), dec(p.cost_basis),
                    None if p.stop is None else dec(p.stop),
                    None if p.take_profit is None else dec(p.take_profit),
                    dec(p.realized_pnl), dec(p.fees), p.symbol,
                ),
            )
        )  # fmt: skip
        return self.event(PositionChanged(ts=ts, position=position))

    def position_closed(self, event: PositionClosed) -> PositionClosed:
        e = event
        self.ops.append(
            (
                "UPDATE positions SET qty = '0', cost_basis = '0', closed_at = ?, exit_price = ?,"
                " close_reason = ?, realized_pnl = ?, fees = ?, status = 'closed'"
                " WHERE symbol = ? AND status = 'open'",
                (e.ts, dec(e.exit_price), e.reason, dec(e.realized_pnl), dec(e.fees), e.symbol),
            )
        )
        return self.event(event)

    def trading_state_changed(self, event: TradingStateChanged) -> TradingStateChanged:
        self.set_state("trading_state", event.new.value)
        return self.event(event)

    def set_state(self, key: str, value: str) -> None:
        self.ops.append(
            (
                "INSERT INTO engine_state (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        )

    def agent_records(self, rows: Sequence[AgentRecordRow]) -> None:
        for r in rows:
            self.ops.append(
                (
                    "INSERT OR REPLACE INTO agent_records (agent, symbol, trades, wins, sum_win,"
                    " sum_loss, cf_trades, cf_wins, cf_sum_win, cf_sum_loss)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.agent, r.symbol, r.trades, r.wins, r.sum_win, r.sum_loss,
                        r.cf_trades, r.cf_wins, r.cf_sum_win, r.cf_sum_loss,
                    ),
                )
            )  # fmt: skip

    def counterfactuals(self, rows: Sequence[CounterfactualRow]) -> None:
        for r in rows:
            self.ops.append(
                (
                    "INSERT INTO counterfactuals (proposal_id, symbol, side, agents_json, entry,"
                    " exit_price, ret, exit_reason, closed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.proposal_id, r.symbol, r.side, _agents_json(r.agents), r.entry,
                        r.exit_price, r.ret, r.exit_reason, r.closed_at,
                    ),
                )
            )  # fmt: skip


#: ``agents_json`` of the groups of agents met lately (a few groups make every row).
_AGENTS_JSON: dict[tuple[str, ...], str] = {}
_AGENTS_JSON_MAX = 256


def _agents_json(agents: tuple[str, ...]) -> str:
    text = _AGENTS_JSON.get(agents)
    if text is None:
        if len(_AGENTS_JSON) >= _AGENTS_JSON_MAX:
            _AGENTS_JSON.clear()
        text = _AGENTS_JSON[agents] = json.dumps(list(agents))
    return text


def _apply_ops(conn: sqlite3.Connection, ops: Sequence[Op]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in ops:
            conn.execute(sql, params)
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already: a COMMIT that fails
    on a full disk (SQLITE_FULL) may have rolled it back, and a ROLLBACK then would
    raise "no transaction is active" in place of the error that says what happened."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _apply_batch(
    conn: sqlite3.Connection,
    equity_rows: Sequence[tuple[Any, ...]],
    candle_rows: Sequence[tuple[Any, ...]],
) -> None:
    # Market data and equity points are not money: a group commit without an
    # fsync is enough, because the next money commit fsyncs the WAL behind it.
    conn.execute("PRAGMA synchronous = NORMAL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if equity_rows:
                conn.executemany(
                    "INSERT INTO equity (ts, session_id, equity, cash, unrealized, drawdown)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(ts, sid, dec(e), dec(c), dec(u), dd) for ts, sid, e, c, u, dd in equity_rows],
                )
            if candle_rows:
                conn.executemany(
                    "INSERT OR REPLACE INTO candles (symbol, timeframe, ts, open, high, low,"
                    " close, volume) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    candle_rows,
                )
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
    finally:
        conn.execute("PRAGMA synchronous = FULL")


class _UnitOfWorkContext:
    __slots__ = ("_store", "_uow")

    def __init__(self, store: Store) -> None:
        self._store = store
        self._uow = UnitOfWork(store.session_id)

    async def __aenter__(self) -> UnitOfWork:
        return self._uow

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self._uow.ops:
            await self._store.run(_apply_ops, self._uow.ops)


class Store:
    """The engine's store on one SQLite file (or ``:memory:`` for backtests).

    Open it with ``await Store.open(path)``; it is the only writer of that file.
    """

    def __init__(self, writer: Writer, path: str, lock: WriterLock | None) -> None:
        self._writer = writer
        self.path = path
        self._lock = lock
        self.session_id: int | None = None
        self._equity: list[tuple[Any, ...]] = []
        self._candles: list[tuple[Any, ...]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self._closed = False
        self._report: Callable[[EngineMessage], None] | None = None
        #: Group commits failed in a row, and the last one's error (for the log).
        self._failures = 0
        self._last_error = ""
        self._dropped = 0
        self.max_held_rows = MAX_HELD_ROWS

    @classmethod
    async def open(cls, path: Path | str, busy_timeout_ms: int = 5000) -> Store:
        """Open (create, migrate) the store at ``path`` as its one writer.

        Raises a :class:`~persistence.errors.StoreFileError` (``.code`` 1 or 2) for a
        path that is not a usable cma store; such a file is refused before its lock
        file is created, and left exactly as it was.
        """
        lock = None
        if str(path) != MEMORY:
            p = Path(path)
            # The cheap half of the inspection (no quick_check): the command line runs
            # the full one before any UI starts.
            inspect_store(p, deep=False)
            try:
                if not p.parent.exists():
                    p.parent.mkdir(parents=True, mode=0o700)
            except OSError as exc:
                raise StoreFileError(
                    f"cannot create the store's directory {p.parent}: {exc.strerror}", 2
                ) from None
            lock = WriterLock(path)
            lock.acquire()
        try:
            writer = await Writer.open(lambda: connect_writer(path, busy_timeout_ms))
        except BaseException:
            if lock is not None:
                lock.release(remove_if_created=True)
            raise
        return cls(writer, str(path), lock)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(sqlite3_connection, *args)`` on the writer thread in one hop."""
        return await self._writer.run(fn, *args)

    def unit_of_work(self) -> _UnitOfWorkContext:
        """``async with store.unit_of_work() as uow:`` — one transaction."""
        if self._closed:
            raise RuntimeError("store is closed")
        return _UnitOfWorkContext(self)

    def begin_work(self, *, log: bool = True) -> UnitOfWork:
        """A fresh unit of work to fill synchronously; :meth:`commit` stores it.
        ``log=False`` leaves out of the event log what the tables hold (see
        :class:`UnitOfWork`)."""
        if self._closed:
            raise RuntimeError("store is closed")
        return UnitOfWork(self.session_id, log=log)

    async def commit(self, work: WorkPort, *more: WorkPort) -> None:
        """Store ``work`` and ``more`` (from :meth:`begin_work`), in order, as ONE
        transaction; nothing to store costs nothing."""
        ops: list[Op] = []
        for w in (work, *more):
            if not isinstance(w, UnitOfWork):
                raise TypeError(f"not a unit of work of this store: {type(w).__name__}")
            ops += w.ops
        if not ops:
            return
        observer = observe.current()
        began = time.perf_counter()
        try:
            await self.run(_apply_ops, ops)
        except BaseException:
            observer.store_commit("work", time.perf_counter() - began, 1 + len(more), False)
            raise
        observer.store_commit("work", time.perf_counter() - began, 1 + len(more), True)

    async def begin_session(self, mode: str, feed: str, config_json: str, ts: int) -> int:
        def _begin(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO sessions (started_at, mode, feed, config_json) VALUES (?, ?, ?, ?)",
                (ts, mode, feed, config_json),
            )
            return int(cur.lastrowid or 0)

        self.session_id = await self.run(_begin)
        return self.session_id

    async def end_session(self, ts: int) -> None:
        if self.session_id is None:
            return
        sid = self.session_id

        def _end(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE sessions SET ended_at = ? WHERE id = ?", (ts, sid))

        await self.run(_end)

    async def init_balance(self, currency: str, cash: Decimal, ts: int) -> None:
        """Create the cash balance once; a later call with a balance present is a no-op."""

        def _init(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO balances (currency, cash, initial_cash, updated_at)"
                " VALUES (?, ?, ?, ?)",
                (currency, dec(cash), dec(cash), ts),
            )

        await self.run(_init)

    # --- group-committed data ---------------------------------------------------

    def record_equity(self, event: EquityUpdated) -> None:
        # One tuple append per candle: the Decimals become TEXT on the writer thread.
        e = event
        self._equity.append((e.ts, self.session_id, e.equity, e.cash, e.unrealized, e.drawdown))
        self._kick()

    def record_candles(self, timeframe: str, candles: Sequence[Candle]) -> None:
        self._candles.extend(
            (c.symbol, timeframe, c.ts, c.open, c.high, c.low, c.close, c.volume) for c in candles
        )
        self._kick()

    def set_reporter(self, report: Callable[[EngineMessage], None]) -> None:
        """Have ``report`` told (on the event loop) when group commits fail and recover."""
        self._report = report

    def _kick(self) -> None:
        # While commits fail, only the backed-off retry timer flushes.
        if not self._failures and len(self._equity) + len(self._candles) >= BATCH_ROWS:
            self._flush_soon()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(BATCH_SECONDS, self._flush_soon)

    def _flush_soon(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closed:
            return
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.ensure_future(self._flush_in_background())

    async def _flush_in_background(self) -> None:
        try:
            await self.flush()
        except Exception:
            # flush() logged and reported it and kept the rows: retry them later.
            if self._timer is None and not self._closed:
                delay = min(BATCH_SECONDS * 2**self._failures, MAX_RETRY_SECONDS)
                self._timer = asyncio.get_running_loop().call_later(delay, self._flush_soon)

    async def flush(self) -> None:
        """Commit every buffered row now.

        When the commit fails, its rows are kept for the next flush (see
        :data:`MAX_HELD_ROWS`), the failure is logged and reported, and the error raised.
        """
        async with self._flush_lock:
            while self._equity or self._candles:
                equity, self._equity = self._equity, []
                candles, self._candles = self._candles, []
                observer = observe.current()
                rows = len(equity) + len(candles)
                began = time.perf_counter()
                try:
                    await self.run(_apply_batch, equity, candles)
                except Exception as exc:
                    observer.store_commit("batch", time.perf_counter() - began, rows, False)
                    # Oldest first, ahead of rows recorded while the commit ran.
                    self._equity[:0] = equity
                    self._candles[:0] = candles
                    self._commit_failed(exc)
                    raise
                observer.store_commit("batch", time.perf_counter() - began, rows, True)
                if self._failures:
                    self._commit_recovered(len(equity) + len(candles), _newest(equity, candles))

    def _commit_failed(self, exc: Exception) -> None:
        self._failures += 1
        held = len(self._equity) + len(self._candles)
        dropped = 0
        if held > self.max_held_rows:
            excess = held - self.max_held_rows
            gone = min(excess, len(self._candles))
            del self._candles[:gone]
            del self._equity[: excess - gone]
            dropped = excess
            self._dropped += dropped
            held = self.max_held_rows
        error = f"{type(exc).__name__}: {exc}"
        # The whole traceback once a streak (and when the error changes), then one line.
        first = self._failures == 1 or error != self._last_error
        self._last_error = error
        log.error(
            "group commit failed (%d in a row): %s; %d rows held for the next one%s",
            self._failures,
            error,
            held,
            f", {dropped} oldest rows dropped" if dropped else "",
            exc_info=first,
        )
        if self._failures == 1 or dropped:
            text = f"store: saving equity points and candles failed ({error}); "
            text += f"{held} rows kept and retried" + (
                f", {dropped} oldest dropped (more than {self.max_held_rows} held)"
                if dropped
                else ""
            )
            self._tell("warning", text, _newest(self._equity, self._candles))

    def _commit_recovered(self, rows: int, ts: int) -> None:
        log.warning(
            "group commit works again after %d failures: %d held rows stored, %d dropped",
            self._failures,
            rows,
            self._dropped,
        )
        self._tell("info", f"store: saving works again; the {rows} rows held back are stored", ts)
        self._failures = 0
        self._last_error = ""
        self._dropped = 0

    def _tell(self, level: Literal["info", "warning"], text: str, ts: int) -> None:
        if self._report is None:
            return
        try:
            self._report(EngineMessage(ts=ts, level=level, text=text))
        except Exception:
            log.exception("the store's reporter failed")

    async def prune(self, now_ms: int, equity_days: int, candle_days: int) -> tuple[int, int]:
        """Delete equity points and cached candles past their retention."""

        def _prune(conn: sqlite3.Connection) -> tuple[int, int]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                e = conn.execute(
                    "DELETE FROM equity WHERE ts < ?", (now_ms - equity_days * DAY_MS,)
                ).rowcount
                c = conn.execute(
                    "DELETE FROM candles WHERE ts < ?", (now_ms - candle_days * DAY_MS,)
                ).rowcount
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            return int(e), int(c)

        return await self.run(_prune)

    # --- recovery ---------------------------------------------------------------

    async def load_state(self) -> RecoveredState:
        """Read back everything the engine needs to go on after a restart."""
        return await self.run(_load_state)

    async def close(self) -> None:
        """Flush buffered rows, checkpoint the WAL and close. Idempotent."""
        if self._closed:
            return
        try:
            await self.flush()
            if self._flush_task is not None:
                await self._flush_task

            def _checkpoint(conn: sqlite3.Connection) -> None:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

            await self.run(_checkpoint)
        finally:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            await self._writer.close()
            if self._lock is not None:
                self._lock.release()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _newest(equity: Sequence[tuple[Any, ...]], candles: Sequence[tuple[Any, ...]]) -> int:
    """The market time of the newest buffered row (equity ts, candle ts), for messages."""
    return int(max([*(r[0] for r in equity[-1:]), *(r[2] for r in candles[-1:]), 0]))


def _opt_dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _load_state(conn: sqlite3.Connection) -> RecoveredState:
    state = RecoveredState()
    row = conn.execute("SELECT cash, initial_cash, currency FROM balances LIMIT 1").fetchone()
    if row is not None:
        state.cash, state.initial_cash, state.currency = Decimal(row[0]), Decimal(row[1]), row[2]
    for r in conn.execute(
        "SELECT symbol, side, qty, entry_price, cost_basis, stop, take_profit, opened_at,"
        " proposal_id, realized_pnl, fees FROM positions WHERE status = 'open' ORDER BY id"
    ):
        state.positions.append(
            Position(
                symbol=r[0], side=Side(r[1]), qty=Decimal(r[2]), entry_price=Decimal(r[3]),
                cost_basis=Decimal(r[4]), stop=_opt_dec(r[5]), take_profit=_opt_dec(r[6]),
                opened_at=r[7], proposal_id=r[8], realized_pnl=Decimal(r[9]), fees=Decimal(r[10]),
            )
        )  # fmt: skip
    proposal_sql = (
        "SELECT id, symbol, side, entry, stop, take_profit, confidence, size, created_at,"
        " expires_at, merged, votes_json, risk_note FROM proposals"
    )
    for r in conn.execute(proposal_sql + " WHERE status = 'pending' ORDER BY created_at"):
        state.pending.append(_proposal(r))
    for pos in state.positions:
        if pos.proposal_id is not None:
            row = conn.execute(proposal_sql + " WHERE id = ?", (pos.proposal_id,)).fetchone()
            if row is not None:
                state.position_proposals[pos.symbol] = _proposal(row)
    for r in conn.execute(
        "SELECT client_order_id, proposal_id, symbol, side, qty, purpose, created_at, reason,"
        " status FROM order_intents WHERE status IN ('pending', 'sent') ORDER BY created_at"
    ):
        intent = OrderIntent(
            client_order_id=r[0], proposal_id=r[1], symbol=r[2], side=OrderSide(r[3]),
            qty=Decimal(r[4]), purpose=r[5], created_at=r[6], reason=r[7],
        )  # fmt: skip
        proposal = None
        if r[1] is not None:
            row = conn.execute(proposal_sql + " WHERE id = ?", (r[1],)).fetchone()
            proposal = None if row is None else _proposal(row)
        state.open_intents.append(OpenIntent(intent=intent, status=r[8], proposal=proposal))
    for r in conn.execute(
        "SELECT agent, symbol, trades, wins, sum_win, sum_loss, cf_trades, cf_wins,"
        " cf_sum_win, cf_sum_loss FROM agent_records"
    ):
        state.records.append(AgentRecordRow(*r))
    # Declined proposals the learning agent was still following (no counterfactual yet).
    for r in conn.execute(
        "SELECT p.id, p.symbol, p.side, p.entry, p.stop, p.take_profit, p.confidence, p.size,"
        " p.created_at, p.expires_at, p.merged, p.votes_json, p.risk_note, d.decided_at"
        " FROM decisions d JOIN proposals p ON p.id = d.proposal_id"
        " WHERE d.action IN ('reject', 'expire') AND NOT EXISTS"
        " (SELECT 1 FROM counterfactuals c WHERE c.proposal_id = d.proposal_id) ORDER BY d.id"
    ):
        state.followed.append((_proposal(r), r[13]))
    state.state = dict(conn.execute("SELECT key, value FROM engine_state").fetchall())
    # Market time goes on from the last thing stored: an event, an equity point, or the
    # end of the last batch stored (whose fills alone carry its candles' open time).
    last = conn.execute(
        "SELECT MAX(ts) FROM (SELECT MAX(ts) AS ts FROM events UNION ALL"
        " SELECT MAX(ts) FROM equity)"
    ).fetchone()
    state.last_ts = None if last is None else last[0]
    batch_ts = state.state.get(BATCH_TS)
    if batch_ts is not None and (state.last_ts is None or int(batch_ts) > state.last_ts):
        state.last_ts = int(batch_ts)
    rebased = int(state.state.get("risk_rebased_at", "0"))
    peak = conn.execute(
        "SELECT equity FROM equity WHERE ts >= ? ORDER BY CAST(equity AS REAL) DESC LIMIT 1",
        (rebased,),
    ).fetchone()
    state.equity_peak = None if peak is None else Decimal(peak[0])
    if state.last_ts is not None:
        day_start = state.last_ts - state.last_ts % DAY_MS
        # A resume by command today restarted the day's start too (engine/account.py).
        first = conn.execute(
            "SELECT equity FROM equity WHERE ts >= ? ORDER BY ts LIMIT 1",
            (max(day_start, rebased),),
        ).fetchone()
        state.day_start_equity = None if first is None else Decimal(first[0])
        for pnl, fee in conn.execute(
            "SELECT realized_pnl, fee FROM fills WHERE ts >= ?", (day_start,)
        ):
            state.realized_today += Decimal(pnl) - Decimal(fee)
    return state


def _proposal(r: sqlite3.Row | tuple[Any, ...]) -> Proposal:
    return Proposal(
        id=r[0], symbol=r[1], side=Side(r[2]), entry=Decimal(r[3]), stop=Decimal(r[4]),
        take_profit=Decimal(r[5]), confidence=r[6], size=Decimal(r[7]), created_at=r[8],
        expires_at=r[9], merged=r[10],
        votes=tuple(vote_of(v, r[1]) for v in json.loads(r[11])), risk_note=r[12],
    )  # fmt: skip


def _conforms(store: Store) -> StorePort:
    # Checked by mypy (make check): Store implements every member of the port the engine
    # owns, so the engine calls them directly, with no getattr.
    return store
