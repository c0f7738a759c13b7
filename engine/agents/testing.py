"""Test helpers for agent authors: prove an agent's batch form gives its votes.

An agent may offer a batch form (``Agent.batch_votes``) that a backtest uses
instead of calling ``on_candle`` a million times. The batch form must never be
a second rule; :func:`assert_batch_matches` is the test that shows it is not.
Use it in your own tests, on real data and on generated series::

    from engine.agents.testing import assert_batch_matches, columns_from_candles

    def test_my_agent_batch_form_matches() -> None:
        columns = columns_from_candles(my_candles)  # or engine.backtest.data.load_columns
        assert_batch_matches(MyAgent, columns, period=14)

Generated series are worth the trouble: flat stretches and exact ties are
where a vectorised rule and its incremental twin part ways.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from engine.agents.base import Agent, CandleColumns
from engine.models import Candle, Side

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["ArrayColumns", "assert_batch_matches", "columns_from_candles"]

# Mismatches listed in a failure message; the rest are counted.
_SHOWN = 5


@dataclass(frozen=True, slots=True)
class ArrayColumns:
    """A plain :class:`~engine.agents.base.CandleColumns`: six arrays and a symbol."""

    ts: NDArray[np.int64]
    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    volume: NDArray[np.float64]
    symbol: str = "TEST/USDT"


def columns_from_candles(candles: Iterable[Candle]) -> ArrayColumns:
    """Candles of one symbol, in time order, as columns (the symbol of the first)."""
    import numpy as np  # imported when used, as the agents do

    rows = list(candles)
    if len({c.symbol for c in rows}) > 1:
        raise ValueError("columns_from_candles: the candles are of more than one symbol")

    def floats(field: str) -> NDArray[np.float64]:
        return np.array([getattr(c, field) for c in rows], dtype=np.float64)

    return ArrayColumns(
        ts=np.array([c.ts for c in rows], dtype=np.int64),
        open=floats("open"),
        high=floats("high"),
        low=floats("low"),
        close=floats("close"),
        volume=floats("volume"),
        symbol=rows[0].symbol if rows else "TEST/USDT",
    )


def assert_batch_matches(agent_cls: type[Agent], columns: CandleColumns, **settings: Any) -> None:
    """Assert that ``agent_cls``'s batch form gives the votes of its ``on_candle``.

    Builds two agents with ``settings`` (keyword arguments of the agent's
    ``__init__``): one is fed ``columns`` candle by candle through
    ``on_candle``, as the engine feeds it; the other's ``batch_votes`` computes
    the whole series at once. At every candle index the vote direction (+1
    LONG, -1 SHORT, 0 none) and the strength must be identical (==, not
    approximately: the same rule gives the same floats), and where the batch
    form writes rationales (``batch_rationale``), the rationale too.

    The symbol is ``columns.symbol`` if the columns have one. Where the
    timestamps jump by more than their smallest step, the incremental agent
    hears ``on_gap(symbol, missing)`` first, as it would from a feed, so an
    agent that resets on gaps must find them in ``columns.ts`` in its batch
    form too.

    Raises ``AssertionError`` listing the first mismatches (index, timestamp,
    both votes), or when the agent has no batch form.
    """
    symbol = str(getattr(columns, "symbol", "TEST/USDT"))
    incremental = agent_cls(symbol, **settings)
    batched = agent_cls(symbol, **settings)
    votes = batched.batch_votes(columns)
    if votes is None:
        raise AssertionError(f"{agent_cls.__qualname__} has no batch form (batch_votes gave None)")
    ts, close = columns.ts, columns.close
    n = len(close)
    if len(votes) != n:
        raise AssertionError(f"batch_votes gave {len(votes)} entries for {n} candles")
    steps = [int(b) - int(a) for a, b in pairwise(ts)]
    step = min((s for s in steps if s > 0), default=0)
    with_rationale = type(batched).batch_rationale is not Agent.batch_rationale
    # A backtest keeps the detail only where a rationale may read it: so does the check.
    kept = votes.sparse()
    mismatches: list[str] = []
    for i in range(n):
        if i and step and steps[i - 1] > step:
            incremental.on_gap(symbol, steps[i - 1] // step - 1)
        candle = Candle(
            symbol,
            int(ts[i]),
            float(columns.open[i]),
            float(columns.high[i]),
            float(columns.low[i]),
            float(close[i]),
            float(columns.volume[i]),
        )
        vote = incremental.on_candle(candle)
        want = (0, 0.0) if vote is None else (vote.direction.sign, vote.strength)
        got = (int(votes.direction[i]), float(votes.strength[i]))
        problem = ""
        if got != want:
            problem = f"on_candle {_show(*want)}, batch {_show(*got)}"
        elif vote is not None and with_rationale:
            text = batched.batch_rationale(kept, i)
            if text != vote.rationale:
                problem = f"rationale {vote.rationale!r} from on_candle, {text!r} from batch"
        if problem:
            mismatches.append(f"candle {i} (ts {int(ts[i])}): {problem}")
    if mismatches:
        shown = "; ".join(mismatches[:_SHOWN])
        more = f"; and {len(mismatches) - _SHOWN} more" if len(mismatches) > _SHOWN else ""
        raise AssertionError(
            f"{agent_cls.__qualname__}{settings or ''}: the batch form differs from on_candle "
            f"on {len(mismatches)} of {n} candles: {shown}{more}"
        )


def _show(direction: int, strength: float) -> str:
    if direction == 0:
        return "no vote" if strength == 0.0 else f"no vote with strength {strength!r}"
    if direction not in (1, -1):
        return f"direction {direction} (not +1, -1 or 0)"
    side = Side.LONG if direction > 0 else Side.SHORT
    return f"{side.value} {strength!r}"
