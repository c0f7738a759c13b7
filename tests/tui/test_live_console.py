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
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from secret_service import session_env
from shared_data import shared_data_dir

pytestmark = [pytest.mark.slow]

CMA = Path(sys.executable).with_name("cma")
FAKE = Path(__file__).resolve().parents[1] / "fake_binance.py"
KEY = "live-console-key-2f6c1a9e"
SECRET = "live-console-secret-8b3d7e05"
PASS = "live-console-pass-41c9"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def screen(name: str) -> str:
    return tmux("capture-pane", "-p", "-t", name)


def wait_for(what: str, check: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def home_env(home: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("CMA_", "DBUS_", "XDG_"))}
    keep.pop("PYTHON_KEYRING_BACKEND", None)
    return {
        **keep,
        **session_env(home),
        "XDG_STATE_HOME": str(home / "state"),
        "CMA_KEYRING": "file",
        "CMA_KEYRING_PASSPHRASE": PASS,
        "TERM": "xterm",
    }


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


def start(name: str, env: dict[str, str], tmp_path: Path, *extra: str) -> None:
    exports = " ".join(f"{k}={v}" for k, v in env.items() if k.startswith(("CMA_", "XDG_")))
    cov = os.environ.get("COVERAGE_PROCESS_CONFIG")
    if cov:
        exports += f" COVERAGE_PROCESS_CONFIG={cov}"
    command = (
        f"env HOME={env['HOME']} TERM=xterm {exports} {CMA} run --live --exchange binance "
        f"--symbols BTC/USDT --db {tmp_path / 'live.db'} {' '.join(extra)}"
        f"; echo CMA-EXIT=$? > {tmp_path / 'exit'}"
    )
    tmux("new-session", "-d", "-s", name, "-x", "80", "-y", "24", command)


def test_live_console_confirms_shows_live_and_a_stale_feed(
    tmp_path: Path, fake: tuple[str, subprocess.Popen[str]]
) -> None:
    url, proc = fake
    env = home_env(tmp_path / "home")
    store_keys(env)
    env.update(
        CMA_EXCHANGE__API_BASE=url,
        CMA_EXCHANGE__TIMEOUT_SECONDS="1",
        CMA_FEED__WARMUP_CANDLES="20",
        CMA_FEED__STALE_SECONDS="1",
    )
    name = f"cma-live-{uuid.uuid4().hex[:8]}"
    start(name, env, tmp_path)
    try:
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
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True, check=False)


def test_a_wrong_confirmation_starts_nothing(tmp_path: Path) -> None:
    env = home_env(tmp_path / "home")
    store_keys(env)
    env["CMA_EXCHANGE__API_BASE"] = "http://127.0.0.1:9"  # never reached
    name = f"cma-live-{uuid.uuid4().hex[:8]}"
    start(name, env, tmp_path)
    try:
        wait_for("the typed confirmation", lambda: "Type binance to start:" in screen(name))
        tmux("send-keys", "-t", name, "yes", "Enter")
        exit_file = tmp_path / "exit"
        wait_for("cma to exit", exit_file.exists)
        assert exit_file.read_text().strip() == "CMA-EXIT=1"
        assert not (tmp_path / "live.db").exists()  # no store, no exchange, nothing
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True, check=False)
