"""Same code, other clock: the backtest and the live per-candle path agree to the unit.

The live path is the real engine on a replay at full speed (headless, auto policy),
storing into a real SQLite file. The backtest drives the same core from columns and
writes its units of work into another file in one transaction. Their decisions,
orders, fills, positions and final equity must be identical (ids and the decision
latency, which is wall time live and market time in a backtest, aside). Default
agents and the ``sma_cross`` example, one symbol and several. The backtest's quiet
batches (counted, not fed) must also change nothing against feeding every candle.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import pytest
from shared_data import shared_data_dir

from engine.agents.base import CandleColumns
from engine.agents.sma_cross import SmaCrossAgent
from engine.assembly import account_currency, load_agents
from engine.backtest.data import load_columns
from engine.backtest.driver import Approval, Backtest, BacktestRun
from engine.config import Settings
from engine.feeds.replay import ReplayFeed
from engine.runtime import Engine
from persistence.store import Store, UnitOfWork

DATA = shared_data_dir()
BTC = DATA / "binanceus_BTC-USDT_1m_2023-03.csv"
ALTS = sorted(DATA.glob("binance_*-BTC_5m_2018-01.csv"))[:3]

QUERIES = {
    "proposals": "SELECT symbol, side, entry, stop, take_profit, confidence, size, created_at,"
    " expires_at, merged, votes_json, risk_note FROM proposals"
    " ORDER BY created_at, symbol, side",
    "decisions": "SELECT p.symbol, p.created_at, d.action, d.reason, d.size, d.resized,"
    " d.decided_at, d.decided_by FROM decisions d JOIN proposals p ON p.id = d.proposal_id"
    " ORDER BY d.decided_at, p.created_at, p.symbol",
    "orders": "SELECT symbol, side, qty, purpose, reason, status, created_at FROM order_intents"
    " ORDER BY created_at, symbol, purpose",
    "fills": "SELECT symbol, side, qty, price, fee, realized_pnl, ts FROM fills ORDER BY ts, id",
    "positions": "SELECT symbol, side, qty, entry_price, cost_basis, stop, take_profit,"
    " opened_at, closed_at, exit_price, close_reason, realized_pnl, fees FROM positions"
    " ORDER BY opened_at, symbol",
    "denials": "SELECT ts, kind, payload FROM events WHERE kind = 'order_denied' ORDER BY seq",
    # The learning agent's counterfactual of each declined proposal (the human edge).
    "counterfactuals": "SELECT p.symbol, p.created_at, p.status, c.side, c.agents_json, c.entry,"
    " c.exit_price, c.ret, c.exit_reason, c.closed_at FROM counterfactuals c"
    " JOIN proposals p ON p.id = c.proposal_id ORDER BY c.closed_at, p.created_at, p.symbol",
}


def settings_for(files: list[Path], agents: tuple[str, ...]) -> Settings:
    return Settings(
        approval={"policy": "auto", "auto_confidence": 0.5, "below_confidence": "reject"},
        agents={"enabled": agents},
        feed={"kind": "replay", "files": tuple(files), "speed": "max"},
    )


async def live(settings: Settings, files: list[Path], db: Path) -> Decimal:
    store = await Store.open(db)
    try:
        engine = Engine(settings, store, ReplayFeed(files))
        await engine.start()
        await engine.wait()
        equity = engine.core.account.equity()
        await engine.stop()
    finally:
        await store.close()
    return equity


async def backtest(
    settings: Settings, files: list[Path], db: Path, cache: Path, *, audit: bool = False
) -> BacktestRun:
    columns = [load_columns(f, cache_dir=cache) for f in files]
    store = await Store.open(db)
    try:
        await store.begin_session("backtest", "replay", "{}", 0)
        currency = account_currency([c.symbol for c in columns])
        await store.init_balance(currency, settings.risk.initial_cash, int(columns[0].ts[0]))
        bt = Backtest(
            settings,
            columns,
            agent_classes=load_agents(settings),
            approval=Approval("threshold"),
            new_work=store.begin_work,
            audit=audit,
        )
        run = bt.run()
        await store.commit(*run.works)
    finally:
        await store.close()
    return run


def tables(db: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(db)
    try:
        return {name: conn.execute(sql).fetchall() for name, sql in QUERIES.items()}
    finally:
        conn.close()


def without_ids(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """Denial payloads name the proposal and order ids, which are random: drop them."""
    import json

    out = []
    for ts, kind, payload in rows:
        data = json.loads(str(payload))
        data.pop("proposal_id", None)
        data.pop("client_order_id", None)
        out.append((ts, kind, json.dumps(data, sort_keys=True)))
    return out


def assert_counterfactuals_match_the_record(db: Path) -> None:
    """Each agent's stored counterfactual rows are the ones its record counted."""
    import json

    with closing(sqlite3.connect(db)) as conn:
        counted = dict(
            conn.execute("SELECT agent, cf_trades FROM agent_records WHERE symbol = '*'")
        )
        rows: dict[str, int] = {}
        for (agents,) in conn.execute("SELECT agents_json FROM counterfactuals"):
            for agent in json.loads(agents):
                rows[agent] = rows.get(agent, 0) + 1
    assert rows == {a: n for a, n in counted.items() if n}


CASES = [
    pytest.param([BTC], ("price_action", "momentum"), id="default-agents-btc"),
    pytest.param([BTC], ("sma_cross",), id="sma-cross-btc"),
    pytest.param(ALTS, ("sma_cross",), id="sma-cross-three-symbols"),
    pytest.param(ALTS, ("price_action", "momentum"), id="default-agents-three-symbols"),
]


@pytest.mark.parametrize(("files", "agents"), CASES)
async def test_the_backtest_and_the_live_path_agree_to_the_unit(
    files: list[Path], agents: tuple[str, ...], tmp_path: Path
) -> None:
    settings = settings_for(files, agents)
    live_equity = await live(settings, files, tmp_path / "live.db")
    run = await backtest(settings, files, tmp_path / "bt.db", tmp_path / "cache")
    got, want = tables(tmp_path / "bt.db"), tables(tmp_path / "live.db")
    assert len(want["fills"]) > 4, "the case must trade to prove anything"
    assert want["counterfactuals"], "the case must follow declined proposals to prove anything"
    for name in QUERIES:
        g, w = got[name], want[name]
        if name == "denials":
            g, w = without_ids(g), without_ids(w)
        assert g == w, f"{name}: the backtest differs from the live path"
    assert run.final_equity == live_equity
    assert_counterfactuals_match_the_record(tmp_path / "bt.db")
    assert not run.stopped and run.candles == sum(
        len(load_columns(f, cache_dir=tmp_path / "cache")) for f in files
    )


@pytest.mark.parametrize(("files", "agents"), CASES[1:3])
async def test_quiet_batches_counted_not_fed_change_nothing(
    files: list[Path], agents: tuple[str, ...], tmp_path: Path
) -> None:
    settings = settings_for(files, agents)
    fast = await backtest(settings, files, tmp_path / "fast.db", tmp_path / "cache")
    every = await backtest(settings, files, tmp_path / "every.db", tmp_path / "cache", audit=True)
    assert tables(tmp_path / "fast.db") == tables(tmp_path / "every.db")
    assert fast.final_equity == every.final_equity
    assert [t.exit_ts for t in fast.trades] == [t.exit_ts for t in every.trades]
    assert fast.equity.tolist() == pytest.approx(every.equity.tolist(), rel=1e-9)
    # The store's curve: an exact point every hour of market time while a position is
    # held, each the equity the full feed had at its time.
    step = 3_600_000 + int(fast.ts[1] - fast.ts[0])  # the first candle ending past the hour
    stamps = [p.ts for p in fast.points]
    for t in fast.trades:
        inside = [t.entry_ts, *(ts for ts in stamps if t.entry_ts < ts < t.exit_ts), t.exit_ts]
        assert max(b - a for a, b in pairwise(inside)) <= step, t
    at = {int(t): i for i, t in enumerate(every.ts)}
    for point in fast.points:
        assert float(point.equity) == pytest.approx(every.equity[at[point.ts]], rel=1e-12)


class PlainCross(SmaCrossAgent):
    """The SMA cross as a user might write it: no batch form."""

    name = "plain_cross"

    def batch_votes(self, columns: CandleColumns) -> None:
        return None


async def test_an_agent_without_a_batch_form_backtests_candle_by_candle(tmp_path: Path) -> None:
    """Slower, and the same trades as the batch form gives."""
    columns = load_columns(BTC, cache_dir=tmp_path).between(None, 1677628800000 + 6_000 * 60_000)
    runs = []
    for cls in (SmaCrossAgent, PlainCross):
        settings = Settings(agents={"enabled": ()})
        run = Backtest(
            settings,
            [columns],
            agent_classes=[cls],
            approval=Approval("all"),
            new_work=lambda: UnitOfWork(None),
        ).run()
        runs.append(run)
    batch, plain = runs
    assert len(batch.trades) > 10
    assert [(t.entry_ts, t.exit_ts, t.qty, t.exit_price) for t in plain.trades] == [
        (t.entry_ts, t.exit_ts, t.qty, t.exit_price) for t in batch.trades
    ]
    assert plain.final_equity == batch.final_equity
