"""What a store path holds, found out without changing anything: :func:`inspect_store`.

cma marks its stores with ``PRAGMA application_id`` (:data:`APPLICATION_ID`) and
the schema version (``PRAGMA user_version``). A store made by an earlier cma has
application id 0; it is recognised by its tables and stamped on its next write
open. Anything else at the path is refused before a byte is written or a file
(``-wal``, ``-shm``, ``.lock``) appears beside it:

==========================================  ===============================  ====
at the path                                 result                           exit
==========================================  ===============================  ====
nothing                                     a new store                      --
an empty file, an SQLite file with no       a new store (its mode is left    --
schema at all                               alone: cma did not create it)
a directory, a device, a pipe               :class:`NotAStoreError`          2
not an SQLite file (random bytes, text)     :class:`NotAStoreError`          2
another application's SQLite database       :class:`NotAStoreError`          2
a cma store SQLite cannot read intact       :class:`CorruptStoreError`       1
a cma store with a newer schema             :class:`NewerStoreError`         1
==========================================  ===============================  ====

Read-only work (:func:`open_readonly`) never leaves a ``-wal`` or ``-shm``
behind and works in a read-only directory: when no writer holds the store's
lock and no ``-wal`` holds committed pages, nothing can change the file while it
is read, so SQLite may treat it as ``immutable`` (no locks, no side files).
Otherwise a writer's ``-wal`` and ``-shm`` are already there, and ``mode=ro``
reads through them.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from persistence.errors import (
    CorruptStoreError,
    NewerStoreError,
    NotAStoreError,
    StoreFileError,
)
from persistence.migrations import APPLICATION_ID, SCHEMA_VERSION

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_BYTES = 100
#: The tables of the first schema: an application id 0 file with all of them (and a
#: schema version) is a store made by a cma from before the application id.
LEGACY_TABLES = frozenset(
    {"sessions", "events", "proposals", "decisions", "order_intents", "orders", "fills",
     "positions", "balances", "equity", "candles", "agent_records", "engine_state"}
)  # fmt: skip

# SQLite's primary result codes that say "this file cannot be used here" rather
# than "this file is damaged".
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """What :func:`inspect_store` found at a path that cma may use as its store."""

    path: Path
    exists: bool
    """False when nothing is at the path yet."""
    schema_version: int
    """0 when there is no store yet: no file, an empty file, or no schema at all."""
    stamped: bool
    """The file carries cma's application id (False for a new store or an earlier cma's)."""

    @property
    def is_new(self) -> bool:
        """No store yet: opening it for writing creates the schema."""
        return self.schema_version == 0


def damaged(path: Path | str, why: object) -> CorruptStoreError:
    """The one wording for a store SQLite cannot read back intact."""
    return CorruptStoreError(f"store {path} is damaged ({why}); move it away or restore a backup")


def inspect_store(path: Path | str, *, deep: bool = True) -> StoreInfo:
    """Classify ``path`` without changing it; raise :class:`StoreFileError` if cma must not use it.

    ``deep`` also runs SQLite's ``quick_check`` over the whole file (about the
    time of reading it once), so that a damaged store is refused before anything
    starts. Nothing is written and no file is created, whatever the outcome.
    """
    p = Path(path)
    st = _stat(p)
    if st is None:
        return StoreInfo(p, exists=False, schema_version=0, stamped=False)
    if not stat.S_ISREG(st.st_mode):
        raise NotAStoreError(f"{p} is not a cma store ({_file_kind(st.st_mode)})")
    if st.st_size == 0:
        return StoreInfo(p, exists=True, schema_version=0, stamped=False)
    header = _read_header(p)
    if not header.startswith(SQLITE_MAGIC):
        raise NotAStoreError(f"{p} is not a cma store (not an SQLite database)")
    if len(header) < HEADER_BYTES:
        raise damaged(p, f"the file ends after {len(header)} bytes, inside the SQLite header")
    page_size = _page_size(header)
    if page_size and st.st_size % page_size:
        # SQLite reads a short last page as zeros, so a cut inside it can pass its checks.
        raise damaged(
            p, f"the file is {st.st_size} bytes, not a whole number of {page_size}-byte pages"
        )
    app_id = int.from_bytes(header[68:72], "big")
    if app_id not in (0, APPLICATION_ID):
        # Decided from the header alone: no connection, so not even a -shm appears.
        raise NotAStoreError(
            f"{p} is not a cma store (an SQLite database with application id {app_id:#010x})"
        )
    try:
        with open_readonly(p) as conn:
            info = check_schema(conn, p)
            if deep and not info.is_new:
                _quick_check(conn, p)
    except sqlite3.Error as exc:
        raise store_error(p, exc) from None
    return info


def check_schema(conn: sqlite3.Connection, path: Path) -> StoreInfo:
    """Classify the database open on ``conn`` by its application id, version and tables.

    The writer calls this inside its own connection before its first write, so a
    file swapped in after :func:`inspect_store` looked is refused there too.
    """
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    with _lenient_text(conn):  # a damaged page can hold names that are not UTF-8
        names = {
            str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    objects = int(conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0])
    if app_id == 0:
        if version == 0 and objects == 0:
            # Holds nothing, like an empty file; also what cma leaves when it is killed
            # between switching a new file to WAL and its first migration.
            return StoreInfo(path, exists=True, schema_version=0, stamped=False)
        if version == 0 or not names >= LEGACY_TABLES:
            raise NotAStoreError(f"{path} is not a cma store (another application's database)")
    elif app_id != APPLICATION_ID:
        raise NotAStoreError(
            f"{path} is not a cma store (an SQLite database with application id {app_id:#010x})"
        )
    if version > SCHEMA_VERSION:
        raise NewerStoreError(
            f"store {path} has schema version {version}, newer than this cma knows "
            f"({SCHEMA_VERSION}); upgrade cma or use another --db"
        )
    if version < 0:
        raise damaged(path, f"schema version {version}")
    if version == 0 and objects:
        raise damaged(path, "it has tables but schema version 0")
    if version >= 1 and not names >= LEGACY_TABLES:
        missing = ", ".join(sorted(LEGACY_TABLES - names))
        raise damaged(path, f"tables missing: {missing}")
    return StoreInfo(path, exists=True, schema_version=version, stamped=app_id == APPLICATION_ID)


@contextmanager
def open_readonly(path: Path | str, busy_timeout_ms: int = 5000) -> Iterator[sqlite3.Connection]:
    """A read-only connection that creates no file beside the store and leaves none behind.

    While it is open it holds a shared lock on the store's ``.lock`` (when that
    exists), so that no cma writer starts under a reader that skips SQLite's own
    locking.
    """
    p = Path(path)
    lock_fd, lock = _shared_lock(p)
    try:
        # A connected writer always has a -wal file (it may be empty after a checkpoint);
        # with no -wal at all there is no writer, whether or not its lock can be read.
        wal = _wal_size(p)
        live = lock == "held" or wal > 0 or (wal == 0 and lock == "unknown")
        # immutable: SQLite takes no locks and opens no -wal/-shm; safe only because
        # nothing can write the file now (no writer, no -wal content to replay).
        params = "mode=ro" if live else "mode=ro&immutable=1"
        uri = f"file:{quote(str(p.resolve()))}?{params}"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            yield conn
        finally:
            conn.close()
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # closing the descriptor drops the shared lock


def store_error(path: Path | str, exc: sqlite3.Error) -> StoreFileError:
    """Map an sqlite3 error met while opening ``path`` to the store error a person can act on."""
    primary = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if primary == _SQLITE_NOTADB:
        try:
            header = _read_header(Path(path))
        except StoreFileError:
            header = b""
        if not header.startswith(SQLITE_MAGIC):
            return NotAStoreError(f"{path} is not a cma store (not an SQLite database)")
    if primary == _SQLITE_CANTOPEN:
        return StoreFileError(f"cannot open store {path}: {exc}", 2)
    if primary == _SQLITE_READONLY:
        return StoreFileError(f"cannot write store {path}: {exc}", 2)
    if primary in (_SQLITE_FULL, _SQLITE_IOERR):
        return StoreFileError(f"cannot use store {path}: {exc}", 1)
    return damaged(path, exc)


def _stat(p: Path) -> os.stat_result | None:
    try:
        return p.stat()
    except FileNotFoundError:
        if p.is_symlink():
            raise NotAStoreError(f"{p} is not a cma store (a link to a missing file)") from None
        return None
    except NotADirectoryError:
        raise NotAStoreError(f"{p} is not a cma store (a part of its path is a file)") from None
    except OSError as exc:
        raise StoreFileError(f"cannot read {p}: {exc.strerror}", 2) from None
    except ValueError as exc:  # a NUL byte, from a config file's store.path
        raise StoreFileError(f"store path {str(p)!r} cannot be used: {exc}", 2) from None


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _read_header(p: Path) -> bytes:
    try:
        with p.open("rb") as f:
            return f.read(HEADER_BYTES)
    except OSError as exc:
        raise StoreFileError(f"cannot read {p}: {exc.strerror}", 2) from None


def _page_size(header: bytes) -> int:
    """The page size the header gives, or 0 if it is not one SQLite accepts."""
    size = int.from_bytes(header[16:18], "big")
    size = 65536 if size == 1 else size
    return size if 512 <= size <= 65536 and size & (size - 1) == 0 else 0


@contextmanager
def _lenient_text(conn: sqlite3.Connection) -> Iterator[None]:
    """Text read on ``conn`` meanwhile is decoded with replacement characters where it is
    not UTF-8 (a damaged file's names and messages), instead of raising."""
    before = conn.text_factory
    conn.text_factory = lambda raw: raw.decode("utf-8", "replace")
    try:
        yield
    finally:
        conn.text_factory = before


def _quick_check(conn: sqlite3.Connection, path: Path) -> None:
    with _lenient_text(conn):
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(3)").fetchall()]
    if rows != ["ok"]:
        raise damaged(path, "; ".join(rows))


def _wal_size(p: Path) -> int:
    """The size of the store's ``-wal``, or -1 if there is none."""
    try:
        return os.stat(f"{p}-wal").st_size
    except OSError:
        return -1


def _shared_lock(p: Path) -> tuple[int | None, Literal["free", "held", "unknown"]]:
    """Take a shared lock on ``p.lock`` if it exists: (descriptor or None, writer state)."""
    try:
        fd = os.open(f"{p}.lock", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, "free"  # a writer always creates the lock file: there is none
    except OSError:
        return None, "unknown"  # e.g. another user's lock file, mode 0600
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None, "held"
    return fd, "free"
