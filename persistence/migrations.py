"""Ordered schema migrations, applied by ``PRAGMA user_version``.

Append a new entry to :data:`MIGRATIONS` to change the schema; never edit one
that has shipped. Money and quantities are TEXT holding exact decimals.
"""

from __future__ import annotations

import sqlite3

from persistence.errors import CorruptStoreError, NewerStoreError

#: ``PRAGMA application_id`` of every cma store: "CMA1" in ASCII. It marks the file as
#: cma's, so that cma refuses another application's SQLite file instead of writing
#: its tables into it.
APPLICATION_ID = 0x434D4131

MIGRATIONS: tuple[str, ...] = (
    # 1: the initial schema.
    """
    CREATE TABLE sessions (
        id          INTEGER PRIMARY KEY,
        started_at  INTEGER NOT NULL,
        ended_at    INTEGER,
        mode        TEXT NOT NULL CHECK (mode IN ('paper', 'live', 'backtest')),
        feed        TEXT NOT NULL,
        config_json TEXT NOT NULL
    );

    -- Append-only log of every engine event; projections below are updated in the
    -- same transaction as the event that changes them.
    CREATE TABLE events (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        ts         INTEGER NOT NULL,
        session_id INTEGER REFERENCES sessions(id),
        kind       TEXT NOT NULL,
        payload    TEXT NOT NULL
    );
    CREATE INDEX events_kind_ts ON events(kind, ts);
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

    CREATE TABLE proposals (
        id          TEXT PRIMARY KEY,
        session_id  INTEGER REFERENCES sessions(id),
        symbol      TEXT NOT NULL,
        side        TEXT NOT NULL CHECK (side IN ('long', 'short')),
        entry       TEXT NOT NULL,
        stop        TEXT NOT NULL,
        take_profit TEXT NOT NULL,
        confidence  REAL NOT NULL CHECK (confidence BETWEEN 0 AND 1),
        size        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        merged      INTEGER NOT NULL DEFAULT 0,
        votes_json  TEXT NOT NULL,
        risk_note   TEXT NOT NULL DEFAULT '',
        status      TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'approved', 'rejected', 'expired'))
    );
    CREATE INDEX proposals_status ON proposals(status);

    CREATE TABLE decisions (
        id          INTEGER PRIMARY KEY,
        proposal_id TEXT NOT NULL UNIQUE REFERENCES proposals(id),
        action      TEXT NOT NULL CHECK (action IN ('approve', 'reject', 'expire')),
        reason      TEXT,
        size        TEXT,
        resized     INTEGER NOT NULL DEFAULT 0,
        latency_ms  INTEGER NOT NULL CHECK (latency_ms >= 0),
        decided_at  INTEGER NOT NULL,
        decided_by  TEXT NOT NULL
    );

    CREATE TABLE order_intents (
        client_order_id TEXT PRIMARY KEY,
        decision_id     INTEGER UNIQUE REFERENCES decisions(id),
        proposal_id     TEXT REFERENCES proposals(id),
        symbol          TEXT NOT NULL,
        side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        qty             TEXT NOT NULL,
        purpose         TEXT NOT NULL CHECK (purpose IN ('entry', 'exit')),
        reason          TEXT NOT NULL DEFAULT '',
        status          TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'sent', 'filled', 'denied', 'cancelled')),
        created_at      INTEGER NOT NULL
    );
    CREATE INDEX order_intents_status ON order_intents(status);

    CREATE TABLE orders (
        client_order_id   TEXT PRIMARY KEY REFERENCES order_intents(client_order_id),
        exchange_order_id TEXT,
        symbol            TEXT NOT NULL,
        side              TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        type              TEXT NOT NULL DEFAULT 'market',
        qty               TEXT NOT NULL,
        filled_qty        TEXT NOT NULL DEFAULT '0',
        status            TEXT NOT NULL
                          CHECK (status IN ('open', 'filled', 'cancelled', 'rejected')),
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL
    );

    CREATE TABLE fills (
        id              INTEGER PRIMARY KEY,
        client_order_id TEXT NOT NULL REFERENCES orders(client_order_id),
        symbol          TEXT NOT NULL,
        side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        qty             TEXT NOT NULL,
        price           TEXT NOT NULL,
        fee             TEXT NOT NULL,
        realized_pnl    TEXT NOT NULL DEFAULT '0',
        ts              INTEGER NOT NULL
    );
    CREATE INDEX fills_order ON fills(client_order_id);

    -- One row per trade: a position from its opening to its close.
    CREATE TABLE positions (
        id           INTEGER PRIMARY KEY,
        symbol       TEXT NOT NULL,
        side         TEXT NOT NULL CHECK (side IN ('long', 'short')),
        qty          TEXT NOT NULL,
        entry_price  TEXT NOT NULL,
        cost_basis   TEXT NOT NULL,
        stop         TEXT,
        take_profit  TEXT,
        opened_at    INTEGER NOT NULL,
        closed_at    INTEGER,
        exit_price   TEXT,
        close_reason TEXT,
        realized_pnl TEXT NOT NULL DEFAULT '0',
        fees         TEXT NOT NULL DEFAULT '0',
        proposal_id  TEXT REFERENCES proposals(id),
        status       TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed'))
    );
    CREATE UNIQUE INDEX positions_one_open ON positions(symbol) WHERE status = 'open';

    CREATE TABLE balances (
        currency     TEXT PRIMARY KEY,
        cash         TEXT NOT NULL,
        initial_cash TEXT NOT NULL,
        updated_at   INTEGER NOT NULL
    );

    CREATE TABLE equity (
        ts         INTEGER NOT NULL,
        session_id INTEGER,
        equity     TEXT NOT NULL,
        cash       TEXT NOT NULL,
        unrealized TEXT NOT NULL,
        drawdown   REAL NOT NULL
    );
    CREATE INDEX equity_ts ON equity(ts);

    CREATE TABLE candles (
        symbol    TEXT NOT NULL,
        timeframe TEXT NOT NULL,
        ts        INTEGER NOT NULL,
        open      REAL NOT NULL,
        high      REAL NOT NULL,
        low       REAL NOT NULL,
        close     REAL NOT NULL,
        volume    REAL NOT NULL,
        PRIMARY KEY (symbol, timeframe, ts)
    ) WITHOUT ROWID;

    -- The learning agent's record per agent and symbol ('*' is overall).
    CREATE TABLE agent_records (
        agent      TEXT NOT NULL,
        symbol     TEXT NOT NULL,
        trades     INTEGER NOT NULL DEFAULT 0,
        wins       INTEGER NOT NULL DEFAULT 0,
        sum_win    REAL NOT NULL DEFAULT 0,
        sum_loss   REAL NOT NULL DEFAULT 0,
        cf_trades  INTEGER NOT NULL DEFAULT 0,
        cf_wins    INTEGER NOT NULL DEFAULT 0,
        cf_sum_win REAL NOT NULL DEFAULT 0,
        cf_sum_loss REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (agent, symbol)
    ) WITHOUT ROWID;

    -- Small engine state: trading state, equity peak, day start, policy.
    CREATE TABLE engine_state (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2: the learning agent's counterfactual outcome of each declined proposal, for the
    # human edge of the reports (what the rejected and expired proposals would have earned).
    """
    CREATE TABLE counterfactuals (
        proposal_id TEXT PRIMARY KEY REFERENCES proposals(id),
        symbol      TEXT NOT NULL,
        side        TEXT NOT NULL CHECK (side IN ('long', 'short')),
        agents_json TEXT NOT NULL,
        entry       REAL NOT NULL,
        exit_price  REAL NOT NULL,
        ret         REAL NOT NULL,
        exit_reason TEXT NOT NULL CHECK (exit_reason IN ('stop', 'take_profit', 'time')),
        closed_at   INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
)


SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration newer than the file's ``user_version``; return the version.

    Each migration runs in its own ``BEGIN IMMEDIATE`` transaction together with
    the version bump and the :data:`APPLICATION_ID` stamp, so a crash mid-migration
    leaves the previous version intact. A store made before cma stamped its files
    (application id 0) is stamped here, in a transaction of its own.
    """
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current < 0:  # a negative slice below would re-run the last migrations
        raise CorruptStoreError(f"the store's schema version {current} is damaged")
    if current > SCHEMA_VERSION:
        raise NewerStoreError(
            f"the store's schema version {current} is newer than this cma "
            f"(knows up to {SCHEMA_VERSION}); upgrade cma"
        )
    stamped = int(conn.execute("PRAGMA application_id").fetchone()[0]) == APPLICATION_ID
    for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
        _transaction(conn, [*_split(script), *_stamp(version)])
        stamped = True
    if not stamped:
        _transaction(conn, _stamp(current))
    return SCHEMA_VERSION


def _stamp(version: int) -> list[str]:
    return [f"PRAGMA application_id = {APPLICATION_ID}", f"PRAGMA user_version = {version}"]


def _transaction(conn: sqlite3.Connection, statements: list[str]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in statements:
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _split(script: str) -> list[str]:
    """Split a script into statements (``executescript`` would commit implicitly)."""
    statements: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements
