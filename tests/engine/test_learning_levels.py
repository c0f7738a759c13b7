"""The learning agent's quick check (its levels) never changes what it records.

A plain model of the counterfactual rule (every followed trade checked on every
candle, its age counted one by one) runs beside the agent on generated candles
and proposals; both must close the same trades in the same order, so the
records are the same floats. ``skip`` over candles that ``levels`` shows close
nothing must not change them either.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.learning import MAX_FOLLOWED, MAX_HOLD_CANDLES, LearningAgent
from engine.models import AgentVote, Candle, Proposal, Side, stop_or_take_profit

SYMBOL = "BTC/USDT"


class Naive:
    """The rule as the docstring states it, with no shortcut."""

    def __init__(self) -> None:
        self.queue: list[list[object]] = []
        self.closed: list[tuple[str, float]] = []

    def follow(self, p: Proposal) -> None:
        if len(self.queue) == MAX_FOLLOWED:
            self.queue.pop(0)
        self.queue.append([p, 0])

    def on_candle(self, c: Candle) -> None:
        keep = []
        for item in self.queue:
            p, age = item
            assert isinstance(p, Proposal) and isinstance(age, int)
            age += 1
            hit = stop_or_take_profit(
                p.side, float(p.stop), float(p.take_profit), c.open, c.high, c.low
            )
            price = None if hit is None else hit[0]
            if price is None and age >= MAX_HOLD_CANDLES:
                price = c.close
            if price is None:
                keep.append([p, age])
                continue
            entry = float(p.entry)
            self.closed.append((p.id, (price - entry) / entry * p.side.sign))
        self.queue = keep


def _proposal(n: int, side: Side, entry: float, width: float) -> Proposal:
    e = Decimal(repr(round(entry, 2)))
    w = Decimal(repr(round(width, 2)))
    return Proposal(
        id=f"prp-{n}",
        symbol=SYMBOL,
        side=side,
        entry=e,
        stop=e - w * side.sign,
        take_profit=e + 2 * w * side.sign,
        confidence=0.5,
        size=Decimal(1),
        created_at=n,
        expires_at=n + 1,
        votes=(AgentVote(f"a{n % 3}", SYMBOL, side, 1.0, "x"),),
    )


steps = st.lists(
    st.one_of(
        st.tuples(st.just("candle"), st.floats(-3, 3), st.floats(0, 3)),
        st.tuples(st.just("follow"), st.sampled_from([Side.LONG, Side.SHORT]), st.floats(0.5, 4)),
        st.tuples(st.just("quiet"), st.integers(1, 800), st.just(0.0)),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(steps=steps)
def test_levels_and_skips_record_what_the_plain_rule_records(steps) -> None:
    agent, naive = LearningAgent(), Naive()
    price, ts, n = 100.0, 0, 0
    for kind, a, b in steps:
        if kind == "follow":
            n += 1
            p = _proposal(n, a, price, b)
            agent.follow(p)
            naive.follow(p)
        elif kind == "candle":
            o = price
            price = max(1.0, price + a)
            c = Candle(SYMBOL, ts, o, max(o, price) + b, max(0.5, min(o, price) - b), price, 1.0)
            ts += 1
            agent.on_candle(c)
            naive.on_candle(c)
        else:
            # A quiet stretch: flat candles at the price, skipped where the levels allow.
            c = Candle(SYMBOL, ts, price, price, price, price, 1.0)
            for _ in range(a):
                ts += 1
                levels = agent.levels(SYMBOL)
                quiet = levels is None or (
                    c.low > levels[0]
                    and c.high < levels[1]
                    and (levels[2] is None or levels[2] > 1)
                )
                if quiet:
                    agent.skip(SYMBOL, 1)
                else:
                    agent.on_candle(c)
                naive.on_candle(c)
    want: dict[tuple[str, str], list[float]] = {}
    for pid, ret in naive.closed:
        want.setdefault((f"a{int(pid.split('-')[1]) % 3}", SYMBOL), []).append(ret)
    for key, rets in want.items():
        rec = agent.records[key]
        assert rec.cf_trades == len(rets)
        assert rec.cf_sum_win == sum_in_order(r for r in rets if r > 0)
        assert rec.cf_sum_loss == sum_in_order(-r for r in rets if r <= 0)
    assert sum(r.cf_trades for k, r in agent.records.items() if k[1] == SYMBOL) == len(naive.closed)
    assert agent.followed == len(naive.queue)


def sum_in_order(values) -> float:
    total = 0.0
    for v in values:
        total += v
    return total
