"""The one place that opens SQLite files: permissions, pragmas, migrations.

Every connection gets ``journal_mode=WAL``, ``synchronous=FULL``,
``foreign_keys=ON`` and a ``busy_timeout``; autocommit mode
(``isolation_level=None``) so that writes use explicit ``BEGIN IMMEDIATE``.
A store cma creates is 0600 (in a 0700 directory if it creates that too): the
store holds a trading history. A file cma did not create keeps its mode.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

from persistence.errors import StoreFileError, StoreLockedError
from persistence.migrations import migrate
from persistence.storefile import check_schema, store_error

__all__ = [
    "MEMORY",
    "StoreLockedError",
    "WriterLock",
    "apply_pragmas",
    "connect_reader",
    "connect_writer",
]

MEMORY = ":memory:"


def _create_if_missing(path: Path) -> None:
    """Create the store file 0600 if nothing is there; never touch a file that exists."""
    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return  # not ours to chmod: SQLite gives -wal and -shm its mode, whatever it is
    except OSError as exc:
        raise StoreFileError(f"cannot create store {path}: {exc.strerror}", 2) from None
    try:
        # The umask cannot widen 0600 but may narrow it below what SQLite needs.
        # SQLite gives -wal and -shm the main file's mode, so this covers all three.
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def apply_pragmas(conn: sqlite3.Connection, busy_timeout_ms: int = 5000) -> None:
    """Set the pragmas every connection of the store uses."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")


def connect_writer(path: Path | str, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    """Open (creating if needed) the store for writing, migrated, stamped and in WAL mode.

    Raises a :class:`~persistence.errors.StoreFileError` for a file that is not a
    cma store, is damaged or is newer than this cma; it is checked inside this
    connection before the first write, so nothing is written to such a file.
    """
    memory = str(path) == MEMORY
    if not memory:
        _create_if_missing(Path(path))
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise store_error(path, exc) from None
    try:
        apply_pragmas(conn, busy_timeout_ms)
        if not memory:
            check_schema(conn, Path(path))
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if not memory and str(mode).lower() != "wal":
            raise StoreFileError(f"could not switch {path} to WAL (journal_mode is {mode})", 1)
        migrate(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise store_error(path, exc) from None
    except BaseException:
        # A refused file (foreign, newer schema, not WAL) must not stay open behind the error.
        conn.close()
        raise
    return conn


def connect_reader(path: Path | str, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    """Open the store read-only beside its live writer (``mode=ro``, through the WAL).

    For the read-only commands, which must leave no ``-wal``/``-shm`` behind, use
    :func:`persistence.storefile.open_readonly` instead.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no store at {p}")
    conn = sqlite3.connect(
        f"file:{quote(str(p.resolve()))}?mode=ro",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
    )
    apply_pragmas(conn, busy_timeout_ms)
    return conn


class WriterLock:
    """An advisory lock beside the store so that only one process writes it."""

    def __init__(self, path: Path | str) -> None:
        self._path = Path(f"{path}.lock")
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> None:
        """Take the lock or raise :class:`StoreLockedError` (or StoreFileError: no lock file)."""
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._refuse(fd)
            # A writer that gave up removes its lock file while holding it; if ours was
            # opened before that, it is no longer the file at the path: open again.
            try:
                same = os.stat(self._path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CLOEXEC
        try:
            try:
                fd = os.open(self._path, flags | os.O_CREAT | os.O_EXCL, 0o600)
                self._created = True
            except FileExistsError:
                fd = os.open(self._path, flags)
                self._created = False
        except OSError as exc:
            raise StoreFileError(f"cannot create {self._path}: {exc.strerror}", 2) from None
        return fd

    def _refuse(self, fd: int) -> NoReturn:
        store = self._path.with_suffix("")
        # Shared holders are the read-only commands (db check/info/backup).
        readers_only = _try_shared(fd)
        os.close(fd)
        if readers_only:
            raise StoreLockedError(
                f"a cma db command is reading {store}; try again when it is done"
            ) from None
        raise StoreLockedError(
            f"another cma process is writing {store}; stop it first or use a different --db"
        ) from None

    def release(self, *, remove_if_created: bool = False) -> None:
        """Let the next writer in (idempotent).

        ``remove_if_created``: the open was refused, so take away the lock file this
        lock created, leaving the directory as it was (removed while still held, see
        :meth:`acquire`).
        """
        if self._fd is not None:
            if remove_if_created and self._created:
                self._path.unlink(missing_ok=True)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _try_shared(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True
