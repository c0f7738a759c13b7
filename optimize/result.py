"""A study read back: the trials, the chosen parameters and the config fragment.

The chosen trial is the complete trial with the best mean out-of-sample score
over the walk-forward windows (every window scored); a tie goes to the better
in-sample mean, then to the earlier trial. The best in-sample trial is kept
beside it, so the report shows how far the two differ.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimize.space import space_from_json
from reports.optimization import Optimization, ParamValue, TrialRow

if TYPE_CHECKING:
    import optuna

    from optimize.study import Setup

__all__ = ["choose", "fragment_toml", "read_optimization", "write_fragment"]

_STATES = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}


def _row(trial: optuna.trial.FrozenTrial) -> TrialRow:
    attrs = trial.user_attrs
    scores = attrs.get("scores") or {}
    oos = tuple(None if v is None else float(v) for v in scores.get("out_of_sample", ()))
    ins = tuple(None if v is None else float(v) for v in scores.get("in_sample", ()))
    state = _STATES.get(trial.state.name, "failed")
    value = trial.value if state == "complete" else None
    return TrialRow(
        number=trial.number,
        state=state,  # type: ignore[arg-type]
        params=dict(trial.params),
        value=value,
        in_sample=ins,
        out_of_sample=oos,
        trades_in=tuple(int(v) for v in scores.get("trades_in", ())),
        trades_out=tuple(int(v) for v in scores.get("trades_out", ())),
        oos_mean=None,
        worker=str(attrs.get("worker", "")),
        seconds=attrs.get("seconds"),
        note=str(attrs.get("note", "")),
    )


def _with_oos_mean(row: TrialRow, windows: int) -> TrialRow:
    scored = [v for v in row.out_of_sample if v is not None]
    if row.state != "complete" or len(row.out_of_sample) != windows or len(scored) != windows:
        return row
    return replace(row, oos_mean=sum(scored) / windows)


def choose(rows: Sequence[TrialRow]) -> tuple[TrialRow | None, TrialRow | None]:
    """The chosen trial (best mean out of sample) and the best in-sample trial."""
    complete = [r for r in rows if r.state == "complete" and r.value is not None]
    best_in = max(complete, key=lambda r: (r.value, -r.number), default=None)
    held = [r for r in complete if r.oos_mean is not None]
    chosen = max(held, key=lambda r: (r.oos_mean, r.value, -r.number), default=None)
    return chosen, best_in


def read_optimization(
    study: optuna.Study, setup: Setup, *, seed: int | None, fragment: Path | None
) -> Optimization:
    """The study as an :class:`Optimization` (importances by Optuna's fANOVA when two or
    more trials completed)."""
    windows = setup.window_list()
    rows = [_with_oos_mean(_row(t), len(windows)) for t in study.get_trials(deepcopy=False)]
    rows.sort(key=lambda r: r.number)
    chosen, best_in = choose(rows)
    return Optimization(
        study=study.study_name,
        objective=setup.objective,
        min_trades=setup.min_trades,
        data=setup.files,
        symbols=tuple(s for s, _, _ in setup.data),
        timeframe=setup.timeframe,
        agents=setup.agents,
        space=space_from_json(setup.space),
        windows=windows,
        trials=tuple(rows),
        chosen=chosen,
        best_in_sample=best_in,
        importances=_importances(study, rows),
        created_at=int(time.time() * 1000),
        fragment=None if fragment is None else str(fragment),
        seed=seed,
    )


def _importances(study: optuna.Study, rows: Sequence[TrialRow]) -> tuple[tuple[str, float], ...]:
    import optuna

    if sum(1 for r in rows if r.state == "complete") < 2:
        return ()
    try:
        found = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError):  # too little variety to tell
        return ()
    items = [(k, float(v)) for k, v in found.items() if math.isfinite(v)]
    return tuple(sorted(items, key=lambda kv: (-kv[1], kv[0])))


# ---------------------------------------------------------------- the config fragment


def _toml_value(value: ParamValue | Sequence[str]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(json.dumps(v) for v in value) + "]"


def fragment_toml(opt: Optimization, agents: tuple[Sequence[str], Sequence[str]]) -> str:
    """The chosen parameters as a config file ``cma run --config`` and ``cma backtest
    --config`` take as it is: a table per section, the agents that were tuned named
    so their settings are checked against them."""
    chosen = opt.chosen
    assert chosen is not None
    tables: dict[str, dict[str, Any]] = {"agents": {"enabled": list(agents[0])}}
    if agents[1]:
        tables["agents"]["user"] = list(agents[1])
    for key, value in sorted(chosen.params.items()):
        table, _, name = key.rpartition(".")
        tables.setdefault(table, {})[name] = value
    oos = "n/a" if chosen.oos_mean is None else f"{chosen.oos_mean:.4f}"
    ins = "n/a" if chosen.value is None else f"{chosen.value:.4f}"
    lines = [
        f"# cma optimize: study {opt.study}, trial {chosen.number} of {len(opt.trials)} run",
        f"# chosen by its mean out-of-sample {opt.objective} over {len(opt.windows)} "
        f"walk-forward windows: {oos} (in sample {ins})",
        f"# data: {', '.join(opt.data) or ', '.join(opt.symbols)} ({opt.timeframe})",
        "# Use it as it is (cma backtest --config FILE, cma run --config FILE), or copy",
        "# its lines into your config file.",
        "",
    ]
    for table in sorted(tables, key=lambda t: (t.count("."), t)):
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in tables[table].items()]
        lines.append("")
    return "\n".join(lines)


def write_fragment(text: str, path: Path) -> None:
    """Write the fragment atomically (:func:`reports.render.write_atomic`)."""
    from reports.render import write_atomic

    write_atomic(text.encode("utf-8"), path)
