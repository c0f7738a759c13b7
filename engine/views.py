"""The engine's read models: what the console and the headless runner show.

Every view reads the core's pieces as they are now; the console redraws from
these when it hears an event.
"""

from __future__ import annotations

import time

from engine.account import Account, EquitySnapshot
from engine.core import TradingCore
from engine.feeds.base import Feed
from engine.learning import LearningAgent
from engine.marks import Marks
from engine.models import OrderIntent, Position, Proposal
from engine.portfolio import Portfolio
from engine.risk import RiskEngine, RiskSnapshot
from engine.router import SignalRouter


class EngineViews:
    """Read models over :attr:`core` (mixed into :class:`engine.runtime.Engine`)."""

    core: TradingCore
    feed: Feed
    status: str

    @property
    def account(self) -> Account:
        return self.core.account

    @property
    def risk(self) -> RiskEngine:
        return self.core.risk

    @property
    def router(self) -> SignalRouter:
        return self.core.router

    @property
    def learning(self) -> LearningAgent:
        return self.core.learning

    @property
    def marks(self) -> Marks:
        return self.core.marks

    @property
    def market_ts(self) -> int:
        return self.core.market_ts

    @property
    def candles_seen(self) -> int:
        return self.core.candles_seen

    @property
    def portfolio(self) -> Portfolio:
        """The ledger: cash and positions (the account's)."""
        return self.core.portfolio

    @property
    def policy(self) -> str:
        return self.router.policy.value

    @property
    def auto_confidence(self) -> float:
        return self.router.auto_confidence

    def pending(self) -> list[Proposal]:
        """Pending proposals, oldest first."""
        return self.router.pending()

    def positions(self) -> list[Position]:
        return list(self.portfolio.positions.values())

    def working_entries(self) -> list[OrderIntent]:
        """Entry orders sent and not yet filled, oldest first (after a restart too: a
        sent entry is resubmitted by recovery)."""
        return self.core.working_entries()

    def equity_snapshot(self) -> EquitySnapshot:
        """The equity pane's figures; its drawdown is the risk pane's."""
        return self.core.account.snapshot()

    def risk_snapshot(self) -> RiskSnapshot:
        return self.risk.snapshot(self.portfolio.equity(self.marks), self.positions(), self.marks)

    def status_line(self) -> str:
        eq = self.equity_snapshot()
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.market_ts / 1000))
        return (
            f"{stamp} {self.status:8} {self.risk.state.value:8} equity {eq.equity:.2f} "
            f"(dd {eq.drawdown:.1%}) cash {eq.cash:.2f} pos {len(self.portfolio.positions)} "
            f"pending {len(self.router)} candles {self.candles_seen}{self._warnings()}"
        )

    @property
    def breaker_open(self) -> bool:
        """Whether trading is held in REDUCING by the live broker's open circuit breaker."""
        return self.risk.held is not None

    def _warnings(self) -> str:
        """A stale exchange feed and an open circuit breaker, for the status line."""
        out = ""
        stale = self.feed.staleness()
        if stale is not None:
            out += f" feed STALE {stale:.0f}s"
        if self.breaker_open:
            out += " BREAKER OPEN"
        return out
