"""Cash and positions, exact to the store's unit.

Each fill moves money by quantized amounts (notional and fee rounded to
:data:`engine.models.CASH_QUANTUM`), and the cost basis removed on a partial
close is rounded the same way, so that at every moment

    cash + Σ(long cost basis) − Σ(short cost basis) == initial cash + Σ realized − Σ fees

holds to the unit. ``cma db check`` verifies exactly this identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from engine.events import PositionClosed
from engine.models import Fill, OrderSide, Position, Side, evolve, q_cash, q_price

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class FillOutcome:
    """What one fill did: the stored fill, the position after it, and the cash."""

    record: Fill  # the broker's fill with the realized PnL it made
    opened: Position | None
    changed: Position | None
    closed: PositionClosed | None
    cash: Decimal


class Portfolio:
    """The account: cash in one quote currency and at most one position per symbol."""

    def __init__(
        self,
        initial_cash: Decimal,
        cash: Decimal | None = None,
        positions: Iterable[Position] = (),
        currency: str = "USDT",
    ) -> None:
        if initial_cash <= 0:
            raise ValueError(f"initial_cash must be > 0, got {initial_cash}")
        self.currency = currency
        self.initial_cash = initial_cash
        self.cash = initial_cash if cash is None else cash
        self.positions: dict[str, Position] = {p.symbol: p for p in positions}

    def apply_fill(
        self,
        fill: Fill,
        *,
        stop: Decimal | None = None,
        take_profit: Decimal | None = None,
        proposal_id: str | None = None,
        reason: str = "",
        dust: Decimal = ZERO,
    ) -> FillOutcome:
        """Apply a fill: open, add to, reduce or close the symbol's position.

        A fill larger than the position it reduces is refused: exits never flip
        a position (the engine sends exits of at most the held quantity).

        ``dust`` (live, an exit): what the fill leaves of the position that the market
        cannot trade. It is written off at zero proceeds and the position closes: the
        whole cost basis leaves, so the fill's realized PnL includes the dust's cost.
        """
        notional = q_cash(fill.qty * fill.price)
        fee = fill.fee
        buy = fill.side is OrderSide.BUY
        pos = self.positions.get(fill.symbol)
        realized = ZERO
        opened = changed = None
        closed: PositionClosed | None = None

        if pos is None or (pos.side is Side.LONG) == buy:
            self.cash += -notional - fee if buy else notional - fee
            if pos is None:
                opened = Position(
                    symbol=fill.symbol,
                    side=Side.LONG if buy else Side.SHORT,
                    qty=fill.qty,
                    entry_price=q_price(fill.price),
                    cost_basis=notional,
                    stop=stop,
                    take_profit=take_profit,
                    opened_at=fill.ts,
                    proposal_id=proposal_id,
                    fees=fee,
                )
                self.positions[fill.symbol] = opened
            else:
                qty = pos.qty + fill.qty
                cost = pos.cost_basis + notional
                changed = evolve(
                    pos,
                    qty=qty,
                    cost_basis=cost,
                    entry_price=q_price(cost / qty),
                    fees=pos.fees + fee,
                    stop=stop if stop is not None else pos.stop,
                    take_profit=take_profit if take_profit is not None else pos.take_profit,
                )
                self.positions[fill.symbol] = changed
        else:
            if fill.qty > pos.qty:
                raise ValueError(
                    f"fill of {fill.qty} {fill.symbol} exceeds the open position of {pos.qty}"
                )
            if dust and fill.qty + dust != pos.qty:
                raise ValueError(
                    f"fill of {fill.qty} {fill.symbol} and dust {dust} are not the open "
                    f"position of {pos.qty}"
                )
            removed = (
                pos.cost_basis
                if fill.qty == pos.qty or dust
                else q_cash(pos.cost_basis * fill.qty / pos.qty)
            )
            # Long: proceeds minus cost; short: cost minus what buying back cost.
            realized = (notional - removed) * pos.side.sign
            self.cash += notional - fee if pos.side is Side.LONG else -notional - fee
            qty = pos.qty - fill.qty - dust
            total_realized = pos.realized_pnl + realized
            total_fees = pos.fees + fee
            if qty == 0:
                del self.positions[fill.symbol]
                closed = PositionClosed(
                    ts=fill.ts,
                    symbol=pos.symbol,
                    side=pos.side,
                    qty=pos.qty,
                    entry_price=pos.entry_price,
                    exit_price=q_price(fill.price),
                    realized_pnl=total_realized,
                    fees=total_fees,
                    reason=reason or "closed",
                    opened_at=pos.opened_at,
                )
            else:
                changed = evolve(
                    pos,
                    qty=qty,
                    cost_basis=pos.cost_basis - removed,
                    realized_pnl=total_realized,
                    fees=total_fees,
                )
                self.positions[fill.symbol] = changed

        record = fill if realized == fill.realized_pnl else evolve(fill, realized_pnl=realized)
        return FillOutcome(record, opened, changed, closed, self.cash)

    def write_off(self, symbol: str, ts: int, reason: str) -> PositionClosed:
        """Close ``symbol``'s long position as dust, with no fill: what is held is too
        small for the market to trade, so it leaves at zero proceeds. The cash does not
        move; the whole cost basis is realized as a loss."""
        pos = self.positions[symbol]
        if pos.side is not Side.LONG:
            raise ValueError(f"only a long position can be written off as dust, not {symbol}")
        del self.positions[symbol]
        return PositionClosed(
            ts=ts,
            symbol=symbol,
            side=pos.side,
            qty=pos.qty,
            entry_price=pos.entry_price,
            exit_price=ZERO,
            realized_pnl=pos.realized_pnl - pos.cost_basis,
            fees=pos.fees,
            reason=reason,
            opened_at=pos.opened_at,
        )

    def unrealized(self, marks: Mapping[str, Decimal]) -> Decimal:
        """Unrealized PnL of every open position at ``marks`` (entry price when unmarked)."""
        total = ZERO
        for pos in self.positions.values():
            total += pos.unrealized(marks.get(pos.symbol, pos.entry_price))
        return total

    def equity(self, marks: Mapping[str, Decimal]) -> Decimal:
        """Cash plus the mark-to-market value of every position."""
        value = self.cash
        for pos in self.positions.values():
            mark = marks.get(pos.symbol, pos.entry_price)
            value += q_cash(pos.qty * mark) * pos.side.sign
        return value

    def exposure(self, marks: Mapping[str, Decimal]) -> Decimal:
        """Sum of absolute position notionals at ``marks``."""
        return sum(
            (q_cash(p.qty * marks.get(p.symbol, p.entry_price)) for p in self.positions.values()),
            ZERO,
        )
