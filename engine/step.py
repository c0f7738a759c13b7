"""A Step: one unit of work of the core and what follows once it is stored.

The core changes its state with plain calls and returns Steps. A shell stores
each Step's ``work`` as one transaction, then sends its orders to a live
broker and announces its events, in that order: what anyone hears of is
stored. A backtest driver may simply drop or collect them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engine.events import EngineEvent
from engine.models import OrderIntent
from engine.ports import UnitOfWork


@dataclass(slots=True)
class Step:
    """One unit of work and what follows it."""

    #: The statements to store as ONE transaction (may be empty: the Step only announces).
    work: UnitOfWork
    #: What to announce once ``work`` is stored, in order.
    events: list[EngineEvent] = field(default_factory=list)
    #: Orders for a live broker, sent once ``work`` is stored.
    send: list[OrderIntent] = field(default_factory=list)
    #: Undo of a command's effect on the core when ``work`` could not be stored.
    on_failed: Callable[[], None] | None = None


class CommandError(Exception):
    """A command the engine could not carry out; the message is for a person."""
