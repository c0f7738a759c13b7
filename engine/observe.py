"""What the engine tells whoever watches it from outside: timings and exchange errors.

Most of what is measured comes from the engine's events (:meth:`Engine.subscribe`).
A few figures are no event: the time the engine spends on a candle, the store's
transactions, the exchange's errors and rate-limit waits. The code that sees them
calls the one process-wide :class:`Observer` (:func:`current`), whose methods do
nothing here; the console's metrics (``tui.metrics``) install one that counts
(:func:`install`). No metrics library is imported by the engine or the store.

With nothing installed the cost is an attribute read and a branch: the engine asks
:attr:`Observer.timed` once per batch before it reads the clock per candle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

__all__ = ["CommitKind", "Observer", "current", "install"]

#: ``work``: units of work (money moves) in one transaction; ``batch``: a group commit
#: of equity points and candles.
CommitKind = Literal["work", "batch"]


class Observer:
    """The hooks, each a no-op: subclass and override what you count."""

    #: Whether the engine should time each candle (reads the clock twice a candle).
    timed: bool = False

    def candle_done(self, seconds: float) -> None:
        """The engine spent ``seconds`` on one candle (the core's calls and the queueing
        of its Steps; the commit runs beside it)."""

    def store_commit(self, kind: CommitKind, seconds: float, size: int, ok: bool) -> None:
        """The store ran one transaction: ``size`` units of work (``work``) or rows
        (``batch``) in ``seconds``; ``ok`` False when it failed."""

    def exchange_error(self, error: str, outcome: str) -> None:
        """A request to the exchange failed with ccxt's ``error`` class name, sorted as
        ``outcome`` (:func:`engine.exchange.errors.classify`)."""

    def rate_limit_wait(self, seconds: float) -> None:
        """A read waits ``seconds`` because the exchange refused it for the rate."""


_NOOP = Observer()
_current: Observer = _NOOP


def current() -> Observer:
    """The installed observer (a no-op one when none is)."""
    return _current


def install(observer: Observer) -> Callable[[], None]:
    """Make ``observer`` the process's; returns what puts the one before it back."""
    global _current
    before = _current
    _current = observer

    def uninstall() -> None:
        global _current
        if _current is observer:
            _current = before

    return uninstall
