"""End to end: the real ``cma`` command in tmux at 80×24 with TERM=xterm.

The test types keys with ``send-keys``, reads the screen with ``capture-pane``,
approves a proposal, quits, and checks the store with ``cma db check``.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# No skip without tmux: `make test` installs it, and a missing install step must fail.
pytestmark = [pytest.mark.slow]

CMA = Path(sys.executable).with_name("cma")


def tmux(*args: str) -> str:
    out = subprocess.run(["tmux", *args], capture_output=True, text=True, check=True)
    return out.stdout


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    name = f"cma-e2e-{uuid.uuid4().hex[:8]}"
    db = tmp_path / "cma.db"
    env = {
        "TERM": "xterm",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "CMA_APPROVAL__TTL_SECONDS": "86400",
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
            str(db),
            "--speed",
            "600",
            f"; echo CMA-EXIT=$? > {tmp_path / 'exit'}",
        ]
    )
    tmux("new-session", "-d", "-s", name, "-x", "80", "-y", "24", command)
    try:
        yield name, tmp_path
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True, check=False)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def screen(name: str) -> str:
    return tmux("capture-pane", "-p", "-t", name)


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
    tmux("send-keys", "-t", name, "q")
    wait_for("the quit dialog", lambda: "Leave positions open" in screen(name))
    tmux("send-keys", "-t", name, "l")
    exit_file = tmp_path / "exit"
    wait_for("cma to exit", exit_file.exists)
    assert exit_file.read_text().strip() == "CMA-EXIT=0"
    check = subprocess.run(
        [str(CMA), "db", "check", "--db", str(db)],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")},
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 failed" in check.stdout
