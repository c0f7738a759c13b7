"""The chaos script's short form: 5 SIGKILLs and restarts during a small replay.

``benchmarks/chaos.py`` kills the headless engine at seeded random moments (its start
and recovery included) and checks, after each, that the store holds by content and in
order what a run without kills from the same point stores, nothing lost before the
killed store's market time and nothing twice, and that ``cma db check``'s checks pass.
The comparison itself is checked on rows made to differ: it must catch a lost, a
duplicated and a changed row.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from shared_data import shared_data_dir
from support import load_benchmark

chaos = load_benchmark("chaos")

# Rows as read_content reads them (decision: ..., decided_at last; fill: ..., ts last).
D1 = ("ETH/BTC", "long", "0.09", "0.088", "0.095", "1", 100, "approve", "1", None, "policy", 100)
D2 = ("LTC/BTC", "short", "0.017", "0.018", "0.016", "2", 200, "approve", "2", None, "policy", 200)
F1 = ("ETH/BTC", "buy", "10", "0.0901", "0.001", "0", 100)
F2 = ("LTC/BTC", "sell", "20", "0.0170", "0.0003", "0", 200)
P1 = (
    "ETH/BTC",
    "long",
    100,
    "closed",
    "0.0901",
    "0",
    "0",
    None,
    None,
    150,
    "0.0950",
    "take_profit",
    "0.04",
    "0.002",
)
P2 = (
    "LTC/BTC",
    "short",
    200,
    "open",
    "0.0170",
    "20",
    "0.34",
    "0.018",
    "0.016",
    None,
    None,
    None,
    "0",
    "0",
)
C1 = ("ETH/BTC", "long", '["trend"]', 0.09, 0.095, 0.0555, "take_profit", 150)
C2 = ("LTC/BTC", "short", '["momentum"]', 0.017, 0.0175, -0.0294, "stop", 250)
REF = chaos.Content(
    decisions=[D1, D2],
    fills=[F1, F2],
    positions=[P1, P2],
    market_ts=300,
    counterfactuals=[C1, C2],
)


def content(
    decisions: list[Any],
    fills: list[Any],
    positions: list[Any],
    ts: int,
    counterfactuals: list[Any] | None = None,
) -> Any:
    if counterfactuals is None:  # those closed before the store's market time
        counterfactuals = [c for c in (C1, C2) if c[-1] <= ts]
    return chaos.Content(
        decisions=decisions,
        fills=fills,
        positions=positions,
        market_ts=ts,
        counterfactuals=counterfactuals,
    )


def test_the_comparison_accepts_a_prefix_and_catches_lost_duplicated_and_changed_rows() -> None:
    assert chaos.compare(content([D1], [F1], [P1], 200), REF) == []  # killed at 200
    assert chaos.compare(content([D1, D2], [F1, F2], [P1, P2], 300), REF) == []
    lost = chaos.compare(content([D1], [F1], [P1], 250), REF)  # 200's rows are before 250
    assert any("decisions lost" in p for p in lost) and any("fills lost" in p for p in lost)
    twice = chaos.compare(content([D1, D1], [F1, F1, F2], [P1, P2], 300), REF)
    assert any("decisions differ at row 1" in p for p in twice)
    assert any("fills" in p and "has only 2" in p for p in twice)
    price = (*F2[:3], "0.0171", *F2[4:])
    assert chaos.compare(content([D1, D2], [F1, price], [P1, P2], 300), REF) == [
        f"fills differ at row 1: {price} != {F2}"
    ]
    reopened = (*P1[:3], "open", *P1[4:])
    assert chaos.compare(content([D1], [F1], [reopened], 120), REF) == []  # closes at 150
    lost_close = chaos.compare(content([D1], [F1], [reopened], 200), REF)
    assert any("position 0's close (at 150, before 200) is lost" in p for p in lost_close)
    # A declined proposal's paper outcome is durable too: lost, or another, is caught.
    no_cf = chaos.compare(content([D1, D2], [F1, F2], [P1, P2], 300, [C1]), REF)
    assert any("counterfactuals lost" in p for p in no_cf)
    other_cf = (*C2[:5], -0.03, *C2[6:])
    assert chaos.compare(content([D1, D2], [F1, F2], [P1, P2], 300, [C1, other_cf]), REF) == [
        f"counterfactuals differ at row 1: {other_cf} != {C2}"
    ]
    other_exit = (*P1[:10], "0.0949", *P1[11:])  # a closed trade is compared whole
    assert any(
        "position 0 differs" in p
        for p in chaos.compare(content([D1], [F1], [other_exit], 200), REF)
    )


@pytest.mark.slow
def test_five_kills_during_a_replay_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    data = shared_data_dir()
    files = [data / name for name in chaos.DEFAULT_FILES]
    lines: list[str] = []
    result = chaos.run_chaos(5, seed=14, files=files, tmp=tmp_path, log=lines.append)
    print("\n".join(lines))
    assert result.problems == []
    assert result.kills == 5
    # The two uninterrupted runs, and at least one restart for most kills (a kill before
    # the store's first table leaves nothing to check).
    assert result.checks >= 4, result
    agree = re.match(r"two uninterrupted runs agree: (\d+) decisions, (\d+) fills", lines[0])
    assert agree is not None, lines
    assert int(agree[1]) >= 10 and int(agree[2]) >= 10, lines  # the replay trades
    assert list(tmp_path.iterdir()) == [], "the temp dir is left behind"
