"""The adapter around aiosqlite's private API: it works on the installed version,
and a version without that API is refused with a message that names it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import aiosqlite
import pytest

from persistence.aio import AiosqliteChangedError, Writer, check_aiosqlite
from persistence.connection import connect_writer


def test_installed_aiosqlite_still_has_the_private_api_the_store_uses() -> None:
    # An aiosqlite upgrade that renames _execute or _conn fails here first, naming itself.
    check_aiosqlite()


def test_an_aiosqlite_without_the_private_api_is_refused_naming_its_version() -> None:
    class Changed:
        def _execute(self) -> None: ...

    with pytest.raises(AiosqliteChangedError) as caught:
        check_aiosqlite(Changed)
    message = str(caught.value)
    assert f"aiosqlite {aiosqlite.__version__}" in message
    assert "_execute" in message and "_conn" in message


async def test_writer_runs_a_whole_function_on_its_own_thread(tmp_path: Path) -> None:
    writer = await Writer.open(lambda: connect_writer(tmp_path / "w.db", 5000))
    try:

        def probe(conn: sqlite3.Connection, value: int) -> tuple[bool, int, str]:
            conn.execute("CREATE TABLE t (v INTEGER)")
            conn.execute("INSERT INTO t VALUES (?)", (value,))
            (got,) = conn.execute("SELECT v FROM t").fetchone()
            return isinstance(conn, sqlite3.Connection), got, threading.current_thread().name

        is_sqlite3, got, thread = await writer.run(probe, 42)
    finally:
        await writer.close()
    assert is_sqlite3 and got == 42
    assert thread != threading.current_thread().name
