"""The records are frozen, slotted dataclasses that keep pydantic's checks, and ids are
unique without a uuid4 each."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import engine.models as models
from engine.models import (
    AgentVote,
    Decision,
    DecisionAction,
    EngineEvent,
    EngineMessage,
    Fill,
    OrderIntent,
    OrderSide,
    Position,
    Proposal,
    Side,
    evolve,
    new_id,
    to_decimal,
)

ROOT = Path(__file__).resolve().parents[2]


def proposal(**changes: object) -> Proposal:
    base = Proposal(
        id="prp-1",
        symbol="BTC/USDT",
        side=Side.LONG,
        entry=Decimal(100),
        stop=Decimal(95),
        take_profit=Decimal(110),
        confidence=0.5,
        size=Decimal(1),
        created_at=0,
        expires_at=60_000,
    )
    return evolve(base, **changes)


def fill(**changes: object) -> Fill:
    base = Fill(
        client_order_id="ord-1",
        symbol="BTC/USDT",
        side=OrderSide.BUY,
        qty=Decimal(1),
        price=Decimal(100),
        fee=Decimal("0.1"),
        ts=0,
    )
    return evolve(base, **changes)


RECORDS = [
    AgentVote,
    Proposal,
    Decision,
    OrderIntent,
    Fill,
    Position,
    *(v for v in vars(models).values() if isinstance(v, type) and issubclass(v, EngineEvent)),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.__name__)
def test_every_record_and_event_is_a_frozen_slotted_dataclass(record: type) -> None:
    assert dataclasses.is_dataclass(record)
    assert record.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert "__slots__" in vars(record)
    assert "__dict__" not in dir(record) or not hasattr(record, "__dict__")


def test_records_are_immutable_hashable_and_equal_by_value() -> None:
    p = proposal()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.size = Decimal(2)  # type: ignore[misc]
    assert p == proposal() and hash(p) == hash(proposal())
    assert p != proposal(size=Decimal(2))
    assert EngineMessage(ts=1, text="x").kind == "EngineMessage"


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: proposal(confidence=1.01), "confidence"),
        (lambda: proposal(confidence=-0.1), "confidence"),
        (lambda: proposal(size=Decimal(-1)), "size"),
        (lambda: fill(qty=Decimal(0)), "qty"),
        (lambda: fill(price=Decimal(0)), "price"),
        (lambda: fill(fee=Decimal("-0.01")), "fee"),
        (
            lambda: Decision(
                proposal_id="p", action=DecisionAction.EXPIRE, latency_ms=-1, decided_at=0
            ),
            "latency_ms",
        ),
        (
            lambda: OrderIntent(
                client_order_id="o",
                proposal_id=None,
                symbol="S",
                side=OrderSide.SELL,
                qty=Decimal(0),
                purpose="exit",
                created_at=0,
            ),
            "qty",
        ),
        (
            lambda: Position(
                symbol="S",
                side=Side.LONG,
                qty=Decimal(-1),
                entry_price=Decimal(1),
                cost_basis=Decimal(1),
                opened_at=0,
            ),
            "qty",
        ),
        (
            lambda: AgentVote(
                agent="a", symbol="S", direction=Side.LONG, strength=1.5, rationale=""
            ),
            "strength",
        ),
    ],
)
def test_the_checks_pydantic_made_raise_value_error_naming_the_field(
    build: object, field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        build()  # type: ignore[operator]


def test_evolve_is_dataclasses_replace_and_checks_again() -> None:
    assert evolve is dataclasses.replace
    assert proposal(size=Decimal(3)).size == Decimal(3)
    with pytest.raises(ValueError, match="confidence"):
        evolve(proposal(), confidence=2.0)
    with pytest.raises(TypeError):
        evolve(proposal(), no_such_field=1)


def test_a_million_ids_are_unique_and_look_as_before() -> None:
    ids = [new_id("prp") for _ in range(1_000_000)]  # crosses 15 fresh random blocks
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 20 and i.startswith("prp-") for i in ids[::9_999])
    int(ids[-1][4:], 16)


_IDS = "from engine.models import new_id\nprint('\\n'.join(new_id('o') for _ in range(100_000)))"


def test_ids_of_two_processes_do_not_meet() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", _IDS], capture_output=True, text=True, env=env, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    assert len(runs[0]) == len(runs[1]) == 100_000
    assert not set(runs[0]) & set(runs[1])
    assert not set(runs[0]) & {new_id("o") for _ in range(100_000)}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_draws_its_own_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send 1,000 ids and leave without running pytest's exit
        os.close(read)
        os.write(write, " ".join(new_id("o") for _ in range(1_000)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = set(f.read().split())
    os.waitpid(pid, 0)
    assert len(child) == 1_000
    assert not child & {new_id("o") for _ in range(1_000)}


def test_to_decimal_caches_floats_without_changing_any_value() -> None:
    for x in (0.1, 23150.5, 1e-8, -2.5, 1e22, 0.0, -0.0, 3):
        for _ in range(2):  # a miss, then a hit
            assert to_decimal(x) == Decimal(repr(x)) or to_decimal(x) == Decimal(x)
    assert str(to_decimal(-0.0)) == "-0.0" and str(to_decimal(0.0)) == "0.0"
    assert to_decimal(Decimal("1.50")) == Decimal("1.50") and str(to_decimal("1.50")) == "1.50"
    for i in range(10_000):
        to_decimal(i + 0.5)
    assert len(models._DECIMALS) <= models._DECIMALS_MAX
