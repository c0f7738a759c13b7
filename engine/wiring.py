"""Wiring from settings: the feed, the account's currency, the agent classes."""

from __future__ import annotations

import time

from engine.assembly import account_currency, load_agents
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
    # kind is ccxt: [feed] refuses files for it.
    account_currency(f.symbols)
    from engine.feeds.ccxt import CcxtFeed

    return CcxtFeed.from_settings(settings)


__all__ = ["SIM_WARMUP_BATCHES", "account_currency", "load_agents", "make_feed"]
