"""The adversarial CLI suite: odd input of every kind, and what ``cma`` may do with it.

Hypothesis generates config files, ``CMA_*`` variables, arguments and files in place
of the store, the CSVs and the themes. Each command must:

- exit with a documented code (0 ok, 1 failure, 2 bad input, 3 not available yet;
  130 only when this suite interrupted it);
- never print a Python traceback;
- on a non-zero exit, print a line that starts with ``cma`` (``cma: ...`` from
  :func:`tui.cli.die`, or argparse's ``cma run: error: ...``, which names the command);
- leave every file that this suite made without ``cma`` as it was (bytes, mode,
  mtime) with nothing new beside it, except what cma documents: the copy a backup
  writes, the file ``config init`` writes, and a store's ``-wal``/``-shm``/``.lock``.

Most examples call :func:`tui.cli.main` in this process (a subprocess costs about
0.4 s here): ``SystemExit`` is the exit code, any other exception is a traceback. A
smaller sample runs the real ``cma`` executable. Every run is reproducible
(``derandomize``) and stores no example database.

The suite runs as root in CI, and root ignores file modes: a file chmod-ed 000 is
still readable and one chmod-ed 0444 still writable. So "unreadable" and
"unwritable" are stood in for by what stops root too: directories, missing parents,
``/proc`` (neither creatable nor chmod-able) and over-long names. A read-only
(0444) file is still used, because its *mode* must survive: cma may chmod only
files it created. What root cannot test: a file whose read or write fails only
because of its mode bits.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from shared_data import shared_data_dir

from engine.config import Settings
from tui import cli
from tui.theming import DEFAULT_THEME, THEMES_DIR, load_theme_file, load_themes, theme_dirs

CMA = Path(sys.executable).with_name("cma")
DOCUMENTED_EXITS = {0, 1, 2, 3}
INTERRUPTED = 130
#: Seconds an in-process ``run`` may take before the suite interrupts it (SIGINT).
RUN_LIMIT = 6.0
CMA_LINE = re.compile(r"^cma( [a-z-]+)*: ", re.MULTILINE)
REAL_CSV_NAME = "binance_ETH-BTC_5m_2018-01.csv"

# Reproducible in CI: the same examples every run, and no example database written
# into the checkout. A run costs seconds, so no deadline.
BASE = settings(
    derandomize=True,
    # No "explain" phase: it reruns a failing example many times to list lines.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


# ---- running cma ----------------------------------------------------------------------


@dataclass
class Outcome:
    """What one command did."""

    argv: list[str]
    code: int | None
    out: str
    err: str
    crash: str = ""
    interrupted: bool = False

    def describe(self) -> str:
        return (
            f"cma {' '.join(self.argv)!r} -> {self.code}\n--- stdout\n{self.out[-2000:]}"
            f"\n--- stderr\n{self.err[-3000:]}\n--- crash\n{self.crash}"
        )


def base_env(home: Path) -> dict[str, str]:
    """This process's environment without ``CMA_*``, every cma path under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CMA_")}
    env["HOME"] = str(home)
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env["XDG_DATA_HOME"] = str(home / "data")
    env.pop("TMUX", None)
    return env


@contextlib.contextmanager
def _process_state(env: Mapping[str, str], cwd: Path) -> Iterator[None]:
    """Run with ``env`` as the whole environment and ``cwd`` as the directory; restore both."""
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


@contextlib.contextmanager
def _interrupt_after(seconds: float, fired: list[bool]) -> Iterator[None]:
    """Send this process SIGINT after ``seconds`` (a ``run`` that would go on too long).

    The headless runner turns SIGINT into a graceful stop; before it installs its
    handler, SIGINT is a KeyboardInterrupt that :func:`tui.cli.main` turns into 130.
    """
    armed = [True]

    def on_alarm(signum: int, frame: object) -> None:
        if armed[0]:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        # asyncio's loop resets the handlers it installed to the defaults on close.
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _never_console(argv: Sequence[str]) -> None:
    """This suite never opens the console in its own process (it would take the terminal)."""
    if "run" in argv and "--headless" not in argv and not {"-h", "--help"} & set(argv):
        raise AssertionError(f"in-process run without --headless: {argv}")
    commands = {"run", "db", "config", "keys", "data", *cli.NOT_YET, "--version", "-h", "--help"}
    if not set(argv) & commands:
        raise AssertionError(f"argv resolves to the console: {argv}")


def run_in_process(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> Outcome:
    """``cma argv`` through :func:`tui.cli.main`; any exception but SystemExit is a crash."""
    argv = list(argv)
    _never_console(argv)
    out, err = io.StringIO(), io.StringIO()
    fired: list[bool] = []
    code: int | None = None
    crash = ""
    with (
        _process_state(env, cwd),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        _interrupt_after(RUN_LIMIT, fired),
    ):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:  # sys.exit("text") prints the text and exits 1
                err.write(f"{exc.code}\n")
                code = 1
        except BaseException:
            crash = traceback.format_exc()
    return Outcome(argv, code, out.getvalue(), err.getvalue(), crash, bool(fired))


def run_subprocess(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> Outcome:
    """The real ``cma`` executable, no terminal, no input."""
    argv = list(argv)
    try:
        done = subprocess.run(
            [str(CMA), *argv],
            cwd=cwd, env=dict(env), capture_output=True, text=True, errors="replace",
            stdin=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        return Outcome(argv, None, str(exc.stdout), str(exc.stderr), "timed out after 60 s")
    return Outcome(argv, done.returncode, done.stdout, done.stderr)


def assert_well_behaved(o: Outcome) -> None:
    """Documented exit code, no traceback, a ``cma`` line when it failed."""
    assert not o.crash, o.describe()
    allowed = DOCUMENTED_EXITS | ({INTERRUPTED} if o.interrupted else set())
    assert o.code in allowed, o.describe()
    assert "Traceback" not in o.out + o.err, o.describe()
    if o.code not in (0, INTERRUPTED):
        assert CMA_LINE.search(o.err), "no `cma: ` line on stderr\n" + o.describe()


# ---- files the suite made, which cma must leave alone -------------------------------


@dataclass(frozen=True)
class FileState:
    """What must not change: content (or listing, for a directory), mode and mtime."""

    kind: str
    mode: int
    mtime_ns: int | None
    content: str


def _state(path: Path) -> FileState | None:
    try:
        st_ = path.lstat()
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st_.st_mode):
        return FileState("link", st_.st_mode, None, os.readlink(path))
    if stat.S_ISDIR(st_.st_mode):
        return FileState("dir", st_.st_mode, st_.st_mtime_ns, "\n".join(sorted(os.listdir(path))))
    if stat.S_ISREG(st_.st_mode):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return FileState("file", st_.st_mode, st_.st_mtime_ns, digest)
    # A device node: a write to it may touch its times, but never its mode.
    return FileState("other", st_.st_mode, None, "")


@dataclass
class Guard:
    """Files made without cma; ``check`` says which of them cma changed."""

    paths: list[Path] = field(default_factory=list)
    before: dict[Path, FileState | None] = field(default_factory=dict)
    beside: dict[Path, set[str]] = field(default_factory=dict)
    modes: dict[Path, int] = field(default_factory=dict)

    def watch_mode(self, path: Path) -> None:
        """Only the mode: a directory cma may write into (the working directory)."""
        self.modes[path] = path.stat().st_mode

    def watch(self, *paths: Path) -> None:
        for p in paths:
            self.paths.append(p)
            self.before[p] = _state(p)
            if p.parent.is_dir() and not str(p).startswith(("/proc", "/dev")):
                # Everything the test made so far is there before cma runs.
                self.beside.setdefault(p.parent, set()).update(os.listdir(p.parent))

    def check(self, allowed_new: Callable[[str], bool], o: Outcome) -> None:
        for p, mode in self.modes.items():
            assert p.stat().st_mode == mode, f"{p} chmod-ed to {p.stat().st_mode:o}\n" + (
                o.describe()
            )
        for p in self.paths:
            after = _state(p)
            if self.before[p] is None:
                continue  # did not exist: cma may create it (its own file then)
            assert after == self.before[p], f"{p} changed: {self.before[p]} -> {after}\n" + (
                o.describe()
            )
        for directory, names in self.beside.items():
            new = set(os.listdir(directory)) - names if directory.is_dir() else set()
            unexpected = sorted(n for n in new if not allowed_new(n))
            assert not unexpected, f"new files beside {directory}: {unexpected}\n" + o.describe()


def store_companions(db: Path, *, lock: bool) -> Callable[[str], bool]:
    """Names cma may leave beside a store it was pointed at (the store, if it was new)."""
    names = {db.name, f"{db.name}-wal", f"{db.name}-shm", f"{db.name}-journal"}
    if lock:
        names.add(f"{db.name}.lock")  # the writer lock (persistence/connection.py)
    return names.__contains__


def nothing_new(name: str) -> bool:
    return False


# ---- the odd values -------------------------------------------------------------------

ODD_NUMBER_TEXT = [
    "0", "-0", "-1", "1", "0.5", "1.5", "60", "nan", "NaN", "inf", "-inf", "Infinity",
    "1e999", "-1e999", "1e22", "1e308", "1e-320", "5e-324", "1e-999", "1_000", "0x10",
    "٣", " 1 ", "", " ", "max", "MAX", "Max", "1" * 300, "-" + "9" * 300,
]  # fmt: skip
ODD_DURATION_TEXT = [
    *ODD_NUMBER_TEXT, "1s", "0.5s", "2s", "0s", "-1s", "1e999s", "1e308h", "1ms", "s", "m",
    "1 s", "1S", "nanh", "infm", "1e-300s",
]  # fmt: skip
ODD_WORDS = [
    "", " ", "x", "q", "manual", "auto", "queue-only", "AUTO", "cma-dark", "cma-nope",
    "textual-dark", "../../etc/passwd", "-", "--", "--help", "\u202e", "é", "🙂", "x" * 300,
]  # fmt: skip


def _toml_key(key: str) -> str:
    return json.dumps(key, ensure_ascii=True)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def to_toml(doc: Mapping[str, Any]) -> str:
    """TOML text of a document of tables of values (keys always quoted)."""
    lines: list[str] = []
    for key, value in doc.items():
        if not isinstance(value, dict):
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{_toml_key(key)}]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


SECTIONS: dict[str, list[str]] = {
    name: list(f.annotation.model_fields)  # type: ignore[union-attr]
    for name, f in Settings.model_fields.items()
}

# No NUL (argv and paths cannot hold one) and no lone surrogate (not encodable).
safe_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=30,
)
odd_scalars = st.one_of(
    st.sampled_from(
        [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e22, 1e308, 5e-324, -1.0, 0.5, 1.5, 2.0]
    ),
    st.sampled_from([0, -1, 1, 2, 60, 2**63 - 1, 2**63, -(2**63), 10**22, 10**300]),
    st.sampled_from(ODD_NUMBER_TEXT + ODD_WORDS),
    st.sampled_from(["BTC/USDT", "btc/usdt", "BTC-USDT", "ETH/BTC", "1m", "5m", "7m", "sim"]),
    st.sampled_from(["replay", "ccxt", "paper", "keep", "expire", "queue", "reject"]),
    st.booleans(),
    st.floats(),
    st.integers(),
    safe_text,
)
odd_values = st.one_of(
    odd_scalars,
    st.lists(odd_scalars, max_size=4),
    st.lists(st.sampled_from(["BTC/USDT", "ETH/USDT", "ETH/BTC", "btc/usdt"]), max_size=4),
    st.dictionaries(st.sampled_from(["approve", "quit", "nope", "help"]), odd_scalars, max_size=2),
)
# User agents are imported by name: only names that are safe to import.
agent_paths = st.lists(
    st.sampled_from(
        ["no.such.module:Agent", "os:path", "engine.agents.momentum:MomentumAgent",
         "engine.agents.momentum:Nope", "json", ":", "", "tests.none:X", "momentum"]
    ),
    max_size=2,
)  # fmt: skip


@st.composite
def config_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A TOML document: known and unknown sections and keys, odd values."""
    doc: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from([*SECTIONS, "nope", "Risk", ""]))
        table = doc.setdefault(section, {})
        if not isinstance(table, dict):
            continue
        name = draw(st.sampled_from([*SECTIONS.get(section, []), "nope", "api_key"]))
        value = draw(agent_paths if name == "user" else odd_values)
        table[name] = value
    if draw(st.booleans()) and draw(st.booleans()):
        doc[draw(st.sampled_from(["speed", "store", "nope"]))] = draw(odd_scalars)
    return doc


@st.composite
def config_bytes(draw: st.DrawFn) -> bytes:
    """The bytes of a config file: TOML with odd values, broken UTF-8 or random bytes."""
    kind = draw(st.sampled_from(["toml", "toml", "toml", "bad-utf8", "random", "text"]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "text":
        return draw(safe_text).encode()
    text = to_toml(draw(config_documents())).encode()
    if kind == "bad-utf8":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xfe\xff"]))
        text += b"" if draw(st.booleans()) else b'\n["risk"]\n"initial_cash" = "\xe9"\n'
    return text


# ---- the files put in place of store, CSVs and themes -------------------------------

PATH_KINDS = [
    "missing", "missing-deep", "dir", "foreign-text", "readonly-text", "symlink-to-text",
    "device", "proc-missing", "proc-file", "long-name", "empty", "relative-new",
]  # fmt: skip
READ_ONLY_PATH_KINDS = [*PATH_KINDS, "dev-null"]


def make_device(path: Path) -> bool:
    """A private copy of /dev/null (cma must not chmod it; the real one is the system's)."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError):
        return False
    return True


def odd_path(kind: str, tmp: Path, guard: Guard, stem: str = "target") -> str:
    """A path of the given kind under ``tmp`` (made here, so watched), as argv text."""
    p = tmp / f"{stem}.x"
    if kind == "missing":
        return str(p)
    if kind == "missing-deep":
        return str(tmp / f"{stem}-no" / "such" / "dir" / "x.db")
    if kind == "dir":
        p.mkdir()
        (p / "keep.txt").write_text("a user's file\n")
        guard.watch(p, p / "keep.txt")
        return str(p)
    if kind in ("foreign-text", "readonly-text", "symlink-to-text"):
        p.write_text("not cma's: a user's notes\n")
        if kind == "readonly-text":
            p.chmod(0o444)
        guard.watch(p)
        if kind == "symlink-to-text":
            link = tmp / f"{stem}-link.x"
            link.symlink_to(p)
            guard.watch(link)
            return str(link)
        return str(p)
    if kind == "device":
        if not make_device(p):
            return str(tmp / f"{stem}-nodev" / "x")
        guard.watch(p)
        return str(p)
    if kind == "dev-null":
        return "/dev/null"
    if kind == "proc-missing":
        return f"/proc/cma-adversarial-{stem}.db"
    if kind == "proc-file":
        return "/proc/self/status"
    if kind == "long-name":
        return str(tmp / ("x" * 300))
    if kind == "empty":
        return ""  # Path("") is ".", the working directory (watched by every test)
    if kind == "relative-new":
        return f"{stem}-relative.x"
    raise AssertionError(kind)


@dataclass
class Box:
    """One example's own directory: cwd, HOME and XDG dirs, with the cwd watched."""

    root: Path
    guard: Guard

    @property
    def env(self) -> dict[str, str]:
        return base_env(self.root / "home")


@contextlib.contextmanager
def box() -> Iterator[Box]:
    with tempfile.TemporaryDirectory(prefix="cma-adv-") as name:
        root = Path(name)
        (root / "home").mkdir()
        (root / "work").mkdir()
        guard = Guard()
        guard.watch_mode(root / "work")
        yield Box(root / "work", guard)


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store made by the real cma, as a user would make one."""
    home = tmp_path_factory.mktemp("real-store")
    db = home / "real.db"
    done = run_subprocess(
        ["run", "--headless", "--speed", "max", "--duration", "2s", "--db", str(db)],
        base_env(home),
        home,
    )
    assert done.code == 0, done.describe()
    for extra in home.glob("real.db-*"):
        raise AssertionError(f"the stopped writer left {extra}")
    return db


@pytest.fixture(scope="module")
def real_csv() -> Path:
    return shared_data_dir() / REAL_CSV_NAME


def other_sqlite(path: Path, wal: bool) -> None:
    """Another application's SQLite file (a notes app)."""
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('remember the milk')")
    conn.commit()
    conn.close()
    for extra in path.parent.glob(f"{path.name}-*"):
        extra.unlink()


STORE_KINDS = [
    "random", "text", "truncated", "flipped", "header-only", "other-sqlite", "other-sqlite-wal",
    "real-readonly-mode",
]  # fmt: skip


def store_in_place(kind: str, data: st.DataObject, dest: Path, real: Path) -> bool:
    """Write a file of ``kind`` at ``dest``; True if it is foreign (must stay untouched)."""
    if kind == "random":
        dest.write_bytes(data.draw(st.binary(min_size=1, max_size=8192), label="bytes"))
    elif kind == "text":
        dest.write_text("id,name\n1,not a database\n")
    elif kind in ("truncated", "header-only"):
        blob = real.read_bytes()
        cut = 100 if kind == "header-only" else data.draw(st.integers(1, len(blob) - 1), "cut")
        dest.write_bytes(blob[:cut])
    elif kind == "flipped":
        blob = bytearray(real.read_bytes())
        # the header (first 100 bytes) or any page
        at = data.draw(st.one_of(st.integers(0, 99), st.integers(0, len(blob) - 1)), "at")
        blob[at] ^= data.draw(st.integers(1, 255), label="xor")
        dest.write_bytes(bytes(blob))
    elif kind in ("other-sqlite", "other-sqlite-wal"):
        other_sqlite(dest, wal=kind.endswith("wal"))
    elif kind == "real-readonly-mode":
        shutil.copyfile(real, dest)
        dest.chmod(0o444)  # a user's read-only copy of a real store: its mode must stay
    else:
        raise AssertionError(kind)
    return True


# ---- 1. config files ------------------------------------------------------------------


@settings(BASE, max_examples=120)
@given(content=config_bytes())
@example(content=b'[feed]\nsymbols = ["BTC/USDT"]\n# caf\xe9\n')
def test_any_config_file_gives_one_verdict_and_no_traceback(content: bytes) -> None:
    """`config validate` and `config show` agree on every file and touch none."""
    with box() as b:
        path = b.root / "config.toml"
        path.write_bytes(content)
        b.guard.watch(path)
        validate = run_in_process(["config", "validate", str(path)], b.env, b.root)
        show = run_in_process(["config", "show", "--config", str(path)], b.env, b.root)
        for o in (validate, show):
            assert_well_behaved(o)
            assert o.code in (0, 2), o.describe()
            b.guard.check(nothing_new, o)
        assert validate.code == show.code, validate.describe() + show.describe()
        if validate.code == 2:
            assert "config" in validate.err, validate.describe()


@settings(BASE, max_examples=25)
@given(doc=config_documents())
# The cases issue 8 names, then generated ones.
@example(doc={"risk": {"initial_cash": "1e22"}})
@example(doc={"risk": {"initial_cash": 10**300}})
@example(doc={"feed": {"speed": math.inf}})
@example(doc={"feed": {"symbols": ["BTC/USDT", "BTC/USDT"]}})
@example(doc={"agents": {"user": ["no.such.module:Agent"]}})
@example(doc={"ui": {"keymap": {"nope": "x"}}})
@example(doc={"ui": {"keymap": {"approve": "q"}}})
@example(doc={"broker": {"kind": "ccxt"}})
@example(doc={"feed": {"kind": "replay"}})
def test_a_config_that_validates_also_runs(doc: dict[str, Any]) -> None:
    """One validation path: `config validate` passes exactly what `run` accepts."""
    with box() as b:
        path = b.root / "config.toml"
        path.write_text(to_toml(doc), encoding="utf-8")
        b.guard.watch(path)
        db = b.root / "store.db"
        validate = run_in_process(["config", "validate", str(path)], b.env, b.root)
        feed = doc.get("feed")
        # At full speed the engine sizes trades within the second (where huge numbers
        # crash), unless the file's own speed is what is being tried.
        fast = [] if isinstance(feed, dict) and "speed" in feed else ["--speed", "max"]
        argv = ["run", "--headless", *fast, "--duration", "1s", "--config", str(path)]
        run = run_in_process([*argv, "--db", str(db)], b.env, b.root)
        for o in (validate, run):
            assert_well_behaved(o)
        b.guard.check(store_companions(db, lock=True), run)
        store = doc.get("store")
        if isinstance(store, dict) and "path" in store:
            return  # --db replaces store.path, so run never sees the file's value
        if validate.code == 0:
            assert run.code in (0, INTERRUPTED), validate.describe() + run.describe()
        else:
            assert run.code == validate.code, validate.describe() + run.describe()


# ---- 2. CMA_* variables ---------------------------------------------------------------


@st.composite
def cma_variables(draw: st.DrawFn) -> dict[str, str]:
    names = st.one_of(
        st.builds(
            lambda s, f: f"CMA_{s}__{f}".upper(),
            st.sampled_from(list(SECTIONS)),
            st.sampled_from(sorted({f for fs in SECTIONS.values() for f in fs})),
        ),
        st.sampled_from(
            ["CMA_NOPE__X", "CMA_RISK__NOPE", "CMA_RISK", "CMA_FEED", "CMA_", "CMA___X",
             "CMA_RISK__", "CMA_RISK____X", "cma_risk__initial_cash", "CMA_RISK__MAX_DRAWDOWN__X",
             "CMA_STORE__PATH", "CMA_UI__KEYMAP", "CMA_FEED__SYMBOLS", "CMA_FEED__SPEED",
             "CMA_RISK__INITIAL_CASH", "CMA_BROKER__KIND", "CMA_AGENTS__USER"]
        ),
    )  # fmt: skip
    values = st.one_of(
        st.sampled_from(ODD_NUMBER_TEXT + ODD_WORDS),
        st.sampled_from(
            ['{"initial_cash": "1e999"}', '["BTC/USDT", "BTC/USDT"]', "[1, 2", "{}", "[]",
             "null", "true", '{"approve": "q"}', "BTC/USDT,ETH/BTC", ",,,", "ccxt", "1e22"]
        ),
        safe_text,
    )  # fmt: skip
    env = draw(st.dictionaries(names, values, min_size=1, max_size=4))
    if "CMA_AGENTS__USER" in env:
        env["CMA_AGENTS__USER"] = draw(st.sampled_from(["no.such:Agent", "os:path", ""]))
    return env


@settings(BASE, max_examples=80)
@given(variables=cma_variables())
def test_any_cma_variables_give_one_verdict_naming_the_variable(
    variables: dict[str, str],
) -> None:
    with box() as b:
        fine = b.root / "fine.toml"
        fine.write_text("[engine]\nstatus_interval_seconds = 4.0\n")  # no variable meets it
        b.guard.watch(fine)
        env = b.env | variables
        show = run_in_process(["config", "show"], env, b.root)
        validate = run_in_process(["config", "validate", str(fine)], env, b.root)
        for o in (show, validate):
            assert_well_behaved(o)
            assert o.code in (0, 2), o.describe()
            b.guard.check(nothing_new, o)
        assert show.code == validate.code, show.describe() + validate.describe()
        if validate.code == 2:
            # The variable is at fault, not the file, and the message says which one.
            assert any(name.upper() in validate.err.upper() for name in variables), (
                validate.describe()
            )
            assert f"in {fine}" not in validate.err, validate.describe()


@settings(BASE, max_examples=15)
@given(variables=cma_variables())
@example(variables={"CMA_RISK__INITIAL_CASH": "1e999"})
@example(variables={"CMA_RISK__MIN_NOTIONAL": "1e22"})
@example(variables={"CMA_FEED__SPEED": "inf"})
def test_variables_that_show_fine_also_run(variables: dict[str, str]) -> None:
    with box() as b:
        env = b.env | variables
        db = b.root / "store.db"
        show = run_in_process(["config", "show"], env, b.root)
        given = {n.upper() for n in variables}
        fast = [] if given & {"CMA_FEED__SPEED", "CMA_FEED"} else ["--speed", "max"]
        run = run_in_process(
            ["run", "--headless", *fast, "--duration", "1s", "--db", str(db)], env, b.root
        )
        for o in (show, run):
            assert_well_behaved(o)
        b.guard.check(store_companions(db, lock=True), run)
        if given & {"CMA_STORE__PATH", "CMA_STORE"}:
            return  # --db replaces store.path, so run never sees the variable's value
        if show.code == 0:
            assert run.code in (0, INTERRUPTED), show.describe() + run.describe()
        else:
            assert run.code == show.code, show.describe() + run.describe()


# ---- 3. arguments ---------------------------------------------------------------------


@st.composite
def run_arguments(draw: st.DrawFn, tmp: Path, guard: Guard) -> list[str]:
    argv = ["run", "--headless"]
    options: list[tuple[str, st.SearchStrategy[str]]] = [
        ("--speed", st.sampled_from(ODD_NUMBER_TEXT)),
        ("--seed", st.sampled_from(ODD_NUMBER_TEXT)),
        ("--policy", st.sampled_from(ODD_WORDS)),
        ("--theme", st.sampled_from(ODD_WORDS)),
        ("--feed", st.sampled_from(["sim", "replay", "ccxt", "csv", ""])),
    ]
    for option, values in options:
        if draw(st.booleans()):
            argv += [option, draw(values)]
    argv += ["--duration", draw(st.sampled_from(ODD_DURATION_TEXT))]
    db_kind = draw(st.sampled_from([*PATH_KINDS, "fresh", "fresh"]))
    db = str(tmp / "fresh.db") if db_kind == "fresh" else odd_path(db_kind, tmp, guard, "db")
    argv += ["--db", db]
    if draw(st.booleans()):
        kinds = draw(st.lists(st.sampled_from(READ_ONLY_PATH_KINDS), min_size=1, max_size=2))
        argv += ["--files", *(odd_path(k, tmp, guard, f"csv{i}") for i, k in enumerate(kinds))]
    if draw(st.booleans()):
        argv += ["--config", odd_path(draw(st.sampled_from(READ_ONLY_PATH_KINDS)), tmp, guard, "c")]
    return argv


@st.composite
def db_arguments(draw: st.DrawFn, tmp: Path, guard: Guard, store: Path) -> list[str]:
    action = draw(st.sampled_from(["info", "check", "backup"]))
    db_kind = draw(st.sampled_from([*READ_ONLY_PATH_KINDS, "store", "store"]))
    if db_kind == "store":
        db = tmp / "copy.db"
        shutil.copyfile(store, db)
        guard.watch(db)  # the read-only commands must not change a store either
        where = str(db)
    else:
        where = odd_path(db_kind, tmp, guard, "db")
    argv = ["db", action]
    if action == "backup":
        argv.append(odd_path(draw(st.sampled_from(PATH_KINDS)), tmp, guard, "backup"))
    return [*argv, "--db", where] if draw(st.booleans()) else ["--db", where, *argv]


@st.composite
def config_arguments(draw: st.DrawFn, tmp: Path, guard: Guard) -> list[str]:
    action = draw(st.sampled_from(["show", "validate", "init"]))
    force = action == "init" and draw(st.booleans())
    kinds = PATH_KINDS
    if force:  # --force overwrites the file named, as documented: name none of the user's
        kinds = [k for k in PATH_KINDS if not k.endswith("text")]
    where = odd_path(draw(st.sampled_from(kinds)), tmp, guard, "config")
    if action == "validate":
        return ["config", "validate", where]
    return ["config", action, "--config", where, *(["--force"] if force else [])]


junk_token = st.one_of(
    st.sampled_from(
        ["--speed", "--duration", "--seed", "--files", "--db", "--config", "--policy", "--theme",
         "--feed", "--force", "--headless", "--", "-", "-x", "--nope", "--help", "-h",
         "--version", "run", "db", "config", "info", "check", "backup", "show", "validate",
         "init", "backtest", "keys"]
    ),
    st.sampled_from(ODD_NUMBER_TEXT + ODD_WORDS),
    safe_text,
)  # fmt: skip


@st.composite
def junk_arguments(draw: st.DrawFn) -> list[str]:
    """Loose tokens after a command (never the console: run is always headless here)."""
    head = draw(st.sampled_from([["db"], ["config"], ["run", "--headless"], ["keys"], []]))
    tail = draw(st.lists(junk_token, max_size=5))
    if not head:
        return ["--version"] if not tail else [*tail, "--help"]
    argv = [*head, *tail]
    if head[0] == "run":
        argv = [*argv, "--duration", "1s", "--speed", "max", "--db", "store.db"]
    return argv


def _allowed_after(argv: Sequence[str], cwd: Path) -> Callable[[str], bool]:
    """What cma may create where it was told to: a path named in ``argv`` (a new store,
    a backup, a config file, their missing parents) and a store's companions."""
    named: set[str] = set()
    for arg in argv:
        if not arg or arg.startswith("-"):
            continue
        path = cwd / arg
        for base in (cwd, cwd.parent):
            with contextlib.suppress(ValueError):
                named.update(path.relative_to(base).parts[:1])

    def allowed(name: str) -> bool:
        if name in named:
            return True
        return any(name == f"{n}{s}" for n in named for s in ("-wal", "-shm", "-journal", ".lock"))

    return allowed


@settings(BASE, max_examples=110)
@given(data=st.data(), which=st.sampled_from(["run", "db", "db", "config", "config", "junk"]))
def test_odd_arguments_to_every_command(real_store: Path, data: st.DataObject, which: str) -> None:
    with box() as b:
        if which == "run":
            argv = data.draw(run_arguments(b.root, b.guard), label="argv")
        elif which == "db":
            argv = data.draw(db_arguments(b.root, b.guard, real_store), label="argv")
        elif which == "config":
            argv = data.draw(config_arguments(b.root, b.guard), label="argv")
        else:
            argv = data.draw(junk_arguments(), label="argv")
        if "run" in argv and "--headless" not in argv and "--help" not in argv:
            argv = ["run", "--headless", *argv]  # junk that resolves to the console
        dest = argv[argv.index("backup") + 1] if which == "db" and "backup" in argv else None
        existed = dest is not None and os.path.lexists(b.root / dest)
        o = run_in_process(argv, b.env, b.root)
        assert_well_behaved(o)
        b.guard.check(_allowed_after(argv, b.root), o)
        if o.code != 0 and dest and not existed:
            assert not os.path.lexists(b.root / dest), "a failed backup left a file\n" + (
                o.describe()
            )


@pytest.mark.parametrize(
    "argv",
    [
        [], ["run"], ["db"], ["db", "check"], ["db", "backup"], ["db", "info"], ["config"],
        ["config", "show"], ["config", "validate"], ["config", "init"], ["backtest"],
        ["optimize"], ["report"], ["keys"], ["data"],
    ],
)  # fmt: skip
def test_help_of_every_command_exits_0(argv: list[str], tmp_path: Path) -> None:
    o = run_in_process([*argv, "--help"], base_env(tmp_path), tmp_path)
    assert_well_behaved(o)
    assert o.code == 0, o.describe()
    assert o.out.startswith("usage: cma"), o.describe()


def test_version_of_the_real_executable(tmp_path: Path) -> None:
    o = run_subprocess(["--version"], base_env(tmp_path), tmp_path)
    assert_well_behaved(o)
    assert o.code == 0, o.describe()
    assert re.search(r"\d+\.\d+", o.out + o.err), o.describe()


# ---- 4. files in place of the store ----------------------------------------------------


@settings(BASE, max_examples=70)
@given(
    data=st.data(),
    kind=st.sampled_from(STORE_KINDS),
    command=st.sampled_from(["info", "check", "backup", "info", "check", "backup", "run"]),
)
def test_a_file_that_is_not_a_sound_store(
    real_store: Path, data: st.DataObject, kind: str, command: str
) -> None:
    """Refused with exit 1 (corrupt) or 2 (not a cma store), the file left as it was."""
    with box() as b:
        db = b.root / "in-place.db"
        store_in_place(kind, data, db, real_store)
        b.guard.watch(db)
        if command == "run":
            argv = ["run", "--headless", "--speed", "max", "--duration", "1s", "--db", str(db)]
        elif command == "backup":
            argv = ["db", "backup", str(b.root / "backup.db"), "--db", str(db)]
        else:
            argv = ["db", command, "--db", str(db)]
        o = run_in_process(argv, b.env, b.root)
        assert_well_behaved(o)
        foreign = kind in ("random", "text", "other-sqlite", "other-sqlite-wal")
        if kind == "random" and db.read_bytes().startswith(b"SQLite format 3\x00"):
            # Random bytes behind SQLite's own magic: whose file it was cannot be read
            # any more, so "damaged" (1) is as right as "not a cma store" (2).
            foreign = False
            assert o.code in (1, 2), o.describe()
        if foreign:
            assert o.code == 2, o.describe()
            assert "not a cma store" in o.err, o.describe()
        if kind == "header-only":
            assert o.code in (1, 2), o.describe()
        if command == "backup" and o.code == 0:
            assert (b.root / "backup.db").is_file(), o.describe()
        elif command == "backup":
            assert not (b.root / "backup.db").exists(), o.describe()

        def allowed(name: str) -> bool:
            if command == "backup" and o.code == 0:
                return name == "backup.db"
            # The writer takes its lock (`.lock` beside the store) before it opens the
            # file; -wal/-shm only if it went on to use the file as its store.
            if command == "run" and name == f"{db.name}.lock":
                return True
            used = command == "run" and o.code in (0, INTERRUPTED)
            return used and store_companions(db, lock=True)(name)

        if kind == "real-readonly-mode" and command == "run" and o.code == 0:
            # A sound store: the writer may write it, but never chmod it.
            assert stat.S_IMODE(db.stat().st_mode) == 0o444, o.describe()
            return
        if command == "run" and o.code in (0, INTERRUPTED):
            return  # a damaged page it never read: it was used as a store
        b.guard.check(allowed, o)


def test_read_only_commands_leave_a_real_store_as_it_was(real_store: Path, tmp_path: Path) -> None:
    """`db info`, `db check`, `db backup` open the store read-only: no -wal/-shm, no change."""
    db = tmp_path / "store.db"
    shutil.copyfile(real_store, db)
    guard = Guard()
    guard.watch(db)
    for argv in (
        ["db", "info", "--db", str(db)],
        ["db", "check", "--db", str(db)],
        ["db", "backup", str(tmp_path / "copy.db"), "--db", str(db)],
    ):
        o = run_in_process(argv, base_env(tmp_path), tmp_path)
        assert_well_behaved(o)
        assert o.code == 0, o.describe()
        guard.check(lambda name: name == "copy.db", o)


# ---- 5. files in place of the CSVs ----------------------------------------------------


CSV_KINDS = ["random", "truncated", "truncated", "binary-named", "dir", "dev-null", "proc",
             "missing", "flipped", "empty-file", "header-only"]  # fmt: skip


@settings(BASE, max_examples=45)
@given(data=st.data(), kinds=st.lists(st.sampled_from(CSV_KINDS), min_size=1, max_size=2))
def test_files_in_place_of_the_csvs(real_csv: Path, data: st.DataObject, kinds: list[str]) -> None:
    """Every CSV problem names its file; nothing is written beside the CSVs."""
    with box() as b:
        files: list[str] = []
        for i, kind in enumerate(kinds):
            target = b.root / f"d{i}" / REAL_CSV_NAME.replace("ETH", f"E{i}TH")
            target.parent.mkdir()
            blob = real_csv.read_bytes()
            if kind == "random":
                target.write_bytes(data.draw(st.binary(max_size=2000), label="bytes"))
            elif kind == "binary-named":
                target = target.with_name("binance_BTC-USDT_1m_2020-01.csv")
                target.write_bytes(bytes(range(256)) * 4)
            elif kind == "truncated":
                target.write_bytes(blob[: data.draw(st.integers(0, len(blob)), label="cut")])
            elif kind == "flipped":
                arr = bytearray(blob)
                arr[data.draw(st.integers(0, len(arr) - 1), label="at")] = data.draw(
                    st.sampled_from(list(b",\n\xff-e.0x ")), label="byte"
                )
                target.write_bytes(bytes(arr))
            elif kind == "empty-file":
                target.write_bytes(b"")
            elif kind == "header-only":
                target.write_bytes(blob.split(b"\n", 1)[0] + b"\n")
            elif kind == "dir":
                target.mkdir()
            elif kind == "dev-null":
                files.append("/dev/null")
                continue
            elif kind == "proc":
                files.append("/proc/cma-adversarial.csv")
                continue
            elif kind == "missing":
                pass
            b.guard.watch(target)
            files.append(str(target))
        db = b.root / "store.db"
        argv = ["run", "--headless", "--speed", "max", "--duration", "1s", "--db", str(db)]
        o = run_in_process([*argv, "--files", *files], b.env, b.root)
        assert_well_behaved(o)
        b.guard.check(store_companions(db, lock=True), o)
        if o.code == 2:
            assert any(Path(f).name in o.err for f in files), "no file named\n" + o.describe()


def test_the_shared_csvs_are_left_as_they_were(real_csv: Path, tmp_path: Path) -> None:
    guard = Guard()
    guard.watch(real_csv)
    db = tmp_path / "store.db"
    o = run_in_process(
        ["run", "--headless", "--speed", "max", "--duration", "1s", "--db", str(db),
         "--files", str(real_csv)],
        base_env(tmp_path), tmp_path,
    )  # fmt: skip
    assert_well_behaved(o)
    assert o.code == 0, o.describe()
    guard.check(nothing_new, o)


# ---- 6. files in place of the themes ---------------------------------------------------


@st.composite
def theme_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["random", "toml", "toml", "bad-utf8", "valid"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    doc: dict[str, Any] = {}
    if kind == "valid" or draw(st.booleans()):
        doc["name"] = draw(st.sampled_from(["my-theme", DEFAULT_THEME, "Bad Name", "", "x" * 50]))
        doc["primary"] = draw(st.sampled_from(["#ff0000", "red", "nope", "#ff", "rgb(1,2,3)"]))
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(
            ["secondary", "background", "dark", "luminosity_spread", "text_alpha", "nope",
             "variables", "name", "primary"]
        ))  # fmt: skip
        doc[key] = draw(
            st.one_of(
                odd_scalars,
                st.dictionaries(st.sampled_from(["pnl-up", "nope", "text-dim"]), odd_scalars),
            )
        )
    text = to_toml(doc).encode()
    if kind == "bad-utf8":
        text += b'"secondary" = "\xff"\n'
    return text


@settings(BASE, max_examples=60)
@given(files=st.lists(theme_bytes(), min_size=1, max_size=4), add_dir=st.booleans())
def test_garbage_user_themes_fall_back_and_never_raise(files: list[bytes], add_dir: bool) -> None:
    with box() as b:
        user = b.root / "home" / "config" / "cma" / "themes"
        user.mkdir(parents=True)
        for i, content in enumerate(files):
            (user / f"t{i}.toml").write_bytes(content)
        if add_dir:
            (user / "a-directory.toml").mkdir()
        b.guard.watch(*user.iterdir())
        with _process_state(b.env, b.root):  # the user's dir as the console finds it
            dirs = theme_dirs()
            assert dirs[-1] == user, dirs
            loaded, problems = load_themes(dirs)
        names = {t.name for t in loaded}
        shipped = {p.stem for p in THEMES_DIR.glob("*.toml")}
        assert DEFAULT_THEME in names
        assert shipped <= names | {p.path.stem for p in problems}
        bad = {p.path.name for p in problems}
        for path in user.glob("*.toml"):
            try:
                load_theme_file(path)
            except ValueError:
                assert path.name in bad, path
            else:
                assert path.name not in bad, path
        for problem in problems:
            assert "\n" not in str(problem) and str(problem).startswith("theme "), problem
        b.guard.check(nothing_new, Outcome([], 0, "", ""))


# ---- 7. the same, through the real executable ----------------------------------------


# Shrinking re-runs processes for minutes: a failing example here is reported as found.
@settings(BASE, max_examples=40, phases=[Phase.explicit, Phase.generate])
@given(data=st.data(), which=st.sampled_from(["config", "env", "args", "store"]))
def test_a_sample_through_the_real_cma(real_store: Path, data: st.DataObject, which: str) -> None:
    """The real process: what an in-process call cannot show (exit paths, flushing, signals)."""
    with box() as b:
        env = b.env
        db = b.root / "store.db"
        if which == "config":
            path = b.root / "config.toml"
            path.write_bytes(data.draw(config_bytes(), label="config"))
            b.guard.watch(path)
            argv = data.draw(
                st.sampled_from(
                    [
                        ["config", "validate", str(path)],
                        ["config", "show", "--config", str(path)],
                        [
                            "run",
                            "--headless",
                            "--duration",
                            "1s",
                            "--config",
                            str(path),
                            "--db",
                            str(db),
                        ],
                    ]
                ),
                label="argv",
            )
        elif which == "env":
            env = env | data.draw(cma_variables(), label="env")
            argv = data.draw(
                st.sampled_from(
                    [["config", "show"], ["run", "--headless", "--duration", "1s", "--db", str(db)]]
                ),
                label="argv",
            )
        elif which == "args":
            argv = data.draw(
                st.one_of(
                    run_arguments(b.root, b.guard),
                    db_arguments(b.root, b.guard, real_store),
                    config_arguments(b.root, b.guard),
                    junk_arguments(),
                ),
                label="argv",
            )
            if "run" in argv and "--headless" not in argv and "--help" not in argv:
                argv = ["run", "--headless", *argv]
            if "run" in argv and "--help" not in argv:
                argv = [*argv, "--duration", "1s"]  # the last one wins: no endless run here
        else:
            kind = data.draw(st.sampled_from(STORE_KINDS), label="kind")
            store_in_place(kind, data, db, real_store)
            b.guard.watch(db)
            argv = data.draw(
                st.sampled_from(
                    [
                        ["db", "info", "--db", str(db)],
                        ["db", "check", "--db", str(db)],
                        [
                            "run",
                            "--headless",
                            "--speed",
                            "max",
                            "--duration",
                            "1s",
                            "--db",
                            str(db),
                        ],
                    ]
                ),
                label="argv",
            )
            o = run_subprocess(argv, env, b.root)
            assert_well_behaved(o)
            if kind in ("random", "text", "other-sqlite", "other-sqlite-wal"):
                assert o.code == 2, o.describe()
                assert "not a cma store" in o.err, o.describe()
            if "run" not in argv:  # db info and db check only read
                b.guard.check(nothing_new, o)
            elif o.code not in (0, INTERRUPTED):
                b.guard.check(lambda name: name == f"{db.name}.lock", o)
            return
        o = run_subprocess(argv, env, b.root)
        assert_well_behaved(o)
        b.guard.check(_allowed_after(argv, b.root), o)
