"""Fixtures for every test: no test writes the real user's log file.

``cma run`` logs to ``$XDG_STATE_HOME/cma/cma.log``; the tests start ``cma``
as a subprocess with an environment copied from this process, so pointing
the variable at a temporary folder here covers them all.

Tests that share an Optuna study ask for ``postgres_db``: an empty database on
a throwaway PostgreSQL server (tests/postgres.py), started once per session by
the first test that asks.

Tests that talk to an exchange ask for ``fake_binance``: a local Binance-spot server
(tests/fake_binance.py) of their own, started and stopped around the test (a few ms).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    before = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield
    if before is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = before


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CMA_* variables and no config file of the person running the tests."""
    for key in list(os.environ):
        if key.startswith("CMA_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The ``cma`` database of a PostgreSQL server for this session (a SQLAlchemy URL)."""
    # Imported here: psycopg and SQLAlchemy cost every session that needs no server.
    from postgres import PostgresMissing, check_installed, running_postgres

    try:
        check_installed()
    except PostgresMissing as missing:
        # A failure, not a skip: a CI machine without the install step must not pass.
        raise pytest.fail.Exception(str(missing), pytrace=False) from None
    with running_postgres() as server:
        yield server.url


@pytest.fixture
def postgres_db(postgres_url: str) -> str:
    """An empty database of its own for one test, on the session's server (its URL)."""
    from postgres import fresh_database

    return fresh_database(postgres_url)


@pytest.fixture
async def fake_binance() -> AsyncIterator[Any]:
    """A started local Binance-spot exchange (tests/fake_binance.py) on BTC/USDT 1m candles.

    It checks the test keys ``fake_binance.TEST_API_KEY``/``TEST_API_SECRET``; the cursor is
    at candle 500 of March 2023. ``fake_binance.client(fake)`` gives a ccxt pointed at it.
    """
    # Imported here: aiohttp is not needed by the sessions that use no exchange.
    from fake_binance import TEST_API_KEY, TEST_API_SECRET, FakeBinance
    from shared_data import shared_data_dir

    data = shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"
    async with FakeBinance([data], api_key=TEST_API_KEY, api_secret=TEST_API_SECRET) as fake:
        yield fake
