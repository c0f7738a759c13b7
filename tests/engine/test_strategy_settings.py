"""What common strategies need: exit or reverse on the opposite signal, no brackets,
a fixed fraction of equity, and settings per agent; with them the ``sma_cross``
example trades the textbook way."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from shared_data import shared_data_dir

from engine.agents.sma_cross import SmaCrossAgent
from engine.assembly import load_agents
from engine.backtest.data import load_columns
from engine.backtest.driver import Approval, Backtest, BacktestRun
from engine.config import Settings, load_settings
from engine.models import QTY_QUANTUM, Proposal, Side
from engine.risk.limits import RiskLimits
from engine.risk.sizer import _FRACTION_QUANTUM, size_entry
from persistence.store import UnitOfWork
from tui.validate import check_settings

BTC = shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"

RISK_KEYS = (
    "sizing",
    "equity_fraction",
    "max_position_fraction",
    "max_symbol_exposure",
    "max_total_exposure",
    "max_risk_per_trade",
    "max_daily_loss",
    "max_drawdown",
    "reduce_drawdown",
)
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "sma_cross.toml"
ALL_IN = dict(load_settings(EXAMPLE, {}).risk.model_dump(include=set(RISK_KEYS)))


def textbook_settings(**strategy: Any) -> Settings:
    """The shipped example config (docs/examples/sma_cross.toml), ``strategy`` changed."""
    s = load_settings(EXAMPLE, {})
    return s.model_copy(update={"strategy": s.strategy.model_copy(update=strategy)})


def run(settings: Settings, tmp_path: Path, n: int | None = None) -> BacktestRun:
    columns = load_columns(BTC, cache_dir=tmp_path)
    if n is not None:
        columns = columns.between(None, int(columns.ts[n]))
    bt = Backtest(
        settings,
        [columns],
        agent_classes=load_agents(settings),
        approval=Approval("all"),
        new_work=lambda: UnitOfWork(None),
    )
    return bt.run()


def test_sma_cross_trades_the_textbook_way(tmp_path: Path) -> None:
    """A cross on the close of t enters at the open of t+1, the opposite cross closes
    and reverses, and each trade is the whole equity."""
    got = run(textbook_settings(), tmp_path)
    c = load_columns(BTC, cache_dir=tmp_path)
    direction = SmaCrossAgent(c.symbol, fast=10, slow=20).batch_votes(c).direction
    opens, closes = c.open.tolist(), c.close.tolist()
    cash, pos, pending = 100_000.0, 0.0, None
    entries: list[int] = []
    for t in range(len(c)):
        if pending is not None:
            side, qty = pending
            cash += pos * opens[t]  # close what is held at the open
            pos = side * qty
            cash -= pos * opens[t]
            entries.append(int(c.ts[t]))
            pending = None
        if direction[t] and t < len(c) - 1:
            equity = cash + pos * closes[t]
            qty = float(Decimal(repr(equity / closes[t])).quantize(QTY_QUANTUM, "ROUND_DOWN"))
            pending = (int(direction[t]), qty)
    textbook = cash + pos * closes[-1]
    assert len(entries) > 100
    assert [t.entry_ts for t in got.trades] == entries[: len(got.trades)]
    assert len(got.trades) == len(entries) - 1  # the last position is still open
    assert float(got.final_equity) == pytest.approx(textbook, rel=1e-7)
    # Reversing: every exit but the first entry's is at the same open as the next entry.
    assert all(a.exit_ts == b.entry_ts for a, b in zip(got.trades, got.trades[1:], strict=False))


def test_exit_on_the_opposite_signal_closes_without_entering_the_other_way(
    tmp_path: Path,
) -> None:
    got = run(textbook_settings(on_opposite="exit"), tmp_path, n=6_000)
    assert len(got.trades) > 20
    entries = {t.entry_ts for t in got.trades}
    # A position closed by the opposite signal is not replaced on the same open.
    assert not any(t.exit_ts in entries for t in got.trades)
    # Crosses alternate, so every other one enters (one side) and the next exits it.
    assert len({t.side for t in got.trades}) == 1


@pytest.mark.parametrize("on_opposite", ["exit", "reverse"])
def test_where_shorts_are_off_the_opposite_signal_still_closes_the_long(
    tmp_path: Path, on_opposite: str
) -> None:
    """On spot (no shorts) a bearish cross opens nothing, but with ``exit`` or
    ``reverse`` it closes the long that is open: at the next open, every time."""
    s = textbook_settings(on_opposite=on_opposite)
    s = s.model_copy(update={"broker": s.broker.model_copy(update={"allow_shorts": False})})
    n = 6_000
    got = run(s, tmp_path, n=n)
    c = load_columns(BTC, cache_dir=tmp_path)
    direction = SmaCrossAgent(c.symbol, fast=10, slow=20).batch_votes(c).direction[: n + 1]
    ts = c.ts.tolist()
    bull = [ts[t + 1] for t in range(n) if direction[t] > 0]
    bear = [ts[t + 1] for t in range(n) if direction[t] < 0]
    assert len(got.trades) > 20
    assert {t.side for t in got.trades} == {Side.LONG}
    # Each long enters on a bullish cross and leaves on the first bearish one after it.
    for trade in got.trades:
        assert trade.entry_ts in bull
        assert trade.exit_ts == min(b for b in bear if b > trade.entry_ts)
    # Crosses alternate, so flat again at each bearish one, every bullish one enters.
    first, last = got.trades[0].entry_ts, got.trades[-1].entry_ts
    assert [t.entry_ts for t in got.trades] == [b for b in bull if first <= b <= last]


def test_ignore_leaves_an_open_position_to_its_bracket(tmp_path: Path) -> None:
    """The default: the opposite proposal is denied, the stop or target closes it."""
    s = textbook_settings(on_opposite="ignore", brackets=True)
    got = run(s, tmp_path, n=6_000)
    assert got.trades
    assert all(a.exit_ts <= b.entry_ts for a, b in zip(got.trades, got.trades[1:], strict=False))


def test_without_brackets_positions_carry_no_stop_or_take_profit(tmp_path: Path) -> None:
    opened: dict[bool, list[dict[str, Any]]] = {}
    for brackets in (True, False):
        works: list[UnitOfWork] = []

        def new_work(works: list[UnitOfWork] = works) -> UnitOfWork:
            works.append(UnitOfWork(None))
            return works[-1]

        s = textbook_settings(brackets=brackets, on_opposite="exit")
        c = load_columns(BTC, cache_dir=tmp_path)
        c = c.between(None, int(c.ts[3_000]))
        Backtest(
            s, [c], agent_classes=load_agents(s), approval=Approval("all"), new_work=new_work
        ).run()
        opened[brackets] = [
            json.loads(params[3])["position"]
            for w in works
            for sql, params in w.ops
            if sql.startswith("INSERT INTO events") and params[2] == "PositionOpened"
        ]
    assert opened[False] and opened[True]
    assert all(p["stop"] is None and p["take_profit"] is None for p in opened[False])
    assert all(p["stop"] and p["take_profit"] for p in opened[True])


@given(
    equity=st.decimals(Decimal(100), Decimal(10**9), places=2),
    fraction=st.floats(0.01, 1.0),
    entry=st.decimals(Decimal("0.01"), Decimal(100_000), places=2),
)
def test_a_fixed_fraction_of_equity_is_that_fraction_to_a_quantum(
    equity: Decimal, fraction: float, entry: Decimal
) -> None:
    limits = RiskLimits(**{**ALL_IN, "equity_fraction": fraction, "min_notional": Decimal(1)})
    proposal = Proposal(
        id="p",
        symbol="BTC/USDT",
        side=Side.LONG,
        entry=entry,
        stop=entry / 2,
        take_profit=entry * 2,
        confidence=0.3,  # not scaled by confidence
        size=Decimal(0),
        created_at=0,
        expires_at=1,
    )
    sized = size_entry(limits, proposal, equity, {}, None, None)
    target = Decimal(repr(fraction)).quantize(_FRACTION_QUANTUM) * equity
    if sized.quantity == 0:
        assert target < limits.min_notional + entry * QTY_QUANTUM
        return
    assert sized.quantity * entry <= target
    assert target - sized.quantity * entry < entry * QTY_QUANTUM
    assert "fixed" in sized.reason


def test_agent_params_reach_the_agent_and_a_wrong_one_is_named() -> None:
    ok = Settings(agents={"enabled": ("sma_cross",), "params": {"sma_cross": {"fast": 3}}})
    assert check_settings(ok) == []
    bad = Settings(agents={"enabled": ("sma_cross",), "params": {"sma_cross": {"fats": 3}}})
    [problem] = check_settings(bad)
    assert problem.field == "agents.params.sma_cross" and "fats" in problem.message
    unknown = Settings(agents={"enabled": ("sma_cross",), "params": {"momentm": {"x": 1}}})
    [problem] = check_settings(unknown)
    assert problem.field == "agents.params.momentm" and "sma_cross" in problem.message


def test_agent_params_change_the_votes(tmp_path: Path) -> None:
    c = load_columns(BTC, cache_dir=tmp_path)
    base = textbook_settings()
    faster = base.model_copy(
        update={
            "agents": base.agents.model_copy(
                update={"params": {"sma_cross": {"fast": 5, "slow": 8}}}
            )
        }
    )
    a, b = run(base, tmp_path, n=3_000), run(faster, tmp_path, n=3_000)
    want = SmaCrossAgent(c.symbol, fast=5, slow=8).batch_votes(c).direction[:3_000]
    assert len(b.trades) > len(a.trades)
    # Every cross but the last trades, once the ATR (14 candles) is there to set levels.
    assert len(b.trades) + 1 == int(np.count_nonzero(want[13:-1]))
