"""The one broker port: where orders go, asked through async calls.

A broker never sees an order the risk engine has not passed, and never an
order whose intent is not already in the store. ``PaperBroker`` implements it
(and is also the simulated market the core matches against); an exchange
broker through ccxt plugs in beside it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from engine.models import OrderIntent, OrderSide

OrderStatus = Literal["working", "filled", "cancelled"]


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the broker knows it (not the intent the engine stored)."""

    client_order_id: str
    symbol: str
    side: OrderSide
    quantity: Decimal
    purpose: str
    status: OrderStatus
    created_at: int

    @classmethod
    def of(cls, intent: OrderIntent, status: OrderStatus = "working") -> Order:
        return cls(
            client_order_id=intent.client_order_id,
            symbol=intent.symbol,
            side=intent.side,
            quantity=intent.qty,
            purpose=intent.purpose,
            status=status,
            created_at=intent.created_at,
        )


class Broker(ABC):
    """Where orders go: submit, cancel, look up by client order id, list, balances."""

    name: str = "broker"
    #: Whether orders reach a real market (then only after their intent is stored).
    live: bool = False

    @abstractmethod
    async def submit(self, intent: OrderIntent) -> None:
        """Send a market order whose intent is stored."""

    @abstractmethod
    async def cancel(self, client_order_id: str) -> bool:
        """Cancel a working order; False if it is not working."""

    @abstractmethod
    async def fetch_order(self, client_order_id: str) -> Order | None:
        """The order with this client order id, None if the broker never saw it."""

    @abstractmethod
    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Orders accepted and not yet filled, oldest first."""

    @abstractmethod
    async def balances(self) -> dict[str, Decimal]:
        """Cash by currency as the broker holds it."""
