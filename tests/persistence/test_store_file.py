"""What may be opened as the store, in-process: ``inspect_store`` classifies a path
without changing it, the writer re-checks inside its own connection, cma stamps its
files (application_id) in the migration transaction, and read-only connections leave
nothing behind. The same cases through the real ``cma`` are in tests/test_cli_store.py.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_files import APPLICATION_ID as PINNED_ID
from store_files import (
    CASH,
    DETECTABLE_HEADER,
    T0,
    Content,
    build_store,
    foreign_db,
    pragma,
    set_pragma,
    snapshot,
)

from persistence.connection import StoreLockedError, WriterLock, connect_writer
from persistence.errors import (
    CorruptStoreError,
    NewerStoreError,
    NotAStoreError,
    StoreFileError,
)
from persistence.migrations import APPLICATION_ID, SCHEMA_VERSION, migrate
from persistence.store import Store
from persistence.storefile import inspect_store, open_readonly


@pytest.fixture(scope="module")
def store_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("store") / "cma.db"
    build_store(path)
    return Content(path.read_bytes())


# --- inspect_store: every kind of path --------------------------------------------------


def _refused_cases() -> dict[str, tuple[object, type[StoreFileError], str]]:
    def directory(p: Path) -> Path:
        p.mkdir()
        return p

    def fifo(p: Path) -> Path:
        os.mkfifo(p)
        return p

    def unix_socket(p: Path) -> Path:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(p))
        s.close()
        return p

    def random_bytes(p: Path) -> Path:
        p.write_bytes(bytes(range(256)) * 20)
        return p

    def text(p: Path) -> Path:
        p.write_text("name,price\nBTC,60000\n")
        return p

    def other_app(p: Path) -> Path:
        foreign_db(p)
        return p

    def other_app_id(p: Path) -> Path:
        foreign_db(p, app_id=0x5A5A5A5A, version=3)
        return p

    def versioned_other_app(p: Path) -> Path:
        foreign_db(p, version=1)  # a user_version of its own, but not cma's tables
        return p

    def header_only(p: Path) -> Path:
        p.write_bytes(b"SQLite format 3\x00" + b"\x10\x00")
        return p

    def newer(p: Path) -> Path:
        set_pragma(p, "application_id", APPLICATION_ID)
        set_pragma(p, "user_version", SCHEMA_VERSION + 1)
        return p

    def under_a_file(p: Path) -> Path:
        p.write_text("x")
        return p / "cma.db"

    return {
        "directory": (directory, NotAStoreError, "is not a cma store (a directory)"),
        "named pipe": (fifo, NotAStoreError, "is not a cma store (a named pipe)"),
        "socket": (unix_socket, NotAStoreError, "is not a cma store (a socket)"),
        "random bytes": (random_bytes, NotAStoreError, "(not an SQLite database)"),
        "text file": (text, NotAStoreError, "(not an SQLite database)"),
        "another app's db": (other_app, NotAStoreError, "(another application's database)"),
        "another app id": (other_app_id, NotAStoreError, "application id 0x5a5a5a5a"),
        "versioned other": (versioned_other_app, NotAStoreError, "another application's"),
        "header only": (header_only, CorruptStoreError, "is damaged (the file ends after 18"),
        "newer schema": (newer, NewerStoreError, "upgrade cma"),
        "under a file": (under_a_file, NotAStoreError, "a part of its path is a file"),
    }


REFUSED = _refused_cases()


@pytest.mark.parametrize("case", list(REFUSED))
def test_inspect_refuses_what_is_not_a_usable_store_and_changes_nothing(
    case: str, tmp_path: Path
) -> None:
    make, error, words = REFUSED[case]
    path = make(tmp_path / "x.db")  # type: ignore[operator]
    target = path if path.exists() else path.parent
    before = snapshot(target)
    with pytest.raises(error) as raised:
        inspect_store(path)
    assert words in str(raised.value)
    assert str(path) in str(raised.value)
    assert raised.value.code == (2 if error is NotAStoreError else 1)
    assert snapshot(target) == before
    # The writer refuses it the same way, before creating anything beside it.
    with pytest.raises(error):
        asyncio.run(Store.open(path))
    assert snapshot(target) == before


def test_the_application_id_is_cmas_pinned_mark() -> None:
    assert APPLICATION_ID == PINNED_ID == int.from_bytes(b"CMA1", "big")


def test_dev_null_is_not_a_store() -> None:
    with pytest.raises(NotAStoreError, match=r"/dev/null is not a cma store \(a character device"):
        inspect_store("/dev/null")


def test_a_path_with_a_nul_byte_is_refused_with_exit_2() -> None:
    with pytest.raises(StoreFileError, match="embedded null byte") as raised:
        inspect_store("cma\x00.db")
    assert raised.value.code == 2


def test_nothing_an_empty_file_and_a_schemaless_db_are_new_stores(tmp_path: Path) -> None:
    assert inspect_store(tmp_path / "none.db").is_new
    assert not inspect_store(tmp_path / "none.db").exists
    empty = tmp_path / "empty.db"
    empty.touch()
    assert inspect_store(empty).is_new and inspect_store(empty).exists
    schemaless = tmp_path / "schemaless.db"
    conn = sqlite3.connect(schemaless)
    conn.execute("PRAGMA journal_mode = WAL")  # what a cma killed before migrating leaves
    conn.close()
    assert schemaless.stat().st_size > 0
    assert inspect_store(schemaless).is_new
    assert sorted(os.listdir(tmp_path)) == ["empty.db", "schemaless.db"]


def test_a_store_is_recognised_as_stamped_and_a_legacy_one_by_its_tables(
    tmp_path: Path, store_bytes: bytes
) -> None:
    path = tmp_path / "cma.db"
    path.write_bytes(store_bytes)
    info = inspect_store(path)
    assert (info.schema_version, info.stamped, info.is_new) == (SCHEMA_VERSION, True, False)
    set_pragma(path, "application_id", 0)  # as the cma before application ids made it
    info = inspect_store(path)
    assert (info.schema_version, info.stamped) == (SCHEMA_VERSION, False)


def test_a_store_with_a_damaged_schema_version_is_damaged(
    tmp_path: Path, store_bytes: bytes
) -> None:
    path = tmp_path / "cma.db"
    for version in (0, -1):
        path.write_bytes(store_bytes)
        set_pragma(path, "user_version", version)
        with pytest.raises(CorruptStoreError, match="is damaged"):
            inspect_store(path)
        with pytest.raises(CorruptStoreError):
            connect_writer(path)


def test_a_store_missing_tables_is_damaged(tmp_path: Path, store_bytes: bytes) -> None:
    path = tmp_path / "cma.db"
    path.write_bytes(store_bytes)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE candles")
    conn.close()
    with pytest.raises(CorruptStoreError, match="tables missing: candles"):
        inspect_store(path)


def test_a_bad_page_is_found_by_the_deep_inspection_only(
    tmp_path: Path, store_bytes: bytes
) -> None:
    path = tmp_path / "cma.db"
    data = bytearray(store_bytes)
    page = int.from_bytes(data[16:18], "big")
    data[len(data) - page] = 0x42  # the last page's b-tree page type
    path.write_bytes(bytes(data))
    inspect_store(path, deep=False)  # the schema still reads
    with pytest.raises(CorruptStoreError, match=r"is damaged \(.*\); move it away or restore"):
        inspect_store(path)


# --- the writer -------------------------------------------------------------------------


def test_the_writer_refuses_a_foreign_file_swapped_in_after_the_inspection(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cma.db"
    assert inspect_store(path).is_new
    foreign_db(path)  # appears between the inspection and the open
    before = snapshot(path)
    with pytest.raises(NotAStoreError, match="another application's database"):
        connect_writer(path)
    assert snapshot(path) == before
    path.unlink()
    path.write_text("not sqlite at all" * 100)
    before = snapshot(path)
    with pytest.raises(NotAStoreError, match="not an SQLite database"):
        connect_writer(path)
    assert snapshot(path) == before


def test_a_new_store_is_stamped_in_its_first_migration_transaction(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "cma.db", isolation_level=None)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    migrate(conn)
    conn.close()
    begin = statements.index("BEGIN IMMEDIATE")
    commit = statements.index("COMMIT")
    inside = statements[begin:commit]
    assert f"PRAGMA application_id = {APPLICATION_ID}" in inside
    assert "PRAGMA user_version = 1" in inside
    assert any(s.startswith("CREATE TABLE sessions") for s in inside)
    assert pragma(tmp_path / "cma.db", "application_id") == APPLICATION_ID


async def test_a_legacy_store_is_stamped_on_its_next_write_open_and_keeps_its_data(
    tmp_path: Path, store_bytes: bytes
) -> None:
    path = tmp_path / "cma.db"
    path.write_bytes(store_bytes)
    set_pragma(path, "application_id", 0)
    async with await Store.open(path) as store:
        assert (await store.load_state()).cash == CASH
    assert pragma(path, "application_id") == APPLICATION_ID
    assert pragma(path, "user_version") == SCHEMA_VERSION
    assert inspect_store(path).stamped


async def test_modes_are_set_only_on_files_cma_creates(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    theirs.chmod(0o755)
    empty = theirs / "empty.db"
    empty.touch()
    empty.chmod(0o644)
    async with await Store.open(empty) as store:
        await store.init_balance("USDT", CASH, T0)
    assert stat.S_IMODE(empty.stat().st_mode) == 0o644
    assert stat.S_IMODE(theirs.stat().st_mode) == 0o755
    assert inspect_store(empty).stamped

    ours = theirs / "made" / "cma.db"
    old = os.umask(0o022)
    try:
        async with await Store.open(ours) as store:
            await store.init_balance("USDT", CASH, T0)
    finally:
        os.umask(old)
    assert stat.S_IMODE(ours.stat().st_mode) == 0o600
    assert stat.S_IMODE(ours.parent.stat().st_mode) == 0o700


async def test_a_read_only_store_file_keeps_its_mode(tmp_path: Path, store_bytes: bytes) -> None:
    path = tmp_path / "cma.db"
    path.write_bytes(store_bytes)
    path.chmod(0o444)
    try:
        store = await Store.open(path)
    except StoreFileError as exc:  # not root: SQLite cannot write it, and says so
        assert exc.code == 2 and str(path) in str(exc)
    else:  # root writes anyway; the point is that cma did not chmod it
        await store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o444


# --- read-only connections --------------------------------------------------------------


def test_open_readonly_leaves_no_side_file_and_keeps_the_store_unchanged(
    tmp_path: Path, store_bytes: bytes
) -> None:
    path = tmp_path / "cma.db"
    path.write_bytes(store_bytes)
    (tmp_path / "cma.db.lock").touch()  # a writer ran here once
    before = snapshot(path)
    with open_readonly(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM sessions")
        # While it reads, no writer starts under it.
        with pytest.raises(StoreLockedError, match="a cma db command is reading"):
            WriterLock(path).acquire()
    assert snapshot(path) == before


async def test_open_readonly_beside_a_live_writer_sees_its_committed_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cma.db"
    async with await Store.open(path) as store:
        await store.init_balance("USDT", CASH, T0)  # committed to the -wal, not checkpointed
        with open_readonly(path) as conn:
            assert conn.execute("SELECT cash FROM balances").fetchone()[0] == "2500"


# --- damaged files, in bulk -------------------------------------------------------------


@st.composite
def damaged(draw: st.DrawFn, store: bytes) -> tuple[str, bytes, bool]:
    """(kind, file content, must be refused) for one kind of damage to a real store."""
    page = int.from_bytes(store[16:18], "big")
    kind = draw(st.sampled_from(["random", "truncated", "header", "page"]))
    if kind == "random":
        data = draw(st.binary(min_size=1, max_size=5000).filter(lambda b: b[:1] != b"S"))
        return kind, Content(data), True
    if kind == "truncated":
        return kind, Content(store[: draw(st.integers(1, len(store) - 1))]), True
    if kind == "header":
        offset = draw(st.sampled_from(DETECTABLE_HEADER))
    else:  # any byte of any page: often, not always, visible to quick_check
        offset = draw(st.integers(100, len(store) - 1))
        if draw(st.booleans()):  # the b-tree page header, where damage is likeliest seen
            offset = draw(st.integers(0, len(store) // page - 1)) * page + draw(st.integers(0, 7))
            offset = max(offset, 100)
    data = bytearray(store)
    data[offset] ^= 1 << draw(st.integers(0, 7))
    return kind, Content(data), kind == "header"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_inspect_of_any_damaged_store_raises_a_store_error_or_accepts_it_unchanged(
    store_bytes: bytes, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    kind, content, must_refuse = data.draw(damaged(store_bytes))
    path = tmp_path_factory.mktemp("damaged") / "cma.db"
    path.write_bytes(content)
    before = snapshot(path)
    try:
        inspect_store(path)
    except StoreFileError as exc:
        assert exc.code in (1, 2)
        assert str(path) in str(exc)
    else:
        assert not must_refuse, f"{kind} damage was accepted"
    assert snapshot(path) == before


def test_a_refused_writer_takes_away_only_the_lock_file_it_created(tmp_path: Path) -> None:
    path = tmp_path / "cma.db"
    lock = WriterLock(path)
    lock.acquire()
    assert (tmp_path / "cma.db.lock").exists()
    lock.release(remove_if_created=True)
    assert os.listdir(tmp_path) == []

    (tmp_path / "cma.db.lock").touch()  # an earlier writer's
    lock = WriterLock(path)
    lock.acquire()
    lock.release(remove_if_created=True)
    assert os.listdir(tmp_path) == ["cma.db.lock"]


def test_after_a_refused_writer_removed_its_lock_file_the_next_is_still_exclusive(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cma.db"
    first = WriterLock(path)
    first.acquire()
    stale = os.open(tmp_path / "cma.db.lock", os.O_RDWR)  # a second writer's open, then...
    first.release(remove_if_created=True)  # ...the first gives up and removes the file
    second = WriterLock(path)
    second.acquire()  # creates a new lock file; the stale descriptor is not the lock
    try:
        third = WriterLock(path)
        with pytest.raises(StoreLockedError):
            third.acquire()
        assert os.fstat(stale).st_ino != os.stat(tmp_path / "cma.db.lock").st_ino
    finally:
        os.close(stale)
        second.release()


def test_a_damaged_table_name_that_is_not_utf8_is_refused_as_a_store_error(
    tmp_path: Path,
) -> None:
    # A bit flipped inside sqlite_master's text made a name that is not UTF-8: reading the
    # table names raised UnicodeDecodeError (a traceback) instead of naming the damage.
    path = tmp_path / "cma.db"
    conn = sqlite3.connect(path)
    migrate(conn)
    conn.close()
    data = path.read_bytes()
    name = b"agent_records"
    assert name in data
    path.write_bytes(data.replace(name, b"agent_r\xcecords"))
    with pytest.raises(StoreFileError):
        inspect_store(path)
    with pytest.raises(StoreFileError):
        connect_writer(path)
