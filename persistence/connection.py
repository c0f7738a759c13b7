"""The one place that opens SQLite files: permissions, pragmas, migrations.

Every connection gets ``journal_mode=WAL``, ``synchronous=FULL``,
``foreign_keys=ON`` and a ``busy_timeout``; autocommit mode
(``isolation_level=None``) so that writes use explicit ``BEGIN IMMEDIATE``.
Files are created 0600 in a 0700 directory: the store holds a trading history.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

from persistence.migrations import migrate

MEMORY = ":memory:"


class StoreLockedError(RuntimeError):
    """Another process is already the writer of this store."""


def _prepare_file(path: Path) -> None:
    directory = path.parent
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    # SQLite gives -wal and -shm the main file's mode, so one chmod covers all three.
    os.chmod(path, 0o600)


def apply_pragmas(conn: sqlite3.Connection, busy_timeout_ms: int = 5000) -> None:
    """Set the pragmas every connection of the store uses."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")


def connect_writer(path: Path | str, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    """Open (creating if needed) the store for writing, migrated and in WAL mode."""
    if str(path) != MEMORY:
        _prepare_file(Path(path))
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        apply_pragmas(conn, busy_timeout_ms)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(path) != MEMORY and str(mode).lower() != "wal":
            raise RuntimeError(f"could not switch {path} to WAL (journal_mode is {mode})")
        migrate(conn)
    except BaseException:
        # A refused file (newer schema, not WAL) must not stay open behind the error.
        conn.close()
        raise
    return conn


def connect_reader(path: Path | str, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    """Open the store read-only (for the console's queries, reports and checks)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no store at {p}")
    conn = sqlite3.connect(
        f"file:{p.resolve()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    apply_pragmas(conn, busy_timeout_ms)
    return conn


class WriterLock:
    """An advisory lock beside the store so that only one process writes it."""

    def __init__(self, path: Path | str) -> None:
        self._path = Path(f"{path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(
                f"another cma process is writing {self._path.with_suffix('')}; "
                "stop it first or use a different --db"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
