"""The JSON the store keeps for events and votes: the format the pydantic models wrote.

``fixtures/event_payloads.json`` was captured from ``model_dump_json()`` of the samples
in :mod:`event_samples` before the records became dataclasses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from pathlib import Path

import pytest
from event_samples import TS, events, position, proposal

import engine.models as models
from engine.models import (
    Decision,
    DecisionAction,
    EngineEvent,
    Fill,
    OrderFilled,
    OrderIntent,
    OrderSide,
    Side,
)
from persistence.payload import event_payload, vote_of, votes_json
from persistence.store import Store

FIXTURE = Path(__file__).parent / "fixtures" / "event_payloads.json"
FILL = Fill(
    client_order_id="ord-1",
    symbol="BTC/USDT",
    side=OrderSide.SELL,
    qty=Decimal("0.01"),
    price=Decimal("23500"),
    fee=Decimal("0.235"),
    ts=TS + 15,
    realized_pnl=Decimal("3.495"),
)


def test_each_event_kind_writes_the_json_the_pydantic_models_wrote() -> None:
    captured = json.loads(FIXTURE.read_text(encoding="utf-8"))
    samples = events()
    assert [c["kind"] for c in captured] == [e.kind for e in samples]
    for event, before in zip(samples, captured, strict=True):
        assert event_payload(event) == before["payload"], event.kind


def test_the_samples_cover_every_event_kind() -> None:
    kinds = {
        name
        for name, value in vars(models).items()
        if isinstance(value, type) and issubclass(value, EngineEvent) and value is not EngineEvent
    }
    assert {e.kind for e in events()} | {"OrderFilled"} == kinds


def test_a_fill_event_carries_the_one_fill_shape() -> None:
    # Before: last_qty, last_px and commission beside the fill's own fields; now the fill.
    assert event_payload(OrderFilled(ts=TS + 15, fill=FILL)) == (
        '{"ts":1677628800015,"fill":{"client_order_id":"ord-1","symbol":"BTC/USDT",'
        '"side":"sell","qty":"0.01","price":"23500","fee":"0.235","ts":1677628800015,'
        '"realized_pnl":"3.495"}}'
    )


def test_votes_keep_the_stored_keys_and_get_their_symbol_back() -> None:
    p = proposal()
    text = votes_json(p.votes)
    assert text == (
        '[{"agent": "momentum", "direction": "long", "strength": 0.8, "rationale": '
        '"RSI 28 \\"turning\\" \\u2191"}, {"agent": "price_action", "direction": "short", '
        '"strength": 0.5, "rationale": "breakout"}]'
    )
    assert tuple(vote_of(v, p.symbol) for v in json.loads(text)) == p.votes


async def test_records_and_payloads_round_trip_through_the_store(tmp_path: Path) -> None:
    p = proposal()
    intent = OrderIntent(
        client_order_id="ord-2",
        proposal_id=p.id,
        symbol=p.symbol,
        side=OrderSide.BUY,
        qty=Decimal("0.01234567"),
        purpose="entry",
        created_at=TS + 1,
        reason="why ↑",
    )
    pos = position()
    async with await Store.open(tmp_path / "cma.db") as store:
        await store.init_balance("USDT", Decimal(10_000), TS)
        async with store.unit_of_work() as uow:
            created = uow.proposal_created(p, TS)
            uow.proposal_created(models.evolve(p, id="prp-behind", symbol=pos.symbol, votes=()), TS)
            uow.decision_made(
                Decision(
                    proposal_id=p.id,
                    action=DecisionAction.APPROVE,
                    latency_ms=5,
                    decided_at=TS + 1,
                ),
                p.symbol,
                Side.LONG,
                intent,
            )
            uow.position_opened(models.evolve(pos, proposal_id="prp-behind"), TS + 2)
        payloads = await store.run(
            lambda c: c.execute("SELECT kind, payload FROM events ORDER BY seq").fetchall()
        )
        state = await store.load_state()
    assert payloads[0] == ("ProposalCreated", event_payload(created))
    assert json.loads(payloads[0][1])["proposal"]["votes"][0]["rationale"] == p.votes[0].rationale
    assert state.open_intents[0].intent == intent
    assert state.open_intents[0].proposal == p  # votes with their symbol filled in
    assert state.positions == [models.evolve(pos, proposal_id="prp-behind")]
    assert state.position_proposals[pos.symbol].votes == ()


class _Colour(Enum):
    RED = "red"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Odd(EngineEvent):
    colour: _Colour
    thing: object = None


def test_plain_enums_write_their_value_and_anything_else_is_refused() -> None:
    assert event_payload(_Odd(ts=1, colour=_Colour.RED)) == '{"ts":1,"colour":"red","thing":null}'
    with pytest.raises(TypeError, match="cannot store a object"):
        event_payload(_Odd(ts=1, colour=_Colour.RED, thing=object()))
