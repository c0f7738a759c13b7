"""Wiring from settings: the feed, the account's currency, the agent classes."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from engine.agents import BUILTIN_AGENTS, load_agent_class
from engine.agents.base import Agent
from engine.config import Settings
from engine.feeds.base import Feed
from engine.timeframes import timeframe_ms

#: Candles of history a paced demo market plays unpaced before it goes live.
SIM_WARMUP_BATCHES = 120


def make_feed(settings: Settings, *, limit: int | None = None) -> Feed:
    """The feed the configuration asks for; ValueError (a ReplayError for a file) names
    the setting or the file when it cannot be built."""
    f = settings.feed
    speed = None if f.speed == "max" else float(f.speed)
    if f.kind == "sim":
        from engine.feeds.sim import SimFeed

        if f.files:
            raise ValueError(
                "feed.files: the sim feed plays no files; replay them with --feed replay "
                "(or leave --feed out)"
            )
        account_currency(f.symbols)
        start_ts = None
        if speed is not None:
            # Start the demo with history behind it, so agents are warm when it goes live.
            tf = timeframe_ms(f.timeframe)
            start_ts = (time.time_ns() // 1_000_000 // tf - SIM_WARMUP_BATCHES) * tf
        feed: Feed = SimFeed(
            symbols=f.symbols,
            timeframe=f.timeframe,
            seed=f.seed,
            speed=speed,
            start_ts=start_ts,
            limit=limit,
        )
        if speed is not None:
            feed.warmup_batches = SIM_WARMUP_BATCHES
        return feed
    if f.kind == "replay":
        from engine.feeds.replay import ReplayFeed

        if not f.files:
            raise ValueError("feed.files: the replay feed needs at least one CSV file (--files)")
        # The file names' timeframe rules; feed.timeframe counts only where it was set.
        timeframe = f.timeframe if "timeframe" in f.model_fields_set else None
        replay = ReplayFeed(
            list(f.files),
            speed=speed,
            timeframe=timeframe,
            timeframe_from="feed.timeframe",
            validate=False,
        )
        account_currency(replay.symbols, replay.quotes())
        replay.validate()  # every row, once the cheap checks passed
        return replay
    raise ValueError("feed.kind: the ccxt exchange feed is not available yet; use sim or replay")


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
