"""A backtest's results (engine/backtest/metrics.py).

The hand-checked examples compute each figure here from its definition, with the
standard library (``statistics``, ``math``), never from the implementation's output.
The hypothesis properties hold for any curve and any trades.
"""

from __future__ import annotations

import itertools
import math
import statistics
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.backtest.metrics import (
    UNATTRIBUTED,
    WIDTH,
    ClosedTrade,
    Results,
    compute_results,
    format_duration,
    format_results,
)
from engine.models import Side
from engine.timeframes import TIMEFRAMES

MIN = 60_000
DAY = 24 * 60 * MIN
D = Decimal


def trade(
    net: str | int,
    *,
    fees: str | int = 0,
    symbol: str = "BTC/USDT",
    side: Side = Side.LONG,
    entry: int = 0,
    exit: int = MIN,
    agents: tuple[str, ...] = ("sma_cross",),
) -> ClosedTrade:
    """A trade whose net pnl (after ``fees``) is ``net``."""
    pnl = D(net) + D(fees)
    return ClosedTrade(
        symbol=symbol,
        side=side,
        qty=D(1),
        entry_ts=entry,
        exit_ts=exit,
        entry_price=D(100),
        exit_price=D(100) + pnl * side.sign,
        realized_pnl=pnl,
        fees=D(fees),
        agents=agents,
    )


def curve(values: list[float], step: int = MIN) -> tuple[list[int], list[float]]:
    return [i * step for i in range(len(values))], values


# ---------------------------------------------------------------- hand-checked examples


def test_daily_curve_figures_by_hand() -> None:
    ts, eq = curve([100.0, 110.0, 99.0, 121.0], step=DAY)
    r = compute_results(ts, [D(str(v)) for v in eq], [], timeframe="1d")
    rets = [0.1, -0.1, 121 / 99 - 1]
    assert r.total_return == pytest.approx(0.21)
    assert r.annualised_return == pytest.approx(1.21 ** (365 / 3) - 1)
    assert r.volatility == pytest.approx(statistics.stdev(rets) * math.sqrt(365))
    assert r.sharpe == pytest.approx(
        statistics.mean(rets) / statistics.stdev(rets) * math.sqrt(365)
    )
    downside = math.sqrt((0.1**2) / 3)
    assert r.sortino == pytest.approx(statistics.mean(rets) / downside * math.sqrt(365))
    # Peak 110 on day 1, trough 99 on day 2 (a 10 % fall), back above 110 on day 3.
    assert r.max_drawdown == pytest.approx(0.1)
    assert r.max_drawdown_duration_ms == 2 * DAY
    assert r.longest_drawdown_ms == 2 * DAY
    assert r.start_equity == D(100) and r.end_equity == D(121)
    assert (r.start_ts, r.end_ts, r.candles, r.timeframe_ms) == (0, 3 * DAY, 4, DAY)
    assert r.elapsed_ms == 3 * DAY


def test_annualising_follows_the_timeframe() -> None:
    """Same returns, hourly candles: the per-candle figures scale by sqrt(24 * 365)."""
    ts, eq = curve([100.0, 110.0, 99.0, 121.0], step=60 * MIN)
    r = compute_results(ts, eq, [], timeframe="1h")
    rets = [0.1, -0.1, 121 / 99 - 1]
    assert r.volatility == pytest.approx(statistics.stdev(rets) * math.sqrt(24 * 365))
    assert r.annualised_return == pytest.approx(1.21 ** (24 * 365 / 3) - 1)
    fast = compute_results(*curve([100.0, 110.0, 99.0, 121.0]), [], timeframe="1m")
    assert fast.annualised_return == math.inf  # 21 % every 3 minutes: past float range
    r2 = compute_results(*curve([100.0, 100.5], step=60 * MIN), [], timeframe=60 * MIN)
    assert r2.annualised_return == pytest.approx(1.005 ** (24 * 365) - 1)


def test_a_drawdown_that_never_recovers_lasts_to_the_end() -> None:
    ts, eq = curve([100.0, 120.0, 90.0, 100.0, 60.0, 110.0])
    r = compute_results(ts, eq, [], timeframe="1m")
    assert r.max_drawdown == pytest.approx(0.5)  # 120 -> 60
    assert r.max_drawdown_duration_ms == 4 * MIN  # from the peak (point 1) to the end (point 5)
    assert r.longest_drawdown_ms == 4 * MIN


def test_the_deepest_drawdown_is_not_always_the_longest() -> None:
    ts, eq = curve([100.0, 50.0, 100.0, 99.0, 98.0, 97.0, 96.0])
    r = compute_results(ts, eq, [], timeframe="1m")
    assert r.max_drawdown == pytest.approx(0.5)
    assert r.max_drawdown_duration_ms == 2 * MIN  # peak at 0, back at 100 on point 2
    assert r.longest_drawdown_ms == 4 * MIN  # peak at 2, still under at point 6


def test_ruin_is_a_full_drawdown() -> None:
    r = compute_results(*curve([100.0, 50.0, 0.0, 0.0]), [], timeframe="1m")
    assert r.total_return == -1.0
    assert r.annualised_return == -1.0
    assert r.max_drawdown == 1.0
    assert r.max_drawdown_duration_ms == 3 * MIN


def test_trade_figures_by_hand() -> None:
    trades = [
        trade(10, fees=1),
        trade(20, fees="0.5", symbol="ETH/USDT", agents=("momentum", "sma_cross")),
        trade(-5, fees=1, side=Side.SHORT),
        trade(-15, fees="0.25", symbol="ETH/USDT", agents=()),
        trade(0, fees=1, agents=("momentum", "momentum")),  # break-even after fees
    ]
    r = compute_results(*curve([1000.0, 1010.0]), trades, timeframe="1m")
    assert (r.trades, r.wins, r.losses) == (5, 2, 2)
    assert r.win_rate == pytest.approx(2 / 5)
    assert r.gross_profit == D(30) and r.gross_loss == D(20)
    assert r.profit_factor == pytest.approx(1.5)
    assert r.net_pnl == D(10)
    assert r.expectancy == D(2)
    assert r.fees == D("3.75")
    by_agent = {b.name: b for b in r.by_agent}
    assert [b.name for b in r.by_agent] == sorted(by_agent)
    # Credited in full to each agent that voted; duplicates count once.
    assert (by_agent["sma_cross"].trades, by_agent["sma_cross"].net_pnl) == (3, D(25))
    assert (by_agent["momentum"].trades, by_agent["momentum"].net_pnl) == (2, D(20))
    assert by_agent["momentum"].win_rate == pytest.approx(0.5)
    assert by_agent["momentum"].profit_factor == math.inf
    assert (by_agent[UNATTRIBUTED].trades, by_agent[UNATTRIBUTED].net_pnl) == (1, D(-15))
    assert by_agent[UNATTRIBUTED].profit_factor == 0.0
    by_symbol = {b.name: b for b in r.by_symbol}
    assert by_symbol["BTC/USDT"].net_pnl == D(5) and by_symbol["BTC/USDT"].trades == 3
    assert by_symbol["BTC/USDT"].fees == D(3)
    assert by_symbol["ETH/USDT"].net_pnl == D(5) and by_symbol["ETH/USDT"].trades == 2
    assert by_symbol["ETH/USDT"].profit_factor == pytest.approx(20 / 15)


@pytest.mark.parametrize(
    ("nets", "expected"),
    [
        ([], None),  # no trades
        (["0", "0"], None),  # neither winners nor losers
        (["5", "0"], math.inf),  # winners, no losers
        (["-5"], 0.0),  # losers, no winners
        (["6", "-4"], 1.5),
    ],
)
def test_profit_factor_rules(nets: list[str], expected: float | None) -> None:
    r = compute_results(*curve([1.0, 1.0]), [trade(n) for n in nets], timeframe="1m")
    assert r.profit_factor == expected
    if not nets:
        assert r.win_rate is None and r.expectancy is None
        assert r.by_agent == () and r.by_symbol == ()


def test_exposure_is_the_union_of_open_spans_clipped_to_the_curve() -> None:
    trades = [
        trade(1, entry=10 * MIN, exit=30 * MIN),
        trade(1, entry=20 * MIN, exit=40 * MIN, symbol="ETH/USDT"),  # overlaps the first
        trade(1, entry=90 * MIN, exit=150 * MIN),  # runs past the curve's end
        trade(1, entry=200 * MIN, exit=210 * MIN),  # wholly outside
    ]
    ts = [i * MIN for i in range(101)]
    r = compute_results(ts, [1.0] * 101, trades, timeframe="1m")
    assert r.exposure == pytest.approx((30 + 10) / 100)


def test_one_point_has_no_time_to_annualise() -> None:
    r = compute_results([5], [D(100)], [], timeframe="1m")
    assert r.total_return == 0.0
    assert r.annualised_return is None and r.exposure is None
    assert r.volatility is None and r.sharpe is None and r.sortino is None
    assert r.max_drawdown == 0.0 and r.max_drawdown_duration_ms == 0
    assert "n/a" in format_results(r)


def test_flat_returns_have_no_sharpe_and_no_sortino() -> None:
    r = compute_results(*curve([100.0 * 1.01**i for i in range(20)]), [], timeframe="1m")
    assert r.sharpe is None  # a constant return, to float rounding
    assert r.sortino is None  # nothing below 0
    assert r.volatility == pytest.approx(0.0, abs=1e-9)


def test_decimal_list_and_float_array_give_the_same_results() -> None:
    values = ["100", "101.5", "99.25", "103", "102"]
    a = compute_results(*curve([float(v) for v in values]), [], timeframe="1m")
    b = compute_results(
        np.arange(5, dtype=np.int64) * MIN, [D(v) for v in values], [], timeframe="1m"
    )
    c = compute_results(
        [i * MIN for i in range(5)], np.array([float(v) for v in values]), [], timeframe="1m"
    )
    d = compute_results(
        [i * MIN for i in range(5)], [np.float64(v) for v in values], [], timeframe="1m"
    )
    assert a == b == c == d
    assert b.start_equity == D("100") and d.end_equity == D("102")


@pytest.mark.parametrize(
    ("ts", "equity", "message"),
    [
        ([], [], "empty"),
        ([0, MIN], [1.0], "2 timestamps but 1"),
        ([0, MIN, MIN], [1.0, 1.0, 1.0], "timestamp 60000 at point 2"),
        ([MIN, 0], [1.0, 1.0], "is not after"),
        ([0, MIN], [0.0, 1.0], "start above 0"),
        ([0, MIN], [1.0, -0.5], "below 0 at ts 60000"),
        ([0, MIN], [1.0, math.nan], "finite"),
    ],
)
def test_a_bad_curve_is_refused(ts: list[int], equity: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_results(ts, equity, [], timeframe="1m")


def test_bad_timeframes_and_trades_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown timeframe"):
        compute_results([0], [1.0], [], timeframe="7m")
    with pytest.raises(ValueError, match="above 0 ms"):
        compute_results([0], [1.0], [], timeframe=0)
    with pytest.raises(ValueError, match="before entry_ts"):
        trade(1, entry=MIN, exit=0)
    with pytest.raises(ValueError, match="qty must be above 0"):
        ClosedTrade("X/Y", Side.LONG, D(0), 0, 1, D(1), D(1), D(0), D(0))


def test_the_table_by_hand() -> None:
    trades = [trade(10, fees=1), trade(-5, fees=1, symbol="ETH/USDT", agents=())]
    ts, eq = curve([100_000.0, 99_000.0, 100_005.0], step=DAY)
    text = format_results(compute_results(ts, eq, trades, timeframe="1d"))
    lines = text.splitlines()
    assert all(len(line) <= WIDTH for line in lines)
    assert lines[0] == "Backtest 1970-01-01 00:00 to 1970-01-03 00:00 UTC (2d)"
    assert lines[1] == "3 candles of 1d; equity 100,000.00 -> 100,005.00"
    assert "+0.01 %" in text  # total return 5 / 100,000
    assert "1.00 %" in text  # max drawdown 1,000 / 100,000
    assert "50.00 %" in text  # win rate
    assert "2.00" in text  # profit factor 10 / 5, and the expectancy (10 - 5) / 2 = 2.50
    assert "2.50" in text
    by_agent = text.split("By agent")[1].split("By symbol")[0]
    assert UNATTRIBUTED in by_agent and "sma_cross" in by_agent
    assert "ETH/USDT" in text.split("By symbol")[1]


def test_durations_read_plainly() -> None:
    assert format_duration(0) == "0m"
    assert format_duration(59_999) == "0m"
    assert format_duration(5 * MIN) == "5m"
    assert format_duration(125 * MIN) == "2h 5m"
    assert format_duration(DAY) == "1d"
    assert format_duration(3 * DAY + 4 * 60 * MIN + 5 * MIN) == "3d 4h 5m"


# ---------------------------------------------------------------- properties

equity_values = st.lists(
    st.floats(min_value=1e-3, max_value=1e9, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=60,
)
timeframes = st.sampled_from(["1m", "5m", "1h", "1d"])


@settings(max_examples=200, deadline=None)
@given(equity_values, timeframes)
def test_drawdown_is_a_fraction_and_lasts_within_the_curve(values: list[float], tf: str) -> None:
    ts, eq = curve(values)
    r = compute_results(ts, eq, [], timeframe=tf)
    assert 0.0 <= r.max_drawdown <= 1.0
    assert 0 <= r.max_drawdown_duration_ms <= r.longest_drawdown_ms <= r.elapsed_ms
    assert (r.max_drawdown == 0.0) == (r.longest_drawdown_ms == 0)
    # Independently: the deepest fall below a running peak.
    peak, deepest = values[0], 0.0
    for v in values:
        peak = max(peak, v)
        deepest = max(deepest, (peak - v) / peak)
    assert r.max_drawdown == pytest.approx(deepest)


@settings(max_examples=100, deadline=None)
@given(equity_values)
def test_a_curve_that_never_falls_has_no_drawdown(values: list[float]) -> None:
    ts, eq = curve(sorted(values))
    r = compute_results(ts, eq, [], timeframe="1m")
    assert r.max_drawdown == 0.0
    assert r.max_drawdown_duration_ms == 0 and r.longest_drawdown_ms == 0
    assert r.total_return >= 0.0
    assert r.sortino is None  # no return below 0


@settings(max_examples=200, deadline=None)
@given(equity_values, st.integers(min_value=-20, max_value=20), timeframes)
def test_scaling_equity_by_a_power_of_two_changes_no_ratio(
    values: list[float], k: int, tf: str
) -> None:
    ts, eq = curve(values)
    a = compute_results(ts, eq, [], timeframe=tf)
    b = compute_results(ts, [v * 2.0**k for v in eq], [], timeframe=tf)
    for name in (
        "total_return",
        "annualised_return",
        "volatility",
        "sharpe",
        "sortino",
        "max_drawdown",
        "max_drawdown_duration_ms",
        "longest_drawdown_ms",
    ):
        assert getattr(a, name) == getattr(b, name), name


@settings(max_examples=200, deadline=None)
@given(equity_values, st.floats(min_value=1e-3, max_value=1e3), timeframes)
def test_scaling_equity_by_any_constant_changes_no_ratio_beyond_rounding(
    values: list[float], c: float, tf: str
) -> None:
    ts, eq = curve(values)
    a = compute_results(ts, eq, [], timeframe=tf)
    b = compute_results(ts, [v * c for v in eq], [], timeframe=tf)
    assert b.total_return == pytest.approx(a.total_return, rel=1e-9, abs=1e-12)
    assert b.max_drawdown == pytest.approx(a.max_drawdown, rel=1e-9, abs=1e-12)
    if a.volatility is not None and a.volatility > 1e-6:
        assert b.volatility == pytest.approx(a.volatility, rel=1e-6)
        if a.sharpe is not None and b.sharpe is not None:
            assert b.sharpe == pytest.approx(a.sharpe, rel=1e-6, abs=1e-9)


money = st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False)
agent_names = st.lists(st.sampled_from(["momentum", "sma_cross", "price_action"]), max_size=3)
trade_lists = st.lists(
    st.builds(
        lambda pnl, fees, sym, agents, entry, length: ClosedTrade(
            symbol=sym,
            side=Side.LONG,
            qty=D(1),
            entry_ts=entry * MIN,
            exit_ts=(entry + length) * MIN,
            entry_price=D(100),
            exit_price=D(100) + pnl,
            realized_pnl=pnl,
            fees=fees,
            agents=tuple(agents),
        ),
        money,
        st.decimals(min_value=0, max_value=10, places=2),
        st.sampled_from(["BTC/USDT", "ETH/USDT", "ADA/BTC"]),
        agent_names,
        st.integers(min_value=-10, max_value=100),
        st.integers(min_value=0, max_value=50),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(trade_lists)
def test_trade_figures_hold_for_any_trades(trades: list[ClosedTrade]) -> None:
    ts = [i * MIN for i in range(61)]
    r = compute_results(ts, [1000.0] * 61, trades, timeframe="1m")
    nets = [t.realized_pnl - t.fees for t in trades]
    gross_win = sum((n for n in nets if n > 0), D(0))
    gross_loss = -sum((n for n in nets if n < 0), D(0))
    assert r.trades == len(trades)
    assert r.net_pnl == sum(nets, D(0))
    assert r.fees == sum((t.fees for t in trades), D(0))
    if trades:
        assert r.win_rate is not None and 0.0 <= r.win_rate <= 1.0
        assert r.expectancy == sum(nets, D(0)) / len(trades)
    if gross_loss > 0:
        assert r.profit_factor == pytest.approx(float(gross_win / gross_loss))
    assert r.exposure is not None and 0.0 <= r.exposure <= 1.0
    # Per symbol adds up; per agent counts every trade the agent voted for.
    assert sum(b.trades for b in r.by_symbol) == r.trades
    assert sum((b.net_pnl for b in r.by_symbol), D(0)) == r.net_pnl
    for b in r.by_agent:
        backed = [
            t for t in trades if (b.name in t.agents) or (b.name == UNATTRIBUTED and not t.agents)
        ]
        assert b.trades == len(backed)
        assert b.net_pnl == sum((t.net_pnl for t in backed), D(0))


@settings(max_examples=100, deadline=None)
@given(equity_values, trade_lists, st.text(min_size=1, max_size=60))
def test_the_table_fits_80_columns(
    values: list[float], trades: list[ClosedTrade], name: str
) -> None:
    assume("\n" not in name and "\r" not in name)
    trades = [*trades, trade(10**12, symbol=name, agents=(name * 2,))]
    ts, eq = curve(values, step=DAY)
    r = compute_results(ts, eq, trades, timeframe="1d")
    assert isinstance(r, Results)
    assert all(len(line) <= WIDTH for line in format_results(r).splitlines())


@settings(max_examples=200, deadline=None)
@given(equity_values, timeframes)
def test_risk_figures_match_their_definitions(values: list[float], tf: str) -> None:
    """Volatility, Sharpe and Sortino against plain-Python definitions, any timeframe."""
    assume(len(values) >= 3)
    ts, eq = curve(values, step=TIMEFRAMES[tf])
    r = compute_results(ts, eq, [], timeframe=tf)
    per_year = {"1m": 525_600, "5m": 105_120, "1h": 8_760, "1d": 365}[tf]
    rets = [b / a - 1 for a, b in itertools.pairwise(values)]
    sd = statistics.stdev(rets)
    assert r.volatility == pytest.approx(sd * math.sqrt(per_year), rel=1e-6, abs=1e-9)
    mean = statistics.mean(rets)
    if r.sharpe is not None:
        assert r.sharpe == pytest.approx(mean / sd * math.sqrt(per_year), rel=1e-6)
        assert (r.sharpe > 0) == (mean > 0) or mean == 0
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in rets) / len(rets))
    if downside == 0:
        assert r.sortino is None
    else:
        assert r.sortino == pytest.approx(mean / downside * math.sqrt(per_year), rel=1e-6)
    elapsed_years = (len(values) - 1) * TIMEFRAMES[tf] / (365 * DAY)
    growth = values[-1] / values[0]
    try:
        expected = growth ** (1 / elapsed_years) - 1
    except OverflowError:
        expected = math.inf
    assert r.annualised_return == pytest.approx(expected, rel=1e-6)
