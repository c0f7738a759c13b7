"""Workers on several machines: two ``cma optimize`` processes share one PostgreSQL study.

Each process stands for a machine: its own environment (data folder, candle
cache), one worker each, the same ``--storage`` URL and ``--study`` name. The
server is the session's throwaway PostgreSQL (tests/postgres.py).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
from shared_data import shared_data_dir

CMA = Path(sys.executable).with_name("cma")
DATA = (
    "--data",
    str(shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"),
    "--to",
    "2023-03-08",
)
QUICK = (*DATA, "--windows", "2", "--min-trades", "0", "--objective", "return")


def machine(tmp_path: Path, name: str) -> dict[str, str]:
    """The environment of one 'machine': nothing shared with another but the database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
    for folder in ("CONFIG", "DATA", "CACHE", "STATE"):
        env[f"XDG_{folder}_HOME"] = str(tmp_path / name / folder.lower())
    return env


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(CMA), "optimize", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_machines_share_one_study_with_no_trial_lost_or_run_twice(
    tmp_path: Path, postgres_db: str
) -> None:
    storage = ("--storage", postgres_db, "--study", "shared")
    # No --seed: with a shared storage each run draws its own, so the two 'machines'
    # do not start with the same random parameters.
    procs = [
        start(machine(tmp_path, name), *QUICK, *storage, "--trials", "6")
        for name in ("alpha", "beta")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out + err
        assert out.startswith("ran 6 of 6 trials\n"), out
        assert "Traceback" not in err
    study = optuna.load_study(study_name="shared", storage=postgres_db)
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(12))  # none lost, none twice
    assert all(t.state.is_finished() for t in trials)
    assert all(t.state != optuna.trial.TrialState.FAIL for t in trials)
    workers = Counter(t.user_attrs["worker"] for t in trials)
    assert sorted(workers.values()) == [6, 6], workers  # each machine ran its own six
    # TPE's first ten trials are random draws: the two machines drew different ones.
    by_worker: dict[str, list[dict[str, object]]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        by_worker.setdefault(t.user_attrs["worker"], []).append(t.params)
    first, second = by_worker.values()
    assert first[0] != second[0]
    # Each machine's result is read from the whole study, the other's trials included
    # (those it had run by then): at least its own six, the last to finish all twelve.
    totals = []
    for out, _ in outs:
        found = re.search(r"^study shared in postgresql\+psycopg://cma@127\.0\.0\.1:\d+/\w+: "
                          r"(\d+) trials \(", out, re.M)  # fmt: skip
        assert found, out
        totals.append(int(found.group(1)))
    assert min(totals) >= 6 and max(totals) == 12, totals


def test_a_machine_with_another_space_or_other_data_is_refused(
    tmp_path: Path, postgres_db: str
) -> None:
    storage = ("--storage", postgres_db, "--study", "guarded")
    first = start(machine(tmp_path, "alpha"), *QUICK, *storage, "--trials", "1")
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    space = tmp_path / "space.toml"
    space.write_text("[agents.stop_atr]\nlow = 1.0\nhigh = 2.0\n")
    other = start(machine(tmp_path, "beta"), *QUICK, *storage, "--space", str(space))
    out, err = other.communicate(timeout=300)
    assert other.returncode == 2, out + err
    assert err.startswith("cma: --study guarded already exists in postgresql+psycopg://")
    assert "with another search space" in err and "Traceback" not in err
    later = start(
        machine(tmp_path, "gamma"), *QUICK[:2], "--to", "2023-03-09", *QUICK[4:], *storage
    )
    out, err = later.communicate(timeout=300)
    assert later.returncode == 2, out + err
    assert "other candles" in err
    assert len(optuna.load_study(study_name="guarded", storage=postgres_db).trials) == 1
