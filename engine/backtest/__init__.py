"""Backtests: candles as columns of numbers, run through the same engine at speed.

:mod:`engine.backtest.data` loads a replay CSV once into numpy arrays and caches
them on disk. Part of the synchronous core: nothing here imports asyncio.
"""
