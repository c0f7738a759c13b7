"""The account: the one owner of equity, its peak, the day's start and today's P&L.

The portfolio is the ledger (cash and positions, exact ``Decimal``); the
account reads it at the marks and keeps what follows equity over time: the
peak equity the drawdown is measured from, the equity the UTC day started at,
the realized P&L of the day, and the day rollover. The risk engine's limits
and the console's equity pane both read these figures from here, so the two
panes cannot show different drawdowns.

One rebasing rule: only a resume by command (:meth:`Account.rebase`) restarts
the peak and the day's start at the last equity. Moving back from REDUCING to
ACTIVE on its own does not. The store keeps the time of the last rebase
(``risk_rebased_at``) and rebuilds the peak from the equity points since then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal

from engine.portfolio import Portfolio
from engine.timeframes import DAY_MS

#: Decimal digits for the loss fractions (exact enough for any equity the settings allow).
_PRECISION = 60
#: The arithmetic of :func:`loss_fraction` (a local context per call costs more than it).
_CONTEXT = Context(prec=_PRECISION)
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class EquitySnapshot:
    """The account at the last candle."""

    equity: Decimal
    cash: Decimal
    unrealized: Decimal
    realized_today: Decimal
    peak: Decimal
    drawdown: float


def loss_fraction(reference: Decimal | None, equity: Decimal) -> Decimal:
    """How much of ``reference`` is lost at ``equity``; a non-positive reference counts as all."""
    if reference is None:
        return Decimal(0)
    if reference <= 0:
        return Decimal(1)
    lost = _CONTEXT.divide(_CONTEXT.subtract(reference, equity), reference)
    return lost if lost > 0 else _ZERO


class Account:
    """Equity over time: the peak, the day's start, today's realized P&L, the rollover.

    ``portfolio`` and ``marks`` are read for the views (:meth:`equity`,
    :meth:`snapshot`); a risk engine on its own needs neither and is fed
    equity through :meth:`observe`.
    """

    def __init__(
        self, portfolio: Portfolio | None = None, marks: Mapping[str, Decimal] | None = None
    ) -> None:
        self.portfolio = portfolio
        self.marks: Mapping[str, Decimal] = {} if marks is None else marks
        #: The equity the drawdown is measured from; None until the first equity.
        self.peak: Decimal | None = None
        #: The equity the current UTC day started at.
        self.day_start: Decimal | None = None
        #: The current UTC day (days since the epoch).
        self.day: int | None = None
        #: Realized P&L net of fees since the day started.
        self.realized_today = Decimal(0)
        #: The last equity observed (None after a restore, until the next).
        self.last_equity: Decimal | None = None

    # --- changes ---------------------------------------------------------------

    def observe(self, ts: int, equity: Decimal) -> bool:
        """Equity at market time ``ts``: roll the day over and raise the peak.

        True when ``ts`` starts a new UTC day (the very first equity does too).
        """
        day = ts // DAY_MS
        new_day = self.day is None or day > self.day
        if new_day:
            if self.day is not None:
                self.realized_today = Decimal(0)
            self.day = day
            self.day_start = equity
        if self.day_start is None:
            self.day_start = equity
        if self.peak is None or equity > self.peak:
            self.peak = equity
        self.last_equity = equity
        return new_day

    def realize(self, amount: Decimal) -> None:
        """Add a fill's realized P&L net of its fee to today's."""
        self.realized_today += amount

    def rebase(self) -> None:
        """A resume by command: the peak and the day's start restart at the last equity.

        With the last equity unknown (right after a restore), the next
        :meth:`observe` sets both.
        """
        self.peak = self.last_equity
        self.day_start = self.last_equity

    def restore(
        self,
        peak: Decimal | None,
        day_start: Decimal | None,
        day: int | None,
        realized_today: Decimal | None = None,
    ) -> None:
        """Put back what the store kept after a restart."""
        self.peak = peak
        self.day_start = day_start
        self.day = day
        if realized_today is not None:
            self.realized_today = realized_today
        self.last_equity = None

    # --- views -----------------------------------------------------------------

    def drawdown(self, equity: Decimal) -> Decimal:
        """The fraction of the peak lost at ``equity`` (0 at or above the peak)."""
        peak = None if self.peak is None else max(self.peak, equity)
        return loss_fraction(peak, equity)

    def daily_loss(self, equity: Decimal) -> Decimal:
        """The fraction of the day's starting equity lost at ``equity``."""
        return loss_fraction(self.day_start, equity)

    def equity(self) -> Decimal:
        """Cash plus positions at the marks."""
        return self._portfolio().equity(self.marks)

    def snapshot(self) -> EquitySnapshot:
        """The equity pane's figures."""
        portfolio = self._portfolio()
        equity = portfolio.equity(self.marks)
        return EquitySnapshot(
            equity=equity,
            cash=portfolio.cash,
            unrealized=portfolio.unrealized(self.marks),
            realized_today=self.realized_today,
            peak=equity if self.peak is None else max(self.peak, equity),
            drawdown=float(self.drawdown(equity)),
        )

    def _portfolio(self) -> Portfolio:
        if self.portfolio is None:
            raise RuntimeError("this account reads no portfolio")
        return self.portfolio
