"""What a session is made of, from the settings: the account's currency and the
agent classes. No feed and no asyncio here: a backtest builds from it too
(``engine.wiring`` adds the feed for the live shell)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from engine.agents import BUILTIN_AGENTS, load_agent_class
from engine.agents.base import Agent
from engine.config import Settings


def account_currency(
    symbols: Sequence[str], files: Mapping[str, Sequence[Path]] | None = None
) -> str:
    """The one currency the symbols are quoted in, which the account's cash is held in.

    One account holds one cash balance, so symbols quoted in different
    currencies (BTC/USDT and ETH/BTC) cannot share it: ETH/BTC would be sized
    as if the USDT cash were BTC. Raises ValueError naming the currencies and,
    for a replay, the files (``files``: the files by quote currency).
    """
    quotes: dict[str, list[str]] = {}
    for symbol in symbols:
        quotes.setdefault(symbol.rpartition("/")[2], []).append(symbol)
    if len(quotes) <= 1:
        return next(iter(quotes), "USDT")
    if files is not None:
        named = {q: [p.name for p in paths] for q, paths in files.items()}
        what, fix = "replay files are", "replay them separately"
    else:
        named, what, fix = quotes, "feed.symbols are", "trade them in separate runs"
    parts = [f"{q} ({_few(names)})" for q, names in named.items()]
    listed = ", ".join(parts[:-1]) + " and " + parts[-1]
    raise ValueError(f"{what} quoted in {listed}; one account has one currency: {fix}")


def _few(names: Sequence[str], most: int = 3) -> str:
    """``a, b, c and 4 more``: a list kept to one line."""
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


def load_agents(settings: Settings) -> list[type[Agent]]:
    """The agent classes the settings enable: built-in ones by name, then the user's."""
    classes: list[type[Agent]] = []
    for name in settings.agents.enabled:
        if name not in BUILTIN_AGENTS:
            raise ValueError(
                f"agents.enabled: unknown agent {name!r}; built-in agents are "
                f"{', '.join(sorted(BUILTIN_AGENTS))}"
            )
        classes.append(BUILTIN_AGENTS[name])
    classes.extend(load_agent_class(path) for path in settings.agents.user)
    if not classes:
        raise ValueError("agents.enabled: at least one agent must run")
    return classes
