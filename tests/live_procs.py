"""Whole live runs in processes: the local exchange (tests/fake_binance.py in subprocess
mode) and ``cma run --headless --live --confirm-live`` against it, with its keys put in
the encrypted file keyring by ``cma keys set binance --stdin`` (never in argv).

``LiveHome`` is one temporary home: XDG folders, the keyring, a config.toml with a user
agent that votes long on every candle while a file exists (the test says when to
trade), the store and the log under it. ``FakeProcess`` is the exchange, controlled
over HTTP (/_fake/*).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared_data import shared_data_dir
from support import CMA, home_env

FAKE = str(Path(__file__).with_name("fake_binance.py"))
DATA = "binanceus_BTC-USDT_1m_2023-03.csv"
PASSPHRASE = "live-test-passphrase-9d1c"

AGENT = '''"""Votes long on every candle while the file CMA_TEST_VOTE_FILE names exists."""
import os
from pathlib import Path

from engine.agents.base import Agent
from engine.models import Side


class VoteFileAgent(Agent):
    name = "votefile"

    def on_candle(self, candle):
        if Path(os.environ["CMA_TEST_VOTE_FILE"]).exists():
            return self.vote(Side.LONG, 1.0, "the test asked for an order")
        return None
'''

CONFIG = """[agents]
enabled = []
user = ["vote_file_agent:VoteFileAgent"]
min_confidence = 0.0
[approval]
policy = "auto"
auto_confidence = 0.5
[feed]
kind = "ccxt"
symbols = ["BTC/USDT"]
timeframe = "1m"
warmup_candles = 20
[exchange]
id = "binance"
timeout_seconds = 2.0
max_order_notional = 20
max_daily_notional = 5000
[strategy]
brackets = false
[engine]
close_positions_on_stop = false
status_interval_seconds = 0.5
"""


class FakeProcess:
    """``python tests/fake_binance.py`` serving until :meth:`stop`."""

    def __init__(self, key: str, secret: str, *, interval: float = 0.05) -> None:
        env = {**os.environ, "FAKE_BINANCE_API_KEY": key, "FAKE_BINANCE_API_SECRET": secret}
        argv = [sys.executable, FAKE, "--data", str(shared_data_dir() / DATA)]
        argv += ["--interval", str(interval)]
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line.startswith("listening "), line
        self.url = line.split()[1]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as answer:
            return json.loads(answer.read())

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body or {}).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read() or b"{}")

    def status(self) -> dict[str, Any]:
        return dict(self.get("/_fake/status"))

    def orders(self) -> dict[str, dict[str, Any]]:
        return dict(self.get("/_fake/orders"))

    def requests(self) -> list[list[Any]]:
        return list(self.get("/_fake/requests"))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


#: The encrypted keyring files ``cma keys set`` wrote this session, by (key, secret).
_KEYRINGS: dict[tuple[str, str], bytes] = {}


@dataclass
class LiveHome:
    """A home for cma: XDG folders, keys in the encrypted file, the config, the agent."""

    root: Path
    url: str

    def __post_init__(self) -> None:
        (self.root / "config" / "cma").mkdir(parents=True, exist_ok=True)
        (self.root / "config" / "cma" / "config.toml").write_text(CONFIG)
        (self.root / "agents").mkdir(exist_ok=True)
        (self.root / "agents" / "vote_file_agent.py").write_text(AGENT)

    @property
    def vote_file(self) -> Path:
        return self.root / "vote"

    @property
    def log_file(self) -> Path:
        return self.root / "state" / "cma" / "cma.log"

    def env(self, **more: str) -> dict[str, str]:
        mine = {
            "CMA_KEYRING": "file",
            "CMA_KEYRING_PASSPHRASE": PASSPHRASE,
            "CMA_EXCHANGE__API_BASE": self.url,
            "CMA_TEST_VOTE_FILE": str(self.vote_file),
            "PYTHONPATH": str(self.root / "agents"),
        }
        return home_env(self.root, **{**mine, **more})

    def cma(self, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CMA, *args], input=stdin, env=self.env(**env), capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip

    @property
    def keyring_file(self) -> Path:
        return self.root / "data" / "cma" / "keyring.cfg"

    def set_keys(self, key: str, secret: str) -> None:
        """``cma keys set binance --stdin`` the first time this session stores ``key`` and
        ``secret``; a copy of the encrypted file it wrote afterwards (each write derives
        its keys anew, about 2 s; the copy opens with the same passphrase)."""
        made = _KEYRINGS.get((key, secret))
        if made is None:
            done = self.cma("keys", "set", "binance", "--stdin", stdin=f"{key}\n{secret}\n")
            assert done.returncode == 0, done.stderr
            _KEYRINGS[(key, secret)] = self.keyring_file.read_bytes()
            return
        self.keyring_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.keyring_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(made)

    def start(self, store: Path, *args: str, out: Path, **env: str) -> subprocess.Popen[str]:
        """``cma run --headless --live --confirm-live`` in the background, its stdout and
        stderr in ``out``."""
        argv = [CMA, "run", "--headless", "--live", "--confirm-live", "--db", str(store), *args]
        with out.open("w") as sink:
            return subprocess.Popen(
                argv, env=self.env(**env), stdout=sink, stderr=subprocess.STDOUT, text=True
            )


def intents(store: Path) -> dict[str, str]:
    """client order id -> status of the store's intents, read-only (cma may be writing)."""
    if not store.exists():
        return {}
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
    try:
        return dict(conn.execute("SELECT client_order_id, status FROM order_intents"))
    except sqlite3.OperationalError:  # the schema is not there yet
        return {}
    finally:
        conn.close()
