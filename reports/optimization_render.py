"""An :class:`~reports.optimization.Optimization` written as Markdown and HTML.

The report says, in order: what was optimised and how many trials were run (with
the multiple-testing note), the parameters chosen beside the best in-sample
trial's, the walk-forward table (each window's in-sample score beside its
out-of-sample score, for the chosen trial and the best in-sample one), the
parameter importances, the history (an inline SVG chart in HTML, a short table of
the best so far in Markdown), the search space and the ten trials with the best
out-of-sample mean.

It goes through the same machinery as the session report (:mod:`reports.render`):
Jinja2 templates in ``reports/templates`` (autoescaped for HTML), inline SVG from
:mod:`reports.svg`, the same time helpers and the same atomic writer. Scores are
floats as given: a ``return`` objective reads as a percentage, Sharpe and Calmar
as ratios with three decimals, and a score that could not be computed as ``-``.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jinja2
from markupsafe import Markup

from engine.backtest.metrics import pct
from reports.optimization import Optimization, ParamValue, TrialRow
from reports.render import environment, latency, md_cell, when, write_atomic
from reports.svg import bar_chart, history_chart, running_best

__all__ = [
    "OPT_FORMATS",
    "history_series",
    "render_optimization",
    "score",
    "write_optimization_report",
]

OptFormat = Literal["md", "html"]
#: The formats of an optimization report.
OPT_FORMATS: tuple[OptFormat, ...] = ("md", "html")
#: How many trials the "top trials" table lists.
TOP = 10
#: About how many rows the Markdown history table has.
HISTORY_ROWS = 10

_OBJECTIVE_WORDS = {
    "return": "the total return, shown as a percentage",
    "sharpe": "the Sharpe ratio",
    "calmar": "the Calmar ratio",
}


# ---------------------------------------------------------------- formatting


def score(value: float | None, objective: str) -> str:
    """A score as a person reads it: a percentage for the ``return`` objective, a
    ratio with three decimals otherwise; ``-`` when there is none."""
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if objective == "return":
        return pct(value, signed=True)
    return f"{value:.3f}"


def param_value(value: ParamValue | None) -> str:
    """A parameter's value: ``true``/``false`` as in the config, floats to 6 digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def md_text(value: object) -> str:
    """A Markdown table cell that shows its text as written: pipes and line breaks
    as :func:`reports.render.md_cell` has them, and ``<``, ``>`` and ``&`` as HTML
    entities, so markup in data (a parameter key, a choice) is not rendered."""
    return md_cell(html.escape("" if value is None else str(value), quote=False))


def md_code(value: object) -> str:
    """A Markdown code span of ``value`` on one line (fenced by more backticks than it holds)."""
    text = " ".join(str(value).splitlines())
    ticks = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _at(values: Sequence[Any], i: int) -> Any:
    return values[i] if i < len(values) else None


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


# ---------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class WalkRow:
    """One line of the walk-forward table, as text."""

    window: str
    train: str
    test: str
    chosen_is: str
    chosen_oos: str
    trades_in: str
    trades_out: str
    best_is: str
    best_oos: str


def _cut(opt: Optimization) -> int:
    """How much of :func:`reports.render.when`'s text the window ends need: the date
    alone when all are at midnight, down to the minute when all are on one."""
    ends = [e for w in opt.windows for e in (w.train_start, w.train_end, w.test_start, w.test_end)]
    if all(e % 86_400_000 == 0 for e in ends):
        return 10
    if all(e % 60_000 == 0 for e in ends):
        return 16
    return 19


def _range(start: int, end: int, cut: int = 19) -> str:
    return f"{when(start)[:cut]} → {when(end)[:cut]}"


def walk_forward(opt: Optimization) -> list[WalkRow]:
    """One row per window, then a row of means (the trials' own means, trade sums)."""
    c, b, obj = opt.chosen, opt.best_in_sample, opt.objective
    rows, cut = [], _cut(opt)
    for i, w in enumerate(opt.windows):
        rows.append(
            WalkRow(
                window=str(w.index + 1),  # counted from 1, as cma optimize prints them
                train=_range(w.train_start, w.train_end, cut),
                test=_range(w.test_start, w.test_end, cut),
                chosen_is=score(_at(c.in_sample, i) if c else None, obj),
                chosen_oos=score(_at(c.out_of_sample, i) if c else None, obj),
                trades_in=_count(_at(c.trades_in, i) if c else None),
                trades_out=_count(_at(c.trades_out, i) if c else None),
                best_is=score(_at(b.in_sample, i) if b else None, obj),
                best_oos=score(_at(b.out_of_sample, i) if b else None, obj),
            )
        )
    rows.append(
        WalkRow(
            window="mean",
            train="",
            test="",
            chosen_is=score(c.value if c else None, obj),
            chosen_oos=score(c.oos_mean if c else None, obj),
            trades_in=_count(sum(c.trades_in) if c else None),
            trades_out=_count(sum(c.trades_out) if c else None),
            best_is=score(b.value if b else None, obj),
            best_oos=score(b.oos_mean if b else None, obj),
        )
    )
    return rows


def history_series(trials: Iterable[TrialRow]) -> tuple[list[int], list[float], list[float]]:
    """What the history chart draws: the complete trials with a (finite) value, in
    trial order, as their numbers, their values and the best value so far."""
    done = sorted(
        (t.number, t.value)
        for t in trials
        if t.state == "complete" and t.value is not None and math.isfinite(t.value)
    )
    values = [v for _, v in done]
    return [n for n, _ in done], values, running_best(values)


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """The best so far after a given trial (Markdown's stand-in for the chart)."""

    after: int
    complete: int
    best: str
    best_trial: int


def history_rows(opt: Optimization, rows: int = HISTORY_ROWS) -> list[HistoryRow]:
    """The best in-sample value so far every ~N/``rows`` complete trials, and at the last."""
    numbers, values, best = history_series(opt.trials)
    if not numbers:
        return []
    step = max(1, math.ceil(len(numbers) / rows))
    picks = list(range(step - 1, len(numbers), step))
    if picks[-1] != len(numbers) - 1:
        picks.append(len(numbers) - 1)
    out = []
    for i in picks:
        # The trial that set the best: the first whose value is the best so far.
        best_at = next(j for j in range(i + 1) if values[j] == best[i])
        out.append(HistoryRow(numbers[i], i + 1, score(best[i], opt.objective), numbers[best_at]))
    return out


@dataclass(frozen=True, slots=True)
class ParamRow:
    key: str
    chosen: str
    best: str
    differs: bool


def param_rows(opt: Optimization) -> list[ParamRow]:
    """Each tuned parameter (search-space order, then any other) with the chosen
    trial's value beside the best in-sample trial's; none when neither trial exists."""
    if opt.chosen is None and opt.best_in_sample is None:
        return []
    keys = [p.key for p in opt.space]
    for t in (opt.chosen, opt.best_in_sample):
        if t is not None:
            keys += [k for k in t.params if k not in keys]
    rows = []
    for k in keys:
        c = param_value(opt.chosen.params.get(k)) if opt.chosen else "-"
        b = param_value(opt.best_in_sample.params.get(k)) if opt.best_in_sample else "-"
        rows.append(ParamRow(k, c, b, c != b))
    return rows


def top_trials(opt: Optimization, n: int = TOP) -> list[TrialRow]:
    """The ``n`` trials with the best out-of-sample mean, best first (ties: lower number)."""
    scored = [t for t in opt.trials if t.oos_mean is not None and not math.isnan(t.oos_mean)]
    scored.sort(key=lambda t: (-(t.oos_mean or 0.0), t.number))
    return scored[:n]


def importances(opt: Optimization) -> list[tuple[str, float]]:
    """The importances, largest first (ties by key)."""
    return sorted(opt.importances, key=lambda kv: (-kv[1], kv[0]))


def trial_counts(opt: Optimization) -> str:
    """``40 run = 31 complete + 7 pruned + 2 failed`` (and any still running)."""
    c = opt.counts
    text = (
        f"{len(opt.trials)} run = {c['complete']} complete + {c['pruned']} pruned "
        f"+ {c['failed']} failed"
    )
    if c["running"]:
        text += f" + {c['running']} still running"
    return text


def multiple_testing_note(opt: Optimization) -> str:
    n = len(opt.trials)
    return (
        f"{n} set{'s' if n != 1 else ''} of parameters {'were' if n != 1 else 'was'} tried. "
        "The more trials are tried, the more the best in-sample score looks better than it "
        "is: some sets win on the training data by luck alone. That is why the parameters "
        "kept are chosen by their out-of-sample scores, on data they were not tuned on, and "
        "not by the best in-sample score; the best in-sample trial is shown beside the "
        "chosen one for comparison."
    )


def no_choice(opt: Optimization) -> str:
    """Why no trial was chosen, in words."""
    c = opt.counts
    why = [f"{c[k]} {k}" for k in ("pruned", "failed", "running") if c[k]]
    if c["complete"]:
        reason = "no complete trial has an out-of-sample score"
    elif opt.trials:
        reason = "no trial completed"
    else:
        reason = "no trial was run"
    return f"No trial was chosen: {reason}" + (f" ({', '.join(why)})." if why else ".")


def effort(opt: Optimization) -> str | None:
    """``2 workers, 1h 5m 30s of trial time``: who ran the trials, and for how long."""
    workers = {t.worker for t in opt.trials if t.worker}
    seconds = [t.seconds for t in opt.trials if t.seconds is not None]
    parts = []
    if workers:
        parts.append(f"{len(workers)} worker{'s' if len(workers) != 1 else ''}")
    if seconds:
        parts.append(f"{latency(round(sum(seconds) * 1000))} of trial time")
    return ", ".join(parts) or None


def _context(opt: Optimization) -> dict[str, Any]:
    c, b = opt.chosen, opt.best_in_sample
    span = (
        _range(opt.windows[0].train_start, opt.windows[-1].test_end, _cut(opt))
        if opt.windows
        else None
    )
    return {
        "o": opt,
        "objective_words": _OBJECTIVE_WORDS.get(opt.objective, opt.objective),
        "span": span,
        "counts": trial_counts(opt),
        "effort": effort(opt),
        "mt_note": multiple_testing_note(opt),
        "params": param_rows(opt),
        "no_choice": no_choice(opt),
        "same": c is not None and b is not None and c.number == b.number,
        "walk": walk_forward(opt),
        "importances": importances(opt),
        "history": history_rows(opt),
        "top": top_trials(opt),
        "created": when(opt.created_at) if opt.created_at else None,
        "space": [(p.key, p.kind, p.describe()) for p in opt.space],
    }


# ---------------------------------------------------------------- rendering


@cache
def _env(html_: bool) -> jinja2.Environment:
    env = environment(html_)
    env.filters.update(when=when, md=md_text, code=md_code)
    env.filters["score"] = lambda v, obj: score(v, obj)
    return env


def _charts(opt: Optimization) -> tuple[str, str]:
    numbers, values, _ = history_series(opt.trials)
    c = opt.chosen
    chosen = (c.number, c.oos_mean) if c is not None and c.oos_mean is not None else None
    scale, unit = (100.0, " %") if opt.objective == "return" else (1.0, "")
    history = history_chart(
        "history-chart",
        "Optimization history: in-sample mean per trial, best so far",
        numbers,
        values,
        chosen=chosen,
        chosen_label="chosen trial, out of sample",
        scale=scale,
        unit=unit,
    )
    importance = bar_chart(
        "importance-chart", "Parameter importances", importances(opt), scale=100.0, unit=" %"
    )
    return history, importance


def render_optimization(opt: Optimization, fmt: OptFormat) -> str:
    """The report in ``fmt``: ``"md"`` (Markdown) or ``"html"`` (a self-contained page)."""
    if fmt == "md":
        return _env(False).get_template("optimization.md.j2").render(**_context(opt))
    if fmt == "html":
        history, importance = _charts(opt)
        return (
            _env(True)
            .get_template("optimization.html.j2")
            .render(
                **_context(opt),
                history_svg=Markup(history),
                importance_svg=Markup(importance) if opt.importances else None,
            )
        )
    raise ValueError(f"format must be one of {', '.join(OPT_FORMATS)}, got {fmt!r}")


def write_optimization_report(
    opt: Optimization, stem: Path | str, formats: Iterable[str] = OPT_FORMATS
) -> list[Path]:
    """Write the report as ``<stem>.md`` and/or ``<stem>.html`` (the suffix added to
    the name, not replacing one), each atomically, its folder made; return the
    files written. Every format is rendered before any file is written."""
    base = Path(stem)
    texts: dict[Path, str] = {}
    for fmt in formats:
        if fmt not in OPT_FORMATS:
            raise ValueError(f"format must be one of {', '.join(OPT_FORMATS)}, got {fmt!r}")
        texts[base.with_name(f"{base.name}.{fmt}")] = render_optimization(opt, fmt)
    return [write_atomic(text.encode(), path) for path, text in texts.items()]
