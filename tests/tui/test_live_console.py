"""The live console end to end: the real ``cma run --live`` in tmux at 80×24 against the
local Binance exchange (tests/fake_binance.py in its own process), with the keys in the
encrypted keyring file. It asks for the typed confirmation before any screen, shows LIVE
in the header, marks the feed STALE (with its age) while the exchange is silent, and
clears it when the exchange speaks again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from shared_data import shared_data_dir
from support import CMA, home_env, screen, tmux, tmux_session, wait_for

pytestmark = [pytest.mark.slow]

FAKE = Path(__file__).resolve().parents[1] / "fake_binance.py"
KEY = "live-console-key-2f6c1a9e"
SECRET = "live-console-secret-8b3d7e05"
PASS = "live-console-pass-41c9"


def live_env(home: Path) -> dict[str, str]:
    return home_env(home, CMA_KEYRING="file", CMA_KEYRING_PASSPHRASE=PASS, TERM="xterm")


@pytest.fixture
def fake() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    data = shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"
    argv = [sys.executable, str(FAKE), "--data", str(data), "--interval", "0.2"]
    env = {**os.environ, "FAKE_BINANCE_API_KEY": KEY, "FAKE_BINANCE_API_SECRET": SECRET}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening "), line
        yield line.split()[1], proc
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=10)


def stored_candles(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM candles").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def store_keys(env: dict[str, str]) -> None:
    done = subprocess.run(
        [str(CMA), "keys", "set", "binance", "--stdin"],
        input=f"{KEY}\n{SECRET}\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def command(env: dict[str, str], tmp_path: Path, *extra: str) -> str:
    """The shell line of ``cma run --live`` with ``env``'s CMA_ and XDG_ variables."""
    exports = " ".join(f"{k}={v}" for k, v in env.items() if k.startswith(("CMA_", "XDG_")))
    cov = os.environ.get("COVERAGE_PROCESS_CONFIG")
    if cov:
        exports += f" COVERAGE_PROCESS_CONFIG={cov}"
    return (
        f"env HOME={env['HOME']} TERM=xterm {exports} {CMA} run --live --exchange binance "
        f"--symbols BTC/USDT --db {tmp_path / 'live.db'} {' '.join(extra)}"
        f"; echo CMA-EXIT=$? > {tmp_path / 'exit'}"
    )


def test_live_console_confirms_shows_live_and_a_stale_feed(
    tmp_path: Path, fake: tuple[str, subprocess.Popen[str]]
) -> None:
    url, proc = fake
    env = live_env(tmp_path / "home")
    store_keys(env)
    env.update(
        CMA_EXCHANGE__API_BASE=url,
        CMA_EXCHANGE__TIMEOUT_SECONDS="1",
        CMA_FEED__WARMUP_CANDLES="20",
        CMA_FEED__STALE_SECONDS="1",
    )
    with tmux_session(command(env, tmp_path), prefix="cma-live") as name:
        wait_for("the typed confirmation", lambda: "Type binance to start:" in screen(name))
        assert "REAL MONEY" in screen(name)
        tmux("send-keys", "-t", name, "binance", "Enter")
        wait_for("the live console", lambda: "LIVE — REAL MONEY" in screen(name))
        wait_for("the engine running", lambda: "running" in screen(name))
        # Past the warm-up: candles after the 20 of history reach the store.
        wait_for("live candles", lambda: stored_candles(tmp_path / "live.db") > 21)
        assert KEY not in screen(name) and SECRET not in screen(name)
        proc.send_signal(signal.SIGSTOP)  # the exchange falls silent
        try:
            wait_for("the stale feed", lambda: "STALE" in screen(name), within=20)
        except AssertionError:
            print(screen(name))
            raise
        proc.send_signal(signal.SIGCONT)
        wait_for("the feed fresh again", lambda: "STALE" not in screen(name), within=20)
        tmux("send-keys", "-t", name, "q")
        wait_for("the quit dialog", lambda: "Leave positions open" in screen(name))
        tmux("send-keys", "-t", name, "l")
        exit_file = tmp_path / "exit"
        wait_for("cma to exit", exit_file.exists)
        assert exit_file.read_text().strip() == "CMA-EXIT=0"


def test_a_wrong_confirmation_starts_nothing(tmp_path: Path) -> None:
    env = live_env(tmp_path / "home")
    store_keys(env)
    env["CMA_EXCHANGE__API_BASE"] = "http://127.0.0.1:9"  # never reached
    with tmux_session(command(env, tmp_path), prefix="cma-live") as name:
        wait_for("the typed confirmation", lambda: "Type binance to start:" in screen(name))
        tmux("send-keys", "-t", name, "yes", "Enter")
        exit_file = tmp_path / "exit"
        wait_for("cma to exit", exit_file.exists)
        assert exit_file.read_text().strip() == "CMA-EXIT=1"
        assert not (tmp_path / "live.db").exists()  # no store, no exchange, nothing
