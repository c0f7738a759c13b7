"""One trial: a set of parameters scored on every walk-forward window.

:func:`walk_forward` cuts the candles' time into rolling windows: with ``n``
windows the span is split into ``n + 3`` equal parts; window ``k`` trains on
parts ``k .. k+2`` and tests on part ``k+3``, so each test range directly follows
its training range and the test ranges do not overlap.

:class:`Scorer` runs a trial through :class:`engine.backtest.driver.Backtest`
(the live shell's core, the auto policy deciding at ``approval.auto_confidence``)
on each window's training range, then its test range. The value the sampler sees
is the mean in-sample score; the out-of-sample scores are only recorded (they
choose the result, see :mod:`optimize.result`). A trial is pruned when its
settings are refused, when a training window has fewer closed trades than
``min_trades`` or no score, or when Optuna's median pruner finds its running
in-sample mean hopeless.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from engine.assembly import load_agents
from engine.backtest.data import Columns, DataError
from engine.backtest.driver import Approval, Backtest
from engine.timeframes import timeframe_ms
from optimize.space import apply
from persistence.store import UnitOfWork
from reports.optimization import Param, ParamValue, Window

if TYPE_CHECKING:
    import optuna

    from engine.backtest.metrics import Results
    from engine.config import Settings

__all__ = ["OBJECTIVES", "Scorer", "TrialScores", "score_of", "suggest", "walk_forward"]

Objective = Literal["sharpe", "return", "calmar"]
OBJECTIVES: tuple[Objective, ...] = ("sharpe", "return", "calmar")
#: Parts of the span a window trains on (it tests on the one after).
TRAIN_PARTS = 3


def walk_forward(columns: Sequence[Columns], n: int) -> tuple[Window, ...]:
    """``n`` rolling windows over the candles' span (see the module docstring), each
    bound on a candle boundary. ValueError when a window would hold no candle."""
    if n < 1:
        raise ValueError(f"--windows must be 1 or more, got {n}")
    tf = timeframe_ms(columns[0].timeframe)
    start = min(int(c.ts[0]) for c in columns)
    end = max(int(c.ts[-1]) for c in columns) + tf
    parts = n + TRAIN_PARTS
    candles = (end - start) // tf
    if candles < parts * 2:
        raise ValueError(
            f"--windows {n} needs at least {parts * 2} candles ({parts} parts of 2); "
            f"the data has {candles}"
        )
    bounds = [start + (candles * i // parts) * tf for i in range(parts)] + [end]
    windows = tuple(
        Window(
            k,
            bounds[k],
            bounds[k + TRAIN_PARTS],
            bounds[k + TRAIN_PARTS],
            bounds[k + TRAIN_PARTS + 1],
        )
        for k in range(n)
    )
    for w in windows:
        for lo, hi in ((w.train_start, w.train_end), (w.test_start, w.test_end)):
            if not any(_count(c, lo, hi) for c in columns):
                raise ValueError(
                    f"--windows {n}: window {w.index + 1} has no candles in one of its ranges "
                    "(a gap in the data); use fewer windows"
                )
    return windows


def _count(columns: Columns, lo: int, hi: int) -> int:
    import numpy as np

    return int(np.searchsorted(columns.ts, hi) - np.searchsorted(columns.ts, lo))


def cut(columns: Sequence[Columns], lo: int, hi: int) -> list[Columns]:
    """Each symbol's candles in ``[lo, hi)``; a symbol with none there is left out."""
    out: list[Columns] = []
    for c in columns:
        try:
            out.append(c.between(lo, hi))
        except DataError:
            continue
    return out


def score_of(results: Results, objective: Objective) -> float | None:
    """The objective's score of a backtest (higher is better); None when it has none
    (no trades, a flat curve, no drawdown to divide by)."""
    if objective == "sharpe":
        value = results.sharpe
    elif objective == "return":
        value = results.total_return
    else:
        annual = results.annualised_return
        value = (
            None if annual is None or results.max_drawdown <= 0 else annual / results.max_drawdown
        )
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def suggest(trial: optuna.Trial, space: Sequence[Param]) -> dict[str, ParamValue]:
    """The trial's value of each parameter, drawn by the study's sampler."""
    values: dict[str, ParamValue] = {}
    for p in space:
        if p.kind == "choice":
            choice = trial.suggest_categorical(p.key, list(p.choices))
            assert choice is not None  # the space has no None among its choices
            values[p.key] = choice
        elif p.kind == "int":
            assert isinstance(p.low, int) and isinstance(p.high, int)
            step = int(p.step) if p.step is not None else 1
            values[p.key] = trial.suggest_int(p.key, p.low, p.high, step=step, log=p.log)
        else:
            assert p.low is not None and p.high is not None
            values[p.key] = trial.suggest_float(
                p.key, float(p.low), float(p.high), step=p.step, log=p.log
            )
    return values


@dataclass(slots=True)
class TrialScores:
    """What a trial measured; kept in the trial's user attributes (``scores``)."""

    in_sample: list[float | None] = field(default_factory=list)
    out_of_sample: list[float | None] = field(default_factory=list)
    trades_in: list[int] = field(default_factory=list)
    trades_out: list[int] = field(default_factory=list)
    note: str = ""

    def attrs(self) -> dict[str, Any]:
        return {
            "in_sample": self.in_sample,
            "out_of_sample": self.out_of_sample,
            "trades_in": self.trades_in,
            "trades_out": self.trades_out,
            "note": self.note,
        }


def worker_name() -> str:
    """``host:pid``, which worker ran a trial."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Scorer:
    """Scores trials of one study: the base settings, the candles and the windows."""

    def __init__(
        self,
        settings: Settings,
        columns: Sequence[Columns],
        windows: Sequence[Window],
        space: Sequence[Param],
        *,
        objective: Objective,
        min_trades: int,
    ) -> None:
        self.settings = settings
        self.columns = list(columns)
        self.windows = tuple(windows)
        self.space = tuple(space)
        self.objective: Objective = objective
        self.min_trades = min_trades
        self._parts = [
            (
                cut(self.columns, w.train_start, w.train_end),
                cut(self.columns, w.test_start, w.test_end),
            )
            for w in self.windows
        ]

    def backtest(self, settings: Settings, columns: Sequence[Columns]) -> Results:
        """One backtest on ``columns``, nothing stored (its units of work are dropped)."""
        run = Backtest(
            settings,
            columns,
            agent_classes=load_agents(settings),
            approval=Approval(),
            new_work=lambda: UnitOfWork(None, log=False),
        ).run()
        return run.results

    def evaluate(
        self,
        values: Mapping[str, ParamValue],
        report: Callable[[float, int], bool] = lambda value, step: False,
    ) -> tuple[float | None, TrialScores]:
        """Score ``values`` window by window: the mean in-sample score, or None when the
        trial is to be pruned (:attr:`TrialScores.note` says why). ``report(mean, k)``
        is told the running in-sample mean after window ``k`` and answers whether to
        prune."""
        scores = TrialScores()
        try:
            settings = apply(self.settings, values)
        except ValueError as exc:  # pydantic's ValidationError is one
            scores.note = f"settings refused: {_first_line(exc)}"
            return None, scores
        for k, (train, test) in enumerate(self._parts):
            try:
                results = self.backtest(settings, train)
            except ValueError as exc:  # an agent refusing its settings, say
                scores.note = f"settings refused: {_first_line(exc)}"
                return None, scores
            value = score_of(results, self.objective)
            scores.trades_in.append(results.trades)
            scores.in_sample.append(value)
            if results.trades < self.min_trades:
                scores.note = (
                    f"window {k + 1}: {results.trades} closed trades in sample, "
                    f"fewer than --min-trades {self.min_trades}"
                )
                return None, scores
            if value is None:
                scores.note = f"window {k + 1}: no in-sample {self.objective} score"
                return None, scores
            done = [s for s in scores.in_sample if s is not None]
            if report(sum(done) / len(done), k):
                scores.note = f"window {k + 1}: in-sample mean below the median of earlier trials"
                return None, scores
            oos = self.backtest(settings, test)
            scores.out_of_sample.append(score_of(oos, self.objective))
            scores.trades_out.append(oos.trades)
        done = [s for s in scores.in_sample if s is not None]
        return sum(done) / len(done), scores


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(line.strip() for line in text[:3]) if text else type(exc).__name__
