"""``cma run --headless`` end to end, in subprocesses: it trades the demo market into the
store, stops cleanly on SIGTERM, SIGINT and SIGHUP (closing positions if configured), exits
at once on a second signal, exits 4 when trading ended HALTED, paces by --speed, refuses a
bad CSV and a store another run is writing."""

from __future__ import annotations

import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
from support import home_env, slow_agent

from engine.runtime import SIM_WARMUP_BATCHES
from persistence.checks import run_checks
from persistence.connection import connect_reader

ROOT = Path(__file__).resolve().parents[2]
MIN = 60_000
STATUS = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d (running|paused|stopped) +(ACTIVE|REDUCING|HALTED) +"
    r"equity -?\d+\.\d\d \(dd [\d.]+%\) cash -?\d+\.\d\d pos \d+ pending \d+ candles \d+$"
)


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return home_env(
        tmp_path, **{"PYTHONPATH": str(ROOT), "CMA_ENGINE__STATUS_INTERVAL_SECONDS": "1", **extra}
    )


def cma(*args: str) -> list[str]:
    return [sys.executable, "-m", "tui", *args]


def start(tmp_path: Path, db: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cma("run", "--headless", "--db", str(db), *args),
        cwd=ROOT, env=env_for(tmp_path, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def counts(db: Path) -> dict[str, int]:
    conn = connect_reader(db)
    try:
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("proposals", "decisions", "orders", "fills", "equity", "positions")
        }
    finally:
        conn.close()


def checks_pass(db: Path) -> None:
    conn = connect_reader(db)
    try:
        failed = [r for r in run_checks(conn) if not r.ok]
    finally:
        conn.close()
    assert not failed, failed


def wait_for_equity(db: Path, proc: subprocess.Popen[str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the engine wrote no equity point"
        try:
            if db.exists() and counts(db)["equity"] > 0:
                return
        except sqlite3.OperationalError:
            pass  # not migrated yet
        time.sleep(0.05)


def test_headless_auto_run_trades_the_demo_market_into_the_store(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    proc = subprocess.run(
        cma("run", "--headless", "--policy", "auto", "--speed", "max", "--duration", "5s",
            "--db", str(db)),
        cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("cma headless: PAPER on sim (BTC/USDT, ETH/USDT")
    assert "policy auto" in lines[0] and str(db) in lines[0]
    status = [line for line in lines[1:] if STATUS.match(line)]
    assert len(status) >= 4, proc.stdout  # one a second, and a last one when stopped
    assert status[-1].split()[2] == "stopped"
    candles = [int(line.rsplit(" ", 1)[1]) for line in status]
    assert candles == sorted(candles) and candles[-1] > 10_000

    check = subprocess.run(
        cma("db", "check", "--db", str(db)),
        cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout
    assert "8 checks passed, 0 failed" in check.stdout
    n = counts(db)
    assert all(n[t] > 0 for t in ("proposals", "decisions", "orders", "fills", "equity")), n
    assert oct(db.stat().st_mode & 0o777) == oct(0o600)


def open_positions(db: Path) -> int:
    conn = connect_reader(db)
    try:
        return int(
            conn.execute("SELECT COUNT(*) FROM positions WHERE closed_at IS NULL").fetchone()[0]
        )
    finally:
        conn.close()


def positions_closed_on_stop(db: Path) -> int:
    conn = connect_reader(db)
    try:
        row = conn.execute(
            "SELECT COUNT(*) FROM positions WHERE close_reason = 'closed on stop'"
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def wait_for_open_position(db: Path, proc: subprocess.Popen[str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while open_positions(db) == 0:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the engine opened no position"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("sig", "close_on_stop"),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGHUP, True)],
    ids=["SIGTERM", "SIGINT", "SIGHUP-closing-positions"],
)
def test_a_signal_stops_the_headless_run_cleanly(
    tmp_path: Path, sig: signal.Signals, close_on_stop: bool
) -> None:
    db = tmp_path / "cma.db"
    close = "true" if close_on_stop else "false"
    proc = start(
        tmp_path, db, "--policy", "auto", "--speed", "max",
        CMA_ENGINE__CLOSE_POSITIONS_ON_STOP=close,
    )  # fmt: skip
    try:
        wait_for_equity(db, proc)
        wait_for_open_position(db, proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"cma: {sig.name}: stopping gracefully (a second signal exits at once)" in err
    last = out.splitlines()[-1]
    assert STATUS.match(last) and " stopped " in last, out
    checks_pass(db)
    conn = connect_reader(db)
    try:
        ended = conn.execute("SELECT ended_at FROM sessions").fetchall()
    finally:
        conn.close()
    assert len(ended) == 1 and ended[0][0] is not None  # the session was closed, not cut
    # Positions stay open unless engine.close_positions_on_stop closes them on the stop.
    # (At full speed one may close on its own stop between the signal and the stop: what
    # is checked is what the stop itself did.)
    closed_on_stop = positions_closed_on_stop(db)
    if close_on_stop:
        assert open_positions(db) == 0 and " pos 0 " in last, last
    else:
        assert closed_on_stop == 0, closed_on_stop


def read_until(proc: subprocess.Popen[str], text: str, timeout: float = 15.0) -> str:
    """What ``proc`` wrote on stderr up to a line containing ``text``."""
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, f"no {text!r} on stderr: {seen!r}"
        ready, _, _ = select.select([proc.stderr], [], [], 0.1)
        if ready:
            line = proc.stderr.readline()
            assert line, f"stderr closed before {text!r}: {seen!r}"
            seen += line
    return seen


def test_a_second_signal_exits_at_once_and_the_store_stays_sound(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    db = tmp_path / "cma.db"
    proc = start(tmp_path, db, "--policy", "auto", "--speed", "max", **slow_agent(tmp_path, mark))
    try:
        deadline = time.monotonic() + 15
        while not mark.exists():  # the agent now holds the event loop for a minute
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        read_until(proc, "cma: SIGTERM: stopping gracefully")
        # A hang-up during the stop is no call for haste (one often comes twice).
        proc.send_signal(signal.SIGHUP)
        read_until(proc, "cma: SIGHUP: already stopping (SIGINT or SIGTERM exits at once)")
        assert proc.poll() is None  # the graceful stop waits for the agent's candle
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        took = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "cma: SIGTERM again: exiting at once (code 130)" in err
    assert took < 10  # not the minute the agent would have taken
    # Cut short, yet the store is sound (crash-safe), and `cma db check` says so.
    check = subprocess.run(
        cma("db", "check", "--db", str(db)),
        cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 failed" in check.stdout


def test_a_run_that_ends_with_trading_halted_exits_4(tmp_path: Path) -> None:
    # Limits so tight that the first fee halts trading.
    limits = {f"CMA_RISK__{k}": "0.0001" for k in ("MAX_DAILY_LOSS", "MAX_DRAWDOWN")}
    db = tmp_path / "cma.db"
    proc = subprocess.run(
        cma("run", "--headless", "--policy", "auto", "--speed", "max", "--duration", "2s",
            "--db", str(db)),
        cwd=ROOT, env=env_for(tmp_path, CMA_RISK__REDUCE_DRAWDOWN="0.0001", **limits),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 4, (proc.stdout, proc.stderr)
    last = proc.stdout.splitlines()[-1]
    assert STATUS.match(last) and last.split()[2:4] == ["stopped", "HALTED"], last
    (line,) = proc.stderr.splitlines()
    assert re.fullmatch(
        r"cma: trading HALTED: (daily loss|drawdown) [\d.]+% exceeds [\d.]+% \(exit 4; "
        r"resume trading in the console once the cause is dealt with\)",
        line,
    ), line
    checks_pass(db)


def test_speed_60_plays_about_a_minute_of_market_per_wall_second(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    began = time.monotonic()
    proc = subprocess.run(
        cma("run", "--headless", "--policy", "auto", "--speed", "60", "--duration", "4s",
            "--db", str(db)),
        cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    elapsed = time.monotonic() - began
    assert proc.returncode == 0, proc.stderr
    conn = connect_reader(db)
    try:
        stamps = [ts for (ts,) in conn.execute("SELECT ts FROM equity ORDER BY ts")]
    finally:
        conn.close()
    # The demo opens with history played at once (agents warm up), then goes live.
    history, live = stamps[:SIM_WARMUP_BATCHES], stamps[SIM_WARMUP_BATCHES:]
    assert len(history) == SIM_WARMUP_BATCHES and history[-1] - history[0] == 119 * MIN
    # Live, 1m candles at 60× come one a wall second: about 60 s of market per second.
    assert 2 <= len(live) <= elapsed + 1, len(live)
    market_s = (live[-1] - history[-1]) / 1000
    assert 0.5 * 60 * (elapsed - 1.5) <= market_s <= 1.5 * 60 * elapsed, (market_s, elapsed)
    assert all(b - a == MIN for a, b in pairwise(stamps))  # one batch per minute, no gaps


def test_a_malformed_replay_file_exits_2_naming_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "binance_ETH-BTC_5m_2018-01.csv"
    bad.write_text(
        "timestamp,open,high,low,close,volume\n"
        "1515560100000,0.1,0.11,0.09,0.1,5\n"
        "1515560400000,0.1,0.11,oops,0.1,5\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        cma("run", "--headless", "--feed", "replay", "--files", str(bad), "--speed", "max",
            "--db", str(tmp_path / "cma.db")),
        cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert f"{bad.name}:3:" in proc.stderr and "low 'oops' is not a number" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_second_run_on_the_same_store_fails_clearly_while_the_first_runs(
    tmp_path: Path,
) -> None:
    db = tmp_path / "cma.db"
    first = start(tmp_path, db, "--policy", "auto", "--speed", "max")
    try:
        wait_for_equity(db, first)
        second = subprocess.run(
            cma("run", "--headless", "--speed", "max", "--duration", "2s", "--db", str(db)),
            cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert second.returncode == 1
        assert "another cma process is writing" in second.stderr and str(db) in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # the first run is unharmed
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=15)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0
    checks_pass(db)
