"""One sample of each engine event kind, for pinning the events.payload format.

``fixtures/event_payloads.json`` holds the JSON the pydantic models produced for these
samples (``model_dump_json()``) before the records became dataclasses; the store's
``event_payload`` must write the same text (``OrderFilled`` aside: it now carries the
one ``Fill`` shape, see its own entry).
"""

from __future__ import annotations

from decimal import Decimal

from engine.models import (
    AgentVote,
    Decision,
    DecisionAction,
    DecisionMade,
    EngineEvent,
    EngineMessage,
    EngineStateChanged,
    EquityUpdated,
    OrderDenied,
    OrderIntent,
    OrderSide,
    OrderSubmitted,
    Position,
    PositionChanged,
    PositionClosed,
    PositionOpened,
    Proposal,
    ProposalCreated,
    ProposalMerged,
    Side,
    TradingState,
    TradingStateChanged,
)

TS = 1_677_628_800_000


def proposal() -> Proposal:
    return Proposal(
        id="prp-0123456789abcdef",
        symbol="BTC/USDT",
        side=Side.LONG,
        entry=Decimal("23150.5"),
        stop=Decimal("22800.00000001"),
        take_profit=Decimal("24000"),
        confidence=0.625,
        size=Decimal("0.01234567"),
        created_at=TS,
        expires_at=TS + 300_000,
        votes=(
            AgentVote(
                agent="momentum",
                symbol="BTC/USDT",
                direction=Side.LONG,
                strength=0.8,
                rationale='RSI 28 "turning" ↑',
            ),
            AgentVote(
                agent="price_action",
                symbol="BTC/USDT",
                direction=Side.SHORT,
                strength=0.5,
                rationale="breakout",
            ),
        ),
        merged=2,
        risk_note="",
    )


def position() -> Position:
    return Position(
        symbol="ETH/USDT",
        side=Side.SHORT,
        qty=Decimal("1.5"),
        entry_price=Decimal("1600.25"),
        cost_basis=Decimal("2400.375"),
        stop=Decimal("1650"),
        take_profit=None,
        opened_at=TS,
        proposal_id="prp-fedcba9876543210",
        realized_pnl=Decimal("-3.2"),
        fees=Decimal("0.96015"),
    )


def events() -> list[EngineEvent]:
    """One event of each kind (two for the kinds with optional fields)."""
    intent = OrderIntent(
        client_order_id="ord-00000000000000ff",
        proposal_id="prp-0123456789abcdef",
        symbol="BTC/USDT",
        side=OrderSide.BUY,
        qty=Decimal("0.01234567"),
        purpose="entry",
        created_at=TS + 1,
    )
    return [
        ProposalCreated(ts=TS, proposal=proposal()),
        ProposalMerged(
            ts=TS + 60_000, proposal_id="prp-0123456789abcdef", merged=3, confidence=0.7
        ),
        DecisionMade(
            ts=TS + 2,
            decision=Decision(
                proposal_id="prp-0123456789abcdef",
                action=DecisionAction.APPROVE,
                size=Decimal("0.01"),
                resized=True,
                latency_ms=1234,
                decided_at=TS + 2,
                decided_by="policy",
            ),
            symbol="BTC/USDT",
            side=Side.LONG,
        ),
        DecisionMade(
            ts=TS + 3,
            decision=Decision(
                proposal_id="prp-1",
                action=DecisionAction.REJECT,
                reason="weak_signal",
                latency_ms=0,
                decided_at=TS + 3,
            ),
            symbol="ETH/USDT",
            side=Side.SHORT,
        ),
        OrderDenied(ts=TS + 4, symbol="BTC/USDT", reason="max exposure 0.6 reached"),
        OrderDenied(
            ts=TS + 5,
            symbol="BTC/USDT",
            reason="halted",
            proposal_id="prp-2",
            client_order_id="ord-3",
        ),
        OrderSubmitted(ts=TS + 6, intent=intent),
        PositionOpened(ts=TS + 7, position=position()),
        PositionChanged(
            ts=TS + 8,
            position=Position(
                symbol="BTC/USDT",
                side=Side.LONG,
                qty=Decimal("0E-8"),
                entry_price=Decimal("23150.5"),
                cost_basis=Decimal("1E+1"),
                opened_at=TS,
            ),
        ),
        PositionClosed(
            ts=TS + 9,
            symbol="BTC/USDT",
            side=Side.LONG,
            qty=Decimal("0.01"),
            entry_price=Decimal("23150.5"),
            exit_price=Decimal("23500"),
            realized_pnl=Decimal("3.495"),
            fees=Decimal("0.46650500"),
            reason="take-profit",
            opened_at=TS,
        ),
        EquityUpdated(
            ts=TS + 10,
            equity=Decimal("10003.02849500"),
            cash=Decimal("10003.028495"),
            unrealized=Decimal("0"),
            realized_today=Decimal("3.028495"),
            drawdown=0.0125,
        ),
        TradingStateChanged(
            ts=TS + 11,
            old=TradingState.ACTIVE,
            new=TradingState.REDUCING,
            reason="drawdown 7.5% ≥ 7%",
        ),
        EngineStateChanged(ts=TS + 12, state="running"),
        EngineMessage(ts=TS + 13, text="started"),
        EngineMessage(ts=TS + 14, level="warning", text="feed\nlagging\t\x00 \\ /"),
    ]
