"""The human edge's sums, as properties: totals are the sums of their rows."""

from __future__ import annotations

import math
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from engine.backtest.metrics import UNATTRIBUTED
from reports.model import OVERALL, EdgeFigure, Outcome, human_edge

AGENTS = ("momentum", "price_action", "sma_cross")

money = st.decimals(
    min_value=Decimal("-100000"), max_value=Decimal("100000"), places=8, allow_nan=False
)
ret = st.floats(min_value=-1.0, max_value=5.0, allow_nan=False)


@st.composite
def outcomes(draw: st.DrawFn) -> Outcome:
    status = draw(st.sampled_from(["approved", "rejected", "expired"]))
    agents = tuple(draw(st.lists(st.sampled_from(AGENTS), max_size=3, unique=True)))
    pnl = draw(money) if status == "approved" else None
    return Outcome(status, agents, draw(ret), pnl)


def _check(fig: EdgeFigure, group: list[Outcome], money_too: bool) -> None:
    assert fig.count == len(group)
    assert fig.wins == sum(1 for o in group if o.ret > 0)
    assert math.isclose(fig.total_return, math.fsum(o.ret for o in group), abs_tol=1e-9)
    if group:
        assert fig.mean_return is not None
        assert math.isclose(fig.mean_return * len(group), fig.total_return, abs_tol=1e-9)
    else:
        assert fig.mean_return is None
    if money_too:
        assert fig.net_pnl == sum((o.net_pnl or Decimal(0) for o in group), Decimal(0))
    else:
        assert fig.net_pnl is None


@given(st.lists(outcomes(), max_size=60))
def test_overall_figures_are_the_sums_of_the_outcomes(rows: list[Outcome]) -> None:
    edge = human_edge(rows)
    assert edge.overall.name == OVERALL
    for status in ("approved", "rejected", "expired"):
        group = [o for o in rows if o.status == status]
        _check(getattr(edge.overall, status), group, status == "approved")
    total = sum(getattr(edge.overall, s).count for s in ("approved", "rejected", "expired"))
    assert total == len(rows)


@given(st.lists(outcomes(), max_size=60))
def test_each_agents_row_sums_the_outcomes_it_voted_for(rows: list[Outcome]) -> None:
    edge = human_edge(rows)
    names = [r.name for r in edge.by_agent]
    assert names == sorted(names)
    for row in edge.by_agent:
        mine = [
            o for o in rows if row.name in o.agents or (not o.agents and row.name == UNATTRIBUTED)
        ]
        assert mine, row.name
        for status in ("approved", "rejected", "expired"):
            group = [o for o in mine if o.status == status]
            _check(getattr(row, status), group, status == "approved")


@given(st.lists(outcomes(), max_size=60))
def test_with_one_agent_per_outcome_the_agents_add_up_to_the_overall(rows: list[Outcome]) -> None:
    single = [Outcome(o.status, o.agents[:1], o.ret, o.net_pnl) for o in rows]
    edge = human_edge(single)
    for status in ("approved", "rejected", "expired"):
        figs = [getattr(r, status) for r in edge.by_agent]
        overall = getattr(edge.overall, status)
        assert sum(f.count for f in figs) == overall.count
        assert math.isclose(
            math.fsum(f.total_return for f in figs), overall.total_return, abs_tol=1e-9
        )
        if status == "approved":
            assert sum((f.net_pnl or Decimal(0) for f in figs), Decimal(0)) == overall.net_pnl
