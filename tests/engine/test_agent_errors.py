"""An agent that raises is switched off for that symbol; the engine and the other agents go on.

In process: each agent is asked once per candle (also when another fails), an
agent that fails in its constructor, its gap handler or by returning a
non-vote is switched off too. End to end: ``cma run --headless`` with a user
agent on PYTHONPATH prints one line per symbol and writes the tracebacks to
the 0600 log file, never to the terminal.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import ClassVar

from crafted_market import AGENT_PATH, FLAT, CraftedFeed, crafted_engine, settings

from engine.agents.base import Agent
from engine.models import AgentVote, Candle, EngineEvent, EngineMessage
from tui.logs import _PrivateRotatingHandler, log_path, shown

ROOT = Path(__file__).resolve().parents[2]
BTC, ETH = "BTC/USDT", "ETH/USDT"


class CountingAgent(Agent):
    """Counts each (symbol, ts) it is asked about; never votes."""

    name = "counting"
    seen: ClassVar[Counter[tuple[str, int]]] = Counter()

    def on_candle(self, candle: Candle) -> AgentVote | None:
        self.seen[(candle.symbol, candle.ts)] += 1
        return None


class FailsOnThirdAgent(Agent):
    """Raises on the third candle of BTC/USDT only."""

    name = "fails_third"

    def __init__(self, symbol: str) -> None:
        super().__init__(symbol)
        self.count = 0

    def on_candle(self, candle: Candle) -> AgentVote | None:
        self.count += 1
        if candle.symbol == BTC and self.count == 3:
            raise ValueError("bad tick")
        return None


class FailsToStartAgent(Agent):
    name = "fails_to_start"

    def __init__(self, symbol: str) -> None:
        raise RuntimeError(f"no model for {symbol}")

    def on_candle(self, candle: Candle) -> AgentVote | None:
        raise AssertionError("never built")


class ReturnsTextAgent(Agent):
    name = "returns_text"

    def on_candle(self, candle: Candle) -> AgentVote | None:
        return "long"  # type: ignore[return-value]  # the user's bug under test


def user(*names: str) -> dict[str, object]:
    return {"user": (AGENT_PATH, *(f"{__name__}:{n}" for n in names))}


async def run_with(agents: dict[str, object]) -> tuple[list[str], int]:
    """Play 30 candles of BTC and ETH; the error texts, and the candles the engine saw."""
    CountingAgent.seen.clear()
    feed = CraftedFeed({BTC: [FLAT] * 30, ETH: [FLAT] * 30})
    messages: list[str] = []

    def on_event(event: EngineEvent) -> None:
        if isinstance(event, EngineMessage) and event.level == "error":
            messages.append(event.text)

    async with crafted_engine(settings(agents=agents), feed, {}) as engine:
        engine.subscribe(on_event)
        await engine.start()
        await engine.wait()
        assert engine.error is None
        assert engine.status == "running"  # the feed ran out; nothing stopped it
        return messages, engine.candles_seen


async def test_an_agent_that_raises_is_switched_off_for_that_symbol_only() -> None:
    messages, seen = await run_with(user("CountingAgent", "FailsOnThirdAgent"))
    assert messages == [
        "agent fails_third failed on BTC/USDT: ValueError: bad tick; switched off for BTC/USDT"
    ]
    assert seen == 60
    # The bug: after a failure every agent was asked again, so one candle counted twice.
    assert set(CountingAgent.seen.values()) == {1}
    assert len(CountingAgent.seen) == 60


async def test_an_agent_that_fails_to_start_or_returns_no_vote_is_switched_off() -> None:
    messages, seen = await run_with(user("CountingAgent", "FailsToStartAgent", "ReturnsTextAgent"))
    assert seen == 60  # the bug: a constructor that raised stopped the engine
    assert sorted(messages) == sorted(
        [
            f"agent fails_to_start failed on {s}: RuntimeError: no model for {s}; "
            f"switched off for {s}"
            for s in (BTC, ETH)
        ]
        + [
            f"agent returns_text failed on {s}: TypeError: on_candle returned a str, not a vote; "
            f"switched off for {s}"
            for s in (BTC, ETH)
        ]
    )
    assert len(CountingAgent.seen) == 60


# --- the log file ----------------------------------------------------------------------


def test_the_log_lives_under_xdg_state_home_or_local_state() -> None:
    assert log_path({"XDG_STATE_HOME": "/srv/state"}) == Path("/srv/state/cma/cma.log")
    home = Path.home() / ".local" / "state" / "cma" / "cma.log"
    assert log_path({}) == home
    assert log_path({"XDG_STATE_HOME": "relative/dir"}) == home  # the XDG spec ignores it
    assert shown(home) == "~/.local/state/cma/cma.log"


def test_every_log_file_the_handler_creates_is_private(tmp_path: Path) -> None:
    path = tmp_path / "cma.log"
    handler = _PrivateRotatingHandler(path, maxBytes=200, backupCount=2, encoding="utf-8")
    logger = logging.getLogger("cma.test_agent_errors")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(20):
            logger.warning("line %d %s", i, "x" * 40)
    finally:
        logger.removeHandler(handler)
        handler.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["cma.log", "cma.log.1", "cma.log.2"]
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}


# --- end to end ------------------------------------------------------------------------

AGENT_MODULE = """
from engine.agents.base import Agent


class Boom(Agent):
    name = "boom"

    def on_candle(self, candle):
        raise ValueError("boom at " + str(candle.ts))
"""


def test_headless_prints_one_line_per_symbol_and_logs_the_traceback(tmp_path: Path) -> None:
    pkg = tmp_path / "lib" / "userpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "agents.py").write_text(AGENT_MODULE)
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
    env.update(
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_STATE_HOME=str(state),
        PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path / "lib")]),
        CMA_AGENTS__USER="userpkg.agents:Boom",
        CMA_FEED__SYMBOLS="BTC/USDT,ETH/USDT",
    )
    db = tmp_path / "cma.db"
    proc = subprocess.run(
        [sys.executable, "-m", "tui", "run", "--headless", "--policy", "auto", "--speed", "max",
         "--duration", "3s", "--db", str(db)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    log = state / "cma" / "cma.log"
    lines = proc.stderr.splitlines()
    pattern = re.compile(
        rf"^agent boom failed on (BTC/USDT|ETH/USDT): ValueError: boom at \d+; "
        rf"switched off for \1 \(traceback in {re.escape(shown(log))}\)$"
    )
    assert len(lines) == 2 and all(pattern.match(line) for line in lines), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    text = log.read_text()
    assert text.count("Traceback (most recent call last)") == 2
    # One JSON object a line: the traceback is the "exception" field of its line.
    exceptions = "".join(json.loads(line).get("exception", "") for line in text.splitlines())
    assert 'raise ValueError("boom at " + str(candle.ts))' in exceptions
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    # The built-in agents went on voting.
    conn = __import__("sqlite3").connect(db)
    try:
        assert conn.execute("SELECT COUNT(*) FROM proposals").fetchone()[0] > 0
    finally:
        conn.close()


def test_a_log_that_cannot_be_written_is_one_warning_not_a_failure(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "state"
    not_a_folder.write_text("a file where the state folder would be")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
    env.update(
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        XDG_STATE_HOME=str(not_a_folder),
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tui", "run", "--headless", "--speed", "max", "--duration", "1s",
         "--db", str(tmp_path / "cma.db")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (
        f"cma: cannot write the log {not_a_folder}/cma/cma.log: Not a directory; logging is off\n"
    )
    assert not_a_folder.read_text() == "a file where the state folder would be"
