"""A throwaway PostgreSQL server for the tests that share Optuna studies between processes.

    with running_postgres() as server:
        url = fresh_database(server.url)  # postgresql+psycopg://cma@127.0.0.1:PORT/test_...
        optuna.create_study(storage=url, study_name="btc-sma")

The server is Debian's (``make system-deps`` installs the ``postgresql`` package; the
cluster the package may set up is not used). The newest ``/usr/lib/postgresql/*/bin``
``initdb``s a cluster in a fresh temporary folder (trust authentication, UTF8), and
``postgres`` listens on 127.0.0.1 at a free port, with its unix socket in that folder
too. A role ``cma`` owns a database ``cma``; URLs are SQLAlchemy's, with no password, as
Optuna's RDB storage takes them. When the ``with`` ends, also after a failure, the
server is stopped (``pg_ctl stop -m immediate``: nothing in it is worth keeping) and the
folder removed.

PostgreSQL refuses to run as root: as root, the server's programs run as the
``postgres`` user the package creates, and the folder belongs to it.

No skip without PostgreSQL: :func:`running_postgres` raises :class:`PostgresMissing`,
so a missing install step fails the tests.

The pytest fixtures are in conftest.py: ``postgres_url`` (one server for the session,
started by the first test that asks) and ``postgres_db`` (an empty database per test,
so tests do not share studies).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url
from support import free_port

BIN_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "postgres"
ROLE = "cma"
DATABASE = "cma"
HOST = "127.0.0.1"
# Long enough for a loaded CI machine; the waits end as soon as the server answers.
TIMEOUT = 30.0
# A throwaway cluster: durability only costs time.
SERVER_SETTINGS = ("fsync=off", "full_page_writes=off", "synchronous_commit=off")


class PostgresMissing(RuntimeError):
    """There is no PostgreSQL server to start (or, as root, no ``postgres`` user)."""


class PostgresError(RuntimeError):
    """The server did not start; the message carries what it said."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where it listens and its data folder."""

    port: int
    folder: Path

    @property
    def url(self) -> str:
        """The ``cma`` role's database, as a SQLAlchemy URL."""
        return url_for(self.port, DATABASE)


def url_for(port: int, database: str, role: str = ROLE) -> str:
    """``postgresql+psycopg://ROLE@127.0.0.1:PORT/DATABASE``."""
    return f"postgresql+psycopg://{role}@{HOST}:{port}/{database}"


def find_bin_dir(root: Path = BIN_ROOT) -> Path:
    """The ``bin`` folder of the newest PostgreSQL version installed under ``root``."""
    bin_dirs = [initdb.parent for initdb in root.glob("*/bin/initdb")]
    if not bin_dirs:
        raise PostgresMissing(
            f"no PostgreSQL server ({root}/*/bin/initdb): "
            "`make system-deps` installs Debian's postgresql package"
        )
    return max(bin_dirs, key=lambda bin_dir: _version(bin_dir.parent.name))


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(number) for number in re.findall(r"\d+", name))


def connect(url: str) -> psycopg.Connection[Any]:
    """A psycopg connection (autocommit) to the database a SQLAlchemy URL names."""
    parts = make_url(url)
    return psycopg.connect(
        host=parts.host,
        port=parts.port,
        user=parts.username,
        password=parts.password,
        dbname=parts.database,
        connect_timeout=5,
        autocommit=True,
    )


def fresh_database(url: str) -> str:
    """Create a new empty database on ``url``'s server, owned by its role; its URL."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with connect(url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 at a port where nothing listens (it was free a moment ago)."""
    return url_for(free_port(HOST), DATABASE)


def check_installed() -> None:
    """Raise :class:`PostgresMissing` unless the server and, as root, its user are there."""
    find_bin_dir()
    _server_user()


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a throwaway server with the ``cma`` role and database; stop and remove it after."""
    bin_dir = find_bin_dir()
    as_user = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="cma-pg-"))
    server: subprocess.Popen[bytes] | None = None
    try:
        if as_user:
            os.chown(folder, as_user["user"], as_user["group"])
        _initdb(bin_dir, folder, as_user)
        server, port = _start(bin_dir, folder, as_user)
        with connect(url_for(port, "postgres", SUPERUSER)) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(sql.Identifier(ROLE)))
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DATABASE), sql.Identifier(ROLE)
                )
            )
        yield PostgresServer(port=port, folder=folder)
    finally:
        if server is not None:
            _stop(bin_dir, folder, server, as_user)
        shutil.rmtree(folder, ignore_errors=True)


def _server_user() -> dict[str, Any]:
    """Keyword arguments for subprocess that run a program as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresMissing(
            "as root the server runs as the `postgres` user, and there is none: "
            "`make system-deps` installs Debian's postgresql package, which creates it"
        ) from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _server_env() -> dict[str, str]:
    # PGDATA, PGPORT and friends of the person running the tests must not reach the server.
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def _initdb(bin_dir: Path, folder: Path, as_user: dict[str, Any]) -> None:
    done = subprocess.run(
        [
            bin_dir / "initdb",
            *("-D", folder / "data", "-U", SUPERUSER),
            *("--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"),
        ],
        cwd=folder,
        env=_server_env(),
        capture_output=True,
        text=True,
        check=False,
        **as_user,
    )
    if done.returncode != 0:
        raise PostgresError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def _start(
    bin_dir: Path, folder: Path, as_user: dict[str, Any]
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``postgres`` on a free port and wait until it accepts connections.

    The port was free when asked for, but another process may take it before the
    server binds it: then the server exits saying so, and it is tried again elsewhere.
    """
    log = folder / "server.log"
    for _ in range(3):
        port = free_port(HOST)
        settings = [arg for setting in SERVER_SETTINGS for arg in ("-c", setting)]
        with log.open("ab") as out:
            server = subprocess.Popen(
                [
                    bin_dir / "postgres",
                    *("-D", folder / "data", "-h", HOST, "-p", str(port), "-k", folder),
                    *settings,
                ],
                cwd=folder,
                env=_server_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                **as_user,
            )
        if _wait_ready(server, port):
            return server, port
        if "Address already in use" not in log.read_text(errors="replace"):
            break
    raise PostgresError(f"postgres did not start:\n{log.read_text(errors='replace')}")


def _wait_ready(server: subprocess.Popen[bytes], port: int) -> bool:
    """True once the server takes connections; False if it exited first."""
    deadline = time.monotonic() + TIMEOUT
    while server.poll() is None:
        try:
            psycopg.connect(
                host=HOST, port=port, user=SUPERUSER, dbname="postgres", connect_timeout=2
            ).close()
        except psycopg.OperationalError as not_yet:
            # Refused before it listens, "starting up" until recovery is done.
            if time.monotonic() > deadline:
                server.kill()
                server.wait()
                message = f"postgres did not answer on port {port} in {TIMEOUT} s"
                raise PostgresError(message) from not_yet
            time.sleep(0.05)
        else:
            return True
    return False


def _stop(
    bin_dir: Path, folder: Path, server: subprocess.Popen[bytes], as_user: dict[str, Any]
) -> None:
    if server.poll() is None:
        subprocess.run(
            [bin_dir / "pg_ctl", "stop", "-D", folder / "data", "-m", "immediate", "-w"],
            cwd=folder,
            env=_server_env(),
            capture_output=True,
            check=False,
            **as_user,
        )
    try:
        server.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
