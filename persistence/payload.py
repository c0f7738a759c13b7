"""Records and events as the JSON the store keeps (``events.payload``, ``votes_json``).

The format is the one the pydantic models wrote before the records became
dataclasses (``tests/persistence/fixtures/event_payloads.json`` pins it): one
object per event with its fields in declaration order, ``Decimal`` as a string
(``str(value)``, so ``"0E-8"`` stays ``"0E-8"``), enums as their values, nested
records as objects, ``None`` as ``null``, text unescaped (UTF-8) and no spaces.
A vote inside a proposal leaves out its symbol (the proposal's), as the store
always has; :func:`vote_of` fills it in again on loading.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

from engine.events import EngineEvent
from engine.models import AgentVote, Side

#: Fields a record type leaves out of its JSON.
_OMIT: Mapping[type, frozenset[str]] = {AgentVote: frozenset({"symbol"})}
_NAMES: dict[type, tuple[str, ...]] = {}


def _names(kind: type) -> tuple[str, ...]:
    omit = _OMIT.get(kind, frozenset())
    names = _NAMES[kind] = tuple(f.name for f in fields(kind) if f.name not in omit)
    return names


def _default(value: Any) -> Any:
    """What the JSON encoder cannot write itself: Decimals and records. Enums need no
    help: every enum here is a ``StrEnum``, which the encoder writes as its value."""
    if type(value) is Decimal:
        return str(value)
    names = _NAMES.get(type(value))
    if names is None:
        if not is_dataclass(value) or isinstance(value, type):
            if isinstance(value, Enum):
                return value.value
            raise TypeError(f"cannot store a {type(value).__name__} as JSON")
        names = _names(type(value))
    return {name: getattr(value, name) for name in names}


def _encode(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode`` with the C scanner it makes on every call made once (a third
    of the time of a proposal's votes); ``encoder.encode`` itself where there is none."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None or encoder.indent is not None or encoder.check_circular:
        return encoder.encode
    strings = json.encoder.encode_basestring_ascii if encoder.ensure_ascii else None
    one = make(
        None,
        encoder.default,
        strings or json.encoder.encode_basestring,
        None,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )
    return lambda value: "".join(one(value, 0))


_EVENT_JSON = _encode(
    json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), default=_default, check_circular=False
    )
)
_VOTES_JSON = _encode(json.JSONEncoder(default=_default, check_circular=False))


def event_payload(event: EngineEvent) -> str:
    """The JSON text of ``event`` for ``events.payload``."""
    return _EVENT_JSON(event)


def votes_json(votes: tuple[AgentVote, ...]) -> str:
    """A proposal's votes for ``proposals.votes_json`` (keys agent, direction, strength,
    rationale: the format the store has always had)."""
    return _VOTES_JSON(votes)


def vote_of(data: Mapping[str, Any], symbol: str) -> AgentVote:
    """One vote of ``votes_json`` read back, with the proposal's ``symbol``."""
    return AgentVote(
        agent=str(data["agent"]),
        symbol=symbol,
        direction=Side(data["direction"]),
        strength=float(data["strength"]),
        rationale=str(data["rationale"]),
    )
