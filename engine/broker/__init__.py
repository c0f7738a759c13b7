"""Brokers: one async port (:class:`Broker`), a paper implementation beside it."""

from engine.broker.paper import PaperBroker
from engine.broker.port import Broker, Order, OrderStatus

__all__ = ["Broker", "Order", "OrderStatus", "PaperBroker"]
