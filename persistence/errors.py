"""Why a path cannot be used as the store, each with the exit code a command gives it.

The command line maps every one of these to one ``cma:`` line and its ``.code``:
2 when the path names something that is not a cma store (the person chose the
wrong file), 1 when it is a cma store that cannot be used right now (damaged,
too new for this cma, or locked by another cma process).
"""

from __future__ import annotations


class StoreFileError(Exception):
    """A store path that cannot be opened; ``code`` is the exit code for the command line."""

    code: int = 1

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class NotAStoreError(StoreFileError):
    """The path is not a cma store: a directory, a device, another application's file."""

    code = 2


class CorruptStoreError(StoreFileError):
    """The path is a cma store (or an SQLite file) that SQLite cannot read back intact."""

    code = 1


class NewerStoreError(StoreFileError):
    """The store was written by a newer cma whose schema this one does not know."""

    code = 1


class StoreLockedError(StoreFileError):
    """Another process is already the writer of this store."""

    code = 1


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from, says the disk is full:
    SQLite's SQLITE_FULL ("database or disk is full") or an OSError with ENOSPC."""
    import errno
    import sqlite3

    seen = 0
    while exc is not None and seen < 10:  # a chain, never a loop
        if isinstance(exc, sqlite3.Error):
            code = getattr(exc, "sqlite_errorcode", None)
            if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
                return True
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False
