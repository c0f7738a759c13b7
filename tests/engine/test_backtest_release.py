"""A finished backtest holds no cycle: what it made is freed as soon as its result is
dropped, not when the collector next comes by (in the middle of whatever runs next)."""

from __future__ import annotations

import gc

import pytest
from shared_data import shared_data_dir

from engine.assembly import load_agents
from engine.backtest.data import load_columns
from engine.backtest.driver import Approval, Backtest
from engine.config import Settings
from persistence.store import UnitOfWork

BTC = shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"


@pytest.mark.parametrize(
    "approval", [Approval(), Approval("all"), Approval("person", delay_ms=60_000)]
)
def test_a_dropped_run_leaves_no_cyclic_garbage(tmp_path, approval) -> None:
    columns = load_columns(BTC, cache_dir=tmp_path)
    settings = Settings()
    bt = Backtest(
        settings,
        [columns],
        agent_classes=load_agents(settings),
        approval=approval,
        new_work=lambda: UnitOfWork(None, log=False),
    )
    gc.collect()
    gc.disable()
    try:
        run = bt.run()
        assert run.works  # it did something worth freeing
        del run
        # Freed by its last reference going: nothing is left for the collector.
        assert gc.collect() == 0
    finally:
        gc.enable()
