"""``cma optimize``: settings tuned on history, walk-forward, in worker processes.

The command checks every option, loads the candles as ``cma backtest`` does
(through the content-hash cache, which the workers then memory-map), reads the
search space (``--space`` or the default one), cuts the walk-forward windows, and
opens the study: in the ``--storage`` URL (or ``$CMA_OPTIMIZE_STORAGE``), else
in a journal file beside the store. A study remembers its setup; bringing
another one to it exits 2 saying what differs. Then ``--jobs`` worker processes
run ``--trials`` trials between them (:mod:`optimize.study`), a progress bar on
a terminal showing trials done, the best value so far and the time left.

At the end the study is read back (every trial in it, from every worker and
every run), the chosen parameters, those with the best mean out-of-sample
score, are written as a config fragment (``--output``, else
``optimize/STUDY.toml`` beside the store) with the optimization report beside it
(``.md`` and ``.html``), and a summary is printed. ``--trials 0`` runs nothing and
writes the result of what the study holds (``--data`` may then be left out).

Ctrl-C stops after the running trials and keeps the study; a second one quits at
once, marking the running trials failed (exit 130).
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tui.backtest_cmd import (
    ProgressLine,
    Request,
    StopFlag,
    _agent_names,
    config_checks,
    first_interrupt_stops,
    load_all,
    parse_when,
)
from tui.cli import EXIT_FAIL, EXIT_OK, die

if TYPE_CHECKING:
    import optuna

    from engine.config import Settings
    from optimize.study import RunState, Setup
    from reports.optimization import Optimization, Param

__all__ = ["optimize_command"]

#: The environment variable that may hold the storage URL (kept off the command line,
#: where a password would show in the process list).
STORAGE_ENV = "CMA_OPTIMIZE_STORAGE"
MAX_TRIALS = 100_000
MAX_WINDOWS = 50


def _whole(option: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        die(f"{option} must be a whole number from {low} to {high:,}, got {text!r}")
    if not low <= value <= high:
        die(f"{option} must be a whole number from {low} to {high:,}, got {text!r}")
    return value


def _jobs(text: str) -> int:
    from optimize.study import cpu_count

    cores = cpu_count()
    try:
        jobs = int(text)
    except ValueError:
        die(f"--jobs must be a whole number from 1 to {cores}, got {text!r}")
    if jobs < 1:
        die(f"--jobs must be a whole number from 1 to {cores}, got {text!r}")
    if jobs > cores:
        die(
            f"--jobs {jobs} is more than this machine's {cores} cores; trials are CPU-bound, "
            f"so use at most {cores} (run workers on more machines with --storage)"
        )
    return jobs


def _output(path: Path) -> Path:
    """``--output``: a regular file or a new one, in a folder that exists or can be made
    and can be written (checked before any trial runs)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        die(f"--output {path}: {exc.strerror}")
    if mode is not None and not stat.S_ISREG(mode):
        die(f"--output {path}: exists and is not a regular file")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        die(f"--output {path}: cannot make its folder {folder}: {exc.strerror}")
    if not os.access(folder, os.W_OK | os.X_OK):
        die(f"--output {path}: its folder {folder} cannot be written")
    return path


def optimize_command(args: argparse.Namespace) -> int:
    """``cma optimize``: see the module docstring."""
    from engine.backtest.driver import Approval
    from optimize.space import space_toml
    from optimize.study import (
        Setup,
        StudyError,
        open_storage,
        open_study,
        quiet_optuna,
        storage_label,
        study_setup,
    )
    from optimize.trial import walk_forward
    from tui.subcommands import settings_from_args

    trials = _whole("--trials", args.trials, 0, MAX_TRIALS)
    jobs = _jobs(args.jobs)
    windows_n = _whole("--windows", args.windows, 1, MAX_WINDOWS)
    min_trades = _whole("--min-trades", args.min_trades, 0, 1_000_000)
    if args.seed is not None:
        seed = _whole("--seed", args.seed, 0, 2**31 - 1)
    elif args.storage is not None or os.environ.get(STORAGE_ENV):
        # Machines sharing a study with one seed would draw the same startup trials.
        seed = int.from_bytes(os.urandom(4), "big") >> 1
    else:
        seed = 0
    start = parse_when("--from", args.start) if args.start is not None else None
    end = parse_when("--to", args.end) if args.end is not None else None
    if start is not None and end is not None and start >= end:
        die(f"--from {args.start} is not before --to {args.end}: the range is empty")
    url = args.storage if args.storage is not None else os.environ.get(STORAGE_ENV) or None
    if url is not None and not url.strip():
        die("--storage is empty; give a database URL or leave it out")
    output = None if args.output is None else _output(args.output)
    if not args.data and not (trials == 0 and args.study) and not args.print_space:
        die("give candles: --data FILE... (CSV files); only --trials 0 --study NAME needs none")

    agents = None if args.agents is None else _agent_names(args.agents)
    request = Request(tuple(args.data or ()), (), None, None, start, end, Approval(), agents, False)
    overrides = request.overrides()
    settings = settings_from_args(args, check=config_checks(request), **overrides)
    journal = settings.store.resolved_path().parent / "optimize" / "studies.journal"
    bar = ProgressLine(sys.stderr)

    if args.print_space:
        print(space_toml(_space(args.space, settings)), end="")
        return EXIT_OK

    setup: Setup | None = None
    if args.data:
        columns = load_all(request, bar)
        feed = {"symbols": tuple(c.symbol for c in columns), "timeframe": columns[0].timeframe}
        settings = settings_from_args(args, check=False, **{**overrides, "feed": feed})
        space = _space(args.space, settings)
        try:
            windows = walk_forward(columns, windows_n)
        except ValueError as exc:
            die(str(exc))
        setup = Setup.of(
            space, args.objective, min_trades, windows, columns, settings,
            [p.name for p in request.files],
        )  # fmt: skip
    name = args.study or (setup.name() if setup is not None else "")
    if not name.strip() or len(name) > 200:
        die(f"--study must be a name of 1 to 200 characters, got {name!r}")

    label = storage_label(url, journal)
    quiet_optuna(None)  # its info lines (a study made, a trial done) are not for the terminal
    try:
        storage = open_storage(url, journal)
        study = open_study(storage, name, setup, label)
    except StudyError as exc:
        die(str(exc))
    setup = study_setup(study)

    state: RunState | None = None
    if trials > 0:
        state = _run(args, settings, request, url, journal, name, jobs, trials, seed, bar)
    return _finish(study, setup, seed, output, journal, label, state, trials)


def _space(path: Path | None, settings: Settings) -> tuple[Param, ...]:
    """The ``--space`` file's space, or the default one, for the agents ``settings`` run;
    exit 2 naming the key on a problem."""
    from engine.assembly import load_agents
    from optimize.space import SpaceError, default_space, read_space

    running = {cls.name: cls for cls in load_agents(settings)}
    try:
        if path is not None:
            return read_space(path, settings, running)
        return default_space(settings, running)
    except SpaceError as exc:
        die(str(exc))


def _run(
    args: argparse.Namespace,
    settings: Settings,
    request: Request,
    url: str | None,
    journal: Path,
    name: str,
    jobs: int,
    trials: int,
    seed: int,
    bar: ProgressLine,
) -> RunState:
    from optimize.study import WorkerSpec, run_workers
    from tui.logs import secrets_of, setup_logging

    log_file = setup_logging(secrets=secrets_of(settings))
    spec = WorkerSpec(
        url=url,
        journal=str(journal),
        study=name,
        files=tuple(str(p.resolve()) for p in request.files),
        start=request.start,
        end=request.end,
        settings_json=settings.model_dump_json(),
        seed=seed,
        log_file=None if log_file is None else str(log_file),
    )
    flag = StopFlag(lambda: bar.say("stopping after the running trials (Ctrl-C again quits)"))

    def shown(state: RunState) -> None:
        if state.best is not None and not flag.is_set:
            bar.note = f"best {state.best:.4g}"
        bar.update(state.done, trials)

    bar.start(f"optimize ({jobs} job{'s' if jobs > 1 else ''})", unit="trials")
    bar.update(0, trials)
    with first_interrupt_stops(flag):
        try:
            state = run_workers(spec, jobs, trials, on_event=shown, should_stop=flag)
        finally:
            bar.clear()
    for error in state.errors:
        print(f"cma: {error}", file=sys.stderr)
    return state


def _finish(
    study: optuna.Study,
    setup: Setup,
    seed: int,
    output: Path | None,
    journal: Path,
    label: str,
    state: RunState | None,
    trials: int,
) -> int:
    from optimize.result import fragment_toml, read_optimization, write_fragment
    from reports.optimization_render import write_optimization_report

    fragment = output or journal.parent / f"{_file_name(study.study_name)}.toml"
    try:
        fragment.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        die(f"cannot make the folder {fragment.parent}: {exc.strerror}", EXIT_FAIL)
    opt = read_optimization(study, setup, seed=seed, fragment=fragment)
    counts = opt.counts
    if state is not None:
        stopped = " (stopped by Ctrl-C)" if state.stopped else ""
        print(f"ran {state.done} of {trials} trials{stopped}")
    print(
        f"study {opt.study} in {label}: {len(opt.trials)} trials "
        f"({counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed"
        + (f", {counts['running']} running elsewhere" if counts["running"] else "")
        + ")"
    )
    _print_table(opt)
    written: list[Path] = []
    if opt.chosen is not None:
        builtin = tuple(a for a in opt.agents if ":" not in a and "." not in a)
        user = tuple(a for a in opt.agents if a not in builtin)
        try:
            write_fragment(fragment_toml(opt, (builtin, user)), fragment)
        except OSError as exc:
            die(f"cannot write the config fragment {fragment}: {exc.strerror}", EXIT_FAIL)
        print(f"config fragment  {fragment}")
    try:
        written = write_optimization_report(opt, fragment.with_suffix(""))
    except OSError as exc:
        die(f"cannot write the report beside {fragment}: {exc.strerror}", EXIT_FAIL)
    print(f"report           {', '.join(str(p) for p in written)}")
    if opt.chosen is None:
        print(
            "no parameters chosen: no trial completed with every window scored "
            "(see the report's pruned trials; lower --min-trades or widen the space)",
            file=sys.stderr,
        )
        return EXIT_FAIL
    return EXIT_OK


def _file_name(study: str) -> str:
    """A study name as a file name: path separators and oddities made dashes."""
    clean = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in study).strip(".")
    return clean or "study"


def _print_table(opt: Optimization) -> None:
    from engine.backtest.metrics import pct, ratio
    from tui.backtest_cmd import _when as when

    def fmt(value: float | None) -> str:
        return pct(value) if opt.objective == "return" else ratio(value)

    chosen, best = opt.chosen, opt.best_in_sample
    if chosen is None:
        return
    print(
        f"chosen: trial {chosen.number}, mean out-of-sample {opt.objective} "
        f"{fmt(chosen.oos_mean)} (in sample {fmt(chosen.value)})"
    )
    if best is not None and best.number != chosen.number:
        print(
            f"best in sample: trial {best.number}, {fmt(best.value)} in sample, "
            f"{fmt(best.oos_mean)} out of sample"
        )
    print(
        f"{'window':6}  {'train from':16}  {'test from':16}  {'in':>9}  {'out':>9}  trades in/out"
    )
    for w in opt.windows:
        k = w.index
        ins = chosen.in_sample[k] if k < len(chosen.in_sample) else None
        oos = chosen.out_of_sample[k] if k < len(chosen.out_of_sample) else None
        t_in = chosen.trades_in[k] if k < len(chosen.trades_in) else 0
        t_out = chosen.trades_out[k] if k < len(chosen.trades_out) else 0
        print(
            f"{k + 1:<6}  {when(w.train_start):16}  {when(w.test_start):16}  "
            f"{fmt(ins):>9}  {fmt(oos):>9}  {t_in}/{t_out}"
        )
    for key, value in sorted(chosen.params.items()):
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        print(f"  {key} = {shown}")
