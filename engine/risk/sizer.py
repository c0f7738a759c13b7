"""The Kelly sizer: how much of an entry the limits allow.

Fractional Kelly (``kelly_multiplier`` × full Kelly) from the learning agent's
record once it has ``min_trades_for_kelly`` trades, the conservative default
fraction before that; then the per-position cap, the loss at the stop, the
proposal's confidence, the exposure headroom, and the quantity rounded down to
a quantum. Pure functions of their inputs; the risk engine runs its ordered
checks before calling :func:`size_entry`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from engine.models import QTY_QUANTUM, Position, Proposal, q_qty, to_decimal
from engine.risk._inputs import require_decimal, require_float, require_int, require_unit
from engine.risk.limits import RiskLimits

_FRACTION_QUANTUM = Decimal("1e-12")


def kelly_fraction(win_rate: float, avg_win: float, avg_loss: float) -> float:
    """The full-Kelly fraction ``f* = W - (1 - W) / R`` with ``R = avg_win / avg_loss``.

    ``avg_loss`` is a positive magnitude. The result is clipped at 0: a negative
    edge means do not bet, never bet the other way. It lies in [0, 1] and never
    decreases as ``win_rate`` grows.
    """
    require_unit("win_rate", win_rate, allow_zero=True)
    require_float("avg_win", avg_win, allow_zero=False)
    require_float("avg_loss", avg_loss, allow_zero=False)
    return _kelly(win_rate, avg_win, avg_loss)


def _kelly(win_rate: float, avg_win: float, avg_loss: float) -> float:
    if win_rate >= 1.0:
        return 1.0
    # (1 - W) * (avg_loss / avg_win) is (1 - W) / R without dividing by an R that underflowed to 0.
    return max(0.0, win_rate - (1.0 - win_rate) * (avg_loss / avg_win))


@dataclass(frozen=True, slots=True)
class EdgeStats:
    """The learning agent's record, the input to Kelly sizing.

    ``avg_win`` and ``avg_loss`` are positive magnitudes in any common unit
    (quote currency or return); 0 means no win or no loss was recorded.
    """

    trades: int
    win_rate: float
    avg_win: float
    avg_loss: float

    def __post_init__(self) -> None:
        # The learning agent makes one per proposal: the common good input costs one
        # test (it passes the checks below), a bad one gets its message.
        t, w, win, loss = self.trades, self.win_rate, self.avg_win, self.avg_loss
        if (
            type(t) is int
            and t >= 0
            and type(w) is float
            and 0.0 <= w <= 1.0
            and type(win) is float
            and 0.0 <= win < math.inf
            and type(loss) is float
            and 0.0 <= loss < math.inf
        ):
            return
        require_int("trades", self.trades, 0)
        require_unit("win_rate", self.win_rate, allow_zero=True)
        require_float("avg_win", self.avg_win, allow_zero=True)
        require_float("avg_loss", self.avg_loss, allow_zero=True)

    def kelly(self) -> float:
        """Full-Kelly fraction; 0 without a recorded win, ``win_rate`` without a recorded loss."""
        if self.win_rate == 0 or self.avg_win == 0:
            return 0.0
        if self.avg_loss == 0:
            return self.win_rate  # the limit of W - (1 - W) / R as R grows without bound
        return _kelly(self.win_rate, self.avg_win, self.avg_loss)


class Sizing(NamedTuple):
    """The sizer's answer: a quantity and how it was reached, or 0 and why not."""

    quantity: Decimal
    reason: str


def _denied(reason: str) -> Sizing:
    return Sizing(Decimal(0), reason)


def exposures_of(positions: Sequence[Position], marks: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Each symbol's exposure: ``qty × mark`` (the entry price without a mark), either side."""
    exposures: dict[str, Decimal] = {}
    for index, position in enumerate(positions):
        if position.qty == 0:
            continue
        mark = marks.get(position.symbol)
        if mark is None:
            mark = position.entry_price
            require_decimal(f"positions[{index}].entry_price", mark, positive=True)
        exposures[position.symbol] = (
            exposures.get(position.symbol, Decimal(0)) + position.qty * mark
        )
    return exposures


class _Fixed(NamedTuple):
    """What the sizer reads of one :class:`RiskLimits` on every entry, made once."""

    position_fraction: Decimal
    position_note: str
    risk_per_trade: Decimal
    risk_note: str
    symbol_exposure: Decimal
    total_exposure: Decimal
    fixed_fraction: Decimal
    fixed_note: str
    default_fraction: Decimal
    default_note: str


#: The fixed figures of the limits sized against lately, by identity (limits are frozen).
_FIXED: dict[int, tuple[RiskLimits, _Fixed]] = {}
_FIXED_MAX = 64


def _fixed(limits: RiskLimits) -> _Fixed:
    known = _FIXED.get(id(limits))
    if known is not None and known[0] is limits:
        return known[1]
    if len(_FIXED) >= _FIXED_MAX:
        _FIXED.clear()
    fixed = _Fixed(
        position_fraction=to_decimal(limits.max_position_fraction),
        position_note=f"position cap {limits.max_position_fraction:.1%}",
        risk_per_trade=to_decimal(limits.max_risk_per_trade),
        risk_note=f"stop risk {limits.max_risk_per_trade:.1%}",
        symbol_exposure=to_decimal(limits.max_symbol_exposure),
        total_exposure=to_decimal(limits.max_total_exposure),
        fixed_fraction=_fraction(limits.equity_fraction),
        fixed_note=f"fixed {limits.equity_fraction:.2%}",
        default_fraction=_fraction(limits.default_risk_fraction),
        default_note=f"default {limits.default_risk_fraction:.2%}",
    )
    _FIXED[id(limits)] = (limits, fixed)
    return fixed


def _fraction(fraction: float) -> Decimal:
    # Float noise (0.25 × 0.4 = 0.09999999999999999) would cost a quantum of size.
    # (``to_decimal``'s conversion, without its cache: a Kelly fraction seldom recurs.)
    return Decimal(repr(float(fraction))).quantize(_FRACTION_QUANTUM)


def size_entry(
    limits: RiskLimits,
    proposal: Proposal,
    equity: Decimal,
    exposures: Mapping[str, Decimal],
    edge: EdgeStats | None,
    requested_qty: Decimal | None,
) -> Sizing:
    """Size an entry at ``equity`` (> 0) given each symbol's exposure (notional).

    Kelly or the default fraction, per-position cap, stop risk, confidence (a
    person's ``requested_qty`` replaces Kelly and confidence but keeps the caps;
    ``sizing = "fraction"`` replaces them with ``equity_fraction`` of equity),
    per-symbol exposure, total exposure, minimum notional. Call it in a decimal
    context of ``PRECISION`` digits (the risk engine does).
    """
    entry = proposal.entry
    symbol = proposal.symbol
    fixed = _fixed(limits)
    notes: list[str] = []
    cap = fixed.position_fraction * equity
    if requested_qty is not None:
        notional = requested_qty * entry
        notes.append(f"requested {requested_qty}")
    elif limits.sizing == "fraction":
        notes.append(fixed.fixed_note)
        notional = fixed.fixed_fraction * equity
    else:
        if edge is not None and edge.trades >= limits.min_trades_for_kelly:
            full = edge.kelly()
            fraction = limits.kelly_multiplier * full
            if fraction <= 0:
                return _denied(
                    f"no edge: Kelly fraction 0 from {edge.trades} trades "
                    f"(win rate {edge.win_rate:.1%})"
                )
            notes.append(f"Kelly {limits.kelly_multiplier:g}×{full:.3f}={fraction:.2%}")
            notional = _fraction(fraction) * equity
        else:
            notes.append(fixed.default_note)
            notional = fixed.default_fraction * equity
    if notional > cap:
        notional = cap
        notes.append(fixed.position_note)
    if proposal.stop > 0:
        risk_cap = fixed.risk_per_trade * equity * entry
        risk_cap /= abs(entry - proposal.stop)
        if notional > risk_cap:
            notional = risk_cap
            notes.append(fixed.risk_note)
    if requested_qty is None and limits.sizing == "kelly":
        notional *= to_decimal(proposal.confidence)
        notes.append(f"confidence {proposal.confidence:.2f}")

    limit_hit: str | None = None
    held = exposures.get(symbol, Decimal(0))
    symbol_room = fixed.symbol_exposure * equity - held
    if notional > symbol_room:
        after = (held + notional) / equity
        limit_hit = f"{symbol} exposure {after:.1%} would exceed {limits.max_symbol_exposure:.1%}"
        notional = max(symbol_room, Decimal(0))
        notes.append(f"{symbol} exposure headroom")
    total = sum(exposures.values(), Decimal(0))
    total_room = fixed.total_exposure * equity - total
    if notional > total_room:
        after = (total + notional) / equity
        limit_hit = f"total exposure {after:.1%} would exceed {limits.max_total_exposure:.1%}"
        notional = max(total_room, Decimal(0))
        notes.append("total exposure headroom")

    qty = q_qty(notional / entry)
    if qty * entry > notional:
        qty -= QTY_QUANTUM  # the division rounded up past a quantum
    value = qty * entry
    if qty <= 0 or value < limits.min_notional:
        if limit_hit is not None:
            return _denied(limit_hit)
        return _denied(
            f"size below minimum notional: {value:.2f} < {limits.min_notional} ({', '.join(notes)})"
        )
    return Sizing(qty, f"{qty} {symbol} ≈ {value:.2f}: {', '.join(notes)}")
