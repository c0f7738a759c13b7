"""Helpers of the report tests: the ``cma`` executable, a clean environment, a real
backtest. (A module of its own: ``conftest`` is a name every test folder shares.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
