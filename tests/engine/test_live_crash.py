"""Crash mid-order: ``cma run --headless --live`` is killed with SIGKILL between an
order's intent and its acknowledgement, then started again on the same store.

One local exchange process serves every round; it holds each order's answer (the
order is stored, the answer waits). Each kind of kill point comes twice in a chain, in
a seeded random order, and a seeded random picks where in it the kill lands: right
after the intent is in the store (before or while it is sent), while the exchange
holds the answer, or after the answer is released (before or after the fill is
stored). Each restart is the next round: it reconciles first (its notes say
what it found), then trades again. Afterwards every exchange order was sent once,
is an intent of the store, and (filled) has exactly one fill row of its quantity;
no intent is left unresolved, and ``cma db check`` passes.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from live_procs import FakeProcess, LiveHome, intents
from support import wait_for

KEY = "crash-test-key-31d6"
SECRET = "crash-test-secret-8f0e"
#: Where a kill lands: after the intent is stored, while the exchange holds the answer,
#: after the answer is released. Each comes EACH times in a chain.
MODES = ("intent", "held", "released")
EACH = 2
#: Kill chains run at once (cma's start is mostly imports: two fit in the time of one).
CHAINS = 2
KILLS = len(MODES) * EACH * CHAINS
SEED = int(os.environ.get("CMA_CRASH_SEED", "1313"))


@pytest.fixture(scope="module")
def fakes() -> Iterator[list[FakeProcess]]:
    processes: list[FakeProcess] = []
    try:
        for _ in range(CHAINS):
            processes.append(FakeProcess(KEY, SECRET))
        yield processes
    finally:
        for process in processes:
            process.stop()


def _started(out: Path, proc: subprocess.Popen[str]) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"cma exited {proc.returncode}:\n{out.read_text()}")
    return "cma headless:" in out.read_text()


def kill_round(
    rng: random.Random, mode: str, home: LiveHome, fake: FakeProcess, store: Path, out: Path
) -> None:
    """Start cma, have it send an order, SIGKILL it at a random point of kind ``mode``."""
    known = set(intents(store))
    received = fake.status()["ordersReceived"]
    proc = home.start(store, out=out)
    try:
        wait_for(f"{out.name}: the start", lambda: _started(out, proc), 15, every=0.01)
        home.vote_file.touch()
        wait_for(f"{out.name}: an intent", lambda: set(intents(store)) - known, 15, every=0.01)
        home.vote_file.unlink()
        if mode == "intent":  # before the POST, while it is on its way, or held
            time.sleep(rng.uniform(0.0, 0.05))
        else:
            wait_for("a POST", lambda: fake.status()["ordersReceived"] > received, 15, every=0.01)
            if mode == "held":
                time.sleep(rng.uniform(0.0, 0.1))
            else:  # answered: the fill is stored at the next poll (1 s), or not yet
                fake.post("/_fake/release")
                time.sleep(rng.uniform(0.0, 1.1))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def kill_chain(seed: int, fake: FakeProcess, folder: Path) -> None:
    """KILLS // CHAINS kill rounds on one store and one exchange (each mode EACH times,
    in a random order), a last restart, and the checks of the module docstring."""
    rng = random.Random(seed)
    plan = list(MODES) * EACH
    rng.shuffle(plan)
    home = LiveHome(folder, fake.url)
    home.set_keys(KEY, SECRET)
    store = folder / "live.db"
    fake.post("/_fake/hold")
    #: What each killed run left unresolved (client order id -> status).
    left: list[dict[str, str]] = []
    outs: list[Path] = []
    for round_, mode in enumerate(plan):
        out = folder / f"run{round_}.out"
        outs.append(out)
        kill_round(rng, mode, home, fake, store, out)
        fake.post("/_fake/release")  # a held answer goes to the dead connection
        fake.post("/_fake/hold")
        left.append({c: s for c, s in intents(store).items() if s in ("pending", "sent")})
    # The last restart reconciles and stops.
    fake.post("/_fake/release")
    out = folder / "last.out"
    outs.append(out)
    proc = home.start(store, "--duration", "1s", out=out)
    assert proc.wait(timeout=30) == 0, out.read_text()

    orders = fake.orders()
    posts = Counter(
        r[2].get("newClientOrderId")
        for r in fake.requests()
        if r[0] == "POST" and r[1] == "/api/v3/order"
    )
    stored = intents(store)
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    fills = Counter[str]()
    qty: dict[str, Decimal] = {}
    for coid, q in conn.execute("SELECT client_order_id, qty FROM fills"):
        fills[coid] += 1
        qty[coid] = Decimal(q)
    conn.close()
    mine = {c: o for c, o in orders.items() if c in stored}
    assert len(mine) >= KILLS // CHAINS // 2, (len(mine), plan)
    for coid, order in mine.items():
        assert posts[coid] == 1, f"{coid} sent {posts[coid]} times"
        if order["status"] == "FILLED":
            assert fills[coid] == 1, f"{coid}: {fills[coid]} fill rows"
            assert qty[coid] == Decimal(order["executedQty"])
            assert stored[coid] == "filled"
    # Nothing the store sent is unknown to it, nothing it holds is left unresolved.
    assert set(fills) <= set(mine)
    assert all(status in ("filled", "cancelled", "denied") for status in stored.values()), stored
    for coid, status in stored.items():
        if coid not in orders:
            assert status in ("cancelled", "denied") and posts[coid] == 0
    # Each restart's notes told what became of the orders the kill left unresolved.
    for round_, unresolved in enumerate(left):
        notes = outs[round_ + 1].read_text()
        for coid in unresolved:
            if coid not in orders:
                assert f"order {coid} " in notes and "never reached the exchange" in notes
            else:
                assert f"order {coid} " in notes, (coid, notes)
    check = home.cma("db", "check", "--db", str(store))
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_kill_between_intent_and_acknowledgement_is_adopted_exactly_once(
    tmp_path: Path, fakes: list[FakeProcess]
) -> None:
    """Two chains at once (each its own exchange, keys and store): half the time."""
    folders = [tmp_path / f"chain{i}" for i in range(CHAINS)]
    with ThreadPoolExecutor(CHAINS) as pool:
        done = [
            pool.submit(kill_chain, SEED + i, fake, folder)
            for i, (fake, folder) in enumerate(zip(fakes, folders, strict=True))
        ]
        for future in done:
            future.result()
