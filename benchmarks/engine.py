"""The whole engine's throughput and memory, on the shared 2023 BTC/USDT minute file.

Run: ``.venv/bin/python benchmarks/engine.py [--dir DIR] [--rounds N] [--candles N]
[--baseline REV]``

1. Throughput. ``binanceus_BTC-USDT_1m_2023-03.csv`` (30,240 candles) replays as
   fast as possible through the real engine (agents, synthesis, approval queue
   with the ``auto`` policy, risk engine, paper broker, portfolio) onto a
   file-backed store in a temporary directory. Against it, a bare loop reads the
   same candles through the same feed (``ReplayFeed.batches()``, unpaced) and
   does nothing else. It reports candles per second and the engine's time per
   candle over the bare loop's (the ratio), best of ``--rounds`` alternating runs.
2. Memory. One million candles (the file tiled: every other copy played
   backwards, so prices join up at each seam, timestamps always forward) go
   through the engine, again onto a file store. It reports peak RSS (VmHWM of
   /proc/self/status) after a warm-up of 100,000 candles and at the end, and
   the current RSS every 100,000 candles. Growth of the peak after warm-up must
   stay under 10 %. On FAIL it prints tracemalloc's top growth between the
   warm-up and the end of a second, traced run.

3. Before and after (``--baseline REV``, e.g. ``--baseline main``). REV is checked
   out with ``git worktree add --detach`` into a temporary directory (removed
   afterwards), and the throughput run of 1. goes through REV's code and through
   this working tree's in alternating subprocesses of the same interpreter, each
   with its own tree first on ``sys.path`` (the measuring code is this file's, so
   REV needs no ``--baseline`` of its own). It reports both candles per second,
   best of ``--rounds`` each, and the ratio.

It prints figures; it is not a test and exits 0 unless something crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The tree whose code runs: this one, or a baseline's in a ``--child`` subprocess.
CODE = Path(os.environ.get("CMA_BENCH_CODE", ROOT))
sys.path.insert(0, str(CODE))

from engine.config import Settings  # noqa: E402
from engine.feeds.base import SyncFeed  # noqa: E402
from engine.feeds.replay import ReplayFeed  # noqa: E402
from engine.models import Candle, EngineEvent, EquityUpdated  # noqa: E402
from engine.runtime import Engine  # noqa: E402
from persistence.store import Store  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
BTC = DATA / "binanceus_BTC-USDT_1m_2023-03.csv"
WARMUP = 100_000
CHECKPOINT = 100_000
GROWTH_LIMIT = 0.10
#: Tiled candles turned into Python numbers at a time.
CHUNK = 10_000


def settings() -> Settings:
    return Settings(approval={"policy": "auto"})


def rss_kib() -> tuple[int, int]:
    """(current, peak) resident set size of this process, KiB."""
    fields: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def filesystem(path: Path) -> str:
    """File system type and mount point holding ``path`` (from /proc/self/mounts)."""
    best = ("?", "/")
    real = os.path.realpath(path)
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            mount, kind = parts[1], parts[2]
            inside = real == mount or real.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best[1]):
                best = (kind, mount)
    return f"{best[0]} (mounted on {best[1]})"


# --- the feeds --------------------------------------------------------------------------


class TiledFeed(SyncFeed):
    """The candles of one CSV, tiled to ``total`` by :func:`engine.backtest.data.tile`
    (odd copies play backwards, open and close swapped, so each copy starts where
    the previous one ended), made ``CHUNK`` candles at a time so memory stays flat;
    the file's columns are cached under ``cache_dir``."""

    name = "replay"

    def __init__(self, path: Path, total: int, cache_dir: Path) -> None:
        # Imported here: a --baseline tree may predate engine.backtest (its runs never tile).
        from engine.backtest.data import load_columns

        super().__init__(["BTC/USDT"], "1m")
        self.columns = load_columns(path, cache_dir=cache_dir)
        self.total = total

    def iter_batches(self) -> Iterator[list[Candle]]:
        from engine.backtest.data import tile

        symbol = self.symbols[0]
        for start in range(0, self.total, CHUNK):
            part = tile(self.columns, min(CHUNK, self.total - start), start=start)
            rows = zip(
                part.ts.tolist(),
                part.open.tolist(),
                part.high.tolist(),
                part.low.tolist(),
                part.close.tolist(),
                part.volume.tolist(),
                strict=True,
            )
            for ts, o, h, lo, c, v in rows:
                if self._closed:
                    return
                yield [Candle(symbol, ts, o, h, lo, c, v)]


# --- 1. throughput ------------------------------------------------------------------------


async def bare_loop() -> tuple[int, float]:
    feed = ReplayFeed([BTC])
    n = 0
    start = time.perf_counter()
    async for batch in feed.batches():
        n += len(batch)
    return n, time.perf_counter() - start


async def engine_run(work: Path, tag: str) -> tuple[int, float, dict[str, int]]:
    feed = ReplayFeed([BTC])
    store = await Store.open(work / f"throughput-{tag}.db")
    try:
        engine = Engine(settings(), store, feed)
        start = time.perf_counter()
        await engine.start()
        await engine.wait()
        await engine.stop()
        elapsed = time.perf_counter() - start

        def _counts(conn: sqlite3.Connection) -> dict[str, int]:
            return {
                t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("proposals", "decisions", "fills", "equity")
            }

        counts = await store.run(_counts)
        return engine.candles_seen, elapsed, counts
    finally:
        await store.close()


async def throughput(work: Path, rounds: int) -> None:
    bare: list[float] = []
    full: list[float] = []
    counts: dict[str, int] = {}
    n_bare = n_engine = 0
    for r in range(rounds):
        order = ("bare", "engine") if r % 2 == 0 else ("engine", "bare")
        for side in order:
            gc.collect()
            if side == "bare":
                n_bare, t = await bare_loop()
                bare.append(t)
            else:
                n_engine, t, counts = await engine_run(work, str(r))
                full.append(t)
    assert n_bare == n_engine, (n_bare, n_engine)
    tb, te = min(bare), min(full)
    per_b, per_e = tb / n_bare * 1e6, te / n_engine * 1e6
    print(f"\n1. throughput: {BTC.name}, {n_engine:,} candles, auto policy, file store")
    print(f"   best of {rounds} rounds, sides alternating; the engine run made "
          f"{counts['proposals']} proposals, {counts['decisions']} decisions, "
          f"{counts['fills']} fills, {counts['equity']:,} equity points")  # fmt: skip
    print(f"   {'':34} {'candles/s':>12} {'µs/candle':>10} {'all rounds (s)':>28}")
    print(f"   {'bare loop (same feed, no work)':34} {n_bare / tb:>12,.0f} {per_b:>10.2f} "
          f"{' '.join(f'{t:.3f}' for t in bare):>28}")  # fmt: skip
    print(f"   {'whole engine':34} {n_engine / te:>12,.0f} {per_e:>10.2f} "
          f"{' '.join(f'{t:.3f}' for t in full):>28}")  # fmt: skip
    print(f"   engine time per candle / bare loop's: {per_e / per_b:.1f}×  "
          f"(the engine's own work: {per_e - per_b:.2f} µs a candle)")  # fmt: skip


# --- 2. memory ----------------------------------------------------------------------------


async def memory_run(
    work: Path, total: int, trace: bool
) -> tuple[list[tuple[int, int, int]], float, list[str]]:
    """Run ``total`` tiled candles; return (candles, rss, peak) checkpoints, seconds, and
    tracemalloc's top growth after the warm-up when ``trace``."""
    feed = TiledFeed(BTC, total, work / "candles")
    store = await Store.open(work / f"memory-{'traced' if trace else 'plain'}.db")
    points: list[tuple[int, int, int]] = []
    growth: list[str] = []
    baseline: list[tracemalloc.Snapshot] = []
    try:
        engine = Engine(settings(), store, feed)
        if trace:
            tracemalloc.start(8)

        def sample(event: EngineEvent) -> None:
            if not isinstance(event, EquityUpdated):
                return
            seen = engine.candles_seen
            if seen % CHECKPOINT == 0:
                rss, peak = rss_kib()
                points.append((seen, rss, peak))
                if trace and seen == WARMUP:
                    gc.collect()
                    baseline.append(tracemalloc.take_snapshot())

        engine.subscribe(sample)
        start = time.perf_counter()
        await engine.start()
        await engine.wait()
        await engine.stop()
        elapsed = time.perf_counter() - start
        if trace and baseline:
            gc.collect()
            top = tracemalloc.take_snapshot().compare_to(baseline[0], "lineno")
            growth = [str(stat) for stat in top[:12]]
            tracemalloc.stop()
        if not points or points[-1][0] != engine.candles_seen:
            rss, peak = rss_kib()
            points.append((engine.candles_seen, rss, peak))
        return points, elapsed, growth
    finally:
        await store.close()


async def memory(work: Path, total: int) -> None:
    if total <= WARMUP:  # no candle after the warm-up to compare with
        print(f"\n2. memory: skipped (--candles must exceed the {WARMUP:,}-candle warm-up)")
        return
    gc.collect()
    points, elapsed, _ = await memory_run(work, total, trace=False)
    print(f"\n2. memory: {total:,} candles ({BTC.name} tiled), auto policy, file store, "
          f"{elapsed:.1f} s ({total / elapsed:,.0f} candles/s)")  # fmt: skip
    print(f"   {'candles':>10} {'RSS MiB':>9} {'peak RSS MiB':>13}")
    for seen, rss, peak in points:
        print(f"   {seen:>10,} {rss / 1024:>9.1f} {peak / 1024:>13.1f}")
    warm = next(peak for seen, _, peak in points if seen >= WARMUP)
    end = points[-1][2]
    growth = (end - warm) / warm
    verdict = "PASS" if growth < GROWTH_LIMIT else "FAIL"
    print(f"   peak RSS after warm-up ({WARMUP:,} candles): {warm / 1024:.1f} MiB; "
          f"at the end: {end / 1024:.1f} MiB; growth {growth:+.1%} "
          f"(limit < {GROWTH_LIMIT:.0%}): {verdict}")  # fmt: skip
    if verdict == "FAIL":
        _, _, top = await memory_run(work, total, trace=True)
        print("   tracemalloc, largest growth after the warm-up:")
        for line in top:
            print(f"     {line}")


# --- 3. before and after -----------------------------------------------------------------


async def child(rounds: int) -> None:
    """One side of the comparison: the best of ``rounds`` engine runs, as JSON."""
    work = Path(tempfile.mkdtemp(prefix="cma-bench-child-"))
    try:
        best = None
        for r in range(rounds):
            gc.collect()
            n, t, _ = await engine_run(work, f"child-{r}")
            best = t if best is None else min(best, t)
        print(json.dumps({"candles": n, "seconds": best}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_side(code: Path) -> tuple[int, float]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", "2"],
        env={**os.environ, "CMA_BENCH_CODE": str(code)},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"the run in {code} failed:\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return int(result["candles"]), float(result["seconds"])


def compare(rev: str, rounds: int, base_dir: Path) -> None:
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    tree = Path(tempfile.mkdtemp(prefix="cma-bench-base-", dir=base_dir)) / "tree"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(tree), rev],
        check=True,
    )
    try:
        sides: dict[str, list[float]] = {"base": [], "work": []}
        counts: dict[str, int] = {}
        for r in range(rounds):
            for side in ("base", "work") if r % 2 == 0 else ("work", "base"):
                counts[side], t = run_side(tree if side == "base" else ROOT)
                sides[side].append(t)
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
        )
        shutil.rmtree(tree.parent, ignore_errors=True)
    assert counts["base"] == counts["work"], counts
    n = counts["work"]
    base, work = n / min(sides["base"]), n / min(sides["work"])
    print(f"\n3. before and after: {BTC.name}, {n:,} candles, auto policy, file store; "
          f"best of {rounds} alternating subprocesses a side (each best of 2 runs)")  # fmt: skip
    label = f"baseline {rev}" + ("" if sha.startswith(rev) else f" ({sha})")
    print(f"   {'':34} {'candles/s':>12}   all rounds (s)")
    for name, key, rate in ((label, "base", base), ("working tree", "work", work)):
        times = " ".join(f"{t:.3f}" for t in sides[key])
        print(f"   {name[:34]:34} {rate:>12,.0f}   {times}")
    print(f"   working tree / baseline: {work / base:.2f}×")


# --- the run ------------------------------------------------------------------------------


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="cma-bench-", dir=os.path.realpath(args.dir)))
    try:
        print(f"temp dir {work} on {filesystem(work)}")
        print(
            f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
            f"{os.cpu_count()} cpus, {platform.machine()}"
        )
        asyncio.run(throughput(work, args.rounds))
        asyncio.run(memory(work, args.candles))
        if args.baseline:
            compare(args.baseline, args.rounds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--dir", default="/tmp", help="where the temp dir goes (default /tmp)")
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds (default 3)")
    p.add_argument("--candles", type=int, default=1_000_000, help="memory run length")
    p.add_argument(
        "--baseline",
        metavar="REV",
        help="also compare throughput with git revision REV, in subprocesses (default: none)",
    )
    p.add_argument("--child", type=int, metavar="RUNS", help=argparse.SUPPRESS)
    return p.parse_args()


if __name__ == "__main__":
    options = parse()
    if options.child:
        asyncio.run(child(options.child))
    else:
        main(options)
