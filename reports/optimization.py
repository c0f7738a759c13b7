"""What an optimization found, as plain data: the model the optimization report renders.

``cma optimize`` (the :mod:`optimize` package) reads its Optuna study into an
:class:`Optimization`; nothing here imports Optuna, so a report is data in, text out.

The words:

* A *window* is one walk-forward step: the parameters are scored on its training
  range (in sample) and then on the test range that follows it (out of sample).
* A *trial* is one set of parameters, scored on every window. The sampler only
  ever sees the in-sample scores (a trial's ``value`` is their mean); the
  out-of-sample scores decide which trial is *chosen*: the one whose mean
  out-of-sample score is best, so the parameters kept are those that held up on
  data they were not tuned on, not the best in-sample trial.
* ``None`` stands for a score that could not be computed (no trades, say).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Optimization", "Param", "TrialRow", "Window"]

TrialState = Literal["complete", "pruned", "failed", "running"]
ParamValue = bool | int | float | str


@dataclass(frozen=True, slots=True)
class Window:
    """One walk-forward window: ms since the epoch, each end exclusive."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int


@dataclass(frozen=True, slots=True)
class Param:
    """One tuned parameter of the search space, by its dotted config key."""

    key: str
    #: "float", "int" or "choice".
    kind: Literal["float", "int", "choice"]
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[ParamValue, ...] = ()

    def describe(self) -> str:
        """The range as a person reads it: ``1.0 .. 4.0 step 0.5``, ``one of a, b``
        (``true``/``false`` as the config writes them)."""
        if self.kind == "choice":
            return "one of " + ", ".join(
                ("true" if c else "false") if isinstance(c, bool) else str(c) for c in self.choices
            )
        text = f"{self.low} .. {self.high}"
        if self.step is not None:
            text += f" step {self.step}"
        if self.log:
            text += " (log)"
        return text


@dataclass(frozen=True, slots=True)
class TrialRow:
    """One trial: its parameters and its scores on each window (None: not scored)."""

    number: int
    state: TrialState
    params: dict[str, ParamValue]
    #: The mean in-sample score, what the sampler optimised (None unless complete).
    value: float | None
    in_sample: tuple[float | None, ...]
    out_of_sample: tuple[float | None, ...]
    trades_in: tuple[int, ...]
    trades_out: tuple[int, ...]
    #: The mean out-of-sample score (None unless every window was scored).
    oos_mean: float | None
    #: Which worker ran it (host:pid), and how long it took.
    worker: str = ""
    seconds: float | None = None
    #: Why a trial was pruned or failed, for a person.
    note: str = ""


@dataclass(frozen=True, slots=True)
class Optimization:
    """An optimization study, read back: everything the report shows."""

    study: str
    #: "sharpe", "return" or "calmar".
    objective: str
    min_trades: int
    #: The data files (names only) and what they hold.
    data: tuple[str, ...]
    symbols: tuple[str, ...]
    timeframe: str
    agents: tuple[str, ...]
    space: tuple[Param, ...]
    windows: tuple[Window, ...]
    #: Every trial of the study, by number (all workers, all runs).
    trials: tuple[TrialRow, ...]
    #: The trial chosen by its out-of-sample scores, and the best in-sample one for
    #: comparison (often not the same); None when no trial completed.
    chosen: TrialRow | None
    best_in_sample: TrialRow | None
    #: Parameter importances (Optuna's fANOVA, summing to 1), largest first; empty
    #: when there were too few completed trials to tell.
    importances: tuple[tuple[str, float], ...] = ()
    #: When the report was made (ms), and the config fragment written, if any.
    created_at: int = 0
    fragment: str | None = None
    seed: int | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def counts(self) -> dict[str, int]:
        """How many trials ended each way: the multiple-testing risk in one line."""
        out = {"complete": 0, "pruned": 0, "failed": 0, "running": 0}
        for t in self.trials:
            out[t.state] += 1
        return out
