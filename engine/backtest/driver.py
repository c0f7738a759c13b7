"""The backtest driver: the live engine's core on another clock.

The driver owns no trading rule. It builds the same :class:`~engine.core.TradingCore`
the live shell builds (agents, synthesis, approval desk, risk, paper market,
account, learning) and feeds it candles from columns, synchronously, keeping
every unit of work in memory; the caller writes them to the store in one
transaction at the end (:attr:`BacktestRun.works`).

API (stable; the body lands next):

* :class:`Approval` says who decides in a backtest: the confidence threshold,
  all, or a simulated person with a delay in market time and a seeded reject
  rate. Proposals expire while they wait, as they would live.
* :class:`Backtest` runs; ``progress(done, total)`` is called now and then with
  candles done; ``should_stop()`` True stops it after the current candle and
  the run keeps what was done (``stopped`` is True).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

from engine.backtest.data import Columns
from engine.backtest.metrics import ClosedTrade, Results

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from engine.agents.base import Agent
    from engine.config import Settings
    from engine.ports import UnitOfWork

__all__ = ["Approval", "Backtest", "BacktestRun"]

ApprovalMode = Literal["threshold", "all", "person"]


@dataclass(frozen=True, slots=True)
class Approval:
    """Who approves a backtest's proposals.

    * ``threshold``: the auto policy, at ``threshold`` (None: the config's
      ``approval.auto_confidence``); below it a proposal is rejected.
    * ``all``: every proposal is approved.
    * ``person``: a simulated person decides each proposal ``delay_ms`` of market
      time after it is made, rejecting a share ``reject_rate`` of them (drawn from
      ``seed``); one whose time to live runs out first expires.
    """

    mode: ApprovalMode = "threshold"
    threshold: float | None = None
    delay_ms: int = 0
    reject_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("threshold", "all", "person"):
            raise ValueError(f"approval mode must be threshold, all or person, got {self.mode!r}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"approval threshold must lie in [0, 1], got {self.threshold}")
        if self.delay_ms < 0:
            raise ValueError(f"approval delay must be >= 0, got {self.delay_ms} ms")
        if not 0.0 <= self.reject_rate <= 1.0:
            raise ValueError(f"reject rate must lie in [0, 1], got {self.reject_rate}")


@dataclass(slots=True)
class BacktestRun:
    """What a backtest did: its units of work (to store), results and equity curve."""

    works: list[UnitOfWork]
    results: Results
    trades: list[ClosedTrade]
    #: Candles fed (over all symbols) and how many there were.
    candles: int
    total: int
    #: True when ``should_stop`` ended it early (what was done is kept).
    stopped: bool
    #: The equity curve: one point per candle time, in the account's currency.
    ts: NDArray[np.int64]
    equity: NDArray[np.float64]
    final_equity: Decimal
    currency: str
    symbols: tuple[str, ...] = field(default=())


class Backtest:
    """One backtest of ``columns`` (one per symbol, same timeframe) under ``settings``."""

    def __init__(
        self,
        settings: Settings,
        columns: Sequence[Columns],
        *,
        agent_classes: Sequence[type[Agent]],
        approval: Approval,
        new_work: Callable[[], UnitOfWork],
        audit: bool = False,
    ) -> None:
        if not columns:
            raise ValueError("a backtest needs at least one symbol's candles")
        self.settings = settings
        self.columns = list(columns)
        self.agent_classes = list(agent_classes)
        self.approval = approval
        self.new_work = new_work
        self.audit = audit
        self.total = sum(len(c) for c in self.columns)

    def run(
        self,
        *,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> BacktestRun:
        raise NotImplementedError("the driver's body lands next")
