"""Textual messages: engine events into the app, and commands from the screens.

The engine calls a plain callback; the app turns each event into one of these
with ``post_message``. High-rate ones define ``can_replace``: when a newer one
is already queued behind an older one, only the newer is handled.
"""

from __future__ import annotations

from textual.message import Message

from engine.models import EngineEvent, EquityUpdated, Position, Proposal


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


class CommandRequested(Message):
    """A screen asks for one of the console's commands (:mod:`tui.console_commands`).

    ``command`` is the screen's action name (``approve``, ``reject``, ``resize``,
    ``detail``, ``policy``, ``close_position``, ``close_all``, ``pause``, ``halt``,
    ``export``); ``subject`` is what the screen has selected (a proposal or a
    position), None for commands on the whole console. Screens post this rather
    than call the app: they know their selection, the app knows the engine.
    """

    def __init__(self, command: str, subject: Proposal | Position | None = None) -> None:
        super().__init__()
        self.command = command
        self.subject = subject
