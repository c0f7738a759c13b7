"""Whole live runs against the local Binance exchange with faults on the order path and
the read paths: real ccxt, a real SQLite store, the engine's exchange broker and gate.

Scripted votes make entries, closing by hand makes exits (a short vote proposes nothing
on a spot market); each fault is injected on POST /api/v3/order (or on the lookups, or
the feed's websocket) while an order is on its way. Afterwards nothing is duplicated or
lost: no client order id is sent again once the exchange has it, every exchange order is
an intent of the store, every filled one has exactly one fill row with the exchange's
quantity, the position is the exchange's base balance change, and the store's checks
pass.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from crafted_market import ScriptedAgent, assert_checks_pass, query
from fake_binance import TEST_API_KEY, TEST_API_SECRET, FakeBinance
from shared_data import shared_data_dir
from test_live_engine import BTC, DATA, live_engine, live_settings, wait_for

from engine.config import Settings
from engine.events import EngineEvent, TradingStateChanged
from engine.exchange.breaker import CircuitBreaker
from engine.exchange.live import LiveParts
from engine.models import Side, TradingState
from engine.runtime import Engine

ORDER = "/api/v3/order"


class RecordingBinance(FakeBinance):
    """The local exchange, also noting at which request each order was stored."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: client order id -> index in ``requests`` of the POST that stored it.
        self.stored_at: dict[str, int] = {}

    def _new_order(self, params: Mapping[str, str]) -> Any:
        order = super()._new_order(params)
        self.stored_at[order.client_id] = len(self.requests) - 1
        return order


@dataclass
class Run:
    fake: RecordingBinance
    engine: Engine
    parts: LiveParts
    base_start: Decimal
    #: Reasons of the orders the exchange refused, by client order id (from the store).
    refused: dict[str, str] = field(default_factory=dict)

    def vote(self, side: Side) -> None:
        """A vote on the forming candle (it is decided when the next advance closes it)."""
        ts = self.fake.markets["BTCUSDT"].candles[self.fake.cursor].ts
        ScriptedAgent.script[(BTC, ts)] = (side, 1.0)

    async def settle(self, within: float = 8.0) -> None:
        """Advance until no order is working on the exchange or in the engine."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            await self.engine.synced()
            intents = await query(
                self.engine, "SELECT COUNT(*) FROM order_intents WHERE status IN ('pending','sent')"
            )
            if intents[0][0] == 0 and not any(o.is_open for o in self.fake.orders.values()):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"orders still working: {intents}, {self.fake.orders}")
            await self.fake.advance()
            await asyncio.sleep(0.1)

    async def enter(self) -> None:
        """A scripted long vote closed by an advance (approved by policy), then settled."""
        await self._order(self._vote_long)

    async def exit(self) -> None:
        """Close the position by hand (spot: a short vote proposes nothing), then settled."""
        await self._order(lambda: self.engine.close_position(BTC))

    async def _vote_long(self) -> None:
        self.vote(Side.LONG)
        await self.fake.advance()

    async def _order(self, make: Callable[[], Awaitable[None]]) -> None:
        before = await self.intents()
        await make()
        deadline = asyncio.get_running_loop().time() + 5.0
        while await self.intents() == before:
            assert asyncio.get_running_loop().time() < deadline, (
                f"no order: {self.engine.status_line()} {list(self.engine.router.pending())}"
            )
            await asyncio.sleep(0.02)
        await self.settle()

    async def story(self) -> str:
        """What became of the orders and what the engine said: a failed check's message."""
        await self.engine.synced()
        intents = await query(
            self.engine, "SELECT client_order_id, purpose, status, reason FROM order_intents"
        )
        said = await query(
            self.engine,
            "SELECT kind, payload FROM events WHERE kind IN ('OrderDenied', 'EngineMessage')"
            " ORDER BY seq DESC LIMIT 5",
        )
        requests = [r[:2] for r in self.fake.requests if r[1] == ORDER]
        return f"intents {intents}; said {said}; order requests {requests}"

    async def intents(self) -> int:
        [(count,)] = await query(self.engine, "SELECT COUNT(*) FROM order_intents")
        return int(count)

    def ws_connects(self) -> int:
        return sum(1 for r in self.fake.requests if r[0] == "GET" and r[1].startswith("/ws"))

    def posts(self) -> int:
        return sum(1 for r in self.fake.requests if r[0] == "POST" and r[1] == ORDER)

    def position_qty(self) -> Decimal:
        pos = self.engine.portfolio.positions.get(BTC)
        return Decimal(0) if pos is None else pos.qty


@asynccontextmanager
async def live_run(tmp_path: Path, **exchange: Any) -> AsyncIterator[Run]:
    async with RecordingBinance(
        [shared_data_dir() / DATA], api_key=TEST_API_KEY, api_secret=TEST_API_SECRET
    ) as fake:
        cfg = live_settings(fake.url, tmp_path)
        cfg = _with_exchange(cfg, timeout_seconds=0.5, **exchange)
        # Losing round trips (fees) lower the agent's weight: its votes stay approved.
        # No stop or take-profit: a position here closes when the test closes it, not when
        # the candles a slow run advances through happen to reach its stop.
        cfg = cfg.model_copy(
            update={
                "approval": cfg.approval.model_copy(update={"auto_confidence": 0.1}),
                "strategy": cfg.strategy.model_copy(update={"brackets": False}),
            }
        )
        ScriptedAgent.script = {}
        async with live_engine(cfg) as (engine, parts):
            await engine.start()
            await wait_for(lambda: 0 < engine.feed.warmup_batches <= engine._batches)
            base = fake.balances["BTC"][0] + fake.balances["BTC"][1]
            yield Run(fake, engine, parts, base)


def _with_exchange(cfg: Settings, **values: Any) -> Settings:
    return cfg.model_copy(update={"exchange": cfg.exchange.model_copy(update=values)})


async def assert_nothing_duplicated_or_lost(run: Run) -> None:
    """The invariants of the module docstring."""
    fake, engine = run.fake, run.engine
    await engine.synced()
    intents = dict(await query(engine, "SELECT client_order_id, status FROM order_intents"))
    # No client order id is sent again once the exchange has it.
    for coid, index in fake.stored_at.items():
        later = [
            r
            for r in fake.requests[index + 1 :]
            if r[0] == "POST" and r[1] == ORDER and r[2].get("newClientOrderId") == coid
        ]
        assert later == [], f"{coid} sent again after the exchange stored it"
    # Every exchange order is an intent of the store (none unknown, none lost).
    assert set(fake.orders) <= set(intents), set(fake.orders) - set(intents)
    fills = Counter[str]()
    qty: dict[str, Decimal] = {}
    for coid, q in await query(engine, "SELECT client_order_id, qty FROM fills"):
        fills[coid] += 1
        qty[coid] = Decimal(q)
    for coid, order in fake.orders.items():
        if order.status == "FILLED":
            assert fills[coid] == 1, f"{coid}: {fills[coid]} fill rows"
            assert qty[coid] == order.executed
            assert intents[coid] == "filled"
        else:
            assert fills[coid] == 0
            assert intents[coid] in ("cancelled", "denied")
    assert set(fills) <= set(fake.orders)
    # The position is what the exchange's base balance moved by.
    held = fake.balances["BTC"][0] + fake.balances["BTC"][1]
    assert run.position_qty() == held - run.base_start
    # The cash is what the exchange holds of the quote currency (fees included).
    usdt = fake.balances["USDT"][0] + fake.balances["USDT"][1]
    assert abs(engine.portfolio.cash - usdt) < Decimal("0.0001"), (engine.portfolio.cash, usdt)
    await assert_checks_pass(engine)


FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("429", {"retry_after": 0}),
    ("418", {"retry_after": 0}),
    ("500", {}),
    ("503", {}),
    ("drop", {}),
    ("timeout", {"seconds": 0.8}),
    ("malformed", {}),
    ("lost_response", {}),
]
#: A few faults per run (one warm-up serves several round trips; a fault that never
#: reached the exchange costs the broker's 0.5 s pause before it sends again).
GROUPS = [FAULTS[:2], FAULTS[2:4], FAULTS[4:]]


@pytest.mark.parametrize("faults", GROUPS, ids=["-".join(k for k, _ in g) for g in GROUPS])
async def test_a_fault_on_the_order_path_neither_duplicates_nor_loses_an_order(
    tmp_path: Path, faults: list[tuple[str, dict[str, Any]]]
) -> None:
    async with live_run(tmp_path) as run:
        for kind, opts in faults:
            # The entry's POST fails, and then the exit's.
            posts = run.posts()
            run.fake.fault(kind, ORDER, **opts)
            await run.enter()
            assert run.position_qty() > 0, (kind, await run.story())
            run.fake.fault(kind, ORDER, **opts)
            await run.exit()
            assert run.position_qty() == 0, (kind, await run.story())
            assert run.posts() >= posts + 2
            assert not run.fake.faults, f"{kind} was never met"
        # A clean entry after them.
        await run.enter()
        assert run.position_qty() > 0
        await run.engine.stop()
        await assert_nothing_duplicated_or_lost(run)


READS: list[tuple[str, dict[str, Any]]] = [
    ("429", {"retry_after": 0}),
    ("500", {}),
    ("drop", {"count": 2}),
    ("timeout", {"seconds": 0.8}),
    ("malformed", {}),
]


async def test_a_fault_on_the_lookups_of_a_working_order_loses_nothing(tmp_path: Path) -> None:
    """The market order is working until the next candle: the broker polls it by client
    order id, and those reads fail (each is retried with backoff)."""
    async with live_run(tmp_path) as run:
        for kind, opts in READS:
            received = run.fake.orders_received
            if run.position_qty() == 0:
                await run._vote_long()
            else:
                await run.engine.close_position(BTC)
            await wait_for(lambda r=received: run.fake.orders_received > r)  # type: ignore[misc]
            run.fake.fault(kind, ORDER, **{"count": 1, **opts})
            await run.settle()
            assert not run.fake.faults, f"{kind} was never met"
        gets = [r for r in run.fake.requests if r[0] == "GET" and r[1] == ORDER]
        assert len(gets) >= len(READS)
        await run.engine.stop()
        await assert_nothing_duplicated_or_lost(run)


async def test_an_order_whose_post_and_lookup_both_failed_is_sent_again_once_none_is_found(
    tmp_path: Path,
) -> None:
    """The POST never arrives (dropped) and every read of the lookup after it fails too
    (a slow or failing exchange): the order is kept working, its outcome unknown. When the
    poller then finds no such order, it is sent again with the same client order id, not
    refused: the entry lands, once."""
    async with live_run(tmp_path) as run:
        run.parts.broker.breaker = CircuitBreaker(threshold=100)  # the failures keep it shut
        run.fake.fault("drop", ORDER)  # the POST
        run.fake.fault("500", ORDER, count=5)  # every read of the lookup that follows
        await run.enter()
        assert not run.fake.faults
        assert run.position_qty() > 0
        posts = [r[2]["newClientOrderId"] for r in run.fake.requests if r[:2] == ("POST", ORDER)]
        assert len(posts) == 2 and posts[0] == posts[1]
        await run.engine.stop()
        await assert_nothing_duplicated_or_lost(run)


async def test_the_feed_reconnects_after_its_websocket_closes_and_trading_goes_on(
    tmp_path: Path,
) -> None:
    async with live_run(tmp_path) as run:
        await run.enter()
        seen = run.engine.core.candles_seen
        connects = run.ws_connects()
        run.fake.fault("ws_close")
        await run.fake.advance(3)  # closed while the feed is away: REST fills the gap
        await wait_for(lambda: run.engine.core.candles_seen >= seen + 3)
        await wait_for(lambda: run.ws_connects() > connects)  # it reconnected
        await run.exit()
        await run.enter()
        assert run.position_qty() > 0
        await run.engine.stop()
        rows = await query(run.engine, "SELECT ts FROM candles WHERE symbol = ? ORDER BY ts", BTC)
        stamps = [ts for (ts,) in rows]
        assert stamps == list(range(stamps[0], stamps[-1] + 60_000, 60_000))  # no gap
        assert len(set(stamps)) == len(stamps)  # none twice
        await assert_nothing_duplicated_or_lost(run)


async def test_repeated_failures_open_the_breaker_reducing_until_the_exchange_answers(
    tmp_path: Path,
) -> None:
    async with live_run(tmp_path) as run:
        engine = run.engine
        breaker = run.parts.broker.breaker = CircuitBreaker(threshold=1, cooldown_s=1.0)
        seen: list[tuple[str, str]] = []
        changes: list[TradingStateChanged] = []

        def heard(event: EngineEvent) -> None:
            seen.append((engine.risk.state.value, engine.status_line()))
            if isinstance(event, TradingStateChanged):
                changes.append(event)

        engine.subscribe(heard)
        run.fake.fault("500", ORDER)
        # The POST fails: open. The lookup finds nothing, it is sent again (0.5 s later),
        # fills; the hold reaches the console; after the cooldown a probe closes it.
        await run.enter()
        assert run.position_qty() > 0
        await wait_for(lambda: breaker.state == "closed" and engine.risk.held is None)
        await engine.synced()
        held = [(state, line) for state, line in seen if "BREAKER OPEN" in line]
        assert held and all(state == "REDUCING" for state, _ in held)
        assert [c.new for c in changes] == [TradingState.REDUCING, TradingState.ACTIVE]
        assert "circuit breaker is open" in changes[0].reason
        assert "500" in changes[0].reason
        assert engine.risk.state is TradingState.ACTIVE and "BREAKER" not in engine.status_line()
        await engine.stop()
        await assert_nothing_duplicated_or_lost(run)


async def test_an_order_the_exchange_refuses_cancels_its_intent_with_the_reason(
    tmp_path: Path,
) -> None:
    async with live_run(tmp_path) as run:
        usdt = run.fake.balances["USDT"]
        kept, usdt[0] = usdt[0], Decimal(1)  # the account's cash went elsewhere
        await run.enter()
        usdt[0] = kept
        run.fake.markets["BTCUSDT"].min_notional = Decimal(10**9)  # the filter changed
        await run.enter()
        rows = await query(
            run.engine, "SELECT status, reason FROM order_intents ORDER BY created_at, rowid"
        )
        assert [status for status, _ in rows] == ["cancelled", "cancelled"]
        assert "insufficient balance" in rows[0][1] and "refused by the exchange" in rows[0][1]
        assert "Filter failure: NOTIONAL" in rows[1][1]
        assert run.fake.orders == {} and run.position_qty() == 0
        await run.engine.stop()
        await assert_nothing_duplicated_or_lost(run)


async def test_a_proposal_below_the_markets_minimum_notional_is_denied_with_that_reason(
    tmp_path: Path,
) -> None:
    async with live_run(tmp_path, max_order_notional=Decimal(4)) as run:
        await run.enter()
        [(status, reason)] = await query(run.engine, "SELECT status, reason FROM order_intents")
        assert status == "denied"
        assert "below the minimum 5 USDT" in reason, reason
        assert run.posts() == 0 and run.fake.orders == {}
        await run.engine.stop()
        await assert_nothing_duplicated_or_lost(run)
