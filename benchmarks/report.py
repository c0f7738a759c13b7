"""Session reports at scale: a backtest of 10,000+ trades exported to every format.

Run: ``.venv/bin/python benchmarks/report.py [--candles N] [--rounds N] [--dir DIR]``

1. Data and session. ``binanceus_BTC-USDT_1m_2023-03.csv`` tiled to
   ``--candles`` (default 200,000) by ``engine.backtest.data.tile``, saved as a
   CSV in a temporary folder under ``--dir``, and backtested by the real
   ``cma backtest`` (a subprocess) with ``docs/examples/sma_cross.toml`` into a
   store there: about 12,000 closed trades at the default size (a WARNING line
   when fewer than 10,000).
2. Baseline, same run: the bare minimum a report must do, reading the session's
   positions, proposals and decisions with plain ``sqlite3`` and writing them
   with ``json.dumps``.
3. ``build_report`` (reading the store into the report's records, the results
   and the human edge), then each format rendered and written by
   ``write_report``: seconds (best of ``--rounds``, default 3), the ratio to the
   baseline, and the file's size. Target: each format under a few seconds.
4. The console while it exports: what the console's ``e`` does (every format
   from one read, ``reports.export.export_session`` in a worker thread), with an
   asyncio loop ticking every 10 ms meanwhile, as the console's would; the
   loop's lag (median, p99, worst) beside the same loop with nothing to export.

It prints figures; it is not a test and exits 0 unless something crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.backtest.data import load_columns, save_csv, tile  # noqa: E402
from reports import FORMATS, build_report, write_report  # noqa: E402
from reports.export import export_session  # noqa: E402
from reports.model import Report  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
BTC = DATA / "binanceus_BTC-USDT_1m_2023-03.csv"
SMA_EXAMPLE = ROOT / "docs" / "examples" / "sma_cross.toml"
CMA = Path(sys.executable).with_name("cma")
TARGET_TRADES = 10_000

T = TypeVar("T")


def best(rounds: int, fn: Callable[[], T]) -> tuple[float, T]:
    """The fastest of ``rounds`` calls, and the last result."""
    times: list[float] = []
    result: T
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def make_session(work: Path, candles: int) -> Path:
    btc = load_columns(BTC, cache_dir=work / "cache")
    csv = work / f"tiled_BTC-USDT_1m_{candles}.csv"
    save_csv(tile(btc, candles), csv)
    db = work / "bt.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
    for name in ("CONFIG", "DATA", "CACHE", "STATE"):
        env[f"XDG_{name}_HOME"] = str(work / name.lower())
    start = time.perf_counter()
    done = subprocess.run(
        [str(CMA), "backtest", "--data", str(csv), "--config", str(SMA_EXAMPLE), "--db", str(db)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"cma backtest failed ({done.returncode}): {done.stderr.strip()}")
    print(f"   cma backtest of {candles:,} candles: {time.perf_counter() - start:.1f} s")
    return db


def baseline(db: Path, out: Path) -> int:
    """Read the session's rows with plain sqlite3 and write them as JSON."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        tables = {
            name: conn.execute(sql).fetchall()
            for name, sql in (
                ("positions", "SELECT * FROM positions"),
                ("proposals", "SELECT * FROM proposals WHERE session_id = 1"),
                ("decisions", "SELECT * FROM decisions"),
                ("equity", "SELECT * FROM equity WHERE session_id = 1"),
            )
        }
    out.write_text(json.dumps(tables))
    return out.stat().st_size


async def _lags(work: Callable[[], object] | None, ticks_after: int = 20) -> list[float]:
    """The event loop's lag at each 10 ms tick (ms), while ``work`` runs in a worker
    thread (or for 50 ticks without it)."""
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        after = 0
        while after < ticks_after:
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - start - 0.01) * 1000)
            if done.is_set():
                after += 1

    tick = asyncio.create_task(ticker())
    if work is not None:
        await asyncio.to_thread(work)
    else:
        await asyncio.sleep(0.5)
    done.set()
    await tick
    return lags


def _lag_line(name: str, lags: list[float]) -> str:
    ordered = sorted(lags)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"   {name:22} median {statistics.median(ordered):6.2f} ms  p99 {p99:6.2f} ms"
        f"  worst {ordered[-1]:6.2f} ms  ({len(ordered)} ticks)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candles", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="temporary folder's parent")
    args = parser.parse_args()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="cma-bench-report-") as tmp:
        work = Path(tmp)
        print(f"{os.cpu_count()} CPUs, load average {load}; best of {args.rounds} rounds")
        print("\n1. Data and session")
        db = make_session(work, args.candles)
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            trades = conn.execute("SELECT COUNT(*) FROM positions WHERE status = 'closed'")
            n_trades = int(trades.fetchone()[0])
        print(f"   {n_trades:,} closed trades in session 1 of {db.name}")
        if n_trades < TARGET_TRADES:
            print(f"   WARNING: fewer than {TARGET_TRADES:,} trades; pass a larger --candles")

        print("\n2. Baseline: the rows read with sqlite3 and written with json.dumps")
        base_s, base_size = best(args.rounds, lambda: baseline(db, work / "baseline.json"))
        print(f"   {base_s:8.3f} s  {base_size / 1e6:8.2f} MB")

        print("\n3. build_report, then each format (render and write)")
        build_s, report = best(args.rounds, lambda: build_report(db, 1))
        report_: Report = report
        print(
            f"   {'build':6} {build_s:8.3f} s  {build_s / base_s:6.1f} x baseline"
            f"  ({len(report_.trades):,} trades, {len(report_.decisions):,} decisions,"
            f" {len(report_.equity):,} equity points)"
        )
        worst = build_s
        for fmt in FORMATS:
            path = work / f"report.{fmt}"
            fmt_s, _ = best(
                args.rounds, lambda fmt=fmt, path=path: write_report(report_, fmt, path)
            )
            size = path.stat().st_size
            worst = max(worst, build_s + fmt_s)
            print(
                f"   {fmt:6} {fmt_s:8.3f} s  {fmt_s / base_s:6.1f} x baseline"
                f"  {size / 1e6:8.2f} MB  (build + {fmt}: {build_s + fmt_s:.2f} s)"
            )
        print(f"\n   slowest export (build + format): {worst:.2f} s; target: under a few seconds")

        print("\n4. The console's loop while e exports every format (10 ms ticks)")
        idle = asyncio.run(_lags(None))
        print(_lag_line("nothing to export", idle))
        started = time.perf_counter()
        busy = asyncio.run(_lags(lambda: export_session(db, 1, FORMATS, work / "exported")))
        took = time.perf_counter() - started
        print(_lag_line("exporting", busy) + f"  export {took:.2f} s")


if __name__ == "__main__":
    main()
