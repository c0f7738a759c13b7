"""Market agents: the base class users subclass, the built-in agents and the loader."""

from engine.agents.base import Agent, fmt_price
from engine.agents.loader import BUILTIN_AGENTS, load_agent_class, resolve_agent_class
from engine.agents.momentum import MomentumAgent
from engine.agents.price_action import PriceActionAgent

__all__ = [
    "BUILTIN_AGENTS",
    "Agent",
    "MomentumAgent",
    "PriceActionAgent",
    "fmt_price",
    "load_agent_class",
    "resolve_agent_class",
]
