"""Who approves in a backtest: the threshold, all, or a simulated person with a delay in
market time and a seeded reject rate, whose proposals may expire while they wait."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from shared_data import shared_data_dir

from engine.assembly import account_currency, load_agents
from engine.backtest.data import load_columns
from engine.backtest.driver import Approval, Backtest
from engine.config import Settings
from persistence.store import Store

BTC = shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"
N = 8_000


async def decisions(tmp_path: Path, who: Approval, name: str, **s: object) -> list[tuple]:
    settings = Settings(agents={"enabled": ("sma_cross",)}, **s)  # type: ignore[arg-type]
    columns = load_columns(BTC, cache_dir=tmp_path / "cache")
    columns = columns.between(None, int(columns.ts[N]))
    db = tmp_path / f"{name}.db"
    store = await Store.open(db)
    try:
        await store.begin_session("backtest", "replay", "{}", 0)
        await store.init_balance(account_currency([columns.symbol]), settings.risk.initial_cash, 0)
        run = Backtest(
            settings,
            [columns],
            agent_classes=load_agents(settings),
            approval=who,
            new_work=store.begin_work,
        ).run()
        await store.commit(*run.works)
    finally:
        await store.close()
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT d.action, d.decided_by, d.latency_ms, d.decided_at - p.created_at,"
            " p.confidence, CAST(p.size AS REAL)"
            " FROM decisions d JOIN proposals p ON p.id = d.proposal_id"
            " ORDER BY p.created_at"
        ).fetchall()
    finally:
        conn.close()


async def test_a_person_decides_after_the_delay_and_rejects_the_seeded_share(
    tmp_path: Path,
) -> None:
    person = Approval("person", delay_ms=180_000, reject_rate=0.3, seed=11)
    rows = await decisions(tmp_path, person, "a")
    decided = [r for r in rows if r[1] == "human"]
    assert len(decided) > 50
    # Decided at the first batch end at or after the delay, in market time.
    assert all(180_000 <= r[3] < 180_000 + 60_000 for r in decided)
    assert all(r[2] == r[3] for r in decided)  # the latency is market time too
    rejected = sum(r[0] == "reject" for r in decided) / len(decided)
    assert 0.15 < rejected < 0.45
    again = await decisions(tmp_path, person, "b")
    assert again == rows  # the same seed, the same person
    other = await decisions(
        tmp_path, Approval("person", delay_ms=180_000, reject_rate=0.3, seed=12), "c"
    )
    assert [r[0] for r in other] != [r[0] for r in rows]


async def test_a_slow_person_lets_proposals_expire(tmp_path: Path) -> None:
    slow = Approval("person", delay_ms=600_000)
    rows = await decisions(tmp_path, slow, "slow", approval={"ttl_seconds": 300})
    assert rows and all(r[0] == "expire" and r[1] == "engine" for r in rows)


@pytest.mark.parametrize("threshold", [0.5, 0.99])
async def test_the_threshold_approves_at_or_above_it(tmp_path: Path, threshold: float) -> None:
    rows = await decisions(
        tmp_path,
        Approval("threshold", threshold=threshold),
        "t",
        approval={"below_confidence": "reject"},
    )
    assert any(r[0] == "approve" for r in rows) and any(r[0] == "reject" for r in rows)
    for action, by, _, _, confidence, size in rows:
        assert by == "policy"
        # One the risk manager would not size waits for a person (here: is rejected).
        assert (action == "approve") == (confidence >= threshold and size > 0)


async def test_all_approves_every_proposal(tmp_path: Path) -> None:
    """Even one the risk manager would not size: its approval is then denied."""
    rows = await decisions(tmp_path, Approval("all"), "all")
    assert rows and all(r[0] == "approve" and r[1] == "policy" and r[3] == 0 for r in rows)


def test_a_bad_approval_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="reject rate"):
        Approval("person", reject_rate=1.5)
    with pytest.raises(ValueError, match="approval mode"):
        Approval("nobody")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delay"):
        Approval("person", delay_ms=-1)
