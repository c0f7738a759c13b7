"""Real stores for the report tests, made by real ``cma backtest`` runs (subprocesses).

``mixed``: two symbols, a simulated person who rejects 30 % of the proposals
(approved trades, rejected proposals followed as counterfactuals, risk denials).
``expired``: the same person answering after 30 minutes of market time, longer
than a proposal lives, so every proposal expires. Each is made once per test run;
a test that changes a store works on its own copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from shared_data import shared_data_dir

ETH = "binance_ETH-BTC_5m_2018-01.csv"
LTC = "binance_LTC-BTC_5m_2018-01.csv"
CMA = str(Path(sys.executable).with_name("cma"))


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a ``cma`` subprocess: no CMA_* variable, homes under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
    for name in ("CONFIG", "DATA", "CACHE", "STATE"):
        env[f"XDG_{name}_HOME"] = str(home / name.lower())
    return env


def backtest(home: Path, db: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    data = [str(shared_data_dir() / ETH), str(shared_data_dir() / LTC)]
    cmd = [CMA, "backtest", "--data", *data, *args]
    if db is not None:
        cmd += ["--db", str(db)]
    done = subprocess.run(cmd, env=clean_env(home), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    home = tmp_path_factory.mktemp("report-stores")
    mixed, expired = home / "mixed.db", home / "expired.db"
    backtest(home, mixed, "--approve", "person", "--reject-rate", "0.3", "--seed", "1")
    backtest(home, expired, "--approve", "person", "--delay", "30m")
    return {"mixed": mixed, "expired": expired}


@pytest.fixture
def mixed_copy(stores: dict[str, Path], tmp_path: Path) -> Path:
    """A copy of the ``mixed`` store that a test may change."""
    target = tmp_path / "mixed.db"
    shutil.copyfile(stores["mixed"], target)
    return target
