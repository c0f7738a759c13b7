"""``cma backtest``: bad input, the progress line, Ctrl-C, and real runs end to end.

Bad input runs through :func:`tui.cli.main` in this process (fast; every bad
input fails before the store is opened, so no store is left behind either).
The end-to-end tests run the real ``cma`` executable on the shared files into
a real SQLite store, piped, under tmux, and stopped with SIGINT.
"""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import pytest
from shared_data import shared_data_dir

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
    with pytest.raises(SystemExit) as exc:
        cli.main(
            ["backtest", "--db", str(db), "--data", str(small_csv(tmp_path)),
             "--agents", "no_such_pkg.agents:Mine"]
        )  # fmt: skip
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "no_such_pkg.agents:Mine" in err and "agents.user" in err
    assert "Traceback" not in err and not db.exists()


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
