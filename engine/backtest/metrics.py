"""A backtest's results, from its equity curve and its closed trades.

Pure functions and frozen records, no I/O: :func:`compute_results` takes the equity
curve (one point per candle: its timestamp in ms and the account's equity) and the
closed trades, and returns :class:`Results`; :func:`format_results` draws them as a
plain-text table for the CLI, at most 80 columns wide.

Money stays Decimal (profit, fees, expectancy, equity); ratios are floats. The rules:

- **Returns** are per candle, ``e[i] / e[i-1] - 1`` (0 after the equity reached 0).
  The total return is ``last / first - 1``.
- **Annualising** counts market time, not candles: crypto markets never close, so a
  year is 365 days of 24 hours. The annualised return compounds the total return over
  the elapsed time ``(1 + total) ** (year / elapsed) - 1`` (``inf`` past float range);
  the volatility, Sharpe and Sortino scale per-candle figures by
  ``sqrt(year / timeframe)``. With a single point (no elapsed time) they are ``None``.
- **Volatility** is the sample standard deviation (``ddof=1``) of the per-candle
  returns, annualised. **Sharpe** is their mean over that deviation (risk-free rate 0),
  annualised; ``None`` with fewer than two returns or when the returns do not vary
  (all equal, to float rounding). **Sortino** is the mean over the downside deviation
  ``sqrt(mean(min(r, 0) ** 2))`` over all returns (target 0), annualised; ``None``
  when no return is negative.
- **Drawdown** at a point is ``(peak - equity) / peak``, the peak being the highest
  equity so far; the maximum is in ``[0, 1]``. A drawdown lasts from its peak's
  timestamp to the first point whose equity is back at or above that peak, or to the
  last point when it never recovers. ``max_drawdown_duration_ms`` is the duration of
  the deepest drawdown (the first, on a tie); ``longest_drawdown_ms`` that of the
  longest one. A curve that never falls has 0 for all three.
- **A trade's result** is its net pnl: realized pnl (before fees, as the portfolio
  records it) minus its fees. It wins when that is above 0 and loses when below;
  a trade at exactly 0 is neither. **Win rate** = wins / trades (``None`` without
  trades). **Profit factor** = gross profit / gross loss (sums of the winners' and
  the losers' net pnl, the latter as a positive amount): ``inf`` when there are
  winners and no losers, ``None`` when there are neither (no trades, or only trades
  at exactly 0). **Expectancy** is the mean net pnl per trade (``None`` without
  trades).
- **Exposure** is the fraction of the curve's time span during which at least one
  position was open (the union of the trades' ``[entry_ts, exit_ts)`` spans, across
  symbols, clipped to the curve). A position still open at the end counts only if the
  caller passes it as a trade closed at the last mark.
- **Attribution**: each trade's net pnl is credited *in full* to every agent that
  voted for its side (``ClosedTrade.agents``), so the agents' sums can exceed the
  total when agents agreed; a trade no agent voted for is listed under
  :data:`UNATTRIBUTED`. Per-symbol results split the trades by symbol and do add up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from engine.models import Side, to_decimal
from engine.timeframes import DAY_MS, timeframe_ms

#: A year of market time in ms: crypto markets trade every day of the year.
YEAR_MS = 365 * DAY_MS

#: The attribution key of trades that no agent voted for.
UNATTRIBUTED = "(none)"

#: Widest line :func:`format_results` draws.
WIDTH = 80

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """One round trip: a position opened at ``entry_ts`` and closed at ``exit_ts``.

    ``realized_pnl`` is before fees; ``fees`` are all the fees of its fills (entry
    and exit). ``agents`` are the agents that voted for its side.
    """

    symbol: str
    side: Side
    qty: Decimal
    entry_ts: int
    exit_ts: int
    entry_price: Decimal
    exit_price: Decimal
    realized_pnl: Decimal
    fees: Decimal
    agents: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.exit_ts < self.entry_ts:
            raise ValueError(
                f"trade on {self.symbol}: exit_ts {self.exit_ts} is before entry_ts {self.entry_ts}"
            )
        if self.qty <= 0:
            raise ValueError(f"trade on {self.symbol}: qty must be above 0, got {self.qty}")

    @property
    def net_pnl(self) -> Decimal:
        """Realized pnl after fees: what the trade added to equity."""
        return self.realized_pnl - self.fees


@dataclass(frozen=True, slots=True)
class Breakdown:
    """The trades of one agent or one symbol (see the module docstring's rules)."""

    name: str
    trades: int
    wins: int
    losses: int
    win_rate: float | None
    profit_factor: float | None
    net_pnl: Decimal
    fees: Decimal


@dataclass(frozen=True, slots=True)
class Results:
    """Everything a backtest reports; the module docstring gives each rule."""

    start_ts: int
    end_ts: int
    timeframe_ms: int
    candles: int
    start_equity: Decimal
    end_equity: Decimal
    total_return: float
    annualised_return: float | None
    volatility: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float
    max_drawdown_duration_ms: int
    longest_drawdown_ms: int
    trades: int
    wins: int
    losses: int
    win_rate: float | None
    profit_factor: float | None
    expectancy: Decimal | None
    gross_profit: Decimal
    gross_loss: Decimal
    net_pnl: Decimal
    fees: Decimal
    exposure: float | None
    by_agent: tuple[Breakdown, ...]
    by_symbol: tuple[Breakdown, ...]

    @property
    def elapsed_ms(self) -> int:
        """Market time from the first point to the last."""
        return self.end_ts - self.start_ts


# ---------------------------------------------------------------- equity-curve figures


def per_candle_returns(equity: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``e[i] / e[i-1] - 1`` for each point after the first; 0 where ``e[i-1]`` is 0."""
    prev = equity[:-1]
    out = np.zeros(len(prev), dtype=np.float64)
    np.divide(equity[1:], prev, out=out, where=prev != 0)
    out -= 1.0
    out[prev == 0] = 0.0
    return out


def annualised_return(total_return: float, elapsed_ms: int) -> float | None:
    """``(1 + total) ** (year / elapsed) - 1``; ``None`` without elapsed time."""
    if elapsed_ms <= 0:
        return None
    growth = 1.0 + total_return
    if growth <= 0.0:
        return -1.0
    try:
        return float(growth ** (YEAR_MS / elapsed_ms)) - 1.0
    except OverflowError:
        return math.inf


def _do_not_vary(returns: npt.NDArray[np.float64]) -> bool:
    spread = float(returns.max() - returns.min())
    return spread <= 1e-12 * float(np.abs(returns).max())


def volatility(returns: npt.NDArray[np.float64], periods_per_year: float) -> float | None:
    """Annualised sample standard deviation of per-candle returns."""
    if len(returns) < 2:
        return None
    return float(np.std(returns, ddof=1)) * math.sqrt(periods_per_year)


def sharpe(returns: npt.NDArray[np.float64], periods_per_year: float) -> float | None:
    """Annualised mean over standard deviation of the returns, risk-free rate 0."""
    if len(returns) < 2 or _do_not_vary(returns):
        return None
    sd = float(np.std(returns, ddof=1))
    return float(np.mean(returns)) / sd * math.sqrt(periods_per_year)


def sortino(returns: npt.NDArray[np.float64], periods_per_year: float) -> float | None:
    """Annualised mean over downside deviation (target 0); ``None`` with no negative return."""
    if len(returns) == 0:
        return None
    downside = np.minimum(returns, 0.0)
    dd = math.sqrt(float(np.mean(downside * downside)))
    if dd == 0.0:
        return None
    return float(np.mean(returns)) / dd * math.sqrt(periods_per_year)


@dataclass(frozen=True, slots=True)
class Drawdown:
    """The deepest drawdown and the longest one of a curve."""

    max_drawdown: float
    peak_ts: int | None
    duration_ms: int
    longest_ms: int


def drawdown(ts: npt.NDArray[np.int64], equity: npt.NDArray[np.float64]) -> Drawdown:
    """Maximum drawdown (fraction of its peak), its duration, and the longest drawdown."""
    peak = np.maximum.accumulate(equity)
    depth = (peak - equity) / peak
    under = equity < peak
    if not under.any():
        return Drawdown(0.0, None, 0, 0)
    # Each underwater run starts after a peak point (index 0 is never underwater) and
    # ends at the first point back at the peak, or at the last point.
    edges = np.diff(under.astype(np.int8))
    starts = np.flatnonzero(edges == 1) + 1
    ends = np.flatnonzero(edges == -1) + 1
    if len(ends) < len(starts):
        ends = np.append(ends, len(equity) - 1)
    durations = ts[ends] - ts[starts - 1]
    deepest = int(np.argmax(depth))
    run = int(np.searchsorted(starts, deepest, side="right")) - 1
    return Drawdown(
        max_drawdown=float(depth[deepest]),
        peak_ts=int(ts[starts[run] - 1]),
        duration_ms=int(durations[run]),
        longest_ms=int(durations.max()),
    )


def exposure(trades: Iterable[ClosedTrade], start_ts: int, end_ts: int) -> float | None:
    """Fraction of ``[start_ts, end_ts)`` with at least one position open."""
    if end_ts <= start_ts:
        return None
    spans = sorted(
        (max(t.entry_ts, start_ts), min(t.exit_ts, end_ts))
        for t in trades
        if t.exit_ts > start_ts and t.entry_ts < end_ts
    )
    covered = 0
    cur_start, cur_end = None, None
    for a, b in spans:
        if cur_end is None or a > cur_end:
            if cur_start is not None and cur_end is not None:
                covered += cur_end - cur_start
            cur_start, cur_end = a, b
        else:
            cur_end = max(cur_end, b)
    if cur_start is not None and cur_end is not None:
        covered += cur_end - cur_start
    return covered / (end_ts - start_ts)


# ---------------------------------------------------------------- trade figures


def profit_factor(gross_profit: Decimal, gross_loss: Decimal) -> float | None:
    """Gross profit over gross loss: ``inf`` without losses, ``None`` without either."""
    if gross_loss > 0:
        return float(gross_profit / gross_loss)
    if gross_profit > 0:
        return math.inf
    return None


@dataclass(slots=True)
class _Tally:
    trades: int = 0
    wins: int = 0
    losses: int = 0
    gross_profit: Decimal = _ZERO
    gross_loss: Decimal = _ZERO
    fees: Decimal = _ZERO

    def add(self, trade: ClosedTrade) -> None:
        net = trade.net_pnl
        self.trades += 1
        self.fees += trade.fees
        if net > 0:
            self.wins += 1
            self.gross_profit += net
        elif net < 0:
            self.losses += 1
            self.gross_loss -= net

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.trades if self.trades else None

    def breakdown(self, name: str) -> Breakdown:
        return Breakdown(
            name=name,
            trades=self.trades,
            wins=self.wins,
            losses=self.losses,
            win_rate=self.win_rate,
            profit_factor=profit_factor(self.gross_profit, self.gross_loss),
            net_pnl=self.gross_profit - self.gross_loss,
            fees=self.fees,
        )


def _breakdowns(groups: dict[str, _Tally]) -> tuple[Breakdown, ...]:
    return tuple(groups[name].breakdown(name) for name in sorted(groups))


# ---------------------------------------------------------------- all of it


def _as_float_array(
    equity: Sequence[Decimal | float] | npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    if isinstance(equity, np.ndarray):
        return np.asarray(equity, dtype=np.float64)
    return np.fromiter((float(e) for e in equity), dtype=np.float64, count=len(equity))


def _money_of(given: Decimal | float, as_float: np.float64) -> Decimal:
    # A Decimal stays as given; a float (numpy's too) goes through plain float.
    return given if isinstance(given, Decimal) else to_decimal(float(as_float))


def compute_results(
    ts: Sequence[int] | npt.NDArray[np.int64],
    equity: Sequence[Decimal | float] | npt.NDArray[np.float64],
    trades: Sequence[ClosedTrade],
    *,
    timeframe: str | int,
) -> Results:
    """The results of a backtest (rules in the module docstring).

    ``ts`` and ``equity`` are the equity curve, one point per candle, timestamps in ms
    strictly increasing; equity starts above 0 and never goes below 0. ``timeframe``
    is the candles' length, a ccxt name (``"1m"``) or ms. Raises ValueError otherwise.
    """
    tf_ms = timeframe_ms(timeframe) if isinstance(timeframe, str) else int(timeframe)
    if tf_ms <= 0:
        raise ValueError(f"timeframe must be above 0 ms, got {tf_ms}")
    t = np.asarray(ts, dtype=np.int64)
    e = _as_float_array(equity)
    if len(t) != len(e):
        raise ValueError(f"equity curve: {len(t)} timestamps but {len(e)} equity values")
    if len(t) == 0:
        raise ValueError("equity curve is empty")
    if len(t) > 1 and not bool(np.all(np.diff(t) > 0)):
        bad = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
        raise ValueError(
            f"equity curve: timestamp {int(t[bad])} at point {bad} is not after the one before"
        )
    if not bool(np.all(np.isfinite(e))):
        raise ValueError("equity curve: equity must be finite")
    if e[0] <= 0:
        raise ValueError(f"equity curve: equity must start above 0, got {equity[0]}")
    if bool(np.any(e < 0)):
        bad = int(np.flatnonzero(e < 0)[0])
        raise ValueError(
            f"equity curve: equity fell below 0 at ts {int(t[bad])}; these results assume it cannot"
        )

    start_ts, end_ts = int(t[0]), int(t[-1])
    periods = YEAR_MS / tf_ms
    dd = drawdown(t, e)  # before the returns are made: its scratch is gone by then
    returns = per_candle_returns(e)
    start_equity = _money_of(equity[0], e[0])
    end_equity = _money_of(equity[-1], e[-1])
    total = float(e[-1] / e[0]) - 1.0

    everything = _Tally()
    agents: dict[str, _Tally] = {}
    symbols: dict[str, _Tally] = {}
    for trade in trades:
        everything.add(trade)
        symbols.setdefault(trade.symbol, _Tally()).add(trade)
        for name in dict.fromkeys(trade.agents) or (UNATTRIBUTED,):
            agents.setdefault(name, _Tally()).add(trade)
    net = everything.gross_profit - everything.gross_loss

    return Results(
        start_ts=start_ts,
        end_ts=end_ts,
        timeframe_ms=tf_ms,
        candles=len(t),
        start_equity=start_equity,
        end_equity=end_equity,
        total_return=total,
        annualised_return=annualised_return(total, end_ts - start_ts),
        volatility=volatility(returns, periods),
        sharpe=sharpe(returns, periods),
        sortino=sortino(returns, periods),
        max_drawdown=dd.max_drawdown,
        max_drawdown_duration_ms=dd.duration_ms,
        longest_drawdown_ms=dd.longest_ms,
        trades=everything.trades,
        wins=everything.wins,
        losses=everything.losses,
        win_rate=everything.win_rate,
        profit_factor=profit_factor(everything.gross_profit, everything.gross_loss),
        expectancy=net / everything.trades if everything.trades else None,
        gross_profit=everything.gross_profit,
        gross_loss=everything.gross_loss,
        net_pnl=net,
        fees=everything.fees,
        exposure=exposure(trades, start_ts, end_ts),
        by_agent=_breakdowns(agents),
        by_symbol=_breakdowns(symbols),
    )


# ---------------------------------------------------------------- the table


def format_duration(ms: int) -> str:
    """``3d 4h 5m``-style, whole minutes, leaving out units at 0; ``0m`` under a minute."""
    minutes = ms // 60_000
    days, rem = divmod(minutes, 24 * 60)
    hours, mins = divmod(rem, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (mins, "m")) if n]
    return " ".join(parts) or "0m"


def pct(value: float | None, signed: bool = False) -> str:
    """A fraction as a percentage with two decimals; ``n/a`` for None."""
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value * 100:+.2f} %" if signed else f"{value * 100:.2f} %"


def ratio(value: float | None) -> str:
    """A ratio with two decimals; ``n/a`` for None."""
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.2f}"


def money(value: Decimal | None) -> str:
    """Money with thousands separators and two decimals; ``n/a`` for None."""
    return "n/a" if value is None else f"{value:,.2f}"


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _pairs(rows: list[tuple[str, str, str, str]]) -> list[str]:
    # Two label/value pairs per line: 18 + 20 + 2 + 18 + 22 = 80 columns.
    return [
        f"{_fit(a, 18):<18}{_fit(b, 20):>20}  {_fit(c, 18):<18}{_fit(d, 22):>22}".rstrip()
        for a, b, c, d in rows
    ]


def _table(title: str, rows: tuple[Breakdown, ...]) -> list[str]:
    # name 24 | trades 8 | win rate 10 | profit factor 8 | net pnl 16 | fees 14 = 80
    head = f"{title:<24}{'trades':>8}{'win rate':>10}{'pf':>8}{'net pnl':>16}{'fees':>14}"
    lines = [head]
    for b in rows:
        lines.append(
            f"{_fit(b.name, 23):<24}{_fit(str(b.trades), 8):>8}{pct(b.win_rate):>10}"
            f"{_fit(ratio(b.profit_factor), 7):>8}{_fit(money(b.net_pnl), 15):>16}"
            f"{_fit(money(b.fees), 13):>14}"
        )
    return lines


def format_results(results: Results) -> str:
    """The results as a plain-text table, at most :data:`WIDTH` columns, for the CLI."""
    r = results
    lines = [
        _fit(
            f"Backtest {_when(r.start_ts)} to {_when(r.end_ts)} UTC"
            f" ({format_duration(r.elapsed_ms)})",
            WIDTH,
        ),
        _fit(
            f"{r.candles:,} candles of {format_duration(r.timeframe_ms)};"
            f" equity {money(r.start_equity)} -> {money(r.end_equity)}",
            WIDTH,
        ),
    ]
    lines.append("")
    lines += _pairs(
        [
            (
                "Total return",
                pct(r.total_return, signed=True),
                "Annualised",
                pct(r.annualised_return, signed=True),
            ),
            ("Volatility", pct(r.volatility), "Sharpe", ratio(r.sharpe)),
            ("Sortino", ratio(r.sortino), "Max drawdown", pct(r.max_drawdown)),
            (
                "Drawdown lasted",
                format_duration(r.max_drawdown_duration_ms),
                "Longest drawdown",
                format_duration(r.longest_drawdown_ms),
            ),
            ("Trades", f"{r.trades:,}", "Win rate", pct(r.win_rate)),
            ("Profit factor", ratio(r.profit_factor), "Expectancy", money(r.expectancy)),
            ("Exposure", pct(r.exposure), "Fees paid", money(r.fees)),
            ("Net pnl", money(r.net_pnl), "Wins / losses", f"{r.wins:,} / {r.losses:,}"),
        ]
    )
    if r.by_agent:
        lines.append("")
        lines += _table("By agent", r.by_agent)
    if r.by_symbol:
        lines.append("")
        lines += _table("By symbol", r.by_symbol)
    return "\n".join(lines) + "\n"
