"""The PostgreSQL of the tests (tests/postgres.py) is a real server: rows written on
one connection are read on another, an Optuna study on it is shared by two worker
processes, and it goes away when its ``with`` ends, also after a failure."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from decimal import Decimal
from pathlib import Path

import optuna
import psycopg
import pytest
from postgres import (
    PostgresMissing,
    closed_port_url,
    connect,
    find_bin_dir,
    fresh_database,
    running_postgres,
)
from sqlalchemy.engine import make_url

TRIALS_PER_WORKER = 6

# One worker of a shared study, as `cma optimize --storage URL --study NAME` runs one.
WORKER = textwrap.dedent(
    """
    import os, sys
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, name, trials = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def objective(trial):
        trial.set_user_attr("pid", os.getpid())
        x = trial.suggest_float("x", -10.0, 10.0)
        return (x - 2.0) ** 2

    optuna.load_study(study_name=name, storage=url).optimize(objective, n_trials=trials)
    """
)


def test_the_url_is_the_cma_role_on_localhost_without_a_password(postgres_db: str) -> None:
    url = make_url(postgres_db)
    assert (url.drivername, url.username, url.password, url.host) == (
        "postgresql+psycopg",
        "cma",
        None,
        "127.0.0.1",
    )
    with connect(postgres_db) as conn:
        row = conn.execute(
            "SELECT current_user, current_database(), inet_server_port(),"
            " current_setting('server_encoding'), rolsuper"
            " FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert row == ("cma", url.database, url.port, "UTF8", False)


def test_rows_written_on_one_connection_are_read_on_another(postgres_db: str) -> None:
    with connect(postgres_db) as writer, connect(postgres_db) as reader:
        writer.execute("CREATE TABLE fills (id serial PRIMARY KEY, price numeric NOT NULL)")
        with writer.transaction():
            writer.execute("INSERT INTO fills (price) VALUES (%s), (%s)", [Decimal("0.1")] * 2)
            # Not committed yet: the other connection sees nothing.
            assert reader.execute("SELECT count(*) FROM fills").fetchone() == (0,)
        reader.execute("INSERT INTO fills (price) VALUES (%s)", [Decimal("0.1")])
        total = writer.execute("SELECT count(*), sum(price) FROM fills").fetchone()
    assert total == (3, Decimal("0.3"))


def test_fresh_databases_are_empty_and_apart(postgres_url: str) -> None:
    first, second = fresh_database(postgres_url), fresh_database(postgres_url)
    assert first != second
    with connect(first) as conn:
        conn.execute("CREATE TABLE only_here (n int)")
    with connect(second) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
    assert tables == (0,)


def test_two_worker_processes_share_one_optuna_study(postgres_db: str) -> None:
    optuna.create_study(storage=postgres_db, study_name="shared", direction="minimize")
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, postgres_db, "shared", str(TRIALS_PER_WORKER)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr

    trials = optuna.load_study(study_name="shared", storage=postgres_db).trials
    assert sorted(trial.number for trial in trials) == list(range(2 * TRIALS_PER_WORKER))
    assert {trial.state for trial in trials} == {optuna.trial.TrialState.COMPLETE}
    by_worker = Counter(trial.user_attrs["pid"] for trial in trials)
    assert sorted(by_worker) == sorted(worker.pid for worker in workers)
    assert set(by_worker.values()) == {TRIALS_PER_WORKER}


def test_an_unreachable_url_refuses_connections() -> None:
    with pytest.raises(psycopg.OperationalError, match="refused"):
        connect(closed_port_url())


def test_the_server_is_stopped_and_removed_also_after_a_failure() -> None:
    with pytest.raises(RuntimeError, match="a failing test"), running_postgres() as server:
        folder = server.folder
        with connect(server.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        raise RuntimeError("a failing test")
    assert not folder.exists()
    with pytest.raises(psycopg.OperationalError):
        connect(server.url)


def test_without_postgresql_the_tests_fail_naming_make_system_deps(tmp_path: Path) -> None:
    with pytest.raises(PostgresMissing, match=r"`make system-deps` installs"):
        find_bin_dir(tmp_path)


def test_the_newest_postgresql_is_chosen(tmp_path: Path) -> None:
    for version in ("9.6", "15", "16"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "initdb").touch()
    assert find_bin_dir(tmp_path) == tmp_path / "16" / "bin"
