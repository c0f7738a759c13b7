"""Every command the README shows runs, and does what the README says it does.

The commands are read from the README itself: each line of its ```sh blocks,
and the first column of its Commands table. Each one must have a check here
(:data:`CHECKS`) or be listed as covered elsewhere, with where
(:data:`ELSEWHERE`); a new README command with neither fails
:func:`test_every_readme_command_has_a_check`, so the README cannot drift.

A check runs the command as written, through bash, with the venv's ``bin``
first on PATH (what ``. .venv/bin/activate`` does), in a temporary home
(``XDG_*``). Only what would run forever or touch the user's files is bounded:
``--duration`` is shortened or added, ``--db`` points into the temporary
folder, and ``../shared/data`` is the shared data folder wherever it is.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from shared_data import shared_data_dir

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
RUN_FOR = "6s"  # a headless run the README lets go on for longer
STATUS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d) (running|paused|stopped) ")


# --- reading the README ------------------------------------------------------------------


def _sh_lines(text: str) -> list[str]:
    """Each command line of the ```sh blocks, its trailing comment removed."""
    out: list[str] = []
    for body in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M):
        for line in body.splitlines():
            command = re.sub(r"\s+#\s.*$", "", line).strip()
            if command and not command.startswith("#"):
                out.append(command)
    return out


def _table_commands(text: str) -> list[str]:
    """The code spans of the first column of the table under ``## Commands``."""
    section = text.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    out: list[str] = []
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        first = row.split("|")[1]
        for code in re.findall(r"`([^`]+)`", first):
            out.append(code if code.startswith("cma") else f"cma {code}")
    return out


def readme_commands() -> list[str]:
    """Every command the README shows, once each, in README order."""
    text = README.read_text(encoding="utf-8")
    return list(dict.fromkeys(_sh_lines(text) + _table_commands(text)))


def readme_block(language: str) -> str:
    """The first fenced block of ``language`` in the README."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^```{language}\n(.*?)^```", text, re.S | re.M)
    assert match is not None, f"the README has no {language} block"
    return match.group(1)


# --- running a README command ---------------------------------------------------------


@dataclass
class Home:
    """A temporary home: its XDG folders, and a working folder to run commands in."""

    root: Path

    @property
    def work(self) -> Path:
        path = self.root / "work"
        path.mkdir(exist_ok=True)
        return path

    @property
    def store(self) -> Path:
        return self.root / "data" / "cma" / "cma.db"

    @property
    def config(self) -> Path:
        return self.root / "config" / "cma" / "config.toml"

    def env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("CMA_") and k != "PYTHONPATH"
        }
        env.update(
            PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            XDG_DATA_HOME=str(self.root / "data"),
            XDG_CONFIG_HOME=str(self.root / "config"),
            XDG_STATE_HOME=str(self.root / "state"),
            CMA_ENGINE__STATUS_INTERVAL_SECONDS="1",
        )
        return env

    def sh(self, command: str, cwd: Path | None = None, timeout: float = 120) -> Done:
        """Run ``command`` through bash, as a person would type it."""
        proc = subprocess.run(
            ["bash", "-c", command], cwd=cwd or self.work, env=self.env(),
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        return Done(command, proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Done:
    command: str
    code: int
    out: str
    err: str

    def ok(self) -> Done:
        assert self.code == 0, f"{self.command!r} exited {self.code}:\n{self.out}\n{self.err}"
        assert "Traceback" not in self.out + self.err, self.err
        return self


def bounded(command: str, duration: str = RUN_FOR) -> str:
    """``command`` with ``--duration`` set to ``duration`` and shared data found in place."""
    command = command.replace("../shared/data", str(shared_data_dir()))
    if "--duration" in command:
        return re.sub(r"--duration \S+", f"--duration {duration}", command)
    return f"{command} --duration {duration}"


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        return conn.execute(sql).fetchall()


def count(db: Path, table: str, where: str = "1") -> int:
    [(n,)] = rows(db, f"SELECT COUNT(*) FROM {table} WHERE {where}")
    assert isinstance(n, int)
    return n


# --- the checks, one per README command ----------------------------------------------------

DEMO = "cma run --headless --policy auto --speed max --duration 20s"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Home, Done]]:
    """The README's headless demo run, once, in its own home; the db commands read its store."""
    home = Home(tmp_path_factory.mktemp("demo"))
    yield home, home.sh(bounded(DEMO))


def check_demo(home: Home, demo: tuple[Home, Done]) -> None:
    """ "trade the demo market as fast as it goes": it stops by itself and the store has fills."""
    demo_home, done = demo
    done.ok()
    lines = done.out.splitlines()
    assert lines[0].startswith("cma headless: PAPER on sim"), done.out
    assert STATUS.match(lines[-1]) and " stopped " in lines[-1], done.out
    assert count(demo_home.store, "fills") > 0
    assert count(demo_home.store, "decisions") > 0


def check_speed_60(home: Home, demo: tuple[Home, Done]) -> None:
    """ "an hour of candles a minute, until Ctrl-C": market time runs ~60× wall time, and
    Ctrl-C (SIGINT) stops it cleanly."""
    proc = subprocess.Popen(
        ["bash", "-c", "exec cma run --headless --speed 60"], cwd=home.work, env=home.env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err
    stamps = [m[1] for line in out.splitlines() if (m := STATUS.match(line))]
    assert out.splitlines()[-1].split()[2] == "stopped", out
    first = time.mktime(time.strptime(stamps[0], "%Y-%m-%d %H:%M"))
    last = time.mktime(time.strptime(stamps[-1], "%Y-%m-%d %H:%M"))
    # Between the first and the last status line: a few seconds of wall time, so a few
    # minutes of market time at 60× (never the hours that speed max would play).
    assert 60 <= last - first <= 20 * 60, out


REPLAY = (
    "CMA_APPROVAL__AUTO_CONFIDENCE=0.3 cma run --headless --files "
    "../shared/data/binance_*-BTC_5m_2018-01.csv --policy auto --speed max --db replay.db"
)


def check_replay(home: Home, demo: tuple[Home, Done]) -> None:
    """The replay example trades (the bug: nothing in 20 days), plays to the end of the
    files, and ``cma db info --db replay.db`` (named in the text after it) reads its store."""
    command = REPLAY.replace("../shared/data", str(shared_data_dir()))
    done = home.sh(command).ok()
    store = home.work / "replay.db"
    assert count(store, "fills") > 0 and count(store, "positions") > 0
    assert done.out.splitlines()[-1].startswith("2018-01-30 04:55 stopped"), done.out
    assert "(ADA/BTC, DASH/BTC, ETC/BTC, ETH/BTC, LTC/BTC, NXT/BTC" in done.out
    info = home.sh("cma db info --db replay.db").ok()
    assert info.out.startswith("store   replay.db\n"), info.out
    assert re.search(rf"^fills +{count(store, 'fills')}$", info.out, re.M), info.out
    # Run again on the same store, it is refused: the README says to delete it first.
    again = home.sh(command)
    assert again.code == 2 and "replay into a new store" in again.err, again.err


CUSTOM = (
    "PYTHONPATH=. CMA_AGENTS__USER=mypkg.agents:EmaCrossAgent cma run --headless "
    "--policy auto --speed max --duration 20s"
)


BACKTEST_SMA = (
    "cma backtest --data ../shared/data/binanceus_BTC-USDT_1m_2023-03.csv "
    "--config docs/examples/sma_cross.toml"
)
BACKTEST_PERSON = (
    "cma backtest --data ../shared/data/binance_*-BTC_5m_2018-01.csv --from 2018-01-10 "
    "--to 2018-01-20 --approve person --delay 2m --reject-rate 0.3"
)


def _backtest_store(home: Home, done: Done) -> Path:
    """The store the backtest printed (its own, under the data folder's backtests/)."""
    lines = done.out.splitlines()
    assert lines[-1] == "session 1" and lines[-2].startswith("store "), done.out
    store = Path(lines[-2].removeprefix("store "))
    store = store if store.is_absolute() else home.root / "data" / "cma" / "backtests" / store.name
    assert store.parent == home.root / "data" / "cma" / "backtests", store
    return store


def check_backtest_sma(home: Home, demo: tuple[Home, Done]) -> None:
    """The textbook crossover: the whole month, every cross traded (a position opened at
    each cross's next open, the opposite cross reversing it), no fees."""
    done = home.sh(BACKTEST_SMA.replace("../shared/data", str(shared_data_dir())), cwd=ROOT).ok()
    assert "30,240 candles of 1m" in done.out and "Fees paid" in done.out, done.out
    store = _backtest_store(home, done)
    assert rows(store, "SELECT mode FROM sessions") == [("backtest",)]
    assert count(store, "positions") > 500
    assert count(store, "fills", "CAST(fee AS REAL) != 0") == 0
    assert count(store, "decisions", "action != 'approve'") == 0


def check_backtest_person(home: Home, demo: tuple[Home, Done]) -> None:
    """Ten symbols, ten days; a simulated person decides two minutes of market time after
    each proposal and rejects about 30 % of them."""
    command = BACKTEST_PERSON.replace("../shared/data", str(shared_data_dir()))
    done = home.sh(command, cwd=ROOT).ok()
    store = _backtest_store(home, done)
    decided = rows(store, "SELECT action, latency_ms FROM decisions WHERE decided_by = 'human'")
    assert len(decided) > 20
    # Two minutes on, at the next 5-minute candle's close: five minutes after each.
    assert {latency for _, latency in decided} == {300_000}
    # About 30 % rejected: a few dozen decisions draw it loosely.
    rejected = sum(action == "reject" for action, _ in decided) / len(decided)
    assert 0.05 < rejected < 0.6, rejected
    symbols = {s for (s,) in rows(store, "SELECT DISTINCT symbol FROM proposals")}
    assert len(symbols) > 3 and all(s.endswith("/BTC") for s in symbols)


def check_custom_agent(home: Home, demo: tuple[Home, Done]) -> None:
    """The custom agent, saved from the README's python block, loads and votes; the README's
    toml block is a valid config with it."""
    pkg = home.work / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "agents.py").write_text(readme_block("python"))
    home.sh(bounded(CUSTOM)).ok()
    assert count(home.store, "proposals", "votes_json LIKE '%ema_cross%'") > 0
    config = home.work / "agents.toml"
    config.write_text(readme_block("toml"))
    home.sh(f"PYTHONPATH=. cma config validate {config}").ok()


def check_venv_help(home: Home, demo: tuple[Home, Done]) -> None:
    """``.venv/bin/cma --help`` lists the commands (run from the checkout, as after make run)."""
    done = home.sh(".venv/bin/cma --help", cwd=ROOT).ok()
    for command in ("run", "db", "config"):
        assert re.search(rf"^\s+{command}\s", done.out, re.M), done.out


def check_activate(home: Home, demo: tuple[Home, Done]) -> None:
    """After ``. .venv/bin/activate``, ``cma`` is the venv's."""
    done = home.sh(". .venv/bin/activate && command -v cma", cwd=ROOT).ok()
    assert Path(done.out.strip()) == ROOT / ".venv" / "bin" / "cma"


def _console(home: Home, command: str) -> None:
    """Run ``command`` (the console) in a real terminal: a private tmux server."""
    rc = home.root / f"rc-{uuid.uuid4().hex}"
    socket = f"cma-readme-{uuid.uuid4().hex[:8]}"
    script = f"{command} --duration 3s; echo $? > {rc}"
    env = home.env() | {"TERM": "xterm-256color"}
    subprocess.run(
        ["tmux", "-L", socket, "new-session", "-d", "-x", "120", "-y", "40", "bash", "-c", script],
        cwd=home.work, env=env, check=True, timeout=30,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not rc.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert rc.exists(), f"{command!r} did not stop within 90 s"
        time.sleep(0.1)  # the shell has written the code and its newline
        assert rc.read_text().strip() == "0"
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=30)
    assert count(home.store, "equity") > 0  # it opened the store and played the demo market


def check_console(home: Home, demo: tuple[Home, Done]) -> None:
    """``cma`` opens the console on the demo market (and stops at --duration)."""
    _console(home, "cma")


def check_console_run(home: Home, demo: tuple[Home, Done]) -> None:
    """``cma run`` is the same console."""
    _console(home, "cma run")


def check_config_show(home: Home, demo: tuple[Home, Done]) -> None:
    """Every setting, each explained, secrets masked."""
    done = home.sh("CMA_EXCHANGE__API_KEY=hunter2 cma config show").ok()
    lines = done.out.splitlines()
    assert len(lines) > 40
    assert all(re.match(r"^[a-z_]+\.[a-z_]+ +.+ # \S", line) for line in lines), done.out
    assert "hunter2" not in done.out
    assert re.search(r"^exchange\.api_key +\*{8} ", done.out, re.M)
    assert re.search(r"^risk\.max_drawdown +0\.1 ", done.out, re.M)


def check_config_validate(home: Home, demo: tuple[Home, Done]) -> None:
    """A good file passes; a bad one exits 2 naming every bad field."""
    good = home.work / "good.toml"
    good.write_text('[risk]\nmax_drawdown = 0.15\n[feed]\nspeed = "max"\n')
    assert home.sh(f"cma config validate {good}").ok().out.strip() == f"{good}: ok"
    bad = home.work / "bad.toml"
    bad.write_text("[risk]\nmax_drawdown = 2\n[approval]\npolicy = 'sometimes'\n")
    done = home.sh(f"cma config validate {bad}")
    assert done.code == 2 and "Traceback" not in done.err
    assert done.err.startswith("cma: ")
    assert "risk.max_drawdown = 2" in done.err and "approval.policy = 'sometimes'" in done.err


def check_config_init(home: Home, demo: tuple[Home, Done]) -> None:
    """A commented file with every default, which then validates."""
    done = home.sh("cma config init").ok()
    assert done.out.strip() == f"wrote {home.config}"
    text = home.config.read_text()
    for section in ("[store]", "[feed]", "[approval]", "[risk]", "[broker]", "[agents]"):
        assert section in text
    assert "\nmax_drawdown = 0.1\n" in text and "\n# Halt when equity falls" in text
    assert home.sh("cma config validate").ok().out.strip() == f"{home.config}: ok"


def check_db_check(home: Home, demo: tuple[Home, Done]) -> None:
    """On the demo run's store: every check passes, exit 0."""
    demo_home, _ = demo
    done = demo_home.sh("cma db check").ok()
    assert re.search(r": (\d+) checks passed, 0 failed$", done.out.strip()), done.out


def check_db_backup(home: Home, demo: tuple[Home, Done]) -> None:
    """A consistent copy, private, that passes the checks and holds the same fills."""
    demo_home, _ = demo
    dest = home.work / "backup.db"
    demo_home.sh(f"cma db backup {dest}").ok()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    demo_home.sh(f"cma db check --db {dest}").ok()
    assert count(dest, "fills") == count(demo_home.store, "fills") > 0


def check_db_info(home: Home, demo: tuple[Home, Done]) -> None:
    """Where the store is and what it holds."""
    demo_home, _ = demo
    done = demo_home.sh("cma db info").ok()
    assert f"store   {demo_home.store}" in done.out
    assert re.search(r"^sessions +1$", done.out, re.M), done.out


REPORT_LIST = "cma report --list"
REPORT_LAST = "cma report --last --format html"


def check_report_list(home: Home, demo: tuple[Home, Done]) -> None:
    """The sessions: the demo's is session 1, a paper session on the demo market."""
    demo_home, _ = demo
    done = demo_home.sh(REPORT_LIST).ok()
    header, first, *_ = done.out.splitlines()
    assert header.split()[:3] == ["SESSION", "KIND", "MARKET"], done.out
    assert first.split()[:2] == ["1", "paper"] and "BTC/USDT" in first, done.out


def check_report_last(home: Home, demo: tuple[Home, Done]) -> None:
    """The latest session as one HTML file in reports/ beside the store, its path printed,
    with the human edge and both charts."""
    demo_home, _ = demo
    done = demo_home.sh(REPORT_LAST).ok()
    path = Path(done.out.strip().splitlines()[-1])
    assert path.parent == demo_home.store.parent / "reports" and path.suffix == ".html"
    text = path.read_text()
    assert "The human edge" in text
    assert 'id="equity-chart"' in text and 'id="drawdown-chart"' in text


OPTIMIZE = (
    "cma optimize --data ../shared/data/binanceus_BTC-USDT_1m_2023-03.csv --agents sma_cross "
    "--trials 50"
)
PRINT_SPACE = "cma optimize --print-space --agents sma_cross"


def check_optimize(home: Home, demo: tuple[Home, Done]) -> None:
    """Fifty trials of sma_cross, walk-forward; the fragment it writes runs as a config,
    and the report lies beside it."""
    done = home.sh(OPTIMIZE.replace("../shared/data", str(shared_data_dir())), cwd=ROOT).ok()
    assert done.out.startswith("ran 50 of 50 trials\n"), done.out
    found = re.search(r"^config fragment +(\S+)$", done.out, re.M)
    assert found, done.out
    fragment = Path(found.group(1))
    assert fragment.parent == home.root / "data" / "cma" / "optimize"
    assert "sma_cross" in fragment.read_text()
    for suffix in (".md", ".html"):
        assert "Walk-forward" in fragment.with_suffix(suffix).read_text()
    csv = shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"
    home.sh(f"cma backtest --config {fragment} --data {csv} --to 2023-03-03", cwd=ROOT).ok()


def check_print_space(home: Home, demo: tuple[Home, Done]) -> None:
    """The default space as a space file: synthesis, approval, risk and sma_cross's own."""
    import tomllib

    space = tomllib.loads(home.sh(PRINT_SPACE).ok().out)
    assert set(space) == {"agents", "approval", "risk"}
    assert set(space["agents"]["params"]["sma_cross"]) == {"fast", "slow"}


def check_not_yet(name: str) -> Callable[[Home, tuple[Home, Done]], None]:
    def check(home: Home, demo: tuple[Home, Done]) -> None:
        """Says it is not available yet, and exits 3."""
        done = home.sh(f"cma {name}")
        assert done.code == 3, done
        assert done.err.startswith(f"cma: 'cma {name}'") and "not available yet" in done.err

    return check


def check_keys(home: Home, demo: tuple[Home, Done]) -> None:
    """Alone it is ``cma keys status``: the keyring it would use, and no exchange has keys
    in a new home (tests/tui/test_keys_cli.py runs set, status and delete end to end)."""
    done = home.sh("cma keys")
    assert done.code == 0, done
    lines = done.out.splitlines()
    assert lines[0].startswith("keyring: "), done
    assert lines[-1] == "no exchange has keys (cma keys set EXCHANGE)", done


def check_keys_status(home: Home, demo: tuple[Home, Done]) -> None:
    """``cma keys status`` says the same as ``cma keys`` alone."""
    done, alone = home.sh("cma keys status"), home.sh("cma keys")
    assert done.code == 0 and done.out == alone.out, (done, alone)


def check_data(home: Home, demo: tuple[Home, Done]) -> None:
    """``cma data`` asks for its action (``fetch``: tests/tui/test_data_fetch.py runs it)."""
    done = home.sh("cma data")
    assert done.code == 2 and "ACTION" in done.err, done
    assert "fetch" in home.sh("cma data --help").ok().out


Check = Callable[[Home, tuple[Home, Done]], None]

#: Each README command and the check that it does what the README says.
CHECKS: dict[str, Check] = {
    ".venv/bin/cma --help": check_venv_help,
    ". .venv/bin/activate": check_activate,
    "cma": check_console,
    "cma run": check_console_run,
    DEMO: check_demo,
    "cma run --headless --speed 60": check_speed_60,
    REPLAY: check_replay,
    CUSTOM: check_custom_agent,
    BACKTEST_SMA: check_backtest_sma,
    BACKTEST_PERSON: check_backtest_person,
    "cma config show": check_config_show,
    "cma config validate [FILE]": check_config_validate,
    "cma config init": check_config_init,
    "cma db check": check_db_check,
    "cma db backup PATH": check_db_backup,
    "cma db info": check_db_info,
    REPORT_LIST: check_report_list,
    REPORT_LAST: check_report_last,
    OPTIMIZE: check_optimize,
    PRINT_SPACE: check_print_space,
    "cma keys": check_keys,
    "cma keys status": check_keys_status,
    "cma data": check_data,
}

#: README commands whose check lives elsewhere, and where.
ELSEWHERE: dict[str, str] = {
    "make run": "the install is what every test runs in; what it opens is the `cma` check",
    "make test": "the test run itself (lint, mypy and this suite)",
    "cma backtest --data FILE...": "tests/tui/test_backtest_cli.py runs it end to end",
    "cma report": "tests/reports/test_report_cli.py runs it end to end",
    "cma optimize --data FILE...": (
        "the Optimization section's command above, and tests/optimization end to end"
    ),
    "ssh trader@server": "a remote login: no test can make one; tmux below is what matters",
    "cma run --exchange binance --symbols BTC/USDT,ETH/USDT --timeframe 1m": (
        "Binance itself needs the internet; tests/tui/test_data_fetch.py runs it headless "
        "against the local exchange (tests/fake_binance.py)"
    ),
    "cma data fetch --exchange binance --symbol BTC/USDT --timeframe 1h --since 2024-01-01 "
    "--output data/": "the internet again; tests/tui/test_data_fetch.py fetches, resumes and "
    "stores from the local exchange",
    "cma keys set binance": "asks on a terminal: tests/tui/test_keys_cli.py types into a pty",
    **dict.fromkeys(
        [
            "sudo useradd --system --home-dir /var/lib/cma --shell /usr/sbin/nologin cma",
            "sudo python3 -m venv /opt/cma/.venv && sudo /opt/cma/.venv/bin/pip install .",
            "sudo install -d /etc/cma && sudo /opt/cma/.venv/bin/cma config init "
            "--config /etc/cma/config.toml",
            "sudo cp deploy/cma.service /etc/systemd/system/ && sudo systemctl daemon-reload",
            "sudo systemctl enable --now cma",
        ],
        "a system install as root: tests/test_systemd_unit.py verifies the unit "
        "(systemd-analyze verify) and runs its ExecStart command",
    ),
    "make lock": "tests/test_supply_chain.py: the locks cover pyproject.toml, hash-checked, "
    "and are what the venv has",
    "make lock-upgrade": "make lock with --upgrade; tests/test_supply_chain.py checks what "
    "it writes",
    "cma keys delete binance": "tests/tui/test_keys_cli.py sets, shows and deletes keys",
    "cma run --live --exchange binance --symbols BTC/USDT": (
        "real money on the internet; tests/tui/test_live_console.py runs it in tmux against "
        "the local exchange (typed confirmation, LIVE header, stale feed)"
    ),
    "tmux new -A -s cma 'cd crypto-market-agents && .venv/bin/cma'": (
        "tests/tui/test_e2e_tmux.py drives the console in tmux, detached and reattached"
    ),
}


def test_every_readme_command_has_a_check() -> None:
    commands = readme_commands()
    unchecked = [c for c in commands if c not in CHECKS and c not in ELSEWHERE]
    assert not unchecked, f"README commands with no check in tests/test_readme.py: {unchecked}"
    stale = [c for c in [*CHECKS, *ELSEWHERE] if c not in commands]
    assert not stale, f"checks for commands the README no longer shows: {stale}"


def test_the_readme_parse_finds_the_commands_it_must() -> None:
    # The parse itself can break (a block fence renamed, the table moved): it must keep
    # finding commands of both kinds.
    commands = readme_commands()
    assert DEMO in commands and "cma db backup PATH" in commands and "cma data" in commands
    assert len(commands) >= 20


@pytest.mark.slow
@pytest.mark.parametrize("command", list(CHECKS))
def test_readme_command_does_what_the_readme_says(
    command: str, tmp_path: Path, demo: tuple[Home, Done]
) -> None:
    CHECKS[command](Home(tmp_path), demo)
