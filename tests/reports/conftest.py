"""Real stores for the report tests, made by real ``cma backtest`` runs (subprocesses).

``mixed``: two symbols, a simulated person who rejects 30 % of the proposals
(approved trades, rejected proposals followed as counterfactuals, risk denials).
``expired``: the same person answering after 30 minutes of market time, longer
than a proposal lives, so every proposal expires. Each is made once per test run;
a test that changes a store works on its own copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from report_helpers import backtest


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
