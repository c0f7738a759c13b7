"""``cma optimize``'s throughput with 1 and 2 worker processes, and a worker's memory.

Run: ``.venv/bin/python benchmarks/optimize.py [--trials N] [--windows N] [--rounds N]
[--dir DIR]``

The study is set up as ``cma optimize --data binanceus_BTC-USDT_1m_2023-03.csv``
sets it up (the default agents, the default space, 4 walk-forward windows, the
Sharpe objective, seed 0), in a journal file in a temporary folder, and run by
:func:`optimize.study.run_workers`, the command's own worker processes:

1. **Throughput.** ``--trials`` (default 200) trials with ``--jobs 1``, then
   the same number in a new study with ``--jobs 2``, alternating for ``--rounds``
   (default 2): trials per minute (wall time from the workers' start to the last
   trial, process start included), the best round of each, and their ratio.
   Target: 2 jobs give at least 1.7 times the trials of 1 on two
   cores. A trial's cost depends on its parameters (more trades, longer
   backtests; a pruned trial stops early), and two workers' samplers would see
   other histories than one's, so every run evaluates the same 200 parameter
   sets, drawn at random (seed 0) and enqueued in its study before it starts.
   The backtests run per minute (a window's training or test range, one
   backtest each) are printed too: the work done, whatever the pruner cut.
2. **Memory.** Each worker's RSS after its 10th trial, its 20th (TPE samples from
   the 11th on, importing what it needs then) and its last (the 200th with one job):
   bounded means no growth beyond noise. Every process of a study keeps Optuna's copy
   of the study's trials, a few KiB a trial.

It prints figures; it is not a test and exits 0 unless something crashes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.assembly import load_agents  # noqa: E402
from engine.backtest.data import load_columns  # noqa: E402
from engine.config import load_settings  # noqa: E402
from optimize.space import default_space  # noqa: E402
from optimize.study import (  # noqa: E402
    RunState,
    Setup,
    WorkerSpec,
    cpu_count,
    open_storage,
    open_study,
    quiet_optuna,
    run_workers,
)
from optimize.trial import suggest, walk_forward  # noqa: E402
from reports.optimization import Param  # noqa: E402

BTC = ROOT.parent / "shared" / "data" / "binanceus_BTC-USDT_1m_2023-03.csv"
TARGET = 1.7


def run(work: Path, name: str, jobs: int, trials: int, windows: int) -> tuple[float, RunState, int]:
    """Seconds, the run's state, and the backtests its trials ran."""
    columns = [load_columns(BTC)]
    feed = {"symbols": [columns[0].symbol], "timeframe": columns[0].timeframe}
    settings = load_settings(None, {}, feed=feed)
    agents = {cls.name: cls for cls in load_agents(settings)}
    space = default_space(settings, agents)
    setup = Setup.of(
        space, "sharpe", 3, walk_forward(columns, windows), columns, settings, [BTC.name]
    )
    journal = work / "studies.journal"
    storage = open_storage(None, journal)
    study = open_study(storage, name, setup, str(journal))
    for params in draws(space, trials):  # the same parameter sets in every run
        study.enqueue_trial(params)
    spec = WorkerSpec(
        url=None,
        journal=str(journal),
        study=name,
        files=(str(BTC),),
        start=None,
        end=None,
        settings_json=settings.model_dump_json(),
        seed=0,
        log_file=None,
    )
    start = time.perf_counter()
    state = run_workers(spec, jobs, trials)
    seconds = time.perf_counter() - start
    backtests = 0
    for t in study.get_trials(deepcopy=False):
        scores = t.user_attrs.get("scores") or {}
        backtests += len(scores.get("in_sample", ())) + len(scores.get("out_of_sample", ()))
    return seconds, state, backtests


def draws(space: Sequence[Param], n: int) -> list[dict[str, Any]]:
    """``n`` parameter sets drawn at random (seed 0) from ``space``."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(suggest(trial, space))
        study.tell(trial, 0.0)
    return out


def mib(kib: int) -> str:
    return f"{kib / 1024:,.1f} MiB"


def main(args: argparse.Namespace) -> None:
    quiet_optuna(None)
    cores = cpu_count()
    print(f"optimize: {args.trials} trials, {args.windows} windows, {BTC.name} (30,240 candles)")
    print(f"cores available: {cores}; load average {os.getloadavg()[0]:.2f}")
    load_columns(BTC)  # the cache is made once, before either run
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        # Rounds alternate 1 and 2 jobs, each a new study; the best round of each counts
        # (a shared machine's other load only ever slows a round down).
        best: dict[int, tuple[float, float, RunState]] = {}
        for round_ in range(args.rounds):
            for jobs in (1, 2):
                if jobs > cores:
                    continue
                seconds, state, backtests = run(
                    Path(tmp), f"bench-{jobs}-{round_}", jobs, args.trials, args.windows
                )
                per_min = state.done / seconds * 60
                bt_min = backtests / seconds * 60
                print(
                    f"round {round_ + 1}, jobs {jobs}: {state.done} trials ({state.complete} "
                    f"complete, {state.pruned} pruned, {state.failed} failed) in {seconds:.1f} s"
                    f" = {per_min:,.0f} trials/min; {backtests} backtests = {bt_min:,.0f}/min"
                )
                if jobs not in best or per_min > best[jobs][0]:
                    best[jobs] = (per_min, bt_min, state)
        for jobs, (_, _, state) in sorted(best.items()):
            for worker, rss in sorted(state.rss.items()):
                if len(rss) >= 20:
                    # Trial 10 is the last before TPE's first draw (10 random startup
                    # trials); from trial 20 on, the sampler's own imports are made.
                    print(
                        f"jobs {jobs}, worker {worker + 1}: RSS {mib(rss[9])} at its trial 10, "
                        f"{mib(rss[19])} at 20, {mib(rss[-1])} at its trial {len(rss)} "
                        f"({(rss[-1] - rss[9]) / 1024:+.1f} MiB from 10, "
                        f"{(rss[-1] - rss[19]) / 1024:+.1f} MiB from 20)"
                    )
        if 2 not in best:
            print(f"--jobs 2: skipped, this machine has {cores} core(s)")
            return
        trials_ratio = best[2][0] / best[1][0]
        work_ratio = best[2][1] / best[1][1]
        verdict = "PASS" if trials_ratio >= TARGET else "FAIL"
        print(
            f"2 jobs / 1 job (best of {args.rounds}): {trials_ratio:.2f}x trials/min "
            f"(target >= {TARGET}: {verdict}), {work_ratio:.2f}x backtests/min"
        )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each (default 2)")
    parser.add_argument("--dir", type=Path, default=None, help="folder for the temporary study")
    return parser.parse_args()


if __name__ == "__main__":
    main(parse())
