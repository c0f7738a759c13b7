"""The order tracker: one record per working order, and which symbols are closing."""

from __future__ import annotations

from decimal import Decimal

from engine.execution import OrderTracker, Working
from engine.models import OrderIntent, OrderSide, Proposal, Side

BTC, ETH = "BTC/USDT", "ETH/USDT"


def intent(coid: str, symbol: str = BTC, purpose: str = "entry", at: int = 0) -> OrderIntent:
    return OrderIntent(
        client_order_id=coid,
        proposal_id=None,
        symbol=symbol,
        side=OrderSide.BUY,
        qty=Decimal(1),
        purpose=purpose,
        created_at=at,
    )


def proposal(pid: str) -> Proposal:
    return Proposal(
        id=pid,
        symbol=BTC,
        side=Side.LONG,
        entry=Decimal(100),
        stop=Decimal(96),
        take_profit=Decimal(108),
        confidence=0.8,
        size=Decimal(1),
        created_at=0,
        expires_at=60_000,
    )


def test_exits_mark_their_symbol_closing_until_the_last_one_ends() -> None:
    t = OrderTracker()
    t.track(Working(intent("x1", purpose="exit"), "exit", reason="closed by hand"))
    t.track(Working(intent("x2", purpose="exit"), "exit", reason="again"))
    t.track(Working(intent("e1", ETH), "entry", proposal("p1")))
    assert t.closing(BTC) and not t.closing(ETH)
    first = t.pop("x1")
    assert first is not None and first.reason == "closed by hand"
    assert t.closing(BTC)
    t.pop("x2")
    assert not t.closing(BTC)
    assert t.pop("x2") is None
    assert len(t) == 1


def test_entries_come_oldest_first_with_their_proposal() -> None:
    t = OrderTracker()
    t.track(Working(intent("late", at=5), "entry", proposal("p2")))
    t.track(Working(intent("early", at=1), "entry", proposal("p1")))
    t.track(Working(intent("x", purpose="exit", at=0), "exit", reason="stop"))
    entries = t.entries()
    assert [w.intent.client_order_id for w in entries] == ["early", "late"]
    assert [w.proposal.id for w in entries if w.proposal] == ["p1", "p2"]
    assert t.get("x") is not None and t.get("nope") is None
