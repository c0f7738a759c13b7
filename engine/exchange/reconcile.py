"""Reconciliation on a live restart: the store's open intents against the exchange.

Before trading resumes, every intent that was sent but has no final outcome in
the store is looked up by its client order id:

- filled (wholly, or partly and then cancelled): its fill is adopted, once (the
  store marks the intent final in the same transaction as the fill, so a second
  restart finds nothing left to adopt);
- still open: it stays working, and the broker polls it;
- unknown to the exchange, or cancelled with nothing filled: the intent is
  cancelled with that reason.

Then whatever the exchange holds that the store does not know is listed as a
difference for a person to look at (nothing is adopted blindly): open orders
with client order ids the store never wrote, and balances that differ from the
account (the quote currency against the cash, each base currency against the
position held).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from engine.exchange.broker import ExchangeBroker, Remote
from engine.models import Fill, OrderIntent, Position, Side

#: Balances closer than this fraction (or one quantum) count as equal.
TOLERANCE = Decimal("0.000001")


@dataclass(slots=True)
class Reconciliation:
    """What the exchange said about the store's open intents, and what differs."""

    fills: list[Fill] = field(default_factory=list)
    cancelled: list[tuple[OrderIntent, str]] = field(default_factory=list)
    working: list[OrderIntent] = field(default_factory=list)
    #: What a person should look at before trading resumes, one line each.
    differences: list[str] = field(default_factory=list)
    #: Everything found, one line each (the recovery screen's notes).
    notes: list[str] = field(default_factory=list)


def _differs(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) > max(abs(a), abs(b)) * TOLERANCE + Decimal("1e-8")


async def reconcile_intents(
    broker: ExchangeBroker, intents: Sequence[OrderIntent]
) -> Reconciliation:
    """Look each sent intent up on the exchange (see the module docstring)."""
    out = Reconciliation()
    for intent in intents:
        coid = intent.client_order_id
        remote: Remote | None = await broker.lookup(coid, intent.symbol)
        what = f"order {coid} ({intent.side.value} {intent.qty} {intent.symbol})"
        if remote is None:
            out.cancelled.append((intent, "never reached the exchange before the restart"))
            out.notes.append(f"{what} never reached the exchange: cancelled")
            continue
        if not remote.final:
            broker.track(intent)
            out.working.append(intent)
            out.notes.append(f"{what} is open on the exchange ({remote.filled} filled so far)")
            continue
        fill = remote.fill()
        if fill is None:
            out.cancelled.append((intent, f"{remote.status} on the exchange, nothing filled"))
            out.notes.append(f"{what} was {remote.status} on the exchange: cancelled")
            continue
        broker.mark_reported(coid)
        out.fills.append(fill)
        out.notes.append(
            f"{what} filled on the exchange while cma was down: "
            f"{fill.qty} at {fill.price} (adopted)"
        )
    return out


async def reconcile_exchange(
    broker: ExchangeBroker,
    out: Reconciliation,
    *,
    known: Iterable[str],
    symbols: Sequence[str],
    positions: Sequence[Position],
    cash: Decimal,
    currency: str,
    dust: Mapping[str, Decimal] | None = None,
) -> None:
    """Add to ``out`` the exchange's orders and balances the store does not know.
    ``dust``: what the store wrote off as dust by base currency (too small to trade,
    still on the exchange): held beside the positions, so it is no difference."""
    known_ids = set(known)
    for remote in await broker.remote_open_orders(symbols):
        if remote.client_order_id not in known_ids:
            line = (
                f"the exchange has an open order {remote.client_order_id} "
                f"({remote.side.value} {remote.amount} {remote.symbol}) the store does not know"
            )
            out.differences.append(line)
    balances = await broker.balances()
    held = balances.get(currency, Decimal(0))
    if _differs(held, cash):
        out.differences.append(
            f"{currency}: the exchange holds {held}, the account's cash is {cash}"
        )
    longs = {p.symbol.partition("/")[0]: p.qty for p in positions if p.side is Side.LONG}
    for symbol in symbols:
        base = symbol.partition("/")[0]
        have = balances.get(base, Decimal(0))
        want = longs.get(base, Decimal(0))
        left = (dust or {}).get(base, Decimal(0))
        if _differs(have, want + left):
            also = f" and dust {left} written off" if left else ""
            out.differences.append(
                f"{base}: the exchange holds {have}, the account's position is {want}{also}"
            )
    out.notes.extend(out.differences)
