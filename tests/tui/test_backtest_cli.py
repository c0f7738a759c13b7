"""``cma backtest``: bad input, the progress line, Ctrl-C, and real runs end to end.

Bad input runs through :func:`tui.cli.main` in this process (fast; every bad
input fails before the store is opened, so no store is left behind either).
The end-to-end tests run the real ``cma`` executable on the shared files into
a real SQLite store, piped, under tmux, and stopped with SIGINT.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from shared_data import shared_data_dir
from support import CMA, screen, tmux_session, wait_for

from tui import cli
from tui.backtest_cmd import (
    REDRAWS_PER_SECOND,
    ProgressLine,
    StopFlag,
    first_interrupt_stops,
    parse_when,
    progress_text,
)

BTC = "binanceus_BTC-USDT_1m_2023-03.csv"
ETH_5M = "binance_ETH-BTC_5m_2018-01.csv"


@pytest.fixture(autouse=True)
def _private_homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No CMA_* variable, config, store or candle cache of the person running the tests."""
    for key in list(os.environ):
        if key.startswith("CMA_"):
            monkeypatch.delenv(key)
    for name in ("CONFIG", "DATA", "CACHE"):
        monkeypatch.setenv(f"XDG_{name}_HOME", str(tmp_path / name.lower()))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store" / "cma.db"


def shared(name: str) -> Path:
    return shared_data_dir() / name


def small_csv(tmp_path: Path, rows: int = 60, name: str = "test_BTC-USDT_1m_2023-03.csv") -> Path:
    """The first ``rows`` candles of the shared BTC/USDT file, as a file of their own."""
    lines = shared(BTC).read_text(encoding="utf-8").splitlines(keepends=True)
    path = tmp_path / name
    path.write_text("".join(lines[: rows + 1]), encoding="utf-8")
    return path


def edit_line(path: Path, number: int, edit: str) -> None:
    """Replace line ``number`` (1 is the header) with ``edit``."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[number - 1] = edit + "\n"
    path.write_text("".join(lines), encoding="utf-8")


def line(path: Path, number: int) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[number - 1].split(",")


def bad_input(capsys: pytest.CaptureFixture[str], db: Path, *argv: str) -> str:
    """Run ``cma backtest argv``; assert exit 2 with one ``cma:`` line and no store; return
    the line."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["backtest", "--db", str(db), *argv])
    out, err = capsys.readouterr()
    assert exc.value.code == 2, err
    assert out == ""
    assert err.startswith("cma: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not db.exists(), "bad input opened the store"
    return err.strip()


# ---------------------------------------------------------------- bad files


def test_unordered_timestamps_name_the_file_line_and_field(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = small_csv(tmp_path)
    third, fourth = line(path, 4), line(path, 5)
    edit_line(path, 4, ",".join(fourth))
    edit_line(path, 5, ",".join(third))
    err = bad_input(capsys, db, "--data", str(path))
    assert f"{path.name}:5:" in err and "timestamp" in err


def test_duplicate_timestamps_name_the_file_line_and_field(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = small_csv(tmp_path)
    row = line(path, 7)
    row[0] = line(path, 6)[0]
    edit_line(path, 7, ",".join(row))
    err = bad_input(capsys, db, "--data", str(path))
    assert f"{path.name}:7:" in err and "timestamp" in err


def test_high_below_low_names_the_file_line_and_field(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = small_csv(tmp_path)
    ts, o, _high, low, c, v = line(path, 10)
    edit_line(path, 10, ",".join([ts, o, str(float(low) - 5), low, c, v]))
    err = bad_input(capsys, db, "--data", str(path))
    assert f"{path.name}:10:" in err and "high" in err


def test_a_non_numeric_field_is_named(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = small_csv(tmp_path)
    row = line(path, 12)
    row[5] = "lots"
    edit_line(path, 12, ",".join(row))
    err = bad_input(capsys, db, "--data", str(path))
    assert f"{path.name}:12:" in err and "volume" in err and "lots" in err


@pytest.mark.parametrize("content", ["", "timestamp,open,high,low,close,volume\n"])
def test_an_empty_file_is_named(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "empty_BTC-USDT_1m.csv"
    path.write_text(content, encoding="utf-8")
    err = bad_input(capsys, db, "--data", str(path))
    assert path.name in err


def test_a_missing_file_is_named(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere_BTC-USDT_1m.csv"
    err = bad_input(capsys, db, "--data", str(small_csv(tmp_path)), str(missing))
    assert err == f"cma: {missing}: not found"


def test_files_of_two_timeframes_name_both(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = bad_input(capsys, db, "--data", str(small_csv(tmp_path)), str(shared(ETH_5M)))
    assert ETH_5M in err and "test_BTC-USDT_1m_2023-03.csv" in err
    assert "5m" in err and "1m" in err


def test_two_files_of_one_symbol_name_both(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = small_csv(tmp_path)
    b = small_csv(tmp_path, name="other_BTC-USDT_1m_2023-03.csv")
    err = bad_input(capsys, db, "--data", str(a), str(b))
    assert a.name in err and b.name in err and "BTC/USDT" in err


def test_files_quoted_in_two_currencies_name_them(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    usdc = "binanceus_BTC-USDC_1m_2023-03.csv"
    err = bad_input(capsys, db, "--data", str(small_csv(tmp_path)), str(shared(usdc)))
    assert "USDT (test_BTC-USDT_1m_2023-03.csv)" in err and f"USDC ({usdc})" in err


# ---------------------------------------------------------------- candles in a store


def candle_store(path: Path, csv: Path, timeframes: tuple[str, ...] = ("1m",)) -> Path:
    """A real store holding ``csv``'s candles (as a feed keeps them) under ``timeframes``."""
    import asyncio

    from engine.backtest.data import load_columns
    from engine.models import Candle
    from persistence.store import Store

    c = load_columns(csv, cache_dir=path.parent / "cache")
    rows = zip(*(a.tolist() for a in (c.ts, c.open, c.high, c.low, c.close, c.volume)), strict=True)
    candles = [Candle(c.symbol, *row) for row in rows]

    async def build() -> None:
        async with await Store.open(path) as store:
            for timeframe in timeframes:
                store.record_candles(timeframe, candles)
            await store.flush()

    asyncio.run(build())
    return path


def backtest_in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli.main(["backtest", *argv]) == 0
    out, err = capsys.readouterr()
    assert err == "", err
    return out


def test_candles_from_a_store_backtest_as_the_same_candles_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = small_csv(tmp_path, rows=3000)
    store = candle_store(tmp_path / "kept.db", csv)
    args = ["--agents", "sma_cross", "--approve", "all"]
    from_file = backtest_in_process(
        capsys, "--data", str(csv), "--db", str(tmp_path / "a.db"), *args
    )
    from_store = backtest_in_process(
        capsys, "--candles", "BTC/USDT", "--candles-from", str(store),
        "--db", str(tmp_path / "b.db"), *args,
    )  # fmt: skip
    assert result_lines(from_file) == result_lines(from_store)
    assert "\n3,000 candles of 1m;" in from_file
    a, b = trade_rows(tmp_path / "a.db"), trade_rows(tmp_path / "b.db")
    assert a.pop("sessions") == [(1, "backtest", "replay")]
    assert b.pop("sessions") == [(1, "backtest", "store")]
    assert a == b and a["fills"]


def test_candles_come_from_the_configs_store_whatever_db_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = candle_store(tmp_path / "data" / "cma" / "cma.db", small_csv(tmp_path, rows=600))
    out = backtest_in_process(capsys, "--candles", "BTC/USDT", "--db", str(tmp_path / "bt.db"))
    assert out.endswith("session 1\n") and "600 candles of 1m" in out
    assert one(kept, "SELECT COUNT(*) FROM sessions") == 0


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        ([], "give candles: --data FILE... (CSV files) or --candles SYMBOL,... (from a store)"),
        (["--candles", ","], "--candles names no symbol"),
        (["--candles", "btc"], "--candles: symbol must look like BASE/QUOTE"),
        (["--candles", "BTC/USDT,BTC/USDT"], "--candles lists BTC/USDT twice"),
        (["--candles-from", "x.db", "--data", "x.csv"], "--candles-from needs --candles"),
        (["--timeframe", "1m", "--data", "x.csv"], "--timeframe applies to --candles"),
        (["--candles", "BTC/USDT", "--timeframe", "7m"], "--timeframe must be one of 1m, 3m"),
        (["--candles", "BTC/USDT", "--candles-from", "nowhere.db"], "nowhere.db: no such store"),
    ],
)
def test_bad_candle_options_are_one_line(
    db: Path, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    assert said in bad_input(capsys, db, *argv)


def test_a_symbol_the_store_lacks_is_named_with_what_it_holds(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = candle_store(tmp_path / "kept.db", small_csv(tmp_path), ("1m", "5m"))
    err = bad_input(capsys, db, "--candles", "ETH/USDT", "--candles-from", str(store))
    assert "no ETH/USDT" in err and "BTC/USDT 1m (60), BTC/USDT 5m (60)" in err
    err = bad_input(capsys, db, "--candles", "BTC/USDT", "--candles-from", str(store))
    assert err.endswith("holds BTC/USDT candles of 1m, 5m; choose one with --timeframe")


def test_a_file_and_the_store_for_one_symbol_name_both(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = small_csv(tmp_path)
    store = candle_store(tmp_path / "kept.db", csv)
    err = bad_input(
        capsys, db, "--data", str(csv), "--candles", "BTC/USDT", "--candles-from", str(store)
    )
    assert "BTC/USDT in kept.db: a second source for BTC/USDT (after test_BTC-USDT" in err


# ---------------------------------------------------------------- bad dates


def test_a_date_range_with_no_candles_names_the_file_and_the_dates(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = small_csv(tmp_path)  # 2023-03-01 00:00 to 00:59
    err = bad_input(capsys, db, "--data", str(path), "--from", "2023-03-01T02:00")
    assert path.name in err and "2023-03-01 02:00" in err
    assert "2023-03-01 00:00 to 2023-03-01 00:59" in err  # what the file holds


def test_from_not_before_to_names_both(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = bad_input(
        capsys, db, "--data", str(small_csv(tmp_path)), "--from", "2023-03-02", "--to", "2023-03-02"
    )
    assert "--from 2023-03-02" in err and "--to 2023-03-02" in err


@pytest.mark.parametrize("when", ["2023-03-33", "yesterday", "2023-03-01 10", "01/03/2023"])
def test_a_date_of_another_form_is_refused(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str], when: str
) -> None:
    err = bad_input(capsys, db, "--data", str(small_csv(tmp_path)), "--to", when)
    assert "--to" in err and repr(when) in err and "YYYY-MM-DD" in err


def test_dates_are_utc() -> None:
    assert parse_when("--from", "2023-03-01") == 1677628800000
    assert parse_when("--from", "2023-03-01T00:01") == 1677628860000


# ---------------------------------------------------------------- bad agents and numbers


def test_an_unknown_agent_is_named_with_the_known_ones(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = bad_input(capsys, db, "--data", str(small_csv(tmp_path)), "--agents", "momentum,nope")
    assert "'nope'" in err
    assert "momentum, price_action, sma_cross" in err


def test_a_misspelt_agent_gets_a_suggestion(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = bad_input(capsys, db, "--data", str(small_csv(tmp_path)), "--agents", "sma_crss")
    assert "did you mean 'sma_cross'?" in err


def test_an_agent_path_that_does_not_import_is_named(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data", str(small_csv(tmp_path))]
    err = bad_input(capsys, db, *data, "--agents", "momentum,no_such_pkg.agents:Mine")
    assert err.startswith("cma: --agents: agent path 'no_such_pkg.agents:Mine': cannot import")
    err = bad_input(capsys, db, *data, "--agents", "engine.agents.base:Agent")
    assert "Agent is abstract" in err


def test_an_agent_module_that_raises_is_named(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "raising_agents.py").write_text("raise RuntimeError('half written')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    err = bad_input(
        capsys, db, "--data", str(small_csv(tmp_path)), "--agents", "raising_agents:Mine"
    )
    assert err == "cma: --agents: importing 'raising_agents:Mine' raised RuntimeError: half written"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--agents", " , "], "--agents names no agent"),
        (["--agents", "momentum,momentum"], "--agents lists 'momentum' twice"),
        (["--threshold", "1.5"], "--threshold must be a number from 0 to 1, got '1.5'"),
        (["--threshold", "nan"], "--threshold must be a number from 0 to 1, got 'nan'"),
        (["--threshold", "high"], "--threshold must be a number from 0 to 1, got 'high'"),
        (["--approve", "person", "--reject-rate", "-0.1"], "--reject-rate must be a number"),
        (["--approve", "person", "--delay", "-3"], "--delay must be market seconds"),
        (["--approve", "person", "--delay", "soon"], "--delay must be market seconds"),
        (["--approve", "person", "--seed", "x"], "--seed must be a whole number"),
        (["--approve", "all", "--threshold", "0.5"], "--threshold applies to --approve threshold"),
        (["--delay", "30s"], "--delay applies to --approve person, not --approve threshold"),
        (["--approve", "all", "--reject-rate", "0.5"], "--reject-rate applies to --approve person"),
    ],
)
def test_a_bad_number_or_option_is_one_line(
    tmp_path: Path,
    db: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    said: str,
) -> None:
    err = bad_input(capsys, db, "--data", str(small_csv(tmp_path)), *argv)
    assert said in err


def test_a_bad_config_exits_2_naming_the_field(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[risk]\nmax_drawdown = 1.5\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        cli.main(
            ["backtest", "--config", str(config), "--db", str(db),
             "--data", str(small_csv(tmp_path))]
        )  # fmt: skip
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "risk.max_drawdown = 1.5" in err and "Traceback" not in err
    assert not db.exists()


def test_agents_params_of_an_agent_left_out_by_agents_are_no_problem(
    tmp_path: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tuned.toml"
    config.write_text("[agents.params.sma_cross]\nfast = 5\nslow = 30\n", encoding="utf-8")
    data = ["--data", str(small_csv(tmp_path, rows=600))]
    code = cli.main(["backtest", "--config", str(config), "--db", str(db), *data,
                     "--agents", "momentum"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and out.endswith("session 1\n"), out
    # ...while params the running agent refuses are still a problem.
    config.write_text("[agents.params.sma_cross]\nfast = 0\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        cli.main(["backtest", "--config", str(config), "--db", str(tmp_path / "other.db"), *data,
                  "--agents", "sma_cross,momentum"])  # fmt: skip
    assert exc.value.code == 2
    assert "agents.params.sma_cross" in capsys.readouterr().err


def test_without_data_argparse_says_data_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["backtest"])
    assert exc.value.code == 2
    assert "--data" in capsys.readouterr().err


def test_help_says_what_ctrl_c_does_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["backtest", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Ctrl-C stops the run after the current candle" in text
    assert "cma exits 0" in text and "A second Ctrl-C quits at once, storing nothing" in text
    for option in ("--data", "--from", "--to", "--agents", "--approve", "--threshold", "--delay",
                   "--reject-rate", "--seed", "--audit", "--config", "--db"):  # fmt: skip
        assert option in text
    from engine.agents.loader import BUILTIN_AGENTS

    for name in BUILTIN_AGENTS:  # the help names them without importing the agents
        assert name in text


# ---------------------------------------------------------------- the progress line


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_progress_line_writes_nothing_when_not_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressLine(stream)
    assert not bar.enabled
    bar.start("backtest")
    for done in range(0, 1000, 10):
        bar.update(done, 1000)
    bar.clear()
    assert stream.getvalue() == ""


def test_the_progress_line_redraws_at_most_ten_times_a_second_and_is_erased() -> None:
    stream, clock = io.StringIO(), Clock()
    bar = ProgressLine(stream, enabled=True, clock=clock)
    bar.start("backtest")
    for done in range(1, 3001):  # 3 s of updates every millisecond
        clock.now += 0.001
        bar.update(done, 3000)
    drawn = stream.getvalue().count("\r")
    assert 3 * REDRAWS_PER_SECOND - 1 <= drawn <= 3 * REDRAWS_PER_SECOND + 1
    bar.clear()
    assert stream.getvalue().endswith("\r\x1b[K")
    last = stream.getvalue().split("\r")[-2]  # drawn at 2.9 s: 2,900 of 3,000 candles
    assert " 96.7% [" in last and "1,000 candles/s" in last and "ETA 0:00" in last


def test_progress_text_shows_percent_speed_and_eta_within_the_width() -> None:
    text = progress_text("backtest", 250_000, 1_000_000, 0.5, 80)
    assert len(text) <= 79
    assert " 25.0% [" in text and "500,000 candles/s" in text and "ETA 0:02" in text
    hours = progress_text("backtest", 1, 10_000, 1.0, 80)
    assert "ETA 2:46:39" in hours
    assert "ETA --:--" in progress_text("backtest", 0, 10, 0.0, 80)
    assert "MB/s" in progress_text("loading x.csv", 5_000_000, 10_000_000, 1.0, 80, unit="bytes")
    for width in (1, 10, 30, 200):
        assert len(progress_text("backtest", 5, 10, 1.0, width)) <= max(0, width - 1)


# ---------------------------------------------------------------- Ctrl-C


def test_the_first_sigint_sets_the_flag_and_the_second_interrupts() -> None:
    noted: list[bool] = []
    flag = StopFlag(lambda: noted.append(True))
    before = signal.getsignal(signal.SIGINT)
    with first_interrupt_stops(flag):
        assert not flag()
        os.kill(os.getpid(), signal.SIGINT)
        assert flag() and noted == [True]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs between bytecodes of this thread
                pass
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_hang_up_quits_at_once_unless_storing(sig: signal.Signals) -> None:
    flag = StopFlag()
    before = signal.getsignal(sig)
    with first_interrupt_stops(flag):
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)
            for _ in range(1000):
                pass
        assert not flag()
        flag.storing = True
        os.kill(os.getpid(), sig)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
        assert not flag()
    assert signal.getsignal(sig) is before


# ---------------------------------------------------------------- end to end: the real cma

TILED = 1_000_000
STOPPED = re.compile(r"^stopped at (\d{4}-\d\d-\d\d \d\d:\d\d) UTC: ([\d,]+) of ([\d,]+) candles$")
BAR = re.compile(r"^backtest +\d+\.\d% \[[#-]+\] [\d,]+ candles/s +ETA \d+:\d\d")
LOADING = re.compile(r"^loading \S+ +\d+\.\d% \[[#-]+\] [\d,.]+ MB/s +ETA \d+:\d\d")


def cma_env(tmp_path: Path, cache: Path | None = None) -> dict[str, str]:
    """The caller's environment without CMA_*, with every XDG folder under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
    for name in ("CONFIG", "DATA", "STATE"):
        env[f"XDG_{name}_HOME"] = str(tmp_path / name.lower())
    env["XDG_CACHE_HOME"] = str(cache or tmp_path / "cache")
    return env


def run_cma(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CMA), "backtest", *args], env=env, capture_output=True, text=True, timeout=300
    )


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        return conn.execute(sql).fetchall()


def one(db: Path, sql: str) -> Any:
    [(value,)] = query(db, sql)
    return value


def has_session(db: Path) -> bool:
    try:
        return bool(db.exists() and one(db, "SELECT COUNT(*) FROM sessions"))
    except sqlite3.OperationalError:  # created but not yet migrated
        return False


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The BTC/USDT file tiled to a million candles, and a candle cache that holds it
    (as XDG_CACHE_HOME), so a run starts at once."""
    from engine.backtest.data import load_columns, save_csv, tile

    root = tmp_path_factory.mktemp("tiled")
    cache = root / "cache"
    path = root / "tiled_BTC-USDT_1m.csv"
    save_csv(tile(load_columns(shared(BTC), cache_dir=cache / "cma" / "candles"), TILED), path)
    load_columns(path, cache_dir=cache / "cma" / "candles")
    return path, cache


USER_AGENTS = '''
"""User agents for the backtest command's tests: no batch form."""

import time

from engine.agents.base import Agent
from engine.models import AgentVote, Candle, Side


class Every(Agent):
    """Long on every 100th candle, short on the 50th after it."""

    name = "every"

    def __init__(self, symbol: str) -> None:
        super().__init__(symbol)
        self.n = 0

    def on_candle(self, candle: Candle) -> AgentVote | None:
        self.n += 1
        if self.n % 100 == 0:
            return AgentVote(self.name, self.symbol, Side.LONG, 1.0, "hundredth")
        if self.n % 100 == 50:
            return AgentVote(self.name, self.symbol, Side.SHORT, 1.0, "fiftieth")
        return None


class Slow(Every):
    """Every, at a second a candle: a run still inside one candle when a signal comes."""

    name = "slow"

    def on_candle(self, candle: Candle) -> AgentVote | None:
        time.sleep(1.0)
        return super().on_candle(candle)


class Raises(Every):
    """Every, until its 500th candle, where it raises."""

    name = "raises"

    def on_candle(self, candle: Candle) -> AgentVote | None:
        if self.n == 499:
            raise RuntimeError("broken on purpose")
        return super().on_candle(candle)
'''


def with_user_agents(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """``env`` with the module ``useragents`` (:data:`USER_AGENTS`) importable."""
    folder = tmp_path / "agents"
    folder.mkdir(exist_ok=True)
    (folder / "useragents.py").write_text(USER_AGENTS, encoding="utf-8")
    return {**env, "PYTHONPATH": str(folder)}


def result_lines(out: str) -> list[str]:
    """The printed results without the stop note, the store and the session line."""
    return [
        s
        for s in out.splitlines()
        if not STOPPED.match(s) and not s.startswith(("session ", "store "))
    ]


def trade_rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """What a run stored, without the random ids."""
    return {
        "sessions": query(db, "SELECT id, mode, feed FROM sessions"),
        "decisions": query(
            db, "SELECT action, reason, size, latency_ms, decided_at, decided_by FROM decisions"
        ),
        "orders": query(
            db, "SELECT symbol, side, type, qty, filled_qty, status, created_at FROM orders"
        ),
        "fills": query(db, "SELECT symbol, side, qty, price, fee, realized_pnl, ts FROM fills"),
        "positions": query(
            db,
            "SELECT symbol, side, qty, entry_price, opened_at, closed_at, exit_price,"
            " realized_pnl, fees, status FROM positions",
        ),
        "balances": query(db, "SELECT currency, cash, initial_cash FROM balances"),
        "equity": query(db, "SELECT ts, session_id, equity, cash FROM equity"),
        "events": query(db, "SELECT COUNT(*), kind FROM events GROUP BY kind ORDER BY kind"),
    }


def test_a_piped_backtest_prints_only_the_results_and_stores_one_session(tmp_path: Path) -> None:
    db = tmp_path / "bt.db"
    done = run_cma(
        cma_env(tmp_path), "--data", str(shared(BTC)), "--db", str(db), "--approve", "all"
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "\x1b" not in done.stdout and "\r" not in done.stdout
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Backtest 2023-03-01 00:01 to 2023-03-22 00:00 UTC")
    assert lines[1].startswith("30,240 candles of 1m; equity 100,000.00 -> ")
    assert lines[-1] == "session 1"
    [(mode, feed, started, ended, config)] = query(
        db, "SELECT mode, feed, started_at, ended_at, config_json FROM sessions"
    )
    assert (mode, feed) == ("backtest", "replay")
    assert ended is not None and started <= ended
    settings = json.loads(config)
    assert settings["feed"]["symbols"] == ["BTC/USDT"] and settings["feed"]["kind"] == "replay"
    assert settings["agents"]["enabled"] == ["price_action", "momentum"]
    for table in ("proposals", "decisions", "orders", "fills"):
        assert one(db, f"SELECT COUNT(*) FROM {table}") > 0, table
    assert one(db, "SELECT COUNT(*) FROM decisions WHERE action = 'approve'") > 0
    assert one(db, "SELECT COUNT(*) FROM events WHERE session_id IS NOT 1") == 0
    assert one(db, "SELECT COUNT(*) FROM equity WHERE session_id = 1") > 0
    trades = int(re.search(r"^Trades +([\d,]+)", done.stdout, re.M)[1].replace(",", ""))  # type: ignore[index]
    assert one(db, "SELECT COUNT(*) FROM positions WHERE status = 'closed'") == trades > 0
    check = subprocess.run(
        [str(CMA), "db", "check", "--db", str(db)],
        env=cma_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_audit_stores_every_event_and_an_equity_point_for_every_candle(tmp_path: Path) -> None:
    env = cma_env(tmp_path)
    args = ["--data", str(shared(BTC)), "--agents", "sma_cross", "--approve", "all"]
    thin, full = tmp_path / "thin.db", tmp_path / "full.db"
    assert run_cma(env, *args, "--db", str(thin)).returncode == 0
    assert run_cma(env, *args, "--db", str(full), "--audit").returncode == 0
    assert one(full, "SELECT COUNT(*) FROM equity") == 30_240
    assert one(thin, "SELECT COUNT(*) FROM equity") < 30_240
    # The audit trail: every event in the log, not only what the tables cannot hold.
    logged = "SELECT COUNT(*) FROM events WHERE kind IN ('ProposalCreated', 'OrderFilled')"
    assert one(full, logged) == one(full, "SELECT COUNT(*) FROM proposals") + one(
        full, "SELECT COUNT(*) FROM fills"
    )
    assert one(thin, logged) == 0
    assert one(thin, "SELECT COUNT(*) FROM fills") == one(full, "SELECT COUNT(*) FROM fills") > 0


def test_a_store_that_holds_an_account_is_refused_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    first = run_cma(
        cma_env(tmp_path), "--data", str(shared(BTC)), "--db", str(db), "--to", "2023-03-02"
    )
    assert first.returncode == 0, first.stderr
    before = trade_rows(db)
    again = run_cma(cma_env(tmp_path), "--data", str(shared(BTC)), "--db", str(db))
    assert again.returncode == 2
    assert again.stderr == (
        f"cma: the store {db} already holds an account (from cma run or an earlier backtest),"
        " which the backtest's would overwrite; pass --db with a new file\n"
    )
    assert trade_rows(db) == before


def test_ctrl_c_stops_the_run_and_stores_exactly_what_was_done(
    tmp_path: Path, tiled: tuple[Path, Path]
) -> None:
    path, cache = tiled
    env = cma_env(tmp_path, cache)
    db = tmp_path / "stopped.db"
    args = ["--agents", "sma_cross", "--approve", "all"]
    proc = subprocess.Popen(
        [str(CMA), "backtest", "--data", str(path), "--db", str(db), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for("the run to begin its session", lambda: has_session(db), 60, every=0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert err == ""
    match = STOPPED.match(out.splitlines()[0])
    assert match, out
    when, done = match[1], int(match[2].replace(",", ""))
    assert match[3] == f"{TILED:,}" and 0 < done < TILED
    assert out.splitlines()[-1] == "session 1"
    assert one(db, "SELECT ended_at FROM sessions") is not None
    assert one(db, "SELECT COUNT(*) FROM fills") > 0
    # The stopped run stored exactly what a run over the candles it did stores.
    # The stop note's time is where to cut: the first candle not done opens then.
    whole = tmp_path / "whole.db"
    cut = run_cma(env, "--data", str(path), "--db", str(whole), "--to", when, *args)
    assert cut.returncode == 0, cut.stderr
    assert f"\n{done:,} candles of 1m;" in f"\n{cut.stdout}"
    assert result_lines(out) == result_lines(cut.stdout)
    assert trade_rows(db) == trade_rows(whole)


def test_a_user_agent_without_a_batch_form_backtests(tmp_path: Path) -> None:
    env = with_user_agents(cma_env(tmp_path), tmp_path)
    db = tmp_path / "user.db"
    args = ["--agents", "useragents:Every,sma_cross", "--approve", "all", "--to", "2023-03-03"]
    done = run_cma(env, "--data", str(shared(BTC)), "--db", str(db), *args)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^every +\d+ ", done.stdout, re.M), done.stdout
    settings = json.loads(one(db, "SELECT config_json FROM sessions"))
    assert settings["agents"]["enabled"] == ["sma_cross"]
    assert settings["agents"]["user"] == ["useragents:Every"]
    assert one(db, "SELECT COUNT(*) FROM proposals WHERE votes_json LIKE '%hundredth%'") > 0


@pytest.mark.parametrize(
    "signals",
    [[signal.SIGINT, signal.SIGINT], [signal.SIGTERM], [signal.SIGHUP]],
    ids=["second-ctrl-c", "term", "hang-up"],
)
def test_a_second_ctrl_c_or_a_hang_up_quits_at_once_storing_nothing(
    tmp_path: Path, signals: list[signal.Signals]
) -> None:
    # A user agent that takes a second a candle: the run checks for a stop between
    # candles, so the second signal comes while the first is still unanswered.
    db = tmp_path / "quit.db"
    proc = subprocess.Popen(
        [str(CMA), "backtest", "--data", str(shared(BTC)), "--db", str(db),
         "--agents", "useragents:Slow", "--approve", "all"],
        env=with_user_agents(cma_env(tmp_path), tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for("the run to begin its session", lambda: has_session(db), 60, every=0.01)
        for sig in signals:
            time.sleep(0.2)  # two signals at once would reach the handler as one
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out + err
    assert out == "" and "Traceback" not in err
    for table in ("sessions", "events", "proposals", "fills", "balances", "equity"):
        assert one(db, f"SELECT COUNT(*) FROM {table}") == 0, table


# ---------------------------------------------------------------- end to end: a terminal


@pytest.mark.slow
def test_a_terminal_shows_the_progress_bars_and_they_are_erased(
    tmp_path: Path, tiled: tuple[Path, Path]
) -> None:
    path, _ = tiled
    env = cma_env(tmp_path)  # an empty candle cache: the first load parses, with a bar
    env["TERM"] = "xterm"
    db, exit_file = tmp_path / "tty.db", tmp_path / "exit"
    keep = ("PATH", "HOME", "TERM", "COVERAGE_PROCESS_CONFIG", "PYTHONPATH")
    assigns = [f"{k}={shlex.quote(v)}" for k, v in env.items() if k in keep or k.startswith("XDG_")]
    command = " ".join(
        ["env", *assigns, str(CMA), "backtest", "--data", str(path), "--db", str(db),
         f"; echo CMA-EXIT=$? > {exit_file}"]
    )  # fmt: skip
    with tmux_session(command + "; sleep 60", prefix="cma-bt") as name:
        bars: list[str] = []

        def shown(bar: re.Pattern[str]) -> Callable[[], bool]:
            def check() -> bool:
                bars[:] = [s for s in screen(name).splitlines() if bar.match(s)]
                return bool(bars)

            return check

        wait_for("the loading bar", shown(LOADING), 120, every=0.01)
        assert len(bars) == 1 and len(bars[0]) <= 78, bars
        wait_for("the progress bar", shown(BAR), 120, every=0.01)
        assert len(bars) == 1 and len(bars[0]) <= 78, bars
        wait_for("cma to exit", exit_file.exists, 300, every=0.01)
        assert exit_file.read_text().strip() == "CMA-EXIT=0"
        text = screen(name)
        assert "candles/s" not in text and "ETA" not in text, text
        lines = text.splitlines()
        assert lines[0].startswith("Backtest 2023-03-01 00:01 to "), text
        assert "session 1" in lines
        assert all(len(s) <= 80 for s in lines)


# ---------------------------------------------------------------- where it stores, what it says


def test_without_db_each_backtest_gets_a_store_of_its_own(tmp_path: Path) -> None:
    env = cma_env(tmp_path)
    data = small_csv(tmp_path, rows=400)
    first = run_cma(env, "--data", str(data), "--approve", "all")
    second = run_cma(env, "--data", str(data), "--approve", "all")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    folder = tmp_path / "data" / "cma" / "backtests"
    assert len(list(folder.glob("backtest-*.db"))) == 2
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    printed = []
    for out in (first.stdout, second.stdout):
        lines = out.splitlines()
        assert lines[-1] == "session 1" and lines[-2].startswith("store "), lines[-2:]
        store = folder / Path(lines[-2].removeprefix("store ")).name
        assert one(store, "SELECT mode FROM sessions") == "backtest"
        printed.append(store)
    assert printed[0] != printed[1]
    assert not (tmp_path / "data" / "cma" / "cma.db").exists()  # the live store is left alone


def test_an_agent_switched_off_is_said_on_stderr(tmp_path: Path) -> None:
    env = with_user_agents(cma_env(tmp_path), tmp_path)
    done = run_cma(
        env, "--data", str(small_csv(tmp_path, rows=800)), "--db", str(tmp_path / "r.db"),
        "--agents", "useragents:Raises,sma_cross", "--approve", "all",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "error: agent raises failed on BTC/USDT: RuntimeError: broken on purpose" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout.endswith("session 1\n")


def test_cma_run_refuses_a_store_a_backtest_wrote(tmp_path: Path) -> None:
    """Its account is history (market time in the past): trading on it would mix the two."""
    env = cma_env(tmp_path)
    db = tmp_path / "bt.db"
    done = run_cma(env, "--data", str(small_csv(tmp_path, rows=300)), "--db", str(db))
    assert done.returncode == 0, done.stderr
    before = query(db, "SELECT COUNT(*), MAX(id) FROM sessions")
    run = subprocess.run(
        [str(CMA), "run", "--headless", "--duration", "2s", "--db", str(db)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    assert "holds a backtest's account" in run.stderr and "Traceback" not in run.stderr
    assert query(db, "SELECT COUNT(*), MAX(id) FROM sessions") == before
