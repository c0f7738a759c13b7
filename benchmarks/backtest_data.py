"""Loading candles as columns for a backtest: a replay CSV parsed (cold) and from the cache.

Run: ``.venv/bin/python benchmarks/backtest_data.py [--dir DIR] [--rounds N] [--candles N]``

1. ``binanceus_BTC-USDT_1m_2023-03.csv`` (30,240 candles) through
   ``engine.backtest.data.load_columns``: cold (an empty cache folder: every
   replay check of every row, the arrays built, the cache file written and
   mapped) and cached (the content hash of the CSV, the cache file mapped and
   its checksum verified; nothing parsed). For reference, the replay feed
   reading the same file without the engine (``ReplayFeed.iter_batches``).
2. The same file tiled to ``--candles`` (default 1,000,000) by
   ``engine.backtest.data.tile`` and saved as a CSV in a temporary folder under
   ``--dir``, then loaded cold and cached the same way.

Each figure is the best of ``--rounds`` (a fresh cache folder for every cold
round). The CSVs are in the OS page cache after their first read, so "cold"
is the parse, not the disk. It prints figures; it is not a test.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.backtest.data import Columns, load_columns, save_csv, tile  # noqa: E402
from engine.feeds.replay import ReplayFeed  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
BTC = DATA / "binanceus_BTC-USDT_1m_2023-03.csv"


def best(rounds: int, run: Callable[[int], object]) -> float:
    times = []
    for r in range(rounds):
        start = time.perf_counter()
        run(r)
        times.append(time.perf_counter() - start)
    return min(times)


def measure(label: str, path: Path, work: Path, rounds: int) -> None:
    size = path.stat().st_size

    def cold(r: int) -> Columns:
        folder = work / f"cold-{label}-{r}"
        try:
            return load_columns(path, cache_dir=folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    n = len(load_columns(path, cache_dir=work / "cache"))  # fills the cache for the warm runs
    t_cold = best(rounds, cold)
    cache = work / "cache"
    t_warm = best(rounds, lambda _: load_columns(path, cache_dir=cache))
    t_touch = best(rounds, lambda _: float(load_columns(path, cache_dir=cache).close.sum()))
    print(f"\n{label}: {path.name}, {n:,} candles, {size / 2**20:,.1f} MiB of CSV")
    print(f"   {'':40} {'seconds':>10} {'candles/s':>14}")
    for name, t in (
        ("cold (parse, check, cache)", t_cold),
        ("cached (hash, map, checksum)", t_warm),
        ("cached, then every close summed", t_touch),
    ):
        print(f"   {name:40} {t:>10.4f} {n / t:>14,.0f}")
    print(f"   cold / cached: {t_cold / t_warm:,.0f}×")


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="cma-bench-data-", dir=args.dir))
    try:
        print(f"temp dir {work}; best of {args.rounds} rounds")
        measure("1. the file", BTC, work, args.rounds)
        t_feed = best(args.rounds, lambda _: sum(1 for _ in ReplayFeed([BTC]).iter_batches()))
        print(f"   for reference, ReplayFeed.iter_batches (checks + candles): {t_feed:.4f} s")
        start = time.perf_counter()
        tiled = tile(load_columns(BTC, cache_dir=work / "cache"), args.candles)
        big = work / f"tiled_BTC-USDT_1m_{args.candles}.csv"
        save_csv(tiled, big)
        print(f"\n   (tiled to {args.candles:,} and saved in {time.perf_counter() - start:.1f} s)")
        measure("2. tiled", big, work, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--dir", default="/tmp", help="where the temp dir goes (default /tmp)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per figure (default 3)")
    p.add_argument("--candles", type=int, default=1_000_000, help="tiled length")
    return p.parse_args()


if __name__ == "__main__":
    main(parse())
