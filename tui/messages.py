"""Textual messages that carry engine events into the app.

The engine calls a plain callback; the app turns each event into one of these
with ``post_message``. High-rate ones define ``can_replace``: when a newer one
is already queued behind an older one, only the newer is handled.
"""

from __future__ import annotations

from textual.message import Message

from engine.models import EngineEvent, EquityUpdated


class EngineEventPosted(Message):
    """Any engine event the console shows (decisions, fills, denials, state changes...)."""

    def __init__(self, event: EngineEvent) -> None:
        super().__init__()
        self.event = event


class EquityTicked(Message):
    """A new equity figure, once per candle batch; only the newest queued one is drawn."""

    def __init__(self, event: EquityUpdated) -> None:
        super().__init__()
        self.event = event

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EquityTicked)
