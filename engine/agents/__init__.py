"""Market agents: the base class users subclass, the built-in agents and the loader."""

from engine.agents.base import Agent, BatchVotes, CandleColumns, fmt_price
from engine.agents.loader import BUILTIN_AGENTS, load_agent_class, resolve_agent_class
from engine.agents.momentum import MomentumAgent
from engine.agents.price_action import PriceActionAgent
from engine.agents.sma_cross import SmaCrossAgent

__all__ = [
    "BUILTIN_AGENTS",
    "Agent",
    "BatchVotes",
    "CandleColumns",
    "MomentumAgent",
    "PriceActionAgent",
    "SmaCrossAgent",
    "fmt_price",
    "load_agent_class",
    "resolve_agent_class",
]
