"""Market feeds: the seeded demo market, CSV and store replays, behind one interface.

Every feed is a :class:`Feed`: ``batches()`` yields, per timestamp, the candles
that closed then, in symbol order. :class:`SyncFeed` feeds (all of these) also
offer ``iter_batches()`` for backtests that run at interpreter speed.
"""

from engine.feeds.base import YIELD_EVERY_CANDLES, Feed, GapCallback, SyncFeed
from engine.feeds.csvfile import (
    CSV_HEADER,
    ReplayError,
    symbol_from_filename,
    timeframe_from_filename,
)
from engine.feeds.replay import ReplayFeed, StoreReplayFeed
from engine.feeds.sim import DEFAULT_MARKET, DEFAULT_SYMBOLS, SIM_EPOCH_MS, SimFeed, SimSymbol

__all__ = [
    "CSV_HEADER",
    "DEFAULT_MARKET",
    "DEFAULT_SYMBOLS",
    "SIM_EPOCH_MS",
    "YIELD_EVERY_CANDLES",
    "Feed",
    "GapCallback",
    "ReplayError",
    "ReplayFeed",
    "SimFeed",
    "SimSymbol",
    "StoreReplayFeed",
    "SyncFeed",
    "symbol_from_filename",
    "timeframe_from_filename",
]
