"""Approval latency: from the ``a`` keypress to the decision stored, on the demo market at 100×.

Run: ``.venv/bin/python benchmarks/tui_approval.py [--presses N] [--dir DIR]``

The real console (``CmaApp`` in ``App.run_test(size=(120, 40))``) with its real
engine, its real store on a file in a temporary directory (``--dir`` chooses
where: the store commits money moves with ``synchronous=FULL``, so the disk
matters), and the demo market (sim feed) at speed 100. The default five demo
symbols make less than one proposal a second, so the market here has 20 symbols
(the five plus fifteen more the sim derives from their names); the engine does
four times the default work per candle while we measure. Proposals live six
hours, up to 1,000 wait, nothing is too weak to propose (``agents.min_confidence
= 0``) or merged, and the risk limits are wide so approvals become orders.

For each press: wait until the selected proposal is pending and undecided, wait
a random 20–120 ms (so presses fall anywhere between frames and candles), take
the time, press ``a`` through the Pilot (the key goes through the app's message
queue as a terminal's would), and take the time again when the engine's
``DecisionMade`` event arrives. The engine emits it after the transaction that
stores the decision has committed; a read-only sqlite3 connection then checks
that the row is there. It reports the median, p90, p99 and maximum (target:
p99 ≤ 50 ms).

It prints figures; it is not a test and exits 0 unless something crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import Settings  # noqa: E402
from engine.feeds.sim import DEFAULT_SYMBOLS  # noqa: E402
from engine.models import DecisionMade, EngineEvent  # noqa: E402
from tui.app import CmaApp  # noqa: E402

SIZE = (120, 40)
SPEED = 100
EXTRA_SYMBOLS = (
    "ADA/USDT", "DOGE/USDT", "TRX/USDT", "DOT/USDT", "LINK/USDT",
    "AVAX/USDT", "LTC/USDT", "BCH/USDT", "ATOM/USDT", "XLM/USDT",
    "NEAR/USDT", "UNI/USDT", "ETC/USDT", "FIL/USDT", "APT/USDT",
)  # fmt: skip
TARGET_P99_MS = 50.0
TIME_LIMIT = 100.0  # seconds of pressing, at most


def filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (from /proc/mounts), or '?'."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "?"
    best, kind = "", "?"
    resolved = str(path.resolve())
    for fields in mounts:
        point = fields[1]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return f"{kind} on {best}"


def settings_for(db: Path) -> Settings:
    return Settings.model_validate(
        {
            "store": {"path": db},
            "feed": {"kind": "sim", "speed": SPEED, "symbols": DEFAULT_SYMBOLS + EXTRA_SYMBOLS},
            "approval": {
                "policy": "manual",
                "ttl_seconds": 6 * 3600,
                "max_pending": 1000,
                "dedup_window_seconds": 0,
            },
            "agents": {"min_confidence": 0.0},
            "risk": {
                "max_open_positions": 100,
                "max_symbol_exposure": 1.0,
                "max_total_exposure": 1.0,
                "max_correlation": 1.0,
                "max_position_fraction": 0.05,
            },
        }
    )


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def run(presses: int, base: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="cma-bench-", dir=base) as tmp:
        db = Path(tmp) / "cma.db"
        print(f"store: {db} ({filesystem(Path(tmp))})")
        app = CmaApp(
            settings_for(db),
            state_path=Path(tmp) / "ui-state.json",
            signal_handlers=False,
            cursor_blink=False,
        )
        decided: asyncio.Queue[tuple[str, str, float]] = asyncio.Queue()

        def on_event(event: EngineEvent) -> None:
            if isinstance(event, DecisionMade) and event.decision.decided_by == "human":
                decided.put_nowait((event.decision.proposal_id, "", time.perf_counter()))

        latencies: list[float] = []
        mismatched = 0
        not_stored = 0
        rng = random.Random(1)
        async with app.run_test(size=SIZE) as pilot:
            await app.workers.wait_for_complete()
            engine = app.engine
            assert engine is not None and engine.status == "running", "engine did not start"
            engine.subscribe(on_event)
            reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            started = time.perf_counter()

            def selectable() -> str | None:
                pid = app.selected_proposal_id()
                if pid is None or pid in app.inflight:
                    return None
                return pid if any(p.id == pid for p in engine.pending()) else None

            while len(latencies) < presses and time.perf_counter() - started < TIME_LIMIT:
                if selectable() is None:
                    await asyncio.sleep(0.005)
                    continue
                await asyncio.sleep(rng.uniform(0.02, 0.12))
                expected = selectable()
                if expected is None:
                    continue
                t0 = time.perf_counter()
                await pilot.press("a")
                pid, _, t1 = await asyncio.wait_for(decided.get(), timeout=10)
                latencies.append(t1 - t0)
                mismatched += pid != expected
                row = reader.execute(
                    "SELECT action, decided_by FROM decisions WHERE proposal_id = ?", (pid,)
                ).fetchone()
                if row != ("approve", "human"):
                    not_stored += 1
            elapsed = time.perf_counter() - started
            pending_left = len(engine.pending())
            candles = engine.candles_seen
            intents = dict(
                reader.execute(
                    "SELECT i.status, COUNT(*) FROM order_intents i JOIN decisions d"
                    " ON i.decision_id = d.id WHERE d.decided_by = 'human' GROUP BY i.status"
                ).fetchall()
            )
            human = reader.execute(
                "SELECT COUNT(*) FROM decisions WHERE decided_by = 'human'"
            ).fetchone()[0]
            reader.close()
            # Let the last decisions' redraws happen before the app closes.
            await pilot.pause(0.2)
    if not latencies:
        print("no proposal could be approved: FAIL")
        return
    ms = [x * 1000 for x in latencies]
    print(
        f"{len(ms)} presses in {elapsed:.0f} s on the demo market at {SPEED}× "
        f"({len(DEFAULT_SYMBOLS + EXTRA_SYMBOLS)} symbols, {candles} candles played); "
        f"{pending_left} proposals still pending at the end"
    )
    print(
        f"decisions stored by hand: {human} (rows checked after each event: "
        f"{len(ms) - not_stored} of {len(ms)} there); their order intents: "
        f"{', '.join(f'{n} {status}' for status, n in sorted(intents.items())) or 'none'}; "
        f"presses that approved another row than the one selected: {mismatched}"
    )
    p99 = percentile(ms, 99)
    print(
        f"keypress → stored decision: median {statistics.median(ms):.1f} ms, "
        f"p90 {percentile(ms, 90):.1f} ms, p99 {p99:.1f} ms, max {max(ms):.1f} ms, "
        f"min {min(ms):.1f} ms"
    )
    verdict = "PASS" if p99 <= TARGET_P99_MS else "FAIL"
    print(f"p99 {p99:.1f} ms  (target ≤ {TARGET_P99_MS:.0f} ms)  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=100, help="approvals (default 100)")
    parser.add_argument("--dir", type=Path, help="where the temporary store goes")
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    asyncio.run(run(args.presses, args.dir))


if __name__ == "__main__":
    main()
