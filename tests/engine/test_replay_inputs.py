"""Replay inputs a person gets wrong: each error is a ReplayError that starts with the file.

Missing, unreadable, binary, empty and header-only files; a directory; the
timeframe from the file name, ``feed.timeframe`` and the spacing of the
timestamps, and their conflicts; one account, one quote currency.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from shared_data import shared_data_dir
from support import ROOT, home_env

from engine.config import ConfigError, FeedSettings, Settings, load_settings
from engine.feeds import ReplayError, ReplayFeed
from engine.runtime import Engine, StoreMismatchError, make_feed
from persistence.store import Store

DATA = shared_data_dir()
HEADER = "timestamp,open,high,low,close,volume\n"
T0 = 1_515_560_100_000  # 5m-aligned (2018-01-10 04:55 UTC)
MIN = 60_000


def write(path: Path, stamps: list[int], header: str = HEADER) -> Path:
    path.write_text(header + "".join(f"{ts},1.0,1.2,0.9,1.1,5\n" for ts in stamps))
    return path


def every(step_ms: int, count: int = 20, start: int = T0) -> list[int]:
    return [start + i * step_ms for i in range(count)]


# --- files that are not CSV files -------------------------------------------------


def test_a_missing_file_is_not_found_even_when_its_name_names_no_pair(tmp_path: Path) -> None:
    # The bug: the file-name complaint came first, as if the file were there.
    missing = tmp_path / "recording.csv"
    with pytest.raises(ReplayError, match=rf"^{missing}: not found$"):
        ReplayFeed([missing])
    named = tmp_path / "x_ABC-USDT_1m.csv"
    with pytest.raises(ReplayError, match=rf"^{named}: not found$"):
        ReplayFeed([named])


def test_a_directory_is_named_as_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "x_ABC-USDT_1m.csv"
    folder.mkdir()
    with pytest.raises(ReplayError, match=rf"^{folder}: is a directory, not a CSV file$"):
        ReplayFeed([folder])


@pytest.mark.parametrize(
    "content",
    [
        bytes(range(256)) * 8,  # binary with NUL bytes
        b"\x89PNG\r\n\x1a\n" + b"\xff\xfe\xfd" * 100,  # binary, no NUL in the first bytes
        HEADER.encode() + b"1515560100000,1,1,1,1,5\n" + b"caf\xe9,1,1,1,1,1\n",  # latin-1
    ],
    ids=["NUL bytes", "not UTF-8", "latin-1 row"],
)
def test_a_binary_or_non_utf8_file_is_named(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x_ABC-USDT_1m.csv"
    path.write_bytes(content)
    with pytest.raises(ReplayError, match=r"^x_ABC-USDT_1m\.csv(:\d+)?: not a CSV text file"):
        ReplayFeed([path])


def test_binary_data_after_the_first_block_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "x_ABC-USDT_1m.csv", every(MIN, 300))
    with path.open("ab") as fh:
        fh.write(b"\xff\xfe garbage\n")
    with pytest.raises(ReplayError, match=r"^x_ABC-USDT_1m\.csv:302: not a CSV text file"):
        ReplayFeed([path])
    feed = ReplayFeed([path], validate=False)  # the streaming pass says the same
    with pytest.raises(ReplayError, match=r"^x_ABC-USDT_1m\.csv:302: not a CSV text file"):
        list(feed.iter_batches())


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "x_ABC-USDT_1m.csv", every(MIN))
    path.chmod(0)
    try:
        with pytest.raises(ReplayError, match=rf"^{path}: cannot read: permission denied$"):
            ReplayFeed([path])
    finally:
        path.chmod(0o600)


def test_a_pipe_is_refused_rather_than_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "x_ABC-USDT_1m.csv"
    os.mkfifo(fifo)
    with pytest.raises(ReplayError, match=rf"^{fifo}: not a regular file$"):
        ReplayFeed([fifo])  # the bug would block here, opening a pipe nobody writes


@pytest.mark.parametrize("tf", ["1M", "1w", "1m"])
@pytest.mark.parametrize("ts", ["99999999999999999999", "-99999999999999999999"])
def test_a_timestamp_outside_the_calendar_is_a_row_error(tmp_path: Path, tf: str, ts: str) -> None:
    path = tmp_path / f"x_ABC-USDT_{tf}.csv"
    path.write_text(f"{HEADER}{ts},1,1,1,1,1\n")
    with pytest.raises(ReplayError, match=rf"^x_ABC-USDT_{tf}\.csv:2: timestamp {ts} is not "):
        ReplayFeed([path])


def test_a_path_the_system_cannot_open_is_named_with_the_reason(tmp_path: Path) -> None:
    # Runs as root too, unlike the unreadable file above: the name is too long to open.
    path = tmp_path / f"{'x' * 300}_ABC-USDT_1m.csv"
    with pytest.raises(ReplayError, match=rf"^{path}: cannot read: file name too long$"):
        ReplayFeed([path])


def test_an_empty_file_and_a_header_only_file_are_named(tmp_path: Path) -> None:
    empty = tmp_path / "x_ABC-USDT_1m.csv"
    empty.write_text("")
    with pytest.raises(ReplayError, match=r"^x_ABC-USDT_1m\.csv:1: the file is empty"):
        ReplayFeed([empty])
    # The bug: a header-only file replayed nothing, silently.
    header_only = write(tmp_path / "y_ABC-USDT_1m.csv", [])
    with pytest.raises(ReplayError, match=r"^y_ABC-USDT_1m\.csv: no candles after the header$"):
        ReplayFeed([header_only])
    feed = ReplayFeed([header_only], validate=False)
    with pytest.raises(ReplayError, match=r"^y_ABC-USDT_1m\.csv: no candles after the header$"):
        list(feed.iter_batches())


def test_a_name_without_a_pair_says_how_replay_files_are_named(tmp_path: Path) -> None:
    path = write(tmp_path / "recording.csv", every(MIN))
    with pytest.raises(ReplayError, match=r"^recording\.csv: .*EXCHANGE_BASE-QUOTE_TIMEFRAME"):
        ReplayFeed([path])


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.one_of(
        st.binary(max_size=600),
        st.text(max_size=400).map(lambda t: (HEADER + t).encode("utf-8", "surrogatepass")),
        st.lists(
            st.tuples(
                st.one_of(st.integers(-5, 5).map(lambda k: T0 + k * MIN), st.integers()),
                st.sampled_from(["1", "0", "-1", "x", "nan", "1e400"]),
            ),
            max_size=8,
        ).map(
            lambda rows: (
                HEADER + "".join(f"{ts},{v},{v},{v},{v},{v}\n" for ts, v in rows)
            ).encode()
        ),
    ),
    tf=st.sampled_from(["1m", "1M", "1w"]),
)
def test_any_file_content_replays_or_fails_naming_the_file(
    tmp_path: Path, content: bytes, tf: str
) -> None:
    path = tmp_path / f"x_ABC-USDT_{tf}.csv"
    try:
        path.write_bytes(content)
    except UnicodeEncodeError:  # a lone surrogate: not a file anyone can write
        return
    try:
        feed = ReplayFeed([path])
    except ReplayError as exc:
        assert str(exc).startswith(f"x_ABC-USDT_{tf}.csv"), str(exc)
        assert "\n" not in str(exc)
        return
    assert feed.row_count is not None and feed.row_count > 0
    assert sum(len(batch) for batch in feed.iter_batches()) == feed.row_count


# --- the timeframe -------------------------------------------------------------------


def test_the_timeframe_comes_from_the_name_else_the_setting_else_the_spacing(
    tmp_path: Path,
) -> None:
    named = write(tmp_path / "x_ABC-USDT_5m.csv", every(5 * MIN))
    assert ReplayFeed([named]).timeframe == "5m"
    unnamed = write(tmp_path / "y_ABC-USDT.csv", every(15 * MIN, start=T0 + 5 * MIN))
    assert ReplayFeed([unnamed], timeframe="15m").timeframe == "15m"
    assert ReplayFeed([unnamed]).timeframe == "15m"  # seen in the spacing
    gappy = write(tmp_path / "z_ABC-USDT.csv", [T0, T0 + 5 * MIN, T0 + 15 * MIN])
    assert ReplayFeed([gappy]).timeframe == "5m"  # the closest two are one candle apart


def test_a_name_that_contradicts_the_spacing_is_refused(tmp_path: Path) -> None:
    one_minute = write(tmp_path / "x_ABC-USDT_5m.csv", every(MIN))
    with pytest.raises(
        ReplayError,
        match=r"^x_ABC-USDT_5m\.csv: the file name says 5m, but its first "
        r"timestamps are 1m apart$",
    ):
        ReplayFeed([one_minute])
    # A coarser file is aligned to every finer timeframe: the spacing still tells.
    five_minutes = write(tmp_path / "y_ABC-USDT_1m.csv", every(5 * MIN))
    with pytest.raises(ReplayError, match=r"^y_ABC-USDT_1m\.csv: .* says 1m, but .* 5m apart$"):
        ReplayFeed([five_minutes])
    unnamed = write(tmp_path / "z_ABC-USDT.csv", every(5 * MIN))
    with pytest.raises(ReplayError, match=r"^z_ABC-USDT\.csv: the timeframe is 1h, but .* 5m"):
        ReplayFeed([unnamed], timeframe="1h")


def test_conflicting_timeframes_between_files_or_with_the_setting_name_the_file(
    tmp_path: Path,
) -> None:
    a = write(tmp_path / "x_ABC-USDT_5m.csv", every(5 * MIN))
    b = write(tmp_path / "x_DEF-USDT_1m.csv", every(MIN))
    with pytest.raises(
        ReplayError, match=r"^x_DEF-USDT_1m\.csv: the file name says 1m, but x_ABC-USDT_5m\.csv"
    ):
        ReplayFeed([a, b])
    with pytest.raises(ReplayError, match=r"^x_ABC-USDT_5m\.csv: the file name says 5m, but "):
        ReplayFeed([a], timeframe="1m")


def test_no_timeframe_anywhere_says_what_to_do(tmp_path: Path) -> None:
    lone = write(tmp_path / "x_ABC-USDT.csv", [T0])
    with pytest.raises(ReplayError, match=r"^x_ABC-USDT\.csv: .*no timeframe.*feed\.timeframe"):
        ReplayFeed([lone], timeframe_from="feed.timeframe")


def replay_settings(*files: Path, **feed: object) -> Settings:
    return load_settings(
        environ={}, feed={"kind": "replay", "files": tuple(files), **feed}
    )  # fmt: skip


def test_make_feed_uses_feed_timeframe_only_where_it_was_set(tmp_path: Path) -> None:
    named = write(tmp_path / "x_ABC-USDT_5m.csv", every(5 * MIN))
    # The default feed.timeframe (1m) does not fight the file name: the bug ignored neither.
    assert make_feed(replay_settings(named)).timeframe == "5m"
    unnamed = write(tmp_path / "y_ABC-USDT.csv", every(15 * MIN, start=T0 + 5 * MIN))
    assert make_feed(replay_settings(unnamed, timeframe="15m")).timeframe == "15m"
    with pytest.raises(ReplayError, match=r"x_ABC-USDT_5m\.csv: .* but feed\.timeframe is 1m"):
        make_feed(replay_settings(named, timeframe="1m"))


def test_the_sim_feed_refuses_files_rather_than_ignore_them(tmp_path: Path) -> None:
    path = write(tmp_path / "x_ABC-USDT_1m.csv", every(MIN))
    # The configuration refuses the pair (config validate and run alike) ...
    with pytest.raises(ConfigError, match=r"feed\.files = .*needs the replay feed"):
        load_settings(environ={}, feed={"kind": "sim", "files": (path,)})
    # ... and the engine still does for settings built in code, unvalidated.
    settings = Settings.model_construct(
        feed=FeedSettings.model_construct(kind="sim", files=(path,))
    )
    with pytest.raises(ValueError, match=r"^feed\.files: the sim feed plays no files"):
        make_feed(settings)


# --- one account, one currency ------------------------------------------------------------


def test_replay_files_quoted_in_different_currencies_are_refused(tmp_path: Path) -> None:
    usdt = write(tmp_path / "x_BTC-USDT_5m.csv", every(5 * MIN))
    btc = write(tmp_path / "x_ETH-BTC_5m.csv", every(5 * MIN))
    with pytest.raises(ValueError) as raised:
        make_feed(replay_settings(usdt, btc))
    assert str(raised.value) == (
        "replay files are quoted in USDT (x_BTC-USDT_5m.csv) and BTC (x_ETH-BTC_5m.csv); "
        "one account has one currency: replay them separately"
    )
    assert make_feed(replay_settings(btc)).symbols == ("ETH/BTC",)


def test_sim_symbols_quoted_in_different_currencies_are_refused() -> None:
    settings = load_settings(environ={}, feed={"symbols": ("BTC/USDT", "SOL/USDT", "ETH/BTC")})
    with pytest.raises(ValueError) as raised:
        make_feed(settings)
    assert str(raised.value) == (
        "feed.symbols are quoted in USDT (BTC/USDT, SOL/USDT) and BTC (ETH/BTC); "
        "one account has one currency: trade them in separate runs"
    )


def test_cma_run_refuses_a_currency_mix_with_exit_2_and_creates_no_store(tmp_path: Path) -> None:
    env = home_env(tmp_path, PYTHONPATH=str(ROOT))
    db = tmp_path / "cma.db"
    files = [DATA / "binance_ETH-BTC_5m_2018-01.csv", tmp_path / "binance_BTC-USDT_5m_2018-01.csv"]
    write(files[1], every(5 * MIN))
    proc = subprocess.run(
        [sys.executable, "-m", "tui", "run", "--headless", "--speed", "max", "--duration", "5s",
         "--db", str(db), "--files", *map(str, files)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        "cma: replay files are quoted in BTC (binance_ETH-BTC_5m_2018-01.csv) and USDT "
        "(binance_BTC-USDT_5m_2018-01.csv); one account has one currency: replay them "
        "separately\n"
    )
    assert not db.exists()


# --- a store the replay cannot go on -----------------------------------------------------


async def _store_after(db: Path, feed: ReplayFeed) -> None:
    """A store that has played ``feed`` to its end."""
    store = await Store.open(db)
    try:
        engine = Engine(load_settings(environ={}), store, feed)
        await engine.start()
        await engine.wait()
        await engine.stop()
    finally:
        await store.close()


def _rows(db: Path) -> dict[str, int]:
    with closing(sqlite3.connect(db)) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in STORE_TABLES}


STORE_TABLES = ("sessions", "events", "equity", "balances")


async def _refused(db: Path, feed: ReplayFeed) -> str:
    before = _rows(db)
    store = await Store.open(db)
    try:
        engine = Engine(load_settings(environ={}), store, feed)
        with pytest.raises(StoreMismatchError) as raised:
            await engine.start()
    finally:
        await store.close()
    assert _rows(db) == before  # refused before anything was written
    return str(raised.value)


async def test_a_store_holding_another_currency_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    await _store_after(db, ReplayFeed([write(tmp_path / "x_BTC-USDT_5m.csv", every(5 * MIN))]))
    later = every(5 * MIN, start=T0 + 100 * 5 * MIN)
    message = await _refused(db, ReplayFeed([write(tmp_path / "x_ETH-BTC_5m.csv", later)]))
    # The bug: the USDT cash went on as if it were BTC.
    assert message == (
        f"the store {db} holds a USDT account, but this market is quoted in BTC; "
        "trade it on its own store (--db PATH)"
    )


async def test_a_replay_that_ends_before_the_stores_market_time_is_refused(
    tmp_path: Path,
) -> None:
    db = tmp_path / "cma.db"
    late = write(tmp_path / "x_BTC-USDT_5m_late.csv", every(5 * MIN, start=T0 + 100 * 5 * MIN))
    await _store_after(db, ReplayFeed([late]))
    early = ReplayFeed([write(tmp_path / "x_BTC-USDT_5m_early.csv", every(5 * MIN))])
    # The bug: every candle was skipped as "traded before the restart", silently.
    message = await _refused(db, early)
    assert message.startswith(f"the store {db} has traded up to 2018-01-10 14:55 UTC, after ")
    assert message.endswith("replay into a new store (--db PATH)")
    # A replay that goes on past the store's market time is a resume, not an error.
    on = write(tmp_path / "x_BTC-USDT_5m_on.csv", every(5 * MIN, start=T0 + 120 * 5 * MIN))
    await _store_after(db, ReplayFeed([on]))
