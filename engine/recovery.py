"""Recovery: the core rebuilt from what the store holds, and what was found."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal

from engine.core import TradingCore
from engine.models import OrderIntent, Position, Proposal, TradingState
from engine.portfolio import Portfolio
from engine.ports import RecoveredState
from engine.step import Step
from engine.timeframes import DAY_MS


class StoreMismatchError(ValueError):
    """The store holds an account this feed cannot trade on; nothing was written."""


def _utc(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts / 1000))


@dataclass(slots=True)
class Recovery:
    """What the engine found in the store when it started."""

    is_fresh: bool
    positions: list[Position] = field(default_factory=list)
    pending: list[Proposal] = field(default_factory=list)
    trading_state: TradingState = TradingState.ACTIVE
    notes: list[str] = field(default_factory=list)
    #: Orders sent before the restart and not yet filled (they fill at the next price).
    working_orders: list[OrderIntent] = field(default_factory=list)
    #: Live: what the exchange holds that the store does not know (one line each).
    differences: list[str] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        """Whether a person has something to decide before trading resumes: open
        positions, live proposals, working orders, or trading not ACTIVE.

        A clean quit with none of these (a fresh store too) needs nothing: the
        engine starts running at once and no restart summary is shown.
        """
        if self.differences:
            return True
        return not self.is_fresh and bool(
            self.positions
            or self.pending
            or self.working_orders
            or self.trading_state is not TradingState.ACTIVE
        )


def check_store_fits(
    state: RecoveredState,
    *,
    currency: str,
    store_path: str,
    feed_last_ts: int | None,
    tf_ms: int,
) -> None:
    """Refuse a store this feed cannot go on trading: another currency, or a replay
    that ends before the store's market time (every candle would be skipped)."""
    store = f"the store {store_path}" if store_path else "the store"
    if state.currency is not None and state.currency != currency:
        raise StoreMismatchError(
            f"{store} holds a {state.currency} account, but this market is quoted in "
            f"{currency}; trade it on its own store (--db PATH)"
        )
    end = feed_last_ts
    if state.last_ts is not None and end is not None and end + tf_ms <= state.last_ts:
        raise StoreMismatchError(
            f"{store} has traded up to {_utc(state.last_ts)}, after the replay's last candle "
            f"({_utc(end)}): market time never goes back, so nothing would trade; "
            "replay into a new store (--db PATH)"
        )


def restore(core: TradingCore, state: RecoveredState, currency: str) -> tuple[Recovery, Step]:
    """Put a store's account, proposals, records and working orders back into ``core``;
    the Step cancels the intents that were never sent."""
    assert state.cash is not None and state.initial_cash is not None
    now = state.last_ts or 0
    core.market_ts = now
    core.account.portfolio = Portfolio(
        state.initial_cash, state.cash, state.positions, currency=currency
    )
    for pos in state.positions:
        core.market.restore_bracket(pos.symbol, pos.side, pos.qty, pos.stop, pos.take_profit)
    core.desk.restore(state.pending)
    core.learning.restore(state.records)
    core.execution.tracker.held.update(state.position_proposals)
    trading = TradingState(state.state.get("trading_state", TradingState.ACTIVE.value))
    # The peak since the last resume by command (``risk_rebased_at``): the only rebase.
    peak = state.equity_peak or state.initial_cash
    core.risk.restore(
        trading,
        peak,
        state.day_start_equity or peak,
        max(0, now // DAY_MS),
        halted_by_limit=state.state.get("halted_by_limit") == "1",
    )
    core.account.realized_today = state.realized_today
    # Live: the dust written off before, still held on the exchange (engine/core.py).
    core.dust = {
        key.partition(":")[2]: Decimal(value)
        for key, value in state.state.items()
        if key.startswith("dust:")
    }
    core.written_off = Decimal(state.state.get("dust_written_off", "0"))
    notes: list[str] = []
    working: list[OrderIntent] = []
    work = core.new_work()
    for open_intent in state.open_intents:
        intent = open_intent.intent
        if open_intent.status == "sent":
            # The order was sent before the restart: it is still open (a live broker's
            # reconciliation then asks the exchange what became of it).
            core.execution.restore(intent, open_intent.proposal)
            working.append(intent)
            if core.market.matching:
                notes.append(
                    f"order {intent.client_order_id} ({intent.side.value} {intent.qty} "
                    f"{intent.symbol}) is still open and fills at the next price"
                )
        else:
            work.intent_cancelled(intent.client_order_id, now, "never sent before the restart")
            notes.append(f"order intent {intent.client_order_id} was never sent: cancelled")
    recovery = Recovery(
        is_fresh=False,
        positions=list(core.portfolio.positions.values()),
        pending=core.router.pending(),
        trading_state=trading,
        notes=notes,
        working_orders=working,
    )
    return recovery, Step(work)
