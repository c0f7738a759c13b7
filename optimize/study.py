"""The study: where trials are kept, what every worker of it must share, and the workers.

* **Storage.** Without a URL, a journal file on this machine
  (``optimize/studies.journal`` beside the store); Optuna's journal storage takes
  several processes at once. With a URL, an Optuna RDB storage: PostgreSQL for
  workers on several machines (SQLite serves one machine only). A URL that cannot
  be reached is a :class:`StudyError`; its password is never shown.
* **Setup.** A study remembers what its trials were scored on (:class:`Setup`):
  the search space, the objective, the data's content, the windows, the minimum
  trades and the settings that are not tuned. A worker that brings another setup
  to an existing study is refused (:class:`StudyError` saying what differs).
* **Workers.** :func:`run_workers` starts ``jobs`` worker processes (spawned, not
  forked: the parent holds a database connection). Each loads the candles itself
  from the content-hash cache, memory-mapped, so the arrays are shared by the
  operating system, not copied per trial. The trials to run are a shared count:
  the workers of one command run exactly ``trials`` between them. Each worker's
  sampler is Optuna's TPE, seeded ``seed + worker``, with the median pruner.
  Workers ignore SIGINT; the parent's ``stop`` makes them finish their running
  trial and start no other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import queue
import random
import signal
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimize.space import space_json
from reports.optimization import Param, Window

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

    import optuna
    from optuna.storages import BaseStorage

    from engine.backtest.data import Columns
    from engine.config import Settings

__all__ = [
    "Event",
    "Setup",
    "StudyError",
    "WorkerSpec",
    "open_storage",
    "open_study",
    "run_workers",
    "storage_label",
]

log = logging.getLogger("cma.optimize")

#: Seconds a PostgreSQL connection may take before the storage counts as unreachable.
CONNECT_TIMEOUT = 5
#: Tries at opening an RDB storage whose tables another worker is creating at that moment.
_CREATE_ATTEMPTS = 5
#: The user attribute of a study that holds its :class:`Setup`.
SETUP_ATTR = "cma_setup"
#: The settings sections a study's trials depend on besides the tuned values.
_SCORED_SECTIONS = ("agents", "approval", "strategy", "risk", "broker")


class StudyError(Exception):
    """A storage or study problem, phrased for a person (exit 2)."""


# ---------------------------------------------------------------- storage


def storage_label(url: str | None, journal: Path) -> str:
    """How a storage is named in messages: the URL without its password."""
    if url is None:
        return str(journal)
    try:
        from sqlalchemy.engine import make_url

        return make_url(_with_driver(url)).render_as_string(hide_password=True)
    except Exception:
        return "the --storage URL"


def _with_driver(url: str) -> str:
    """``postgresql://`` (and ``postgres://``) through psycopg 3, the driver installed."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def open_storage(url: str | None, journal: Path) -> BaseStorage:
    """The study storage: an RDB at ``url``, else the journal file ``journal``.
    :class:`StudyError` when the URL is malformed, names no installed driver or
    cannot be reached."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if url is None:
        try:
            journal.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock: Any = _FlockLock(journal)  # a BaseJournalFileLock by its methods
            return JournalStorage(JournalFileBackend(str(journal), lock))
        except OSError as exc:
            raise StudyError(f"cannot keep the study in {journal}: {exc.strerror}") from None
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    url = _with_driver(url)
    shown = storage_label(url, journal)
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StudyError(
            "--storage: not a database URL; e.g. postgresql+psycopg://user@host:5432/db "
            "or sqlite:///path/to/studies.db"
        ) from None
    engine_kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    password = parsed.password
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=60, grace_period=180
                )
        except (sqlalchemy.exc.NoSuchModuleError, ModuleNotFoundError, ImportError) as exc:
            raise StudyError(f"--storage {shown}: no database driver for it ({exc})") from None
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            # Workers started together on a new database race to create Optuna's tables
            # (PostgreSQL: duplicate key in pg_type); the loser finds them made on a retry.
            if attempt == _CREATE_ATTEMPTS - 1:
                reason = _reason(exc, str(password) if password else None)
                raise StudyError(f"--storage {shown}: cannot make its tables: {reason}") from None
            time.sleep(random.uniform(0.1, 0.5))
        except Exception as exc:  # OperationalError and kin: unreachable, refused, no database
            reason = _reason(exc, str(password) if password else None)
            raise StudyError(f"--storage {shown}: cannot connect: {reason}") from None
    raise AssertionError("not reached")


class _FlockLock:
    """The journal's lock as a blocking ``flock`` on ``JOURNAL.lock``.

    Optuna's own file locks poll with a sleep that doubles up to a second: two workers
    appending a few dozen lines a trial kept each other waiting that long, and two jobs
    ran fewer trials a minute than one (benchmarks/optimize.py). ``flock`` wakes the
    waiter the moment the lock is free. It serves one machine's file system, which is
    what the journal is for (several machines share an RDB instead). The backend only
    calls :meth:`acquire` and :meth:`release` (Optuna's ``BaseJournalFileLock``)."""

    def __init__(self, journal: Path) -> None:
        self._path = str(journal) + ".lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        import fcntl

        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        import fcntl

        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


def _reason(exc: BaseException, secret: str | None) -> str:
    """The first line of the driver's error, with no password in it."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    if secret:
        text = text.replace(secret, "***")
    return text[:300]


# ---------------------------------------------------------------- setup


@dataclass(frozen=True, slots=True)
class Setup:
    """What every trial of one study is scored on; a study keeps it as a user attribute."""

    space: str
    objective: str
    min_trades: int
    windows: tuple[tuple[int, int, int, int], ...]
    #: Per symbol: symbol, the content hash of its candles (after --from/--to), candles.
    data: tuple[tuple[str, str, int], ...]
    timeframe: str
    agents: tuple[str, ...]
    #: A hash of the settings that are not tuned (agents, approval, strategy, risk, broker).
    settings: str
    #: The data files' names (for the report; not compared).
    files: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        space: Sequence[Param],
        objective: str,
        min_trades: int,
        windows: Sequence[Window],
        columns: Sequence[Columns],
        settings: Settings,
        files: Sequence[str],
    ) -> Setup:
        sections = settings.model_dump(mode="json", include=set(_SCORED_SECTIONS))
        return cls(
            space=space_json(space),
            objective=objective,
            min_trades=min_trades,
            windows=tuple((w.train_start, w.train_end, w.test_start, w.test_end) for w in windows),
            data=tuple((c.symbol, content_hash(c), len(c)) for c in columns),
            timeframe=columns[0].timeframe,
            agents=tuple(settings.agents.enabled) + tuple(settings.agents.user),
            settings=_digest(json.dumps(sections, sort_keys=True)),
            files=tuple(files),
        )

    def attrs(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(json.dumps(asdict(self)))  # tuples as lists
        return out

    @classmethod
    def from_attrs(cls, data: dict[str, Any]) -> Setup:
        return cls(
            space=data["space"],
            objective=data["objective"],
            min_trades=int(data["min_trades"]),
            windows=tuple((int(a), int(b), int(c), int(d)) for a, b, c, d in data["windows"]),
            data=tuple((s, h, int(n)) for s, h, n in data["data"]),
            timeframe=data["timeframe"],
            agents=tuple(data["agents"]),
            settings=data["settings"],
            files=tuple(data.get("files", ())),
        )

    def differences(self, other: Setup) -> list[str]:
        """What ``other`` (a study's) has that this setup does not, in words."""
        out: list[str] = []
        if self.space != other.space:
            out.append("another search space")
        if self.objective != other.objective:
            out.append(f"the objective {other.objective} (not {self.objective})")
        if self.data != other.data or self.timeframe != other.timeframe:
            out.append("other candles (another file, symbol or date range)")
        if self.windows != other.windows:
            out.append("other walk-forward windows")
        if self.min_trades != other.min_trades:
            out.append(f"--min-trades {other.min_trades} (not {self.min_trades})")
        if self.agents != other.agents:
            out.append(f"the agents {', '.join(other.agents)} (not {', '.join(self.agents)})")
        elif self.settings != other.settings:
            out.append("other settings of agents, approval, strategy, risk or broker")
        return out

    def window_list(self) -> tuple[Window, ...]:
        return tuple(Window(k, *w) for k, w in enumerate(self.windows))

    def name(self) -> str:
        """The default study name: the same setup continues the same study."""
        key = json.dumps([self.space, self.objective, self.min_trades, self.windows, self.data,
                          self.settings, self.agents])  # fmt: skip
        return f"cma-{_digest(key)[:10]}"


def content_hash(columns: Columns) -> str:
    h = hashlib.sha256()
    for values in (
        columns.ts,
        columns.open,
        columns.high,
        columns.low,
        columns.close,
        columns.volume,
    ):
        h.update(memoryview(values.tobytes()))
    return h.hexdigest()[:32]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def open_study(storage: BaseStorage, name: str, setup: Setup | None, label: str) -> optuna.Study:
    """The study ``name`` in ``storage``, made when absent (with ``setup``). With ``setup``
    None, it must exist (its setup is read). :class:`StudyError` when it exists with
    another setup, or was not made by ``cma optimize``."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        if setup is None:
            raise StudyError(f"--study {name}: no such study in {label}") from None
        study = optuna.create_study(
            storage=storage, study_name=name, direction="maximize", load_if_exists=True
        )
    held = study.user_attrs.get(SETUP_ATTR)
    if held is None:
        if study.trials or study.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise StudyError(
                f"--study {name}: a study of that name in {label} was not made by cma optimize; "
                "choose another name"
            )
        if setup is None:
            raise StudyError(f"--study {name}: holds no cma optimize setup")
        study.set_user_attr(SETUP_ATTR, setup.attrs())
        return study
    if setup is not None:
        try:
            theirs = Setup.from_attrs(held)
        except (KeyError, TypeError, ValueError):
            raise StudyError(f"--study {name}: its setup in {label} cannot be read") from None
        diffs = setup.differences(theirs)
        if diffs:
            raise StudyError(
                f"--study {name} already exists in {label} with {'; '.join(diffs)}; "
                "choose another --study name (or run with what the study was made with)"
            )
    return study


def study_setup(study: optuna.Study) -> Setup:
    return Setup.from_attrs(study.user_attrs[SETUP_ATTR])


# ---------------------------------------------------------------- workers


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker process needs, picklable."""

    url: str | None
    journal: str
    study: str
    files: tuple[str, ...]
    start: int | None
    end: int | None
    settings_json: str
    seed: int
    log_file: str | None


@dataclass(frozen=True, slots=True)
class Event:
    """What a worker tells the parent: ``kind`` is start, done, error or exit."""

    kind: str
    worker: int
    number: int = -1
    state: str = ""
    value: float | None = None
    rss_kib: int = 0
    text: str = ""


def _rss_kib() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _take(budget: Synchronized[int]) -> bool:
    """Claim one trial of the shared count."""
    with budget.get_lock():
        if budget.value <= 0:
            return False
        budget.value -= 1
        return True


def quiet_optuna(log_file: str | None) -> None:
    """Optuna's log (a line per trial on stderr) goes to the log file, warnings only."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    root = logging.getLogger()
    if log_file is not None and not root.handlers:
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    logging.captureWarnings(True)


def worker_main(
    spec: WorkerSpec,
    index: int,
    budget: Synchronized[int],
    events: multiprocessing.Queue[Event],
    stop: Any,
    ready: Any,
) -> None:
    """One worker process: run trials while the shared count lasts and ``stop`` is clear.
    ``ready`` (a barrier of all the workers) starts them together once each is set up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        _work(spec, index, budget, events, stop, ready)
    except BaseException as exc:
        ready.abort()  # the others go on without this one
        events.put(Event("error", index, text=f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        events.put(Event("exit", index))


def _work(
    spec: WorkerSpec,
    index: int,
    budget: Synchronized[int],
    events: multiprocessing.Queue[Event],
    stop: Any,
    ready: Any,
) -> None:
    import threading

    import optuna

    from engine.backtest.data import load_columns
    from engine.config import Settings
    from optimize.space import space_from_json
    from optimize.trial import Scorer, suggest, worker_name

    quiet_optuna(spec.log_file)
    columns = [load_columns(path).between(spec.start, spec.end) for path in spec.files]
    storage = open_storage(spec.url, Path(spec.journal))
    study = open_study(storage, spec.study, None, storage_label(spec.url, Path(spec.journal)))
    setup = study_setup(study)
    settings = Settings.model_validate_json(spec.settings_json)
    scorer = Scorer(
        settings,
        columns,
        setup.window_list(),
        space_from_json(setup.space),
        objective=setup.objective,  # type: ignore[arg-type]
        min_trades=setup.min_trades,
    )
    study.sampler = optuna.samplers.TPESampler(seed=spec.seed + index, n_startup_trials=10)
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=5)
    who = worker_name()

    def objective(trial: optuna.Trial) -> float:
        events.put(Event("start", index, trial.number))
        began = time.perf_counter()
        trial.set_user_attr("worker", who)
        try:
            values = suggest(trial, scorer.space)

            def report(value: float, step: int) -> bool:
                trial.report(value, step)
                return trial.should_prune()

            value, scores = scorer.evaluate(values, report)
        except Exception as exc:
            trial.set_user_attr("note", f"{type(exc).__name__}: {exc}"[:300])
            log.exception("trial %s failed", trial.number)
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - began, 3))
        trial.set_user_attr("scores", scores.attrs())
        if value is None:
            trial.set_user_attr("note", scores.note)
            raise optuna.TrialPruned(scores.note)
        return value

    def finished(_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        events.put(
            Event(
                "done",
                index,
                trial.number,
                trial.state.name.lower(),
                trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None,
                _rss_kib(),
            )
        )

    with contextlib.suppress(threading.BrokenBarrierError):  # one failed: go on without it
        ready.wait(timeout=120)
    while not stop.is_set() and _take(budget):
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[finished])


@dataclass(slots=True)
class RunState:
    """What the parent knows of the workers as they go."""

    done: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    best: float | None = None
    #: Each worker's RSS (KiB) after each of its trials, in order.
    rss: dict[int, list[int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stopped: bool = False


def run_workers(
    spec: WorkerSpec,
    jobs: int,
    trials: int,
    *,
    on_event: Callable[[RunState], None] = lambda state: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> RunState:
    """Run ``trials`` trials in ``jobs`` worker processes; return what they did.

    ``should_stop()`` True makes the workers finish their running trials and start
    none. A KeyboardInterrupt here (the second Ctrl-C) terminates the workers at
    once and marks their running trials failed, so none is left running."""
    ctx = multiprocessing.get_context("spawn")
    budget = ctx.Value("i", trials)
    stop = ctx.Event()
    ready = ctx.Barrier(jobs)
    events: multiprocessing.Queue[Event] = ctx.Queue()
    procs = [
        ctx.Process(target=worker_main, args=(spec, i, budget, events, stop, ready), daemon=True)
        for i in range(jobs)
    ]
    state = RunState(rss={i: [] for i in range(jobs)})
    running: dict[int, int] = {}
    for p in procs:
        p.start()
    try:
        exited: set[int] = set()
        while len(exited) < jobs:
            if should_stop() and not stop.is_set():
                stop.set()
                state.stopped = True
            try:
                event = events.get(timeout=0.1)
            except queue.Empty:
                for i, p in enumerate(procs):  # a worker killed outright sends nothing
                    if i not in exited and not p.is_alive() and p.exitcode not in (0, None):
                        exited.add(i)
                        ready.abort()  # the others must not wait for it to start
                        state.errors.append(f"worker {i + 1} ended with exit code {p.exitcode}")
                        _fail_running(spec, running.pop(i, None))
                continue
            if event.kind == "start":
                running[event.worker] = event.number
            elif event.kind == "done":
                running.pop(event.worker, None)
                state.done += 1
                if event.state == "complete":
                    state.complete += 1
                    if event.value is not None and (state.best is None or event.value > state.best):
                        state.best = event.value
                elif event.state == "pruned":
                    state.pruned += 1
                else:
                    state.failed += 1
                state.rss[event.worker].append(event.rss_kib)
                on_event(state)
            elif event.kind == "error":
                state.errors.append(f"worker {event.worker + 1}: {event.text}")
            elif event.kind == "exit":
                exited.add(event.worker)
        for p in procs:
            p.join(timeout=10)
    except BaseException:
        for p in procs:
            if p.is_alive():
                p.kill()
        for p in procs:
            p.join(timeout=10)
        for number in running.values():
            _fail_running(spec, number)
        raise
    return state


def _fail_running(spec: WorkerSpec, number: int | None) -> None:
    """Mark a trial whose worker died failed, so the study holds none running forever."""
    if number is None:
        return
    import optuna

    try:
        storage = open_storage(spec.url, Path(spec.journal))
        study = optuna.load_study(study_name=spec.study, storage=storage)
        study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    except Exception:  # the storage may be what failed; nothing more to do
        log.exception("could not mark trial %s failed", number)


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
