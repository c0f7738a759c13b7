"""The one place cma reaches into aiosqlite's private API.

aiosqlite has no public "run this function on the writer thread": every
public method goes through ``Connection._execute(fn, *args)``, which queues a
call on the connection's thread, and ``Connection._conn`` is the
``sqlite3.Connection`` living there. The store needs that hop to run a whole
transaction (many statements) in one queue round trip. :class:`Writer` wraps
both private names; :func:`check_aiosqlite` says loudly, naming the installed
version, when an aiosqlite release no longer has them (a test calls it).
"""

from __future__ import annotations

import inspect
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar, cast

import aiosqlite

T = TypeVar("T")

#: The aiosqlite range whose private API this adapter was written against
#: (``pyproject.toml`` pins the same).
TESTED = ">=0.21,<0.23"


class AiosqliteChangedError(RuntimeError):
    """The installed aiosqlite lacks the private API :class:`Writer` relies on."""


def check_aiosqlite(connection_class: type[Any] = aiosqlite.Connection) -> None:
    """Raise :class:`AiosqliteChangedError` unless ``connection_class`` has the hop.

    ``connection_class`` is aiosqlite's ``Connection``; a test passes others.
    """
    version = getattr(aiosqlite, "__version__", "unknown")
    problems = []
    if not inspect.iscoroutinefunction(getattr(connection_class, "_execute", None)):
        problems.append("Connection._execute(fn, *args) is no longer a coroutine method")
    if not isinstance(inspect.getattr_static(connection_class, "_conn", None), property):
        problems.append("Connection._conn is no longer a property")
    if problems:
        raise AiosqliteChangedError(
            f"aiosqlite {version} changed the private API cma's store uses "
            f"({'; '.join(problems)}); cma was tested with aiosqlite {TESTED}: "
            "update persistence/aio.py"
        )


class Writer:
    """One aiosqlite connection, used only to run whole functions on its thread."""

    __slots__ = ("_conn",)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, connector: Callable[[], sqlite3.Connection]) -> Writer:
        """Start the writer thread and open the connection ``connector`` makes there."""
        check_aiosqlite()
        conn = aiosqlite.Connection(connector, iter_chunk_size=256)
        await conn
        return cls(conn)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(sqlite3_connection, *args)`` on the writer thread in one hop."""
        execute = cast(Callable[..., Any], self._conn._execute)
        return cast(T, await execute(fn, self._conn._conn, *args))

    async def close(self) -> None:
        """Finish queued calls, close the connection and stop its thread."""
        await self._conn.close()
