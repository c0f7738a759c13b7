"""End to end: the real ``cma`` command in tmux at 80×24 with TERM=xterm.

The test types keys with ``send-keys``, reads the screen with ``capture-pane``,
approves a proposal, exports the report, quits, and checks the store with ``cma db check``;
others hang the terminal up, or send cma signals (one: a graceful stop; two: at once).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import (
    CMA,
    kill_session,
    new_session,
    pane_pid,
    screen,
    session_exists,
    slow_agent,
    tmux,
    wait_for,
)

# No skip without tmux: `make test` installs it, and a missing install step must fail.
pytestmark = [pytest.mark.slow]


def start_cma(
    name: str, tmp_path: Path, extra_env: dict[str, str] | None = None, linger: bool = False
) -> None:
    """Start ``cma run`` on ``tmp_path/cma.db`` in a new 80×24 tmux session ``name``
    (with ``linger`` the pane stays a while after cma exits, to be looked at)."""
    env = {
        "TERM": "xterm",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "CMA_APPROVAL__TTL_SECONDS": "86400",
        **(extra_env or {}),
    }
    if "COVERAGE_PROCESS_CONFIG" in os.environ:  # `make test`: the console counts too
        env["COVERAGE_PROCESS_CONFIG"] = os.environ["COVERAGE_PROCESS_CONFIG"]
    command = " ".join(
        [
            "env",
            *(f"{k}={v}" for k, v in env.items()),
            str(CMA),
            "run",
            "--db",
            str(tmp_path / "cma.db"),
            "--speed",
            "600",
            f"; echo CMA-EXIT=$? > {tmp_path / 'exit'}",
            "; sleep 60" if linger else "",
        ]
    )
    new_session(name, command)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    name = f"cma-e2e-{uuid.uuid4().hex[:8]}"
    start_cma(name, tmp_path)
    try:
        yield name, tmp_path
    finally:
        kill_session(name)


def test_approve_a_proposal_and_quit_in_tmux(session: tuple[str, Path]) -> None:
    name, tmp_path = session
    wait_for("the console", lambda: "PAPER" in screen(name) and "Proposals (" in screen(name))
    text = screen(name)
    assert "Proposals  Positions  Risk  Equity  Activity" in text  # tabs at 80×24
    assert all(len(line) <= 80 for line in text.splitlines())
    tmux("send-keys", "-t", name, "End")
    tmux("send-keys", "-t", name, "a")
    db = tmp_path / "cma.db"

    def approved() -> bool:
        conn = sqlite3.connect(db)
        try:
            rows = conn.execute("SELECT COUNT(*) FROM decisions WHERE action = 'approve'")
            return bool(rows.fetchone()[0] == 1)
        finally:
            conn.close()

    wait_for("the stored approval", approved)
    # e exports the session (html by default) beside the store, and says where.
    tmux("send-keys", "-t", name, "e")
    reports = tmp_path / "reports"
    wait_for("the report", lambda: reports.is_dir() and any(reports.glob("session-*.html")))
    wait_for("the report's notice", lambda: "Report written" in screen(name))
    (html,) = reports.glob("session-*.html")
    assert "<svg" in html.read_text()
    tmux("send-keys", "-t", name, "q")
    wait_for("the quit dialog", lambda: "Leave positions open" in screen(name))
    tmux("send-keys", "-t", name, "l")
    exit_file = tmp_path / "exit"
    wait_for("cma to exit", exit_file.exists)
    assert exit_file.read_text().strip() == "CMA-EXIT=0"
    assert_store_checks(db, tmp_path)


def assert_store_checks(db: Path, tmp_path: Path) -> None:
    """``cma db check`` passes on the store the console left behind."""
    check = subprocess.run(
        [str(CMA), "db", "check", "--db", str(db)],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")},
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 failed" in check.stdout


def stored(db: Path, rows: str) -> bool:
    """Whether the store has any row of ``rows`` (a table and a WHERE clause)."""
    conn = sqlite3.connect(db)
    try:
        return bool(conn.execute(f"SELECT COUNT(*) FROM {rows}").fetchone()[0])
    finally:
        conn.close()


def cma_pid(name: str) -> int:
    """The pid of the ``cma`` process in session ``name`` (the pane's shell runs it)."""
    pids: list[int] = []

    def found() -> bool:
        children = subprocess.run(
            ["pgrep", "-P", str(pane_pid(name))], capture_output=True, text=True
        )
        pids[:] = [int(p) for p in children.stdout.split()]
        return len(pids) == 1

    wait_for("the cma process", found)
    return pids[0]


def running(pid: int) -> bool:
    """Whether ``pid`` is alive (a zombie waiting for its reaper is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def press_until(name: str, key: str, marker: str, tries: int = 4) -> None:
    """Press ``key`` until ``marker`` shows (a proposal may expire between two keys)."""
    for _ in range(tries):
        tmux("send-keys", "-t", name, key)
        try:
            wait_for(marker, lambda: marker in screen(name), within=8.0)
            return
        except AssertionError:
            continue
    raise AssertionError(f"{marker!r} never showed after {key!r}:\n{screen(name)}")


#: Every screen and dialog: (key from the main screen, text that shows it is open).
SCREENS = {
    "main": ("", "Proposals ("),
    "help": ("?", "Keys: main screen"),
    "detail": ("Enter", "Proposal: "),
    "reject": ("r", "Reject proposal"),
    "resize": ("s", "Resize and approve"),
    "policy": ("A", "Approval policy"),
    "confirm": ("h", "Halt trading?"),
    "quit": ("q", "Leave positions open"),
    "palette": ("C-p", "Search for commands"),
}


@pytest.mark.parametrize("where", ["starting", *SCREENS, "recovery"])
def test_a_terminal_that_goes_away_ends_cma_from_every_screen(
    session: tuple[str, Path], where: str
) -> None:
    name, tmp_path = session
    db = tmp_path / "cma.db"
    if where != "starting":  # starting: hung up as soon as cma runs (the store may be opening)
        wait_for("the console", lambda: "PAPER" in screen(name) and "Proposals (" in screen(name))
    if where == "recovery":
        # Something to decide on the next start: trading halted by hand.
        press_until(name, "h", "Halt trading?")
        tmux("send-keys", "-t", name, "y")
        wait_for("the stored halt", lambda: stored(db, "events WHERE kind = 'TradingStateChanged'"))
        tmux("send-keys", "-t", name, "q")
        wait_for("the quit dialog", lambda: "Leave positions open" in screen(name))
        tmux("send-keys", "-t", name, "l")
        wait_for("cma to exit", (tmp_path / "exit").exists)
        wait_for("the session to end", lambda: not session_exists(name))
        start_cma(name, tmp_path)
        wait_for("the restart summary", lambda: "Recovered from the store" in screen(name))
    elif where != "starting":
        key, marker = SCREENS[where]
        if where in ("detail", "reject", "resize"):
            wait_for("a proposal", lambda: "Proposals (0)" not in screen(name))
        if key:
            press_until(name, key, marker)
    pid = cma_pid(name)
    assert running(pid)
    tmux("kill-session", "-t", name)
    wait_for(f"cma (pid {pid}) to exit after the hang-up", lambda: not running(pid), 20.0)
    if where == "starting" and not db.exists():
        return  # gone before it created the store
    assert_store_checks(db, tmp_path)


def test_a_burst_of_keys_in_the_policy_dialog_is_applied_in_order(
    session: tuple[str, Path],
) -> None:
    # One send-keys: the keys reach cma in one read. Textual ran the bound keys
    # (backspace, enter) after the typed ones (Textual issue #6605): "80" became "".
    name, _ = session
    wait_for("the console", lambda: "PAPER" in screen(name) and "Proposals (" in screen(name))
    press_until(name, "A", "Approval policy")
    tmux("send-keys", "-t", name, *["BSpace"] * 6, "80", "Enter")
    wait_for("the read-back", lambda: "confidence ≥ 80%?" in screen(name), within=15.0)
    tmux("send-keys", "-t", name, "Enter")
    wait_for("the switch", lambda: "auto ≥ 80%" in screen(name), within=15.0)


def test_sigint_stops_the_console_gracefully(session: tuple[str, Path]) -> None:
    name, tmp_path = session
    wait_for("the console", lambda: "PAPER" in screen(name) and "Proposals (" in screen(name))
    os.kill(cma_pid(name), signal.SIGINT)
    exit_file = tmp_path / "exit"
    wait_for("cma to exit", exit_file.exists)
    assert exit_file.read_text().strip() == "CMA-EXIT=0"
    assert not stored(tmp_path / "cma.db", "sessions WHERE ended_at IS NULL")  # closed, not cut
    assert_store_checks(tmp_path / "cma.db", tmp_path)


def test_a_second_signal_ends_the_console_at_once_with_the_terminal_restored(
    tmp_path: Path,
) -> None:
    mark = tmp_path / "mark"
    env = slow_agent(tmp_path, mark)
    name = f"cma-e2e-{uuid.uuid4().hex[:8]}"
    start_cma(name, tmp_path, env, linger=True)
    try:
        wait_for("the console", lambda: "PAPER" in screen(name))
        wait_for("the slow agent", mark.exists)
        assert tmux("display", "-p", "-t", name, "#{alternate_on}").strip() == "1"
        pid = cma_pid(name)
        os.kill(pid, signal.SIGINT)  # a graceful stop, which waits for the agent
        time.sleep(0.3)
        assert running(pid)
        os.kill(pid, signal.SIGTERM)
        exit_file = tmp_path / "exit"
        wait_for("cma to exit", exit_file.exists, within=10.0)
        assert exit_file.read_text().strip() == "CMA-EXIT=130"
        # The terminal is back: the main screen, the cursor shown, the line on it.
        flags = tmux("display", "-p", "-t", name, "#{alternate_on} #{cursor_flag}").split()
        assert flags == ["0", "1"]
        assert "cma: SIGTERM again: exiting at once (code 130)" in screen(name)
    finally:
        kill_session(name)
    assert_store_checks(tmp_path / "cma.db", tmp_path)
