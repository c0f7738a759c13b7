"""Backtests: the driver against a bare loop, the default agents, memory, and the live path.

Run: ``.venv/bin/python benchmarks/backtest.py [--candles N] [--rounds N] [--budget S]
[--skip-live] [--dir DIR]``

1. Data. ``binanceus_BTC-USDT_1m_2023-03.csv`` (30,240 candles) and the same
   file tiled to ``--candles`` (default 1,000,000) by
   ``engine.backtest.data.tile`` and saved as a CSV in a temporary folder under
   ``--dir``. Both load through ``load_columns`` with a cache folder there:
   cold (parsed, checked, cached) and cached (hashed, mapped), once each. The
   backtests below run on the cached, memory-mapped columns, as
   ``cma backtest`` does.
2. Bare loop, same run. A locals-only Python loop over the tiled columns'
   ``.tolist()`` lists (made before the clock starts) computes the SMA 10/20
   crosses with running sums, as ``engine.agents.sma_cross`` defines them
   (the same float sums, its ``TIE`` rule, no cross from the first side), and
   trades them the textbook way: enter at the next open, the opposite cross
   closes and reverses, the whole equity, no fees. Its closed trades must be
   as many as the backtest's (a WARNING line when not).
3. ``sma_cross`` alone through ``engine.backtest.driver.Backtest`` with the
   shipped ``docs/examples/sma_cross.toml`` and ``Approval("all")``, units of
   work kept in memory (``UnitOfWork(None, log=False)``, a backtest without
   its audit trail); then those works written into a real SQLite store in a
   temporary file in one transaction (``Store.commit``), timed beside it.
   Target: at least 30 % of the bare loop's candles per second.
4. The default agents (``Settings()``: price_action and momentum) with
   ``Approval()`` (the confidence threshold), the same way. Target: at least
   500,000 candles per second.
5. Memory. In a fresh subprocess (nothing else run in it before), the tiled
   columns are loaded from the cache and every array touched (the candle
   arrays resident); RSS then, and peak RSS (VmHWM) after a default-agents
   backtest of them. Printed: the arrays' size and the growth beyond the RSS
   before the run. Target: at most 100 MiB at 1,000,000 candles. The same at
   half the candles (a file of its own, tiled, saved and cached the same way),
   so a reader sees whether it grows with them.
6. The live per-candle path on the 30,240-candle file: the real
   ``engine.runtime.Engine`` on a ``ReplayFeed`` at full speed, default agents,
   auto policy (rejecting below the threshold, as a backtest does), a real
   store in a temporary file; beside it the backtest of the same file and
   settings, their ratio, and whether the final equities agree.
   ``--skip-live`` leaves it out.

Each timed figure is the best of ``--rounds`` (default 3), but a figure stops
repeating once its rounds have taken ``--budget`` seconds (default 20), so a
slow driver cannot stretch the run; the rounds made are printed. The machine
may be shared: the load average is printed first. It prints figures; it is not
a test and exits 0 unless something crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.agents.sma_cross import TIE  # noqa: E402
from engine.assembly import load_agents  # noqa: E402
from engine.backtest.data import Columns, load_columns, save_csv, tile  # noqa: E402
from engine.backtest.driver import Approval, Backtest, BacktestRun  # noqa: E402
from engine.config import Settings, load_settings  # noqa: E402
from engine.feeds.replay import ReplayFeed  # noqa: E402
from engine.runtime import Engine  # noqa: E402
from persistence.store import Store, UnitOfWork  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
BTC = DATA / "binanceus_BTC-USDT_1m_2023-03.csv"
SMA_EXAMPLE = ROOT / "docs" / "examples" / "sma_cross.toml"
FAST, SLOW = 10, 20
SMA_RATIO_TARGET = 0.30
DEFAULT_TARGET = 500_000  # candles per second
MEMORY_TARGET_MIB = 100.0
MIB = 2**20


def best(rounds: int, budget: float, run: Callable[[], object]) -> tuple[float, int, Any]:
    """(best seconds, rounds made, the last result) of up to ``rounds`` runs of ``run``;
    no new round starts once ``budget`` seconds have gone by."""
    times: list[float] = []
    result: Any = None
    spent = 0.0
    while len(times) < rounds and (not times or spent < budget):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return min(times), len(times), result


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def line(label: str, seconds: float, candles: int, note: str = "") -> None:
    print(f"   {label:44} {seconds:>9.3f} s {candles / seconds:>14,.0f} candles/s  {note}")


# --- 1. data ---------------------------------------------------------------------------


def load_twice(label: str, path: Path, cache: Path) -> Columns:
    """Load ``path`` cold into the empty ``cache``, then cached; print both."""
    start = time.perf_counter()
    cold = load_columns(path, cache_dir=cache)
    t_cold = time.perf_counter() - start
    start = time.perf_counter()
    cached = load_columns(path, cache_dir=cache)
    t_cached = time.perf_counter() - start
    n = len(cold)
    size = path.stat().st_size / MIB
    print(f"   {label}: {path.name}, {n:,} candles, {size:,.1f} MiB of CSV")
    line("cold load (parse, check, cache)", t_cold, n)
    line("cached load (hash, map, checksum)", t_cached, n)
    return cached


# --- 2. the bare loop --------------------------------------------------------------------


def bare_loop(opens: list[float], closes: list[float], cash: float) -> tuple[int, float]:
    """(closed trades, final equity) of the textbook SMA 10/20 cross, locals only.

    The averages are running sums with the terms ``SMA.update`` adds, in its
    order (each value while the window fills, then ``x[i] - x[i - period]``), so
    the sides, and the crosses, are the agent's.
    """
    n = len(closes)
    fast, slow, tie = FAST, SLOW, TIE
    sf = ss = 0.0
    pos = 0.0  # signed quantity held
    pending = 0.0  # signed quantity to hold from the next open; 0.0: none
    entries = 0
    if n <= slow:
        return 0, cash  # no cross before the windows fill
    for i in range(slow):  # the warm-up: the windows fill
        c = closes[i]
        sf += c - closes[i - fast] if i >= fast else c
        ss += c
    mf, ms = sf / fast, ss / slow
    tol = abs(ms) * tie
    # The side the fast average was last on (0: none yet; the first is no cross).
    prev = 1 if mf - ms > tol else -1 if mf - ms < -tol else 0
    for c, cf, cs, o in zip(
        closes[slow:], closes[slow - fast : n - fast], closes[: n - slow], opens[slow:], strict=True
    ):
        if pending:
            cash += pos * o  # close what is held at the open
            pos = pending
            cash -= pos * o
            pending = 0.0
            entries += 1
        sf += c - cf
        ss += c - cs
        ms = ss / slow
        diff = sf / fast - ms
        tol = (ms if ms >= 0.0 else -ms) * tie
        if diff > tol:
            side = 1
        elif diff < -tol:
            side = -1
        else:
            continue
        if side != prev:
            if prev:
                pending = side * (cash + pos * c) / c
            prev = side
    equity = cash + pos * closes[-1]
    return entries - (1 if pos else 0), equity


def bare_figure(columns: Columns, args: argparse.Namespace) -> tuple[float, int, float]:
    """Time the bare loop (best of the rounds); print it; (seconds, trades, equity)."""
    opens, closes = columns.open.tolist(), columns.close.tolist()
    cash = float(load_settings(SMA_EXAMPLE, {}).risk.initial_cash)
    t, made, (trades, equity) = best(
        args.rounds, args.budget, lambda: bare_loop(opens, closes, cash)
    )
    line(f"bare loop (best of {made})", t, len(closes), f"{trades:,} closed trades")
    return t, trades, equity


# --- 3, 4. backtests and the store -----------------------------------------------------


def backtest(settings: Settings, columns: list[Columns], approval: Approval) -> BacktestRun:
    bt = Backtest(
        settings,
        columns,
        agent_classes=load_agents(settings),
        approval=approval,
        new_work=lambda: UnitOfWork(None, log=False),
    )
    return bt.run()


async def store_works(run: BacktestRun, db: Path, initial_cash: Decimal) -> float:
    """Seconds to write ``run``'s units of work into a fresh store file in one commit."""
    store = await Store.open(db)
    try:
        await store.begin_session("backtest", "replay", "{}", int(run.ts[0]))
        await store.init_balance(run.currency, initial_cash, int(run.ts[0]))
        start = time.perf_counter()
        if run.works:
            await store.commit(*run.works)
        return time.perf_counter() - start
    finally:
        await store.close()


def run_figure(
    label: str,
    settings: Settings,
    columns: Columns,
    approval: Approval,
    args: argparse.Namespace,
    work: Path,
) -> tuple[float, BacktestRun]:
    """Time a backtest (best of the rounds) and the store write of its works; print both."""
    t, made, run = best(args.rounds, args.budget, lambda: backtest(settings, [columns], approval))
    db = work / f"{label}.db"
    t_store = asyncio.run(store_works(run, db, settings.risk.initial_cash))
    statements = sum(len(w) for w in run.works)
    n = run.candles
    line(f"{label} backtest (best of {made})", t, n, f"{len(run.trades):,} closed trades")
    print(
        f"   {'':44} + {t_store:.3f} s to store {len(run.works):,} units of work"
        f" ({statements:,} statements, one transaction, {db.stat().st_size / MIB:,.1f} MiB);"
        f" run + store {n / (t + t_store):,.0f} candles/s"
    )
    db.unlink()
    return t, run


# --- 5. memory, in a fresh subprocess --------------------------------------------------


def rss() -> dict[str, int]:
    """VmRSS and VmHWM of this process, bytes."""
    out = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for row in f:
            if row.startswith(("VmRSS:", "VmHWM:")):
                key, value, _unit = row.split()
                out[key.rstrip(":")] = int(value) * 1024
    return out


def memory_child(csv: Path, cache: Path) -> None:
    """The child's side of figure 5: print one JSON line of sizes, bytes."""
    columns = load_columns(csv, cache_dir=cache)
    arrays = (columns.ts, columns.open, columns.high, columns.low, columns.close, columns.volume)
    for a in arrays:
        float(a.sum())  # touched: every page resident
    settings = Settings()
    agent_classes = load_agents(settings)
    before = rss()
    run = Backtest(
        settings,
        [columns],
        agent_classes=agent_classes,
        approval=Approval(),
        new_work=lambda: UnitOfWork(None, log=False),
    ).run()
    after = rss()
    print(
        json.dumps(
            {
                "candles": run.candles,
                "arrays": sum(a.nbytes for a in arrays),
                "before": before["VmRSS"],
                "peak_before": before["VmHWM"],
                "peak": after["VmHWM"],
                "works": len(run.works),
            }
        )
    )


def memory(csv: Path, cache: Path) -> dict[str, int]:
    """Figure 5 for the candles of ``csv`` (already cached), in a fresh subprocess."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--memory-child",
            "--csv",
            str(csv),
            "--cache",
            str(cache),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- 6. the live per-candle path -------------------------------------------------------


def live_settings() -> Settings:
    """The defaults, auto policy; below the threshold a proposal is rejected, as in a
    backtest's threshold approval (live, it would otherwise wait for a person)."""
    return Settings(
        approval={"policy": "auto", "below_confidence": "reject"},
        feed={"kind": "replay", "files": (BTC,), "speed": "max"},
    )


async def live(settings: Settings, db: Path) -> Decimal:
    store = await Store.open(db)
    try:
        engine = Engine(settings, store, ReplayFeed([BTC]))
        await engine.start()
        await engine.wait()
        equity = engine.core.account.equity()
        await engine.stop()
    finally:
        await store.close()
    return equity


def live_figure(args: argparse.Namespace, work: Path, btc: Columns) -> None:
    settings = live_settings()
    counter = iter(range(1_000_000))

    def once() -> Decimal:
        db = work / f"live-{next(counter)}.db"
        try:
            return asyncio.run(live(settings, db))
        finally:
            for p in work.glob(f"{db.name}*"):
                p.unlink()

    n = len(btc)
    t_live, made, live_equity = best(args.rounds, args.budget, once)
    t_bt, made_bt, run = best(
        args.rounds, args.budget, lambda: backtest(settings, [btc], Approval())
    )
    line(f"live: Engine on ReplayFeed, store (best of {made})", t_live, n)
    line(f"backtest, same file and settings (best of {made_bt})", t_bt, n)
    print(f"   backtest / live: {t_live / t_bt:,.1f}× the candles per second")
    if run.final_equity == live_equity:
        print(f"   final equity: both {live_equity} {run.currency}")
    else:
        print(f"   WARNING: final equity differs: live {live_equity}, backtest {run.final_equity}")


# --- the run ---------------------------------------------------------------------------


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="cma-bench-backtest-", dir=args.dir))
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"temp dir {work}; best of up to {args.rounds} rounds, {args.budget:g} s a figure;"
            f" {os.cpu_count()} CPUs, load average {load}"
        )
        cache = work / "cache"

        print("\n1. Data")
        btc = load_twice("the file", BTC, cache)
        start = time.perf_counter()
        csv = work / f"tiled_BTC-USDT_1m_{args.candles}.csv"
        save_csv(tile(btc, args.candles), csv)
        print(f"   (tiled to {args.candles:,} and saved in {time.perf_counter() - start:.1f} s)")
        big = load_twice("tiled", csv, cache)
        n = len(big)

        print(f"\n2. Bare loop, same run ({n:,} tiled candles)")
        t_bare, bare_trades, bare_equity = bare_figure(big, args)

        print("\n3. sma_cross alone (docs/examples/sma_cross.toml, Approval('all'))")
        sma = load_settings(SMA_EXAMPLE, {})
        t_sma, run = run_figure("sma_cross", sma, big, Approval("all"), args, work)
        ratio = t_bare / t_sma
        print(
            f"   sma_cross backtest / bare loop: {ratio:.3f} of its candles/s"
            f" (target >= {SMA_RATIO_TARGET:.2f}): {verdict(ratio >= SMA_RATIO_TARGET)}"
        )
        print(f"   closed trades: backtest {len(run.trades):,}, bare loop {bare_trades:,}")
        if len(run.trades) != bare_trades:
            print("   WARNING: the backtest and the bare loop closed a different number of trades")
        print(f"   final equity: backtest {run.final_equity:,.2f}, bare loop {bare_equity:,.2f}")
        del run

        print("\n4. The default agents (price_action + momentum, Approval() threshold)")
        t_def, run = run_figure("default agents", Settings(), big, Approval(), args, work)
        cps = n / t_def
        print(
            f"   default agents: {cps:,.0f} candles/s (target >= {DEFAULT_TARGET:,}):"
            f" {verdict(cps >= DEFAULT_TARGET)}"
        )
        del run

        print("\n5. Memory (a fresh subprocess per size, default agents)")
        print(
            f"   {'candles':>11} {'arrays MiB':>11} {'RSS before':>11} {'peak before':>12}"
            f" {'peak after':>11} {'growth MiB':>11}"
        )
        half = work / f"tiled_BTC-USDT_1m_{n // 2}.csv"
        save_csv(tile(btc, n // 2), half)
        load_columns(half, cache_dir=cache)  # cached, as the full size is
        growth = {}
        for size, path in ((n, csv), (n // 2, half)):
            m = memory(path, cache)
            growth[size] = (m["peak"] - m["before"]) / MIB
            print(
                f"   {m['candles']:>11,} {m['arrays'] / MIB:>11.1f} {m['before'] / MIB:>11.1f}"
                f" {m['peak_before'] / MIB:>12.1f} {m['peak'] / MIB:>11.1f} {growth[size]:>11.1f}"
            )
        print(
            f"   growth at {n:,} candles: {growth[n]:.1f} MiB (target <= {MEMORY_TARGET_MIB:g}):"
            f" {verdict(growth[n] <= MEMORY_TARGET_MIB)}; at half: {growth[n // 2]:.1f} MiB"
        )

        if args.skip_live:
            print("\n6. The live per-candle path: skipped (--skip-live)")
        else:
            print(f"\n6. The live per-candle path ({BTC.name}, default agents, auto policy)")
            live_figure(args, work, btc)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--dir", default="/tmp", help="where the temp dir goes (default /tmp)")
    p.add_argument("--rounds", type=int, default=3, help="best of up to N rounds (default 3)")
    p.add_argument(
        "--budget", type=float, default=20.0, help="seconds of rounds a figure (default 20)"
    )
    p.add_argument("--candles", type=int, default=1_000_000, help="tiled length")
    p.add_argument("--skip-live", action="store_true", help="leave out the live path (6.)")
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.candles < 2:
        p.error("--candles must be at least 2 (memory is also measured at half of them)")
    return args


if __name__ == "__main__":
    ns = parse()
    if ns.memory_child:
        memory_child(ns.csv, ns.cache)
    else:
        main(ns)
