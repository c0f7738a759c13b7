"""The store file through the real ``cma`` command: a file that is not a cma store is
refused with exit 2, a damaged one with exit 1, before any UI starts and without a
byte, a mode or an mtime changed or a file appearing beside it; the read-only
commands leave nothing behind; ``db backup`` refuses a destination it cannot
write; ``db info`` counts open and closed positions apart."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_files import (
    APPLICATION_ID,
    DETECTABLE_HEADER,
    Content,
    Snapshot,
    build_store,
    foreign_db,
    pragma,
    set_pragma,
    snapshot,
)

from persistence.migrations import MIGRATIONS

CMA = Path(sys.executable).with_name("cma")
SCHEMA_VERSION = len(MIGRATIONS)
HEADLESS = ("run", "--headless", "--duration", "1s", "--speed", "max")
CONSOLE = ("run", "--duration", "1s")
# Every command that opens the store; db backup gets its destination appended.
COMMANDS: dict[str, tuple[str, ...]] = {
    "run --headless": HEADLESS,
    "run (console)": CONSOLE,
    "db info": ("db", "info"),
    "db check": ("db", "check"),
    "db backup": ("db", "backup"),
}


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env["XDG_DATA_HOME"] = str(home / "data")
    env.pop("TERM", None)  # the console must not need a terminal to refuse a store
    return env


def cma(
    home: Path, *args: str, timeout: float = 60, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CMA), *args], env=clean_env(home), capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL, **kw,  # type: ignore[call-overload]
    )  # fmt: skip


def run_on(home: Path, command: str, db: Path, backup_to: Path) -> subprocess.CompletedProcess[str]:
    args = [*COMMANDS[command], "--db", str(db)]
    if command == "db backup":
        args.append(str(backup_to))
    # The console must exit before any UI starts: a short timeout, no tty.
    return cma(home, *args, timeout=30)


def assert_refused(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cma: "), done.stderr
    for w in words:
        assert w in lines[0]


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real store made by cma itself (a headless session), checkpointed and closed."""
    home = tmp_path_factory.mktemp("home")
    db = home / "made" / "cma.db"
    done = cma(home, *HEADLESS, "--db", str(db))
    assert done.returncode == 0, done.stderr
    (db.parent / "cma.db.lock").unlink()
    return db


# --- refused files, every command --------------------------------------------------------


def _random(p: Path) -> None:
    p.write_bytes(os.urandom(3000).replace(b"S", b"s"))


def _text(p: Path) -> None:
    p.write_text("this is my shopping list\n" * 40)


def _other_app(p: Path) -> None:
    foreign_db(p)


def _other_app_id(p: Path) -> None:
    foreign_db(p, app_id=0x46534C31, version=7)


def _directory(p: Path) -> None:
    p.mkdir()
    (p / "keep.txt").write_text("mine")


FOREIGN: dict[str, Callable[[Path], None]] = {
    "random bytes": _random,
    "text file": _text,
    "another app's db": _other_app,
    "another app id": _other_app_id,
    "directory": _directory,
}


def _untouched(path: Path, before: Snapshot) -> None:
    after = snapshot(path)
    assert after == before, "the refused file or its directory changed"


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", list(FOREIGN))
def test_a_file_that_is_not_a_cma_store_is_refused_with_exit_2_and_left_untouched(
    kind: str, command: str, tmp_path: Path
) -> None:
    db = tmp_path / "store" / "x.db"
    db.parent.mkdir()
    FOREIGN[kind](db)
    db.chmod(0o644)
    before = snapshot(db)
    done = run_on(tmp_path, command, db, tmp_path / "copy.db")
    assert_refused(done, 2, f"{db} is not a cma store")
    _untouched(db, before)
    assert not (tmp_path / "copy.db").exists()


def test_dev_null_is_refused_by_every_command(tmp_path: Path) -> None:
    for command in COMMANDS:
        done = run_on(tmp_path, command, Path("/dev/null"), tmp_path / "copy.db")
        assert_refused(done, 2, "/dev/null is not a cma store (a character device)")


def _truncated(src: bytes) -> bytes:
    return src[: len(src) // 2]


def _short_header(src: bytes) -> bytes:
    return src[:60]


def _bad_page(src: bytes) -> bytes:
    data = bytearray(src)
    data[100] = 0x42  # the first b-tree page's type byte
    return bytes(data)


def _bad_page_size(src: bytes) -> bytes:
    data = bytearray(src)
    data[16:18] = b"\x12\x34"
    return bytes(data)


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "truncated": _truncated,
    "short header": _short_header,
    "bad page": _bad_page,
    "bad header": _bad_page_size,
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_store_exits_1_before_anything_starts_and_is_left_untouched(
    kind: str, command: str, tmp_path: Path, store_file: Path
) -> None:
    db = tmp_path / "store" / "cma.db"
    db.parent.mkdir()
    db.write_bytes(DAMAGE[kind](store_file.read_bytes()))
    before = snapshot(db)
    done = run_on(tmp_path, command, db, tmp_path / "copy.db")
    assert_refused(done, 1, f"store {db} is damaged (", "move it away or restore a backup")
    _untouched(db, before)
    assert not (tmp_path / "copy.db").exists()


def test_a_store_of_a_newer_cma_is_refused_with_exit_1(tmp_path: Path, store_file: Path) -> None:
    db = tmp_path / "store" / "cma.db"
    db.parent.mkdir()
    shutil.copy(store_file, db)
    set_pragma(db, "user_version", SCHEMA_VERSION + 1)
    before = snapshot(db)
    for command in ("run --headless", "run (console)"):
        done = run_on(tmp_path, command, db, tmp_path / "copy.db")
        assert_refused(done, 1, f"schema version {SCHEMA_VERSION + 1}", "upgrade cma")
    _untouched(db, before)


# --- accepted files ----------------------------------------------------------------------


def test_an_empty_file_becomes_a_store_and_keeps_its_mode(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    db.chmod(0o640)
    done = cma(tmp_path, "db", "info", "--db", str(db))
    assert_refused(done, 2, "no store at", str(db))
    done = cma(tmp_path, *HEADLESS, "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o640  # cma did not create it: no chmod
    assert pragma(db, "application_id") == APPLICATION_ID


def test_a_store_of_an_earlier_cma_is_stamped_on_its_next_run_and_keeps_working(
    tmp_path: Path, store_file: Path
) -> None:
    db = tmp_path / "cma.db"
    shutil.copy(store_file, db)
    set_pragma(db, "application_id", 0)  # what cma wrote before it stamped its stores
    before = snapshot(db)
    info = cma(tmp_path, "db", "info", "--db", str(db))
    assert info.returncode == 0, info.stderr
    assert "made by an earlier cma" in info.stdout
    assert "sessions  1" in info.stdout
    _untouched(db, before)  # the read-only command did not stamp it
    done = cma(tmp_path, *HEADLESS, "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert pragma(db, "application_id") == APPLICATION_ID
    info = cma(tmp_path, "db", "info", "--db", str(db))
    assert "sessions  2" in info.stdout and "earlier cma" not in info.stdout
    assert cma(tmp_path, "db", "check", "--db", str(db)).returncode == 0


def test_a_read_only_store_file_of_the_user_is_not_chmodded(
    tmp_path: Path, store_file: Path
) -> None:
    db = tmp_path / "cma.db"
    shutil.copy(store_file, db)
    db.chmod(0o444)
    done = cma(tmp_path, *HEADLESS, "--db", str(db))
    if os.geteuid() != 0:  # root may write it anyway; anyone else gets a clear refusal
        assert_refused(done, 2, str(db))
    assert "Traceback" not in done.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o444


# --- read-only commands -----------------------------------------------------------------


def test_read_only_commands_leave_no_side_file_and_change_nothing(
    tmp_path: Path, store_file: Path
) -> None:
    db = tmp_path / "store" / "cma.db"
    db.parent.mkdir()
    shutil.copy(store_file, db)
    (db.parent / "cma.db.lock").touch()  # as a writer leaves it
    before = snapshot(db)
    for args in (("db", "info"), ("db", "check"), ("db", "backup", str(tmp_path / "b.db"))):
        done = cma(tmp_path, *args, "--db", str(db))
        assert done.returncode == 0, done.stdout + done.stderr
        _untouched(db, before)
    assert sorted(os.listdir(db.parent)) == ["cma.db", "cma.db.lock"]
    assert cma(tmp_path, "db", "check", "--db", str(tmp_path / "b.db")).returncode == 0


def as_another_user() -> list[str]:
    """The command prefix that runs a command as 'nobody' when the tests run as root
    (root writes into a 0555 directory anyway); empty when not root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a read-only directory")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path is 0700 under root)."""
    path = Path(tempfile.mkdtemp(prefix="cma-ro-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in path.rglob("*"):
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(path)


def test_read_only_commands_work_in_a_read_only_directory(
    world_readable_dir: Path, store_file: Path
) -> None:
    """A real read-only directory: chmod 0555, and not root (root writes anyway), so as
    root the commands run as 'nobody' (uid 65534)."""
    home = world_readable_dir
    store_dir = home / "ro"
    store_dir.mkdir()
    db = store_dir / "cma.db"
    shutil.copy(store_file, db)
    db.chmod(0o444)
    (store_dir / "cma.db.lock").touch(mode=0o600)  # a writer's, unreadable to that user
    (home / "out").mkdir(mode=0o777)
    (home / "out").chmod(0o777)
    store_dir.chmod(0o555)
    before = snapshot(db)
    user = as_another_user()
    env = clean_env(home)
    # nobody may not write coverage data here (coverage <7.10 and patch=subprocess)
    for name in ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG"):
        env.pop(name, None)
    for args in (("db", "info"), ("db", "check"), ("db", "backup", str(home / "out" / "b.db"))):
        done = subprocess.run(
            [*user, str(CMA), *args, "--db", str(db)], env=env, capture_output=True, text=True,
            timeout=60, cwd=home,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        _untouched(db, before)
    # The proof that the directory really was read-only for that user:
    probe = subprocess.run(
        [*user, sys.executable, "-c", f"open({str(store_dir / 'probe')!r}, 'w')"],
        capture_output=True, timeout=30, env=env, cwd=home,
    )  # fmt: skip
    assert probe.returncode != 0 and b"PermissionError" in probe.stderr
    assert sorted(os.listdir(store_dir)) == ["cma.db", "cma.db.lock"]


def test_db_info_beside_a_running_writer_reads_through_its_wal(
    tmp_path: Path, store_file: Path
) -> None:
    db = tmp_path / "cma.db"
    shutil.copy(store_file, db)
    writer = subprocess.Popen(
        [str(CMA), "run", "--headless", "--speed", "max", "--duration", "20s", "--db", str(db)],
        env=clean_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout is not None
        writer.stdout.readline()  # the first status line: the session is stored
        info = cma(tmp_path, "db", "info", "--db", str(db))
        assert info.returncode == 0, info.stderr
        assert "sessions  2" in info.stdout  # the new session, still only in the -wal
    finally:
        writer.terminate()
        writer.wait(timeout=30)
    assert writer.returncode == 0


# --- db backup destinations --------------------------------------------------------------


@pytest.mark.parametrize(
    ("dest", "words"),
    [
        ("/proc/x.db", "cannot write backup /proc/x.db: /proc accepts no new files"),
        ("{tmp}/adir", "backup destination {tmp}/adir is a directory"),
        ("{tmp}/missing/x.db", "directory {tmp}/missing does not exist"),
        ("{tmp}/afile/x.db", "{tmp}/afile is not a directory"),
        ("{tmp}/exists.db", "{tmp}/exists.db exists; choose a new path"),
    ],
)
def test_db_backup_to_a_place_it_cannot_write_exits_2_naming_it_and_leaves_nothing(
    dest: str, words: str, tmp_path: Path, store_file: Path
) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "exists.db").write_text("keep me")
    before = {p: snapshot(p) for p in tmp_path.iterdir()}
    target = dest.format(tmp=tmp_path)
    done = cma(tmp_path, "db", "backup", "--db", str(store_file), target)
    assert_refused(done, 2, words.format(tmp=tmp_path))
    assert {p: snapshot(p) for p in tmp_path.iterdir()} == before
    assert not Path("/proc/x.db").exists()


def test_db_backup_into_a_read_only_place_exits_2(world_readable_dir: Path) -> None:
    home = world_readable_dir
    db = home / "cma.db"
    build_store(db)
    db.chmod(0o644)
    locked = home / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    env = clean_env(home)
    for name in ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG"):
        env.pop(name, None)
    done = subprocess.run(
        [*as_another_user(), str(CMA), "db", "backup", "--db", str(db), str(locked / "b.db")],
        env=env, capture_output=True, text=True, timeout=60, cwd=home,
    )  # fmt: skip
    assert_refused(done, 2, f"cannot write backup {locked / 'b.db'}: Permission denied")
    assert os.listdir(locked) == []


# --- db info ------------------------------------------------------------------------------


def test_db_info_counts_open_and_closed_positions_apart(tmp_path: Path, store_file: Path) -> None:
    db = tmp_path / "cma.db"
    shutil.copy(store_file, db)
    conn = sqlite3.connect(db)
    rows = [("BTC/USDT", "open"), ("ETH/USDT", "open")] + [("SOL/USDT", "closed")] * 3
    conn.executemany(
        "INSERT INTO positions (symbol, side, qty, entry_price, cost_basis, opened_at, status)"
        " VALUES (?, 'long', '1', '100', '100', 1, ?)",
        rows,
    )
    conn.commit()
    conn.close()
    done = cma(tmp_path, "db", "info", "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert "positions 2 open, 3 closed" in done.stdout.splitlines()


# --- damaged files, in bulk, through the real command ---------------------------------------


@st.composite
def damage(draw: st.DrawFn, store: bytes) -> tuple[str, bytes]:
    """A kind of damage every cma must notice, applied to a real store."""
    kind = draw(st.sampled_from(["random", "truncated", "header"]))
    if kind == "random":
        data = draw(st.binary(min_size=1, max_size=3000).filter(lambda b: b[:1] != b"S"))
        return kind, Content(data)
    if kind == "truncated":
        return kind, Content(store[: draw(st.integers(1, len(store) - 1))])
    data = bytearray(store)
    data[draw(st.sampled_from(DETECTABLE_HEADER))] ^= 1 << draw(st.integers(0, 7))
    return kind, Content(data)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_damaged_store_is_refused_by_every_command_untouched(
    store_file: Path, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("damaged")
    kind, content = data.draw(damage(store_file.read_bytes()))
    command = data.draw(st.sampled_from(["run --headless", "db info", "db check", "db backup"]))
    db = home / "store" / "cma.db"
    db.parent.mkdir()
    db.write_bytes(content)
    before = snapshot(db)
    done = run_on(home, command, db, home / "copy.db")
    assert done.returncode in (1, 2), (kind, command, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("cma: "), done.stderr
    _untouched(db, before)
    assert not (home / "copy.db").exists()
