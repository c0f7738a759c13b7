"""``cma optimize`` end to end: the real executable, worker processes and study storage.

Bad input runs through :func:`tui.cli.main` in this process (each fails before a
study is opened or a worker started). The rest run the real ``cma`` on the shared
BTC/USDT file, cut to a week, into a journal-file study under a private data
folder; the study is then read back with Optuna itself.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from shared_data import shared_data_dir
from support import CMA, free_port, screen, tmux, tmux_session, wait_for

from optimize.study import cpu_count
from tui import cli

BTC = "binanceus_BTC-USDT_1m_2023-03.csv"
WEEK = ("--to", "2023-03-08")
QUICK = ("--windows", "2", "--min-trades", "0", *WEEK)


@pytest.fixture(autouse=True)
def _private_homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CMA_"):
            monkeypatch.delenv(key)
    for name in ("CONFIG", "DATA", "CACHE", "STATE"):
        monkeypatch.setenv(f"XDG_{name}_HOME", str(tmp_path / name.lower()))


def btc() -> str:
    return str(shared_data_dir() / BTC)


def env_of(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
    for name in ("CONFIG", "DATA", "CACHE", "STATE"):
        env[f"XDG_{name}_HOME"] = str(tmp_path / name.lower())
    return env


def optimize(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CMA), "optimize", *args],
        env=env_of(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def journal(tmp_path: Path) -> Path:
    return tmp_path / "data" / "cma" / "optimize" / "studies.journal"


def load(tmp_path: Path, name: str) -> optuna.Study:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(journal(tmp_path))))
    return optuna.load_study(study_name=name, storage=storage)


def study_name(out: str) -> str:
    found = re.search(r"^study (\S+) in ", out, re.M)
    assert found, out
    return found.group(1)


def printed_path(out: str, label: str) -> Path:
    found = re.search(rf"^{label} +(.+)$", out, re.M)
    assert found, out
    return Path(found.group(1))


# ---------------------------------------------------------------- bad input


def bad(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(["optimize", *argv])
    out, err = capsys.readouterr()
    assert exc.value.code == 2, err
    assert out == "" and err.startswith("cma: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (("--trials", "-1"), "--trials must be a whole number from 0"),
        (("--trials", "many"), "--trials must be a whole number"),
        (("--jobs", "0"), "--jobs must be a whole number from 1"),
        (("--windows", "0"), "--windows must be a whole number from 1"),
        (("--min-trades", "-2"), "--min-trades must be a whole number"),
        (("--seed", "x"), "--seed must be a whole number"),
        (("--from", "2023-03-09", "--to", "2023-03-02"), "the range is empty"),
        (("--from", "March"), "--from must be a UTC date"),
        (("--storage", " "), "--storage is empty"),
        (("--storage", "no such thing"), "--storage: not a database URL"),
        (("--storage", "mysql+nodriver://u@h/db"), "no database driver"),
        (("--agents", "sma_crosss"), "unknown agent 'sma_crosss' (did you mean 'sma_cross'?)"),
        (("--windows", "50"), "--windows 50 needs at least 106 candles"),
        (("--study", "x" * 201), "--study must be a name of 1 to 200 characters"),
    ],
)
def test_bad_input_exits_2_naming_the_argument(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], says: str
) -> None:
    data = ("--data", btc(), "--from", "2023-03-01", "--to", "2023-03-01T01:00")
    err = bad(capsys, *data, *argv)
    assert says in err, err


def test_no_data_and_a_jobs_beyond_the_cores_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert "give candles: --data FILE" in bad(capsys, "--trials", "5")
    cores = cpu_count()
    err = bad(capsys, "--data", btc(), "--jobs", str(cores + 1))
    assert f"--jobs {cores + 1} is more than this machine's {cores} cores" in err


def test_a_storage_that_cannot_be_reached_is_named_without_its_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    url = f"postgresql://cma:hunter2secret@127.0.0.1:{port}/studies"
    started = time.monotonic()
    err = bad(capsys, "--data", btc(), *WEEK, "--storage", url)
    assert time.monotonic() - started < 30
    assert f"--storage postgresql+psycopg://cma:***@127.0.0.1:{port}/studies: cannot connect" in err
    assert "hunter2secret" not in err
    # The URL may come from the environment instead, off the process list.
    os.environ["CMA_OPTIMIZE_STORAGE"] = url
    try:
        err = bad(capsys, "--data", btc(), *WEEK)
    finally:
        del os.environ["CMA_OPTIMIZE_STORAGE"]
    assert "cannot connect" in err and "hunter2secret" not in err


def test_a_bad_space_file_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "space.toml"
    space.write_text("[agents.stop_atr]\nlow = 4.0\nhigh = 1.0\n")
    err = bad(capsys, "--data", btc(), *WEEK, "--space", str(space))
    assert f"--space {space}: agents.stop_atr: the range 4.0 .. 1.0 is empty" in err
    space.write_text("[agents.params.sma_cross.fast]\nlow = 2\nhigh = 8\n")
    err = bad(capsys, "--data", btc(), *WEEK, "--space", str(space))
    assert "no running agent is named 'sma_cross'" in err


def test_an_output_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = bad(capsys, "--data", btc(), *WEEK, "--output", str(tmp_path))
    assert f"--output {tmp_path}: exists and is not a regular file" in err
    # A folder that cannot be made is named before any trial runs.
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = bad(capsys, "--data", btc(), *WEEK, "--output", str(blocker / "best.toml"))
    assert f"--output {blocker / 'best.toml'}: Not a directory" in err
    err = bad(capsys, "--data", btc(), *WEEK, "--output", "/proc/no-such-folder/best.toml")
    assert "cannot make its folder /proc/no-such-folder: No such file or directory" in err
    assert not (tmp_path / "data" / "cma" / "optimize").exists()  # no study was opened


def test_print_space_prints_the_default_space_as_a_space_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["optimize", "--print-space", "--agents", "sma_cross"]) == 0
    out = capsys.readouterr().out
    space = tomllib.loads(out)
    assert space["agents"]["params"]["sma_cross"]["fast"] == {"low": 5, "high": 20}
    assert set(space) == {"agents", "approval", "risk"}
    (tmp_path / "space.toml").write_text(out)  # and it reads back as a space file
    assert cli.main(["optimize", "--print-space", "--agents", "sma_cross",
                     "--space", str(tmp_path / "space.toml")]) == 0  # fmt: skip
    assert capsys.readouterr().out == out


# ---------------------------------------------------------------- end to end


def test_two_jobs_share_one_study_and_the_result_runs_as_a_config(tmp_path: Path) -> None:
    done = optimize(tmp_path, "--data", btc(), *QUICK, "--trials", "8", "--jobs", "2")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # piped: no bar, and Optuna's log is not printed
    out = done.stdout
    assert out.startswith("ran 8 of 8 trials\n"), out
    name = study_name(out)
    study = load(tmp_path, name)
    trials = study.get_trials(deepcopy=False)
    # exactly the trials asked for, each once, none left running
    assert sorted(t.number for t in trials) == list(range(8))
    states = {t.state for t in trials}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}, states
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2, workers  # both processes ran trials
    assert all(w.split(":")[1] != str(os.getpid()) for w in workers)
    # each complete trial scored both windows in and out of sample
    for t in trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            scores = t.user_attrs["scores"]
            assert len(scores["in_sample"]) == len(scores["out_of_sample"]) == 2
            assert t.value == pytest.approx(sum(scores["in_sample"]) / 2)
    fragment = printed_path(out, "config fragment")
    assert fragment == journal(tmp_path).parent / f"{name}.toml"
    config = tomllib.loads(fragment.read_text())
    chosen = re.search(r"^chosen: trial (\d+),", out, re.M)
    assert chosen, out
    params = study.trials[int(chosen.group(1))].params
    assert config["agents"]["stop_atr"] == params["agents.stop_atr"]
    assert config["approval"]["auto_confidence"] == params["approval.auto_confidence"]
    reports = printed_path(out, "report")
    assert str(reports).endswith(".md, " + str(fragment.with_suffix(".html")))
    assert fragment.with_suffix(".md").is_file() and fragment.with_suffix(".html").is_file()

    # cma backtest and cma config validate take the fragment unchanged
    env = env_of(tmp_path)
    validated = subprocess.run(
        [str(CMA), "config", "validate", str(fragment)], env=env, capture_output=True, text=True
    )
    assert validated.returncode == 0, validated.stderr
    backtest = subprocess.run(
        [str(CMA), "backtest", "--config", str(fragment), "--data", btc(), *WEEK,
         "--db", str(tmp_path / "bt.db")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert backtest.returncode == 0, backtest.stderr
    assert re.search(r"^session 1$", backtest.stdout, re.M)

    # The same command again adds to the same study; another space is refused with exit 2.
    again = optimize(tmp_path, "--data", btc(), *QUICK, "--trials", "2")
    assert again.returncode == 0, again.stderr
    assert study_name(again.stdout) == name
    assert len(load(tmp_path, name).trials) == 10
    space = tmp_path / "space.toml"
    space.write_text("[agents.stop_atr]\nlow = 1.0\nhigh = 2.0\n")
    other = optimize(tmp_path, "--data", btc(), *QUICK, "--study", name, "--space", str(space))
    assert other.returncode == 2
    assert f"--study {name} already exists in" in other.stderr
    assert "with another search space" in other.stderr and "Traceback" not in other.stderr
    # --trials 0 runs nothing and writes the result of what the study holds
    fragment.unlink()
    result = optimize(tmp_path, "--trials", "0", "--study", name)
    assert result.returncode == 0, result.stderr
    assert "ran " not in result.stdout and f"study {name} in " in result.stdout
    assert tomllib.loads(fragment.read_text()) == config
    assert len(load(tmp_path, name).trials) == 10


def test_a_seeded_study_repeats_its_trials(tmp_path: Path) -> None:
    runs = []
    for name in ("first", "second"):
        done = optimize(
            tmp_path, "--data", btc(), *QUICK, "--trials", "4", "--seed", "7", "--study", name
        )
        assert done.returncode == 0, done.stderr
        runs.append([(t.params, t.state, t.value) for t in load(tmp_path, name).trials])
    assert runs[0] == runs[1]
    other = optimize(tmp_path, "--data", btc(), *QUICK, "--trials", "1", "--seed", "8",
                     "--study", "third")  # fmt: skip
    assert other.returncode == 0, other.stderr
    assert load(tmp_path, "third").trials[0].params != runs[0][0][0]


def test_when_no_trial_completes_no_parameters_are_chosen(tmp_path: Path) -> None:
    done = optimize(tmp_path, "--data", btc(), *WEEK, "--windows", "2", "--trials", "2",
                    "--min-trades", "100000")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no parameters chosen" in done.stderr and "Traceback" not in done.stderr
    assert "config fragment" not in done.stdout
    name = study_name(done.stdout)
    notes = {t.user_attrs["note"] for t in load(tmp_path, name).trials}
    assert all("fewer than --min-trades 100000" in n for n in notes), notes


def test_ctrl_c_stops_after_the_running_trials_and_keeps_the_study(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(CMA), "optimize", "--data", btc(), *QUICK, "--trials", "100000", "--jobs", "2",
         "--study", "stopped"],
        env=env_of(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        def some_done() -> bool:
            if not journal(tmp_path).exists():
                return False
            try:
                trials = load(tmp_path, "stopped").trials
            except KeyError:
                return False
            return sum(t.state.is_finished() for t in trials) >= 3

        wait_for("three trials", some_done, 120)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    assert "Traceback" not in err
    ran = re.search(r"^ran (\d+) of 100000 trials \(stopped by Ctrl-C\)$", out, re.M)
    assert ran, out
    trials = load(tmp_path, "stopped").trials
    assert len(trials) == int(ran.group(1)) >= 3
    assert all(t.state.is_finished() for t in trials)  # none left running
    assert printed_path(out, "config fragment").is_file()


SLOW_AGENT = """
import time

from engine.agents.base import Agent


class Slow(Agent):
    \"\"\"Votes never, at a tenth of a second a candle: a trial that is still running.\"\"\"

    name = "slow"

    def on_candle(self, candle):
        time.sleep(0.1)
        return None
"""


def test_a_second_ctrl_c_quits_at_once_and_marks_the_running_trials_failed(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "slowagents.py").write_text(SLOW_AGENT)
    env = {**env_of(tmp_path), "PYTHONPATH": str(folder)}
    proc = subprocess.Popen(
        [str(CMA), "optimize", "--data", btc(), *QUICK, "--trials", "10", "--jobs", "2",
         "--agents", "slowagents:Slow", "--study", "quit"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        def both_running() -> bool:
            try:
                trials = load(tmp_path, "quit").trials
            except (KeyError, FileNotFoundError):
                return False
            return sum(t.state == optuna.trial.TrialState.RUNNING for t in trials) == 2

        wait_for("two running trials", both_running, 120)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)  # two signals at once would reach the handler as one
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err
    trials = load(tmp_path, "quit").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2


# ---------------------------------------------------------------- a terminal


BAR = re.compile(
    r"^optimize \(2 jobs\) +\d+\.\d% \[[#-]+\] [\d,.]+ trials/min +ETA \d+:\d\d"
    r"( +best -?[\d.e+-]+)?"
)


def test_a_terminal_shows_trials_the_best_value_and_the_time_left(tmp_path: Path) -> None:
    env = env_of(tmp_path)
    env["TERM"] = "xterm"
    exit_file = tmp_path / "exit"
    keep = ("PATH", "HOME", "TERM", "COVERAGE_PROCESS_CONFIG", "PYTHONPATH")
    assigns = [f"{k}={shlex.quote(v)}" for k, v in env.items() if k in keep or k.startswith("XDG_")]
    command = " ".join(
        ["env", *assigns, str(CMA), "optimize", "--data", btc(), "--min-trades", "0",
         "--trials", "100000", "--jobs", "2", f"; echo CMA-EXIT=$? > {exit_file}"]
    )  # fmt: skip
    with tmux_session(command + "; sleep 60", prefix="cma-opt") as name:
        seen: list[str] = []

        def bar(best: bool) -> Callable[[], bool]:
            def check() -> bool:
                lines = screen(name).splitlines()
                seen[:] = [s for s in lines if BAR.match(s) and (" best " in s or not best)]
                return bool(seen)

            return check

        wait_for("the progress bar", bar(best=False), 180)
        wait_for("the best value so far on it", bar(best=True), 180)
        assert len(seen) == 1 and len(seen[0]) <= 78, seen
        tmux("send-keys", "-t", name, "C-c")
        wait_for("cma to exit", exit_file.exists, 300)
        assert exit_file.read_text().strip() == "CMA-EXIT=0"
        text = screen(name, "-S", "-200")  # with what scrolled by
        assert "trials/min" not in text, text  # the bar is erased at the end
        assert re.search(r"^ran \d+ of 100000 trials \(stopped by Ctrl-C\)$", text, re.M), text
        assert "config fragment" in text


def test_two_symbols_and_the_calmar_objective(tmp_path: Path) -> None:
    files = [str(shared_data_dir() / f"binance_{s}-BTC_5m_2018-01.csv") for s in ("ETH", "LTC")]
    done = optimize(tmp_path, "--data", *files, "--objective", "calmar", "--windows", "3",
                    "--trials", "6", "--min-trades", "0")  # fmt: skip
    assert done.returncode in (0, 1), done.stderr  # 1: no trial scored every window
    study = load(tmp_path, study_name(done.stdout))
    setup = study.user_attrs["cma_setup"]
    assert [s for s, _, _ in setup["data"]] == ["ETH/BTC", "LTC/BTC"]
    assert setup["objective"] == "calmar" and len(setup["windows"]) == 3
    assert len(study.trials) == 6 and all(t.state.is_finished() for t in study.trials)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    for t in complete:  # the value is the mean in-sample Calmar of the three windows
        assert t.value == pytest.approx(sum(t.user_attrs["scores"]["in_sample"]) / 3)
    if done.returncode == 0:
        assert "mean out-of-sample calmar" in done.stdout
