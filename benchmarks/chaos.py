"""Chaos: the headless engine killed (SIGKILL) and restarted at random during a replay.

Run: ``.venv/bin/python benchmarks/chaos.py [--kills 50] [--seed 1] [--files CSV ...]
[--whole] [--keep DIR]``

The replay (by default the shared ETH-BTC and LTC-BTC 5-minute candles of January
2018) runs as ``cma run --headless --feed replay --speed max --policy auto`` with
``CMA_APPROVAL__AUTO_CONFIDENCE=0.3``, so it trades, into a store of its own. A seeded
``random.Random`` picks when to kill it: a fifth of the kills anywhere in its start
(imports, opening the store, the recovery), the others while it trades what is left
of the replay (or just after its end). Then it is started again on the same store,
and so on; a replay that reaches its end starts a new round on a fresh store.

What "nothing lost or duplicated" is checked against: a run without kills from the
same point. Before each start the store is copied; after the kill, the copy is run
uninterrupted to the replay's end (the reference; from an empty store, that is the
whole replay's run). A restarted replay plays the candles before the store's market
time unpaced and untraded, so the reference is the engine doing exactly what the
killed run would have done had it not been killed. After each kill (and at each
round's end) the killed store must hold, by content and in order (ids differ between
runs):

* decisions (the proposal's symbol, side, entry, stop, take-profit, size and time,
  the action, size, reason, who decided and when), fills (symbol, side, quantity,
  price, fee, realized P&L, time), positions (symbol, side and opening time; a
  closed one whole) and the counterfactuals of the declined proposals the learning
  agent followed (symbol, side, agents, entry, exit, return, reason, time; in the
  order they closed):
  a prefix of the reference's, so nothing that is stored differs from the
  uninterrupted run and nothing is stored twice;
* at least every reference row of a market time before the killed store's last one,
  so nothing committed before the kill is lost (the store commits in order, a batch's
  units of work together);
* ``cma db check``'s checks, passed.

First, two uninterrupted runs of the whole replay must store identical content: the
comparison means nothing unless the replay is deterministic.

With ``--whole`` the reference is always the one uninterrupted run of the whole
replay: the stricter claim that a restarted replay carries on exactly as the run never
killed. A restart warms the agents on the candles it skips (``Engine._on_batch``); the
learning agent follows again the rejected and expired proposals it was following on
paper (their counterfactuals were in memory only: a kill between an expiry and its
counterfactual's close changed the agents' records, and with them later sizes and
proposals); and a batch's units of work go into the store whole, so a kill never keeps
part of a batch that the restart, resuming after it, would never finish. The default
check costs a run of the rest of the replay per kill.

It prints the kills and checks made, and exits 1 on the first mismatch.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from persistence.checks import run_checks  # noqa: E402
from persistence.connection import connect_reader  # noqa: E402

#: The share of kills aimed at the start (imports, opening the store, the recovery);
#: the others fall while it trades.
DURING_START = 0.2

DEFAULT_FILES = ("binance_ETH-BTC_5m_2018-01.csv", "binance_LTC-BTC_5m_2018-01.csv")

_DECISIONS = (
    "SELECT p.symbol, p.side, p.entry, p.stop, p.take_profit, p.size, p.created_at,"
    " d.action, d.size, d.reason, d.decided_by, d.decided_at"
    " FROM decisions d JOIN proposals p ON p.id = d.proposal_id ORDER BY d.id"
)
_FILLS = "SELECT symbol, side, qty, price, fee, realized_pnl, ts FROM fills ORDER BY id"
#: The declined proposals the learning agent followed on paper, by when each closed (their
#: outcomes are what the agents' records learn from).
_COUNTERFACTUALS = (
    "SELECT symbol, side, agents_json, entry, exit_price, ret, exit_reason, closed_at"
    " FROM counterfactuals ORDER BY closed_at, symbol, side, entry, agents_json"
)
_POSITIONS = (
    "SELECT symbol, side, opened_at, status, entry_price, qty, cost_basis, stop,"
    " take_profit, closed_at, exit_price, close_reason, realized_pnl, fees"
    " FROM positions ORDER BY id"
)
#: Columns of a position fixed when it opens (a prefix of _POSITIONS's); an open one's
#: quantity, entry and bracket change as fills add to it (the fills are compared).
_OPENED = 3


def shared_data() -> Path:
    env = os.environ.get("CMA_SHARED_DATA")
    if env:
        return Path(env)
    for parent in ROOT.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    raise SystemExit("no shared/data folder above this checkout; set CMA_SHARED_DATA")


@dataclass
class Content:
    """What a store holds that must match: rows by content, in order."""

    decisions: list[tuple[Any, ...]]
    fills: list[tuple[Any, ...]]
    positions: list[tuple[Any, ...]]
    market_ts: int
    counterfactuals: list[tuple[Any, ...]] = field(default_factory=list)

    def counts(self) -> str:
        return (
            f"{len(self.decisions)} decisions, {len(self.fills)} fills, "
            f"{len(self.positions)} positions, {len(self.counterfactuals)} counterfactuals"
        )


def read_content(db: Path) -> Content:
    conn = connect_reader(db)
    try:
        last = conn.execute(
            "SELECT MAX(ts) FROM (SELECT MAX(ts) AS ts FROM events UNION ALL"
            " SELECT MAX(ts) FROM equity)"
        ).fetchone()[0]
        return Content(
            decisions=conn.execute(_DECISIONS).fetchall(),
            fills=conn.execute(_FILLS).fetchall(),
            positions=conn.execute(_POSITIONS).fetchall(),
            counterfactuals=conn.execute(_COUNTERFACTUALS).fetchall(),
            market_ts=last or 0,
        )
    finally:
        conn.close()


def first_ts(db: Path) -> int:
    """The market time of the store's first equity point (the replay's start)."""
    conn = connect_reader(db)
    try:
        return int(conn.execute("SELECT MIN(ts) FROM equity").fetchone()[0])
    finally:
        conn.close()


def failed_checks(db: Path) -> list[str]:
    conn = connect_reader(db)
    try:
        return [f"{r.name}: {r.detail}" for r in run_checks(conn) if not r.ok]
    finally:
        conn.close()


def compare(killed: Content, ref: Content) -> list[str]:
    """What differs between a killed store and the uninterrupted run (empty: nothing)."""
    problems: list[str] = []
    t = killed.market_ts
    for name, k_rows, r_rows, ts_col in (
        ("decisions", killed.decisions, ref.decisions, 11),
        ("fills", killed.fills, ref.fills, 6),
        ("counterfactuals", killed.counterfactuals, ref.counterfactuals, 7),
    ):
        if k_rows != r_rows[: len(k_rows)]:
            at = next(i for i, (a, b) in enumerate(zip(k_rows, r_rows, strict=False)) if a != b)
            problems.append(f"{name} differ at row {at}: {k_rows[at]} != {r_rows[at]}")
        if len(k_rows) > len(r_rows):
            problems.append(
                f"{name}: {len(k_rows)} stored, the run without kills has only {len(r_rows)}"
            )
        before = sum(1 for r in r_rows if r[ts_col] < t)
        if len(k_rows) < before:
            problems.append(f"{name} lost: {len(k_rows)} stored, {before} before market time {t}")
    k_pos, r_pos = killed.positions, ref.positions
    if len(k_pos) > len(r_pos):
        problems.append(f"positions: {len(k_pos)} stored, the run without kills has {len(r_pos)}")
    for i, (k, r) in enumerate(zip(k_pos, r_pos, strict=False)):
        # An open position may change later (closed by a later candle); a closed one not.
        same = k == r if k[3] == "closed" else k[:_OPENED] == r[:_OPENED]
        if not same:
            problems.append(f"position {i} differs: {k} != {r}")
        elif k[3] == "open" and r[3] == "closed" and r[9] < t:
            problems.append(f"position {i}'s close (at {r[9]}, before {t}) is lost: {r}")
    opened_before = sum(1 for r in r_pos if r[2] < t)
    if len(k_pos) < opened_before:
        problems.append(f"positions lost: {len(k_pos)} stored, {opened_before} opened before {t}")
    return problems


@dataclass
class Runner:
    """Starts ``cma run --headless`` on the replay."""

    files: Sequence[Path]
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    startup: float = 1.0

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
        env.update(
            XDG_DATA_HOME=str(self.tmp / "data"),
            XDG_CONFIG_HOME=str(self.tmp / "config"),
            XDG_STATE_HOME=str(self.tmp / "state"),
            PYTHONPATH=str(ROOT),
            CMA_APPROVAL__AUTO_CONFIDENCE="0.3",
            CMA_ENGINE__STATUS_INTERVAL_SECONDS="60",
        )
        return env

    def start(self, db: Path) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "tui", "run", "--headless", "--feed", "replay"]
        cmd += ["--speed", "max", "--policy", "auto", "--db", str(db), "--files"]
        cmd += [str(f) for f in self.files]
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.procs.append(proc)
        return proc

    def run_through(self, db: Path) -> float:
        """Run the replay on ``db`` to its end, uninterrupted; its wall seconds (and the
        seconds until it started trading in :attr:`startup`)."""
        began = time.monotonic()
        proc = self.start(db)
        started = _watch_start(proc)
        started.wait(timeout=60)
        self.startup = time.monotonic() - began
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"an uninterrupted run failed ({proc.returncode}): {err.decode()}")
        return time.monotonic() - began


def _watch_start(proc: subprocess.Popen[bytes]) -> threading.Event:
    """Set once the run printed its start line (recovered, trading); reads its stdout on."""
    started = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(b"cma headless:"):
                started.set()
        started.set()  # it ended

    threading.Thread(target=read, daemon=True).start()
    return started


def copy_store(src: Path, dst: Path) -> None:
    """The store's files as they are (no process has it open)."""
    for suffix in ("", "-wal", "-shm"):
        f = src.with_name(src.name + suffix)
        if f.exists():
            shutil.copyfile(f, dst.with_name(dst.name + suffix))


def _remove_store(db: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".lock"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)


def _at_end(db: Path, end_ts: int) -> bool:
    """Whether the store has traded the replay's last candle (a restart would refuse it)."""
    try:
        return read_content(db).market_ts >= end_ts
    except sqlite3.OperationalError:
        return False  # no tables yet


@dataclass
class Chaos:
    kills: int = 0
    checks: int = 0
    rounds: int = 0
    finished: int = 0  # starts that reached the replay's end before their kill
    start_kills: int = 0  # kills before it printed its start line (recovered)
    problems: list[str] = field(default_factory=list)


def run_chaos(
    kills: int,
    seed: int,
    files: Sequence[Path],
    tmp: Path | None = None,
    log: Any = print,
    keep: Path | None = None,
    whole: bool = False,
) -> Chaos:
    """Kill and restart the engine ``kills`` times (see the module docstring)."""
    rng = random.Random(seed)
    chaos = Chaos()
    with tempfile.TemporaryDirectory(prefix="cma-chaos-", dir=tmp) as where:
        work = Path(where)
        runner = Runner(files, work)
        try:
            # The replay is deterministic: two uninterrupted runs store the same content.
            one, two = work / "ref1.db", work / "ref2.db"
            seconds = runner.run_through(one)
            startup = runner.startup
            begin_ts = first_ts(one)
            runner.run_through(two)
            a, b = read_content(one), read_content(two)
            if (a.decisions, a.fills, a.positions) != (b.decisions, b.fills, b.positions):
                chaos.problems.append("two uninterrupted runs of the replay differ")
                return chaos
            chaos.checks += 1
            log(f"two uninterrupted runs agree: {a.counts()} ({seconds:.1f} s a run)")
            db = work / "chaos.db"
            ref = work / "ref.db"
            while chaos.kills < kills and not chaos.problems:
                if db.exists() and _at_end(db, a.market_ts):
                    # Killed after its last candle was stored: that round is over.
                    _remove_store(db)
                if not db.exists():
                    chaos.rounds += 1
                fresh = not db.exists()
                left = 1.0  # the share of the replay still to trade
                if not fresh:
                    if not whole:
                        copy_store(db, ref)
                    with contextlib.suppress(sqlite3.OperationalError):  # no tables yet
                        done_ts = read_content(db).market_ts
                        left = max(0.0, (a.market_ts - done_ts) / (a.market_ts - begin_ts))
                proc = runner.start(db)
                started = _watch_start(proc)
                in_start = rng.random() < DURING_START
                try:
                    if in_start:
                        # During the start: imports, opening the store, the recovery.
                        proc.wait(timeout=rng.uniform(0.0, startup))
                    else:
                        started.wait(timeout=60)
                        # While it trades what is left of the replay (or just after).
                        proc.wait(timeout=rng.uniform(0.0, (seconds - startup) * left + 0.1))
                except subprocess.TimeoutExpired:
                    before_line = not started.is_set()  # (set at its end too)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    chaos.kills += 1
                    chaos.start_kills += int(before_line)
                else:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    if proc.returncode != 0:
                        chaos.problems.append(f"a restart failed ({proc.returncode}): {err}")
                        break
                    # It reached the end: check this last stretch too, then a new round.
                    chaos.finished += 1
                if proc.stderr is not None:
                    proc.stderr.close()
                if not db.exists():
                    continue  # killed before it created the store
                try:
                    killed = read_content(db)
                except sqlite3.OperationalError as exc:
                    if "no such table" in str(exc):
                        continue  # killed before the first migration committed
                    raise
                if fresh or whole:
                    ref_content = a  # the whole replay's uninterrupted run
                else:
                    runner.run_through(ref)
                    ref_content = read_content(ref)
                problems = compare(killed, ref_content) + failed_checks(db)
                chaos.checks += 1
                if problems:
                    chaos.problems.extend(problems)
                    if keep is not None:
                        keep.mkdir(parents=True, exist_ok=True)
                        copy_store(db, keep / "killed.db")
                        copy_store(ref, keep / "before.db")
                        copy_store(one, keep / "whole.db")
                elif proc.returncode == 0:
                    _remove_store(db)
                if chaos.checks % 10 == 0:
                    log(f"{chaos.kills} kills, {chaos.checks} checks: {killed.counts()} so far")
        finally:
            for proc in runner.procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    return chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs (default 50)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill times")
    parser.add_argument("--files", nargs="+", default=None, help="replay CSV files")
    parser.add_argument(
        "--keep", type=Path, default=None, help="copy the stores here on a mismatch"
    )
    parser.add_argument(
        "--whole",
        action="store_true",
        help="compare with the whole replay's run without kills (not one from each restart)",
    )
    args = parser.parse_args()
    files = (
        [Path(f) for f in args.files] if args.files else [shared_data() / f for f in DEFAULT_FILES]
    )
    print(
        f"chaos: {args.kills} kills (seed {args.seed}) during a replay of "
        f"{', '.join(f.name for f in files)}",
        flush=True,
    )
    began = time.monotonic()
    chaos = run_chaos(
        args.kills,
        args.seed,
        files,
        log=lambda s: print(s, flush=True),
        keep=args.keep,
        whole=args.whole,
    )
    print(
        f"kills: {chaos.kills} ({chaos.start_kills} during the start), "
        f"stores checked: {chaos.checks}, rounds: {chaos.rounds}, "
        f"runs that reached the end before their kill: {chaos.finished}; "
        f"{time.monotonic() - began:.0f} s"
    )
    for problem in chaos.problems[:20]:
        print(f"MISMATCH: {problem}")
    print("chaos: " + ("PASS" if not chaos.problems else "FAIL"))
    return 0 if not chaos.problems else 1


if __name__ == "__main__":
    sys.exit(main())
