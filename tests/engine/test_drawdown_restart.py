"""One drawdown, one peak: the same trading state with or without a restart.

Max drawdown 10 %, reduce at 7 %. Equity 100 -> 92 -> 95 -> 89 (scaled to
1000 -> 920 -> 950 -> 890): 92 is 8 % below the peak (REDUCING), 95 is 5 %
below it (back to ACTIVE, automatically: the peak is *not* rebased), and 89 is
11 % below the peak of 100, so trading halts. Only a person's resume rebases
the peak, and that survives a restart too. The equity pane's drawdown is the
risk pane's at every step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path

from crafted_market import (
    FLAT,
    CraftedFeed,
    Hook,
    Row,
    crafted_engine,
    settings,
    with_warmup,
)

from engine.config import Settings
from engine.models import EngineEvent, EquityUpdated, Side, TradingState
from engine.runtime import Engine

BTC = "BTC/USDT"
SIGNAL = 15  # the first candle after the warm-up: the proposal appears here

FILL: Row = (100.0, 101.0, 99.0, 100.0)  # the approved 10 BTC fill at the open, 100
AT_92: Row = (100.0, 100.0, 92.0, 92.0)
AT_95: Row = (92.0, 95.0, 92.0, 95.0)
AT_89: Row = (95.0, 95.0, 89.0, 89.0)
AT_90: Row = (89.0, 90.0, 89.0, 90.0)


def _settings(**risk: float) -> Settings:
    # No fees or slippage, and limits wide enough that 10 BTC at 100 is all the equity:
    # equity is then exactly 10 times the close. The stop (100 - 6 x ATR 2 = 88) is below
    # every low, and the daily loss limit is out of the way.
    return settings(
        approval={"policy": "manual"},
        agents={"stop_atr": 6.0},
        broker={"fee_rate": Decimal(0), "slippage_bps": Decimal(0)},
        risk={
            "initial_cash": Decimal(1000),
            "max_drawdown": 0.10,
            "reduce_drawdown": 0.07,
            "max_daily_loss": 1.0,
            "max_position_fraction": 1.0,
            "max_symbol_exposure": 1.0,
            "max_total_exposure": 1.0,
            "max_risk_per_trade": 1.0,
            **risk,
        },
    )


async def _buy_ten(engine: Engine) -> None:
    [proposal] = engine.pending()
    decision = await engine.approve(proposal.id, Decimal(10))
    assert decision.size == Decimal(10)


async def _resume(engine: Engine) -> None:
    await engine.resume_trading("resumed by hand")


class Watch:
    """Each equity point with both panes' drawdowns and the trading state after it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.points: list[tuple[Decimal, float, float, TradingState]] = []
        engine.subscribe(self._on_event)

    def _on_event(self, event: EngineEvent) -> None:
        if isinstance(event, EquityUpdated):
            e = self.engine
            self.points.append(
                (
                    event.equity,
                    e.equity_snapshot().drawdown,
                    e.risk_snapshot().drawdown,
                    e.risk.state,
                )
            )

    def after_fill(self) -> list[tuple[Decimal, TradingState]]:
        return [(eq, state) for eq, _, _, state in self.points if eq != Decimal(1000)]

    def check_panes_agree(self) -> None:
        assert self.points
        for equity, pane, risk, _ in self.points:
            assert pane == risk, (equity, pane, risk)


def _table(rows: Sequence[Row]) -> dict[str, list[Row | None]]:
    return {BTC: with_warmup([FLAT, FILL, *rows])}


async def _run(
    path: Path,
    rows: Sequence[Row],
    hooks: Mapping[int, Hook] | None = None,
    *,
    buy: bool = True,
    config: Settings | None = None,
) -> tuple[Watch, Engine]:
    """Play the table on the store at ``path``; ``buy`` approves the 10 BTC (not again
    after a restart, where the candles up to the stored market time only catch up)."""
    planned: dict[int, Hook] = {SIGNAL: _buy_ten} if buy else {}
    feed = CraftedFeed(_table(rows), hooks={**planned, **(hooks or {})})
    votes = {(BTC, feed.ts(SIGNAL)): (Side.LONG, 1.0)}
    cfg = _settings() if config is None else config
    async with crafted_engine(cfg, feed, votes, path=str(path)) as engine:
        watch = Watch(engine)
        await engine.start(paused_if_recovered=False)
        await engine.wait()
        await engine.stop()
        assert engine.error is None
        return watch, engine


async def test_drawdown_halts_the_same_with_and_without_a_restart(tmp_path: Path) -> None:
    straight, engine = await _run(tmp_path / "straight.db", [AT_92, AT_95, AT_89])
    assert straight.after_fill() == [
        (Decimal(920), TradingState.REDUCING),
        (Decimal(950), TradingState.ACTIVE),
        (Decimal(890), TradingState.HALTED),
    ]
    straight.check_panes_agree()
    assert abs(straight.points[-1][1] - 0.11) < 1e-12

    path = tmp_path / "restarted.db"
    first, _ = await _run(path, [AT_92, AT_95])
    assert first.after_fill() == [
        (Decimal(920), TradingState.REDUCING),
        (Decimal(950), TradingState.ACTIVE),
    ]
    first.check_panes_agree()
    second, restarted = await _run(path, [AT_92, AT_95, AT_89], buy=False)
    assert second.after_fill()[-1] == (Decimal(890), TradingState.HALTED)
    assert restarted.risk.state is engine.risk.state is TradingState.HALTED
    second.check_panes_agree()
    assert second.points[-1][1:3] == straight.points[-1][1:3]


async def test_a_resume_by_command_rebases_the_peak_across_a_restart(tmp_path: Path) -> None:
    # Halted at 89 (11 % down), resumed by hand: the peak is now 89. Back up to 90 and
    # the drawdown is 0 in one run and after a restart alike.
    halted_at = SIGNAL + 4  # the 89 candle (the fill is at SIGNAL + 1)
    straight, _ = await _run(
        tmp_path / "straight.db", [AT_92, AT_95, AT_89, AT_90], hooks={halted_at: _resume}
    )
    assert straight.after_fill()[-1] == (Decimal(900), TradingState.ACTIVE)
    assert straight.points[-1][1] == 0.0
    straight.check_panes_agree()

    path = tmp_path / "restarted.db"
    await _run(path, [AT_92, AT_95, AT_89], hooks={halted_at: _resume})
    second, restarted = await _run(path, [AT_92, AT_95, AT_89, AT_90], buy=False)
    assert second.after_fill()[-1] == (Decimal(900), TradingState.ACTIVE)
    assert restarted.equity_snapshot().peak == Decimal(900)
    second.check_panes_agree()


AT_96: Row = (100.0, 100.0, 96.0, 96.0)
AT_95_NEXT: Row = (96.0, 96.0, 95.0, 95.0)


async def test_a_resume_by_command_rebases_the_day_start_across_a_restart(
    tmp_path: Path,
) -> None:
    # Daily loss 3 %, the drawdown limits out of the way. 1000 -> 960 loses 4 % today:
    # HALTED. Resumed by hand at 960, the day restarts there too, so 950 is 1 % down
    # today: ACTIVE, in one run and after a restart alike (the store rebuilds the day's
    # start from the resume, not from the day's first equity).
    cfg = _settings(max_daily_loss=0.03, max_drawdown=0.5, reduce_drawdown=0.5)
    halted_at = SIGNAL + 2  # the 96 candle
    straight, _ = await _run(
        tmp_path / "straight.db", [AT_96, AT_95_NEXT], hooks={halted_at: _resume}, config=cfg
    )
    assert straight.after_fill() == [
        (Decimal(960), TradingState.HALTED),
        (Decimal(950), TradingState.ACTIVE),
    ]

    path = tmp_path / "restarted.db"
    await _run(path, [AT_96], hooks={halted_at: _resume}, config=cfg)
    second, restarted = await _run(path, [AT_96, AT_95_NEXT], buy=False, config=cfg)
    assert second.after_fill()[-1] == (Decimal(950), TradingState.ACTIVE)
    assert restarted.risk_snapshot().day_start_equity == Decimal(960)
