"""The exchange broker: live orders through ccxt behind the same async broker port.

The engine stores every order's intent (with its client order id) before the
commit pipeline calls :meth:`ExchangeBroker.submit`, so the exchange never sees
an order the store does not know. Placement is never retried blindly: after a
timeout, a dropped connection or a lost response the broker first looks the
order up by its client order id, adopts it when the exchange has it, and sends
again (with the same client order id, which the exchange refuses to take twice)
only when the exchange says it has no such order. Reads (orders, balances)
retry with backoff and jitter. What comes back reaches the engine through a
:class:`BrokerListener`: a fill, an order the exchange refused, the circuit
breaker opening or closing.

Working orders are polled by client order id until they are final; each fill is
reported once per process, and after a restart the store (whose intents are
final once their fill is stored) decides what is left to reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from engine import observe
from engine.broker.port import Broker, Order, OrderStatus
from engine.exchange.breaker import CircuitBreaker
from engine.exchange.errors import classify, describe, retry_read
from engine.models import Fill, OrderIntent, OrderSide, q_cash, q_price

log = logging.getLogger("cma.exchange")

#: How often working orders are looked up until they are final (seconds).
POLL_SECONDS = 1.0
#: How many times one order is sent at most (each after a lookup found nothing).
SEND_ATTEMPTS = 3


class BrokerListener(Protocol):
    """Where the exchange broker reports what the exchange did (the engine)."""

    def on_fill(self, fill: Fill) -> None: ...
    def on_rejected(self, intent: OrderIntent, reason: str) -> None: ...
    def on_breaker(self, is_open: bool, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Remote:
    """An order as the exchange reports it (the parts the engine needs)."""

    client_order_id: str
    symbol: str
    side: OrderSide
    status: str  # ccxt's: open, closed, canceled, expired, rejected
    amount: Decimal
    filled: Decimal
    average: Decimal | None
    fee: Decimal  # in the quote currency (a fee taken in the base currency valued in it)
    ts: int
    #: The part of the fee taken in the base currency (a buy's fee on Binance without
    #: BNB): the quantity received is that much less than the quantity filled.
    fee_base: Decimal = Decimal(0)

    @property
    def final(self) -> bool:
        return self.status in ("closed", "canceled", "expired", "rejected")

    def fill(self) -> Fill | None:
        """The fill this order made (its whole filled part), None while it has none."""
        if self.filled <= 0 or self.average is None or self.average <= 0:
            return None
        qty = self.filled
        if self.side is OrderSide.BUY and 0 < self.fee_base < qty:
            # What is held is what arrived: the cash paid (qty x price + fee) stays the
            # same, the fee in base currency counted at the price.
            qty -= self.fee_base
        return Fill(
            client_order_id=self.client_order_id,
            symbol=self.symbol,
            side=self.side,
            qty=qty,
            price=q_price(self.average),
            fee=q_cash(self.fee),
            ts=self.ts,
        )


def _dec(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        out = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return out if out.is_finite() else None


def remote_of(order: dict[str, Any], symbol: str, client_order_id: str) -> Remote:
    """A ccxt order structure as a :class:`Remote`; fees in the base currency are
    valued at the average price (the quote currency is the account's)."""
    base, _, quote = symbol.partition("/")
    filled = _dec(order.get("filled")) or Decimal(0)
    average = _dec(order.get("average"))
    if average is None and filled > 0:
        cost = _dec(order.get("cost"))
        average = cost / filled if cost is not None and cost > 0 else None
    fees = order.get("fees") or ([order["fee"]] if order.get("fee") else [])
    fee = fee_base = Decimal(0)
    for item in fees:
        cost = _dec((item or {}).get("cost")) or Decimal(0)
        currency = (item or {}).get("currency")
        if currency == base and average is not None:
            fee += cost * average
            fee_base += cost
        elif currency in (quote, None):
            fee += cost
        # A fee in a third currency (BNB) is not cash of this account: left out.
    ts = order.get("lastTradeTimestamp") or order.get("timestamp") or int(time.time() * 1000)
    side = OrderSide.BUY if str(order.get("side", "")).lower() == "buy" else OrderSide.SELL
    return Remote(
        client_order_id=str(order.get("clientOrderId") or client_order_id),
        symbol=symbol,
        side=side,
        status=str(order.get("status") or "open"),
        amount=_dec(order.get("amount")) or Decimal(0),
        filled=filled,
        average=average,
        fee=max(fee, Decimal(0)),
        ts=int(ts),
        fee_base=max(fee_base, Decimal(0)),
    )


def _has_fee(order: dict[str, Any]) -> bool:
    """Whether a ccxt order structure says what it paid in fees (some answers do not)."""
    fees = order.get("fees") or ([order["fee"]] if order.get("fee") else [])
    return any((fee or {}).get("cost") is not None for fee in fees)


_STATUS: dict[str, OrderStatus] = {"closed": "filled", "canceled": "cancelled"}


class ExchangeBroker(Broker):
    """Market orders on a real exchange through one shared ccxt instance."""

    name = "exchange"
    live = True

    def __init__(
        self,
        exchange: Any,
        *,
        secrets: Iterable[str] = (),
        breaker: CircuitBreaker | None = None,
        poll_seconds: float = POLL_SECONDS,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.exchange = exchange
        self.listener: BrokerListener | None = None
        #: The strings every message about the exchange has blotted out.
        self.secrets = tuple(s for s in secrets if s)
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self._poll_seconds = poll_seconds
        self._sleep = sleep
        #: Orders sent and not final, by client order id.
        self._working: dict[str, OrderIntent] = {}
        #: Working orders whose POST had no answer and whose lookup failed too, by client
        #: order id: the attempts made. Should the poller find no such order, it is sent
        #: again (same id) while attempts are left, as the sender does after a lookup.
        self._unanswered: dict[str, int] = {}
        #: Client order ids whose outcome was reported (a fill or a refusal): never twice.
        self._reported: set[str] = set()
        self._poller: asyncio.Task[None] | None = None
        self._breaker_open = False
        #: Orders handed over by the commit pipeline, sent one by one, in order, by the
        #: sender task (so a slow exchange never holds up the store or the candle loop).
        self._outbox: deque[OrderIntent] = deque()
        self._outbox_ready = asyncio.Event()
        self._outbox_empty = asyncio.Event()
        self._outbox_empty.set()
        self._sender: asyncio.Task[None] | None = None
        self._in_flight: str | None = None

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start sending handed-over orders, and looking up working ones until final."""
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name="cma-exchange-orders")
        if self._sender is None:
            self._sender = asyncio.create_task(self._send(), name="cma-exchange-sender")

    async def close(self, drain_s: float = 10.0) -> None:
        """Send what was handed over (up to ``drain_s``), then stop. An order still
        unsent then is an intent marked sent that the exchange never saw: the next
        start's reconciliation cancels it."""
        if self._sender is not None:
            waiter = asyncio.ensure_future(self._outbox_empty.wait())
            await asyncio.wait([waiter], timeout=drain_s)
            waiter.cancel()
            self._sender.cancel()
            # Cancelled just above: that is how the sender ends.
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        if self._poller is not None:
            self._poller.cancel()
            # Cancelled just above: that is how the poller ends.
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    def describe(self, exc: BaseException) -> str:
        """One line about ``exc`` with every secret and signature blotted out."""
        return describe(exc, self.secrets)

    # --- the port ------------------------------------------------------------------

    async def submit(self, intent: OrderIntent) -> None:
        """Hand over a market order whose intent is stored: once started, the sender task
        sends it (in the order handed over) and this returns at once; before, it is sent
        now. Never raises: the outcome reaches the listener."""
        if self._sender is None:
            await self.place(intent)
            return
        self._outbox.append(intent)
        self._outbox_empty.clear()
        self._outbox_ready.set()

    async def _send(self) -> None:
        outbox = self._outbox
        while True:
            if not outbox:
                self._outbox_empty.set()
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            intent = outbox[0]
            self._in_flight = intent.client_order_id
            try:
                await self.place(intent)
            except Exception:  # place never raises; if it did, the next order still goes
                log.exception("sending order %s failed", intent.client_order_id)
            finally:
                self._in_flight = None
            outbox.popleft()

    async def place(self, intent: OrderIntent) -> None:
        """Send a market order whose intent is stored, now. Never raises: the outcome
        reaches the listener (a fill, now or when polled; or a refusal)."""
        coid = intent.client_order_id
        if coid in self._working or coid in self._reported:
            return  # already out (a restart's reconciliation adopted it)
        if not self.breaker.allows():
            self._refuse(
                intent, f"not sent: the exchange circuit breaker is open ({self.breaker.reason})"
            )
            return
        for attempt in range(self._unanswered.pop(coid, 0) + 1, SEND_ATTEMPTS + 1):
            try:
                order = await self.exchange.create_order(
                    intent.symbol,
                    "market",
                    intent.side.value.lower(),
                    float(intent.qty),
                    None,
                    {"clientOrderId": coid},
                )
            except Exception as exc:
                kind = classify(exc, placing=True)
                observe.current().exchange_error(type(exc).__name__, kind)
                text = self.describe(exc)
                if kind == "rejected":
                    self._success()
                    self._refuse(intent, f"refused by the exchange: {text}")
                    return
                if kind == "fatal":
                    self._failure(text)
                    self._refuse(intent, f"not sent: {text}")
                    return
                # The order may or may not have arrived: look before anything else.
                log.warning("order %s: %s; looking it up", coid, text)
                self._failure(text)
                try:
                    found = await self.lookup(coid, intent.symbol)
                except Exception as lookup_exc:
                    # Unknown outcome and no answer: keep it working; the poller asks again.
                    log.warning("order %s: lookup failed: %s", coid, self.describe(lookup_exc))
                    self._working[coid] = intent
                    self._unanswered[coid] = attempt
                    return
                if found is not None:
                    self._adopt(intent, found)
                    return
                if attempt < SEND_ATTEMPTS:
                    await self._sleep(min(0.25 * 2**attempt, 5.0))
                continue
            self._success()
            self._adopt(intent, remote_of(order, intent.symbol, coid))
            return
        self._refuse(
            intent, f"not placed after {SEND_ATTEMPTS} attempts: the exchange has no such order"
        )

    async def cancel(self, client_order_id: str) -> bool:
        for i, waiting in enumerate(self._outbox):
            if waiting.client_order_id == client_order_id:
                if i == 0 and self._in_flight == client_order_id:
                    break  # on its way: a fill it makes still comes in and is stored
                del self._outbox[i]  # never sent: nothing to cancel on the exchange
                return True
        intent = self._working.get(client_order_id)
        if intent is None:
            return False
        # Asked to cancel: should it turn out never to have arrived, it is not sent again.
        self._unanswered.pop(client_order_id, None)
        try:
            await self.exchange.cancel_order(
                "", intent.symbol, {"origClientOrderId": client_order_id}
            )
        except Exception as exc:
            observe.current().exchange_error(type(exc).__name__, classify(exc))
            log.warning("cancel %s: %s", client_order_id, self.describe(exc))
            return False
        return True

    async def fetch_order(self, client_order_id: str) -> Order | None:
        intent = self._working.get(client_order_id)
        if intent is None:
            return None
        remote = await self.lookup(client_order_id, intent.symbol)
        if remote is None:
            return None
        status = _STATUS.get(remote.status, "working" if not remote.final else "cancelled")
        return Order.of(intent, status)

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [
            Order.of(i)
            for i in sorted(self._working.values(), key=lambda i: i.created_at)
            if symbol is None or i.symbol == symbol
        ]

    async def balances(self) -> dict[str, Decimal]:
        """Total balance by currency (free plus in orders), nonzero only."""
        raw = await retry_read(
            self.exchange.fetch_balance,
            what="balances",
            exchange=self.exchange,
            # ccxt hands back empty structures for a body it cannot parse: read again.
            valid=lambda r: isinstance(r, dict) and isinstance(r.get("total"), dict),
        )
        total = raw.get("total") or {}
        out: dict[str, Decimal] = {}
        for currency, amount in total.items():
            value = _dec(amount)
            if value:
                out[str(currency)] = value
        return out

    # --- lookups -------------------------------------------------------------------

    async def lookup(self, client_order_id: str, symbol: str) -> Remote | None:
        """The exchange's order with this client order id, None if it has none (reads
        retry with backoff; the last error is raised when they all fail)."""
        from ccxt.base.errors import OrderNotFound  # only on the live path

        async def ask() -> Any:
            try:
                return await self.exchange.fetch_order(
                    "", symbol, {"clientOrderId": client_order_id}
                )
            except OrderNotFound:
                return None

        order = await retry_read(
            ask,
            what=f"order {client_order_id}",
            exchange=self.exchange,
            valid=lambda o: o is None or (isinstance(o, dict) and o.get("status") is not None),
        )
        if order is None:
            return None
        remote = remote_of(order, symbol, client_order_id)
        if remote.final and remote.filled > 0 and not _has_fee(order) and order.get("id"):
            remote = remote_of(await self._with_fees(order, symbol), symbol, client_order_id)
        return remote

    async def _with_fees(self, order: dict[str, Any], symbol: str) -> dict[str, Any]:
        """A filled order whose answer carries no fee (Binance's order query has none,
        only the answer to the placement has its fills): the fees of its trades."""

        async def ask() -> Any:
            return await self.exchange.fetch_order_trades(str(order["id"]), symbol)

        trades = await retry_read(
            ask, what=f"trades of order {order['id']}", exchange=self.exchange
        )
        fees = [t["fee"] for t in trades or () if t.get("fee")]
        return {**order, "fees": fees} if fees else order

    async def remote_open_orders(self, symbols: Iterable[str]) -> list[Remote]:
        """Every open order the exchange has on ``symbols`` (for reconciliation)."""
        out: list[Remote] = []
        for symbol in symbols:

            async def ask(symbol: str = symbol) -> Any:
                return await self.exchange.fetch_open_orders(symbol)

            orders = await retry_read(
                ask,
                what=f"open orders of {symbol}",
                exchange=self.exchange,
                valid=lambda r: isinstance(r, list) and all(o.get("status") for o in r),
            )
            for order in orders:
                coid = str(order.get("clientOrderId") or order.get("id") or "")
                out.append(remote_of(order, symbol, coid))
        return out

    # --- outcomes ------------------------------------------------------------------

    def mark_reported(self, client_order_id: str) -> None:
        """This order's outcome is handled elsewhere (adopted on restart): never report it."""
        self._working.pop(client_order_id, None)
        self._reported.add(client_order_id)

    def track(self, intent: OrderIntent) -> None:
        """Poll ``intent``'s order until it is final (an order adopted on restart)."""
        if intent.client_order_id not in self._reported:
            self._working[intent.client_order_id] = intent

    def _adopt(self, intent: OrderIntent, remote: Remote) -> None:
        """The exchange has the order: report its fill when final, else keep polling."""
        coid = intent.client_order_id
        if not remote.final:
            self._working[coid] = intent
            return
        self._working.pop(coid, None)
        if coid in self._reported:
            return
        self._reported.add(coid)
        fill = remote.fill()
        listener = self.listener
        if listener is None:
            return
        if fill is not None:
            listener.on_fill(fill)
        else:
            listener.on_rejected(intent, f"{remote.status} by the exchange with nothing filled")

    def _refuse(self, intent: OrderIntent, reason: str) -> None:
        coid = intent.client_order_id
        self._working.pop(coid, None)
        if coid in self._reported:
            return
        self._reported.add(coid)
        log.warning("order %s: %s", coid, reason)
        if self.listener is not None:
            self.listener.on_rejected(intent, reason)

    def _failure(self, reason: str) -> None:
        self.breaker.failure(reason)
        self._breaker_changed()

    def _success(self) -> None:
        self.breaker.success()
        self._breaker_changed()

    def _breaker_changed(self) -> None:
        is_open = self.breaker.state == "open"
        if is_open != self._breaker_open:
            self._breaker_open = is_open
            if self.listener is not None:
                reason = self.breaker.reason or "exchange answering again"
                self.listener.on_breaker(is_open, reason)

    async def poll_once(self) -> None:
        """Look up every working order once; report the final ones."""
        for coid, intent in list(self._working.items()):
            try:
                remote = await self.lookup(coid, intent.symbol)
            except Exception as exc:
                self._failure(self.describe(exc))
                continue
            self._success()
            made = self._unanswered.pop(coid, SEND_ATTEMPTS)
            if remote is None and made < SEND_ATTEMPTS:
                # Its POST never arrived (the lookup that would have said so had failed):
                # the sender sends it again with the same id and the attempts left.
                log.warning("order %s: the exchange has no such order; sending it again", coid)
                del self._working[coid]
                self._unanswered[coid] = made
                await self.submit(intent)
                continue
            if remote is None:
                # Sent (its outcome was unknown) but the exchange has no such order.
                self._refuse(intent, "the exchange has no such order: it never arrived")
                continue
            self._adopt(intent, remote)

    async def probe(self) -> None:
        """With no order working, the open circuit breaker has nothing to close it (no
        entry goes out while it holds the engine in REDUCING): once its cooldown has
        passed, ask the exchange something cheap (its time) as the probe."""
        if self.breaker.state == "closed" or not self.breaker.allows():
            return
        try:
            await self.exchange.fetch_time()
        except Exception as exc:
            self._failure(self.describe(exc))
            return
        self._success()

    async def _poll(self) -> None:
        while True:
            await self._sleep(self._poll_seconds)
            try:
                if self._working:
                    await self.poll_once()
                else:
                    await self.probe()
            except Exception:  # never let the poller die: the next round asks again
                log.exception("polling working orders failed")
