"""The equity chart's model: equity and drawdown by market time, bounded and evenly sampled.

A plain class (no widget): the app records every ``EquityUpdated`` into it as it
comes, and the equity pane draws it when it is visible.
"""

from __future__ import annotations

#: Equity points kept for the chart; beyond this, every other point is dropped.
EQUITY_POINTS = 720


class EquitySeries:
    """Equity and drawdown by market time, bounded: past the limit, every other point goes
    and the stride at which new points are kept doubles, so a long session stays evenly sampled."""

    def __init__(self, limit: int = EQUITY_POINTS) -> None:
        self.limit = limit
        self.ts: list[int] = []
        self.equity: list[float] = []
        self.drawdown: list[float] = []
        self._stride = 1
        self._seen = 0
        #: Bumped on every kept point, so a chart knows whether it is stale.
        self.version = 0

    def __len__(self) -> int:
        return len(self.ts)

    def add(self, ts: int, equity: float, drawdown: float) -> None:
        """Record one point (kept only every ``stride``-th call)."""
        self._seen += 1
        if (self._seen - 1) % self._stride:
            return
        self.ts.append(ts)
        self.equity.append(equity)
        self.drawdown.append(drawdown)
        if len(self.ts) > self.limit:
            self.ts = self.ts[::2]
            self.equity = self.equity[::2]
            self.drawdown = self.drawdown[::2]
            self._stride *= 2
        self.version += 1
