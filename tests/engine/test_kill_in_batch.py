"""A SIGKILL between the units of work of a replay: the restart carries on exactly.

The replay (the first 2,000 candles of each shared ETH-BTC and LTC-BTC file) runs as a
real ``cma run --headless`` with one seam: the process SIGKILLs itself right after the
store committed the transaction that holds the first expired proposal's decision, and
its commit pipeline is bounded at one Step, so its transactions are as small as the
pipeline makes them (as when the loop runs ahead of the writer). Restarted on that
store, the replay must store what one uninterrupted run stores: decisions, fills,
positions, the learning agent's records and its counterfactual outcomes, by content
and in order (``benchmarks/chaos.py --whole``'s claim, at a kill it found failing).

The expired proposal is followed on paper (its counterfactual) until its stop or
take-profit would have triggered; that was in memory only, so the kill lost it, its
outcome never reached the agents' records, and the weights and sizes parted from the
uninterrupted run. And the pipeline stores a batch's units whole (one transaction),
so a kill never keeps a prefix of a batch that the restart, resuming after the store's
market time, would never finish.
"""

from __future__ import annotations

import signal
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import test_replay_restart
from crafted_market import (
    FLAT,
    MIN,
    T0,
    WARMUP,
    CraftedFeed,
    crafted_engine,
    play,
    settings,
    store_of,
    with_warmup,
)
from test_order_tracker import proposal
from test_replay_restart import content, cut, replay

from engine.broker import PaperBroker
from engine.events import EngineEvent, ProposalCreated
from engine.models import Decision, DecisionAction, Side
from engine.pipeline import CommitPipeline
from engine.ports import BATCH_TS, CounterfactualRow
from engine.step import Step
from persistence.store import Store

BTC = "BTC/USDT"

#: What must match: decisions, fills, positions, and the learning agent's records and
#: counterfactual outcomes.
CONTENT = (
    *test_replay_restart.CONTENT,
    "SELECT agent, symbol, trades, wins, sum_win, sum_loss, cf_trades, cf_wins, cf_sum_win,"
    " cf_sum_loss FROM agent_records ORDER BY agent, symbol",
    "SELECT symbol, side, agents_json, entry, exit_price, ret, exit_reason, closed_at"
    " FROM counterfactuals ORDER BY closed_at, symbol",
)

#: Run in the ``cma`` process before its CLI: the seam (see the module docstring).
KILL_AFTER_EXPIRY = """
import os, signal, sys
import engine.pipeline as pipeline
import persistence.store as store

init = pipeline.CommitPipeline.__init__
def one_step(self, *args, **kwargs):
    kwargs["size"] = 1
    init(self, *args, **kwargs)
pipeline.CommitPipeline.__init__ = one_step

apply_ops = store._apply_ops
def apply_then_die(conn, ops):
    apply_ops(conn, ops)
    if any(sql.startswith("INSERT INTO decisions") and p[1] == "expire" for sql, p in ops):
        os.kill(os.getpid(), signal.SIGKILL)
store._apply_ops = apply_then_die

sys.argv[0] = "cma"
from tui.cli import entry
entry()
"""


def _content(db: Path) -> list[list[Any]]:
    return content(db, CONTENT)


def test_a_replay_killed_right_after_an_expiry_restarts_as_the_run_never_killed(
    tmp_path: Path,
) -> None:
    files = cut(tmp_path / "replay", 2000)
    whole, killed = tmp_path / "whole.db", tmp_path / "killed.db"
    assert replay(tmp_path, whole, files) == 0
    assert replay(tmp_path, killed, files, start=("-c", KILL_AFTER_EXPIRY)) == -signal.SIGKILL
    decisions, _, _, _, counterfactuals = _content(killed)
    # Killed where meant: its first expiry stored, that proposal's counterfactual not yet.
    assert [d[7] for d in decisions].count("expire") == 1, decisions
    assert decisions[-1][7] == "expire" and counterfactuals == [], decisions
    assert replay(tmp_path, killed, files) == 0  # restarted on its store
    want = _content(whole)
    assert len(want[0]) > len(decisions) + 3 and want[4], want
    got = _content(killed)
    names = ("decisions", "fills", "positions", "records", "counterfactuals")
    for name, a, b in zip(names, got, want, strict=True):
        assert a == b, name


async def test_a_batch_goes_into_one_transaction_past_the_queue_bound() -> None:
    store = await Store.open(":memory:")
    heard: list[str] = []

    def step(pid: str) -> Step:
        work = store.begin_work()
        return Step(work, [work.proposal_created(proposal(pid), 0)])

    def announce(events: list[EngineEvent]) -> None:
        heard.extend(e.proposal.id for e in events if isinstance(e, ProposalCreated))

    paper = PaperBroker(Decimal(0), Decimal(0))
    pipeline = CommitPipeline(store, paper, announce, lambda exc: None, size=1)
    pipeline.start()
    try:
        await pipeline.put(step("a"))
        await pipeline.drain()
        # A batch of three past a bound of one: one transaction, so the repeated id
        # fails all of it (a prefix of a batch is never stored).
        await pipeline.put(step("b"), step("c"), step("a"))
        with pytest.raises(sqlite3.IntegrityError):
            await pipeline.drain()
        ids = await store.run(lambda c: [r[0] for r in c.execute("SELECT id FROM proposals")])
        assert ids == ["a"] and heard == ["a"]
    finally:
        await pipeline.close()
        await store.close()


async def test_the_store_gives_back_where_to_resume_and_what_was_still_followed() -> None:
    store = await Store.open(":memory:")
    try:
        await store.init_balance("USDT", Decimal(1000), 0)
        work = store.begin_work()
        for pid, at in (("a", 600_000), ("b", 900_000), ("c", 1_200_000)):
            work.proposal_created(proposal(pid), 0)
            action = DecisionAction.APPROVE if pid == "c" else DecisionAction.EXPIRE
            decision = Decision(proposal_id=pid, action=action, latency_ms=0, decided_at=at)
            work.decision_made(decision, BTC, Side.LONG, None)
        # a's counterfactual closed; b is still followed; c was approved (not declined)
        work.counterfactuals(
            [CounterfactualRow("a", BTC, "long", ("x",), 100.0, 108.0, 0.08, "take_profit", 1)]
        )
        await store.commit(work)
        state = await store.load_state()
        assert [(p.id, at) for p, at in state.followed] == [("b", 900_000)]
        assert state.last_ts == 1_200_000  # the last decision's market time
        # A batch whose units carry an earlier time (its fills: the candle's open) says
        # where it ended: the restart resumes after it.
        work = store.begin_work()
        work.set_state(BATCH_TS, "1500000")
        await store.commit(work)
        assert (await store.load_state()).last_ts == 1_500_000
    finally:
        await store.close()


async def test_the_batch_that_starts_a_day_is_one_transaction() -> None:
    """The first batch of a UTC day prunes the store between its candles and its end:
    the pipeline used to commit the candles' units meanwhile, the expiries after."""
    n = 80  # candles before midnight (T0); the last one's batch ends the day
    feed = CraftedFeed({BTC: with_warmup([FLAT] * (n - WARMUP + 1))}, start=T0 - n * MIN)
    # Two proposals, left pending: one an hour before midnight (it expires at midnight,
    # in the day's first batch) and one in that batch.
    votes = {(BTC, T0 - 61 * MIN): (Side.LONG, 1.0), (BTC, T0 - MIN): (Side.LONG, 1.0)}
    manual = settings(approval={"policy": "manual"})
    async with crafted_engine(manual, feed, votes) as engine:
        store = store_of(engine)
        commits: list[list[tuple[str, tuple[Any, ...]]]] = []
        commit = store.commit

        async def recorded(work: Any, *more: Any) -> None:
            commits.append([op for w in (work, *more) for op in w.ops])
            await commit(work, *more)

        store.commit = recorded  # type: ignore[method-assign]
        await play(engine)
    proposed = [
        i for i, ops in enumerate(commits) for sql, p in ops
        if sql.startswith("INSERT INTO proposals") and p[9] == T0
    ]  # fmt: skip
    expired = [
        i for i, ops in enumerate(commits) for sql, p in ops
        if sql.startswith("INSERT INTO decisions") and p[1] == "expire"
    ]  # fmt: skip
    assert len(proposed) == 1 and proposed == expired, commits
