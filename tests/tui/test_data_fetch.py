"""``cma data fetch`` and ``cma run --exchange`` as a person runs them, against the local
Binance-spot exchange (tests/fake_binance.py in its subprocess mode), real ccxt."""

from __future__ import annotations

import json
import os
import pty
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from shared_data import shared_data_dir

from tui.data_cmd import CsvSink

ROOT = Path(__file__).resolve().parents[2]
CMA = Path(sys.executable).with_name("cma")
FAKE = ROOT / "tests" / "fake_binance.py"
DATA = shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"
START = 3000  # candles closed at the exchange
FETCH = ["data", "fetch", "--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1m"]


def data_lines(n: int) -> list[str]:
    """The header and the first ``n`` candles of the data file, as lines."""
    return DATA.read_text(encoding="utf-8").splitlines()[: n + 1]


class Fake:
    """The fake exchange in a subprocess; ``url`` is where it listens."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKE), "--data", str(DATA), *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("listening "), line
        self.url = line.split()[1]

    def fault(self, **body: object) -> None:
        request = urllib.request.Request(
            f"{self.url}/_fake/fault", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def fake() -> Iterator[Fake]:
    server = Fake("--start", str(START))
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path: Path, fake: Fake) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
    out["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    out["XDG_DATA_HOME"] = str(tmp_path / "data")
    out["CMA_EXCHANGE__API_BASE"] = fake.url
    return out


def cma(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CMA), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_fetch_into_a_csv_file_gives_the_exchanges_rows_in_the_shared_format(
    env: dict[str, str], tmp_path: Path
) -> None:
    # A directory named with a trailing slash is made, the file named like the shared data.
    done = cma(env, *FETCH, "--since", "2023-03-01", "--output", f"{tmp_path}/data/")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "data" / "binance_BTC-USDT_1m_2023-03-01.csv"
    assert path.read_text(encoding="utf-8").splitlines() == data_lines(START)
    assert "3,000 candles fetched" in done.stdout
    assert done.stderr == ""  # no progress line when stderr is not a terminal
    again = cma(env, *FETCH, "--since", "2023-03-01", "--output", str(path))
    assert again.returncode == 0, again.stderr
    assert "0 candles fetched" in again.stdout
    assert path.read_text(encoding="utf-8").splitlines() == data_lines(START)


def test_an_interrupted_fetch_leaves_a_valid_file_and_the_next_run_completes_it(
    env: dict[str, str], tmp_path: Path, fake: Fake
) -> None:
    path = tmp_path / "btc.csv"
    # The first two pages answer slowly, so the run is stopped between pages.
    fake.fault(kind="timeout", path="/api/v3/klines", count=2, seconds=0.5)
    proc = subprocess.Popen(
        [str(CMA), *FETCH, "--since", "2023-03-01", "--output", str(path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_text(encoding="utf-8").count("\n") > 1):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    partial = path.read_text(encoding="utf-8").splitlines()
    assert 1 < len(partial) < START + 1
    assert partial == data_lines(len(partial) - 1)  # whole lines, the first ones
    done = cma(env, *FETCH, "--since", "2023-03-01", "--output", str(path))
    assert done.returncode == 0, done.stderr
    assert f"{START - (len(partial) - 1):,} candles fetched" in done.stdout
    assert path.read_text(encoding="utf-8").splitlines() == data_lines(START)


def test_a_line_cut_short_by_a_kill_is_dropped_before_resuming(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    lines = data_lines(3)
    path.write_text("\n".join(lines) + "\n" + lines[1][:9], encoding="utf-8")
    sink = CsvSink(path)
    assert sink.open() == int(lines[3].split(",")[0])
    assert path.read_text(encoding="utf-8") == "\n".join(lines) + "\n"


def test_fetch_into_the_store_resumes_after_its_newest_candle(
    env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "s.db"
    since = ["--since", "2023-03-01", "--db", str(db)]
    first = cma(env, *FETCH, *since, "--until", "2023-03-01T10:00")
    assert first.returncode == 0, first.stderr
    assert "600 candles fetched" in first.stdout
    more = cma(env, *FETCH, *since, "--until", "2023-03-01T20:00")
    assert more.returncode == 0, more.stderr
    assert "600 candles fetched, 1,200 of 1,200" in more.stdout
    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT ts, open, high, low, close, volume FROM candles"
            " WHERE symbol = 'BTC/USDT' AND timeframe = '1m' ORDER BY ts"
        ).fetchall()
    want = [tuple(float(v) for v in line.split(",")) for line in data_lines(1200)[1:]]
    assert [tuple(float(v) for v in row) for row in stored] == want


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--exchange", "nowhere"], "--exchange: ccxt has no exchange 'nowhere'"),
        (["--symbol", "BTCUSDT"], "--symbol: symbol must look like BASE/QUOTE"),
        (["--symbol", "DOGE/USDT"], "--symbol: binance does not list DOGE/USDT"),
        (["--timeframe", "7m"], "--timeframe must be one of"),
        (["--since", "2999-01-01"], "--since 2999-01-01 is in the future"),
        (["--since", "yesterday"], "--since must be a UTC date"),
        (["--since", "2024-01-01"], "--since is after binance's clock: nothing has closed yet"),
        (["--until", "2023-02-01"], "--until 2023-02-01 must be after --since 2023-03-01"),
        (["--output", "/nonexistent/x.csv"], "directory /nonexistent does not exist"),
        (["--output", "/nonexistent/data/"], "directory /nonexistent does not exist"),
        (["--output", "README.md"], "exists and is not a candle CSV"),
    ],
)
def test_bad_arguments_exit_2_naming_them(env: dict[str, str], args: list[str], says: str) -> None:
    base = {"--exchange": "binance", "--symbol": "BTC/USDT", "--timeframe": "1m"}
    base.update({"--since": "2023-03-01", "--output": "/tmp"})
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value
    done = cma(env, "data", "fetch", *(x for kv in base.items() for x in kv))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("cma: ") and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_an_exchange_that_cannot_be_reached_exits_1_with_one_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    env = {**env, "CMA_EXCHANGE__API_BASE": "http://127.0.0.1:9"}
    done = cma(env, *FETCH, "--since", "2023-03-01", "--output", str(tmp_path / "x.csv"))
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("cma: fetching from binance failed: binance: ")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_the_progress_line_is_drawn_on_a_terminal(
    env: dict[str, str], tmp_path: Path, fake: Fake
) -> None:
    fake.fault(kind="timeout", path="/api/v3/klines", count=1, seconds=0.3)
    primary, secondary = pty.openpty()
    try:
        done = subprocess.run(
            [str(CMA), *FETCH, "--since", "2023-03-01", "--output", str(tmp_path / "x.csv")],
            cwd=ROOT,
            env={**env, "COLUMNS": "100"},
            stdout=subprocess.PIPE,
            stderr=secondary,
            text=True,
            timeout=60,
        )
        os.close(secondary)
        drawn = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(primary)
    assert done.returncode == 0
    text = drawn.decode()
    assert "BTC/USDT 1m" in text and "%" in text and "candles" in text
    assert text.endswith("\r\x1b[K")  # erased at the end


def test_a_headless_run_trades_on_paper_on_the_exchanges_candles_without_keys(
    tmp_path: Path,
) -> None:
    live = Fake("--start", "400", "--interval", "0.1")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
        env.update(
            XDG_CONFIG_HOME=str(tmp_path / "config"),
            XDG_DATA_HOME=str(tmp_path / "data"),
            CMA_EXCHANGE__API_BASE=live.url,
        )
        db = tmp_path / "run.db"
        done = subprocess.run(
            [str(CMA), "run", "--headless", "--exchange", "binance", "--symbols", "BTC/USDT",
             "--timeframe", "1m", "--policy", "auto", "--duration", "2s", "--db", str(db)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        live.stop()
    assert done.returncode == 0, done.stderr
    assert "cma headless: PAPER on ccxt (BTC/USDT)" in done.stdout
    with sqlite3.connect(db) as conn:
        (candles,) = conn.execute("SELECT COUNT(*) FROM candles").fetchone()
        (mode,) = conn.execute("SELECT mode FROM sessions").fetchone()
    assert mode == "paper"
    assert candles > 300  # the warm-up and live candles after it


def test_a_run_on_a_symbol_the_exchange_does_not_list_exits_2_before_the_store_opens(
    env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "run.db"
    done = cma(env, "run", "--headless", "--exchange", "binance", "--symbols", "DOGE/USDT",
               "--duration", "1s", "--db", str(db))  # fmt: skip
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr == "cma: feed.symbols: binance does not list DOGE/USDT " + (
        "(symbols are BASE/QUOTE as the exchange spells them, e.g. BTC/USDT)\n"
    )
    assert not db.exists()
