"""No look-ahead: what a backtest decides by a candle's close never depends on later
candles. Every candle after a cut is changed; every proposal, decision, order and fill
up to the cut stays as it was. Market orders fill at the next candle's open, so a fill
on the first changed candle may change, and nothing before it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared_data import shared_data_dir

from engine.assembly import load_agents
from engine.backtest.data import Columns, load_columns
from engine.backtest.driver import Approval, Backtest
from engine.config import Settings
from persistence.store import UnitOfWork

BTC = shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"
N = 4_000


def _first(cache: Path) -> Columns:
    c = load_columns(BTC, cache_dir=cache)
    part = slice(0, N)
    return Columns(
        c.symbol, c.timeframe, c.ts[part], c.open[part], c.high[part], c.low[part],
        c.close[part], c.volume[part],
    )  # fmt: skip


def _changed_after(c: Columns, cut: int, seed: int) -> Columns:
    """The candles after ``cut`` moved by random factors (still valid candles)."""
    rng = np.random.default_rng(seed)
    scale = np.ones(len(c))
    scale[cut + 1 :] = rng.uniform(0.9, 1.1, len(c) - cut - 1)
    o, cl = c.open * scale, c.close * scale
    hi = np.maximum(np.maximum(o, cl), c.high * scale)
    lo = np.minimum(np.minimum(o, cl), c.low * scale)
    vol = c.volume * np.where(np.arange(len(c)) > cut, rng.uniform(0.1, 5, len(c)), 1.0)
    return Columns(c.symbol, c.timeframe, c.ts.copy(), o, hi, lo, cl, vol)


def _history(columns: Columns, agents: tuple[str, ...], approval: Approval) -> list[tuple]:
    """Every row the run stores, with the market time it belongs to (ids left out)."""
    s = Settings(agents={"enabled": agents})
    works: list[UnitOfWork] = []

    def new_work() -> UnitOfWork:
        work = UnitOfWork(None)
        works.append(work)
        return work

    bt = Backtest(s, [columns], agent_classes=load_agents(s), approval=approval, new_work=new_work)
    run = bt.run()
    rows = []
    for t in run.trades:
        # Its quantity and price are the whole trade's, adds after the cut included.
        rows.append((t.entry_ts, "trade-open", t.side))
        rows.append((t.exit_ts, "trade-close", t.exit_price, t.realized_pnl, t.fees))
    for work in works:
        for sql, params in work.ops:
            if sql.startswith("INSERT INTO events"):
                ts, _, kind, payload = params
                rows.append((ts, kind, json.dumps(_strip(json.loads(payload)), sort_keys=True)))
    return rows


def _strip(value: object) -> object:
    if isinstance(value, dict):
        return {
            k: _strip(v)
            for k, v in value.items()
            if k not in ("id", "proposal_id", "client_order_id", "latency_ms")
        }
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cut=st.integers(200, N - 200),
    seed=st.integers(0, 2**32 - 1),
    agents=st.sampled_from([("sma_cross",), ("price_action", "momentum")]),
    approval=st.sampled_from(
        [Approval("all"), Approval("person", delay_ms=180_000, reject_rate=0.4, seed=7)]
    ),
)
def test_changing_later_candles_never_changes_an_earlier_decision(
    cut: int, seed: int, agents: tuple[str, ...], approval: Approval, tmp_path: Path
) -> None:
    base = _first(tmp_path)
    before = _history(base, agents, approval)
    after = _history(_changed_after(base, cut, seed), agents, approval)
    close_of_cut = int(base.ts[cut]) + 60_000
    early = _settled(before, close_of_cut)
    assert any(r[1] == "DecisionMade" for r in early), "no decision before the cut"
    assert _settled(after, close_of_cut) == early


#: What the close of a candle brings: a proposal made on it and its decision by a
#: policy. Fills at that same time are at the open of the next, changed, candle.
_AT_CLOSE = ("ProposalCreated", "ProposalMerged", "DecisionMade")


def _settled(rows: list[tuple], close_of_cut: int) -> list[tuple]:
    """The rows that only candles up to the cut decide."""
    return [r for r in rows if r[0] < close_of_cut or (r[0] == close_of_cut and r[1] in _AT_CLOSE)]
