"""Find agent classes: built-in ones by name, user ones by dotted path."""

from __future__ import annotations

import importlib
import inspect

from engine.agents.base import Agent
from engine.agents.momentum import MomentumAgent
from engine.agents.price_action import PriceActionAgent
from engine.agents.sma_cross import SmaCrossAgent

__all__ = ["BUILTIN_AGENTS", "load_agent_class", "resolve_agent_class"]

#: The voting agents that ship with cma, by ``Agent.name``. The learning agent
#: keeps the others' records and does not vote, so it is not listed here.
#: ``sma_cross`` ships as an example and for backtests; it is not enabled by default.
BUILTIN_AGENTS: dict[str, type[Agent]] = {
    PriceActionAgent.name: PriceActionAgent,
    MomentumAgent.name: MomentumAgent,
    SmaCrossAgent.name: SmaCrossAgent,
}


def load_agent_class(dotted: str) -> type[Agent]:
    """Import an agent class from ``"package.module:ClassName"`` or ``"package.module.ClassName"``.

    Raises ``ValueError`` naming the path when the module cannot be imported,
    has no such attribute, or the attribute is not a concrete ``Agent``
    subclass with a ``name``.
    """
    path = dotted.strip()
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr or not attr.isidentifier():
        raise ValueError(
            f"agent path {dotted!r} is not of the form 'package.module:ClassName' "
            "or 'package.module.ClassName'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"agent path {dotted!r}: cannot import module {module_name!r}: {exc}"
        ) from exc
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ValueError(
            f"agent path {dotted!r}: module {module_name!r} has no attribute {attr!r}"
        ) from None
    if not (isinstance(obj, type) and issubclass(obj, Agent)):
        raise ValueError(
            f"agent path {dotted!r}: {attr!r} is not a subclass of engine.agents.Agent"
        )
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise ValueError(
            f"agent path {dotted!r}: {attr} is abstract (does not implement {missing})"
        )
    if not isinstance(getattr(obj, "name", None), str) or not obj.name:
        raise ValueError(f"agent path {dotted!r}: {attr} does not set a class attribute `name`")
    return obj


def resolve_agent_class(spec: str) -> type[Agent]:
    """A built-in agent by name (``"momentum"``), or else a user agent by dotted path."""
    builtin = BUILTIN_AGENTS.get(spec.strip())
    return builtin if builtin is not None else load_agent_class(spec)
