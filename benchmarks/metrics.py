"""What metrics cost per candle: the headless engine on the demo market, metrics on vs off.

Run: ``.venv/bin/python benchmarks/metrics.py [--candles N] [--rounds N] [--scrape S]``

Each run is the headless path in this process: a :class:`tui.session.ConsoleSession`
(the one ``cma run --headless`` uses) on the demo market (the sim feed's five symbols)
at speed max with the ``auto`` policy, onto a fresh file store in a temporary directory,
with one engine subscriber as headless has (its error printer). The feed stops after
``--candles`` candles; the time runs from the engine's start to the last candle stored.

Metrics on: ``[metrics] enabled`` on 127.0.0.1, port 0, so the session serves
/metrics, /healthz and /readyz, installs the observer (a clock read and a histogram
observation per candle, the store's transactions timed), counts the engine's events and
samples the event-loop lag. With ``--scrape S`` a thread also scrapes /metrics every S
seconds, as Prometheus would (its answers are checked to hold ``cma_candles``).

Runs alternate (off, on, on, off, ...), ``--rounds`` of each after one unmeasured warm-up
of each; it reports the median and best time per candle of each, wall and CPU (every
thread of the process), and the ratios of the medians. The target (on within 5 % of
off, a ratio of at most 1.05) is judged on CPU time: what metrics add is work, and the
wall time also carries the store's fsyncs and whatever else the machine runs.

It prints figures; it is not a test and exits 0 unless something crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import Settings  # noqa: E402
from engine.feeds.sim import SimFeed  # noqa: E402
from engine.models import EngineEvent  # noqa: E402
from tui.session import ConsoleSession  # noqa: E402

TARGET = 1.05


def settings(store: Path, metrics: bool) -> Settings:
    return Settings(
        store={"path": store},
        feed={"speed": "max"},
        approval={"policy": "auto"},
        metrics={"enabled": metrics, "port": 0},
    )


def _scraper(url: str, every: float, stop: threading.Event, seen: list[int]) -> None:
    while not stop.wait(every):
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = answer.read().decode()
        assert "cma_candles " in body, "the scrape has no cma_candles"
        seen.append(len(body))


async def one_run(
    metrics: bool, candles: int, scrape: float | None
) -> tuple[float, float, int, int]:
    """(wall seconds per candle, CPU seconds per candle, candles, scrapes) of one run."""
    with tempfile.TemporaryDirectory(prefix="cma-bench-metrics-") as tmp:
        s = settings(Path(tmp) / "cma.db", metrics)
        batches = -(-candles // len(s.feed.symbols))
        feed = SimFeed(symbols=s.feed.symbols, seed=s.feed.seed, speed=None, limit=batches)
        session = ConsoleSession(s, feed=feed)
        errors: list[str] = []

        def on_event(event: EngineEvent) -> None:  # headless's error printer, silent
            text = getattr(event, "text", None)
            if text is not None and getattr(event, "level", "") == "error":
                errors.append(text)

        stop = threading.Event()
        seen: list[int] = []
        try:
            began = time.perf_counter()
            cpu = time.process_time()
            await session.start(on_event, paused_if_recovered=False)
            engine = session.engine
            assert engine is not None
            scraper = None
            if metrics and scrape:
                assert session.metrics_url is not None
                scraper = threading.Thread(
                    target=_scraper, args=(session.metrics_url, scrape, stop, seen), daemon=True
                )
                scraper.start()
            await engine.wait()
            await engine.synced()
            elapsed = time.perf_counter() - began
            cpu = time.process_time() - cpu
            stop.set()
            if scraper is not None:
                await asyncio.to_thread(scraper.join)
            done = engine.candles_seen
        finally:
            stop.set()
            await session.stop()
        if errors:
            raise SystemExit(f"the engine reported errors: {errors[:3]}")
        return elapsed / done, cpu / done, done, len(seen)


def hook_cost() -> float:
    """Seconds the per-candle hook costs with metrics on (two clock reads and
    ``candle_done``), measured alone: the figure the noisy end-to-end ratio wraps."""
    import timeit

    from tui.metrics import Metrics

    metrics = Metrics()
    clock = time.perf_counter

    def per_candle() -> None:
        began = clock()
        metrics.candle_done(clock() - began)

    n = 200_000
    return min(timeit.repeat(per_candle, number=n, repeat=5)) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candles", type=int, default=20_000, help="candles per run")
    parser.add_argument("--rounds", type=int, default=5, help="measured runs of each")
    parser.add_argument("--scrape", type=float, default=None, help="scrape every S seconds")
    args = parser.parse_args()
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {args.candles} candles a run (5 symbols, speed max, "
        f"auto policy), {args.rounds} rounds of each after a warm-up"
        + (f"; /metrics scraped every {args.scrape:g} s" if args.scrape else "")
    )
    wall: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    scrapes = 0
    for round_ in range(args.rounds + 1):
        # ABBA: off, on, then on, off, so neither always runs first after a pause.
        for on in (False, True) if round_ % 2 == 0 else (True, False):
            gc.collect()
            per, per_cpu, done, seen = asyncio.run(one_run(on, args.candles, args.scrape))
            label = "on " if on else "off"
            figures = f"{per * 1e6:7.1f} µs/candle wall, {per_cpu * 1e6:6.1f} CPU ({done} candles)"
            if round_ == 0:
                print(f"  warm-up {label}: {figures}")
                continue
            wall[on].append(per)
            cpu[on].append(per_cpu)
            scrapes += seen
            print(f"  round {round_} {label}: {figures}")
    if args.scrape:
        print(f"scrapes answered: {scrapes}")
    ratios = {}
    for name, runs in (("wall", wall), ("CPU", cpu)):
        off, on = statistics.median(runs[False]), statistics.median(runs[True])
        ratios[name] = on / off
        print(
            f"{name:4}: off median {off * 1e6:6.1f} µs/candle (best {min(runs[False]) * 1e6:.1f}), "
            f"on median {on * 1e6:6.1f} (best {min(runs[True]) * 1e6:.1f}), "
            f"ratio on / off {on / off:.3f}"
        )
    hook = hook_cost()
    print(
        f"the per-candle hook alone: {hook * 1e6:.2f} µs "
        f"({hook / statistics.median(cpu[False]):.2%} of a candle's CPU time off)"
    )
    # CPU time (every thread of the process: the loop and the store's writer) is what
    # metrics add; wall time also carries the fsyncs and whatever else the machine runs.
    verdict = "PASS" if ratios["CPU"] <= TARGET else "FAIL"
    print(f"cost of metrics per candle (CPU): {ratios['CPU']:.3f}×  (target ≤ {TARGET})  {verdict}")


if __name__ == "__main__":
    main()
