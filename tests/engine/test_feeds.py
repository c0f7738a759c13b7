"""Tests of the market feeds: the demo market, CSV and store replays, pacing."""

from __future__ import annotations

import asyncio
import csv
import math
import sqlite3
import statistics
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_data import shared_data_dir

from engine.feeds import (
    DEFAULT_SYMBOLS,
    SIM_EPOCH_MS,
    YIELD_EVERY_CANDLES,
    Feed,
    ReplayError,
    ReplayFeed,
    SimFeed,
    StoreReplayFeed,
    symbol_from_filename,
    timeframe_from_filename,
)
from engine.models import Candle
from engine.timeframes import (
    TIMEFRAMES,
    candle_index,
    candle_open,
    floor_ts,
    is_aligned,
    timeframe_ms,
)

DATA = shared_data_dir()
BTC_2023 = DATA / "binanceus_BTC-USDT_1m_2023-03.csv"
ALTS_2018 = sorted(DATA.glob("binance_*-BTC_5m_2018-01.csv"))
HEADER = "timestamp,open,high,low,close,volume\n"
MIN = 60_000
T0 = 1_515_560_100_000  # a 5m-aligned timestamp (2018-01-10 04:55 UTC)


def flatten(batches: Iterable[list[Candle]]) -> list[Candle]:
    return [candle for batch in batches for candle in batch]


def log_returns(candles: list[Candle], symbol: str) -> list[float]:
    closes = [c.close for c in candles if c.symbol == symbol]
    return [math.log(b / a) for a, b in pairwise(closes)]


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))[1:]


def write_csv(path: Path, rows: Iterable[str], header: str = HEADER) -> Path:
    path.write_text(header + "".join(f"{row}\n" for row in rows))
    return path


def rows_5m(count: int, start: int = T0, skip: frozenset[int] = frozenset()) -> list[str]:
    """``count`` valid 5m rows from ``start``, leaving out the candles numbered in ``skip``."""
    return [f"{start + i * 300_000},1.0,1.2,0.9,1.1,5.0" for i in range(count) if i not in skip]


async def take(feed: Feed, count: int) -> tuple[list[list[Candle]], list[float]]:
    """The first ``count`` batches of ``feed`` and the monotonic time each arrived."""
    batches: list[list[Candle]] = []
    times: list[float] = []
    async for batch in feed.batches():
        batches.append(batch)
        times.append(time.monotonic())
        if len(batches) == count:
            break
    return batches, times


# --- timeframes -------------------------------------------------------------------


def test_timeframes_give_every_ccxt_name_in_milliseconds() -> None:
    assert list(TIMEFRAMES) == [
        "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
        "1d", "3d", "1w", "1M",
    ]  # fmt: skip
    assert timeframe_ms("1m") == 60_000
    assert timeframe_ms("4h") == 4 * 3_600_000
    assert timeframe_ms("1w") == 7 * 86_400_000
    assert timeframe_ms("1M") == 30 * 86_400_000


def test_unknown_timeframe_raises_naming_the_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"'2m'.*1m, 3m, 5m.*1w, 1M"):
        timeframe_ms("2m")


def test_weekly_candles_open_on_mondays_and_monthly_on_the_first() -> None:
    monday = 1_767_571_200_000  # 2026-01-05 00:00 UTC
    assert is_aligned(monday, "1w")
    assert not is_aligned(monday - 86_400_000, "1w")
    assert floor_ts(monday + 3 * 86_400_000, "1w") == monday
    jan, feb, mar = 1_767_225_600_000, 1_769_904_000_000, 1_772_323_200_000  # 2026
    assert candle_index(feb, "1M") == candle_index(jan, "1M") + 1
    assert candle_open(candle_index(feb, "1M") + 1, "1M") == mar
    assert floor_ts(feb + 5 * 86_400_000, "1M") == feb
    assert not is_aligned(jan + 30 * 86_400_000, "1M")


# --- the demo market --------------------------------------------------------------


def test_same_seed_gives_identical_candles_and_another_seed_differs() -> None:
    first = flatten(SimFeed(seed=11, limit=300).iter_batches())
    again = flatten(SimFeed(seed=11, limit=300).iter_batches())
    other = flatten(SimFeed(seed=12, limit=300).iter_batches())
    assert first == again
    assert len(first) == len(other) == 300 * 5
    assert [c.close for c in first] != [c.close for c in other]
    # A second pass of one feed replays the same market.
    feed = SimFeed(seed=11, limit=300)
    assert flatten(feed.iter_batches()) == flatten(feed.iter_batches()) == first


def test_default_market_has_five_symbols_one_candle_each_per_timestamp() -> None:
    feed = SimFeed(limit=50, timeframe="5m")
    assert len(feed.symbols) >= 5
    assert feed.symbols == DEFAULT_SYMBOLS
    batches = list(feed.iter_batches())
    assert len(batches) == 50
    for n, batch in enumerate(batches):
        assert [c.symbol for c in batch] == list(feed.symbols)
        assert {c.ts for c in batch} == {SIM_EPOCH_MS + n * 300_000}
    first = {c.symbol: c.open for c in batches[0]}
    assert 20_000 < first["BTC/USDT"] < 500_000
    assert 500 < first["ETH/USDT"] < 20_000
    assert 0.1 < first["XRP/USDT"] < 20


def test_sim_returns_are_positively_correlated_across_symbols() -> None:
    candles = flatten(SimFeed(limit=5_000).iter_batches())
    returns = {s: log_returns(candles, s) for s in DEFAULT_SYMBOLS}
    for i, a in enumerate(DEFAULT_SYMBOLS):
        for b in DEFAULT_SYMBOLS[i + 1 :]:
            assert statistics.correlation(returns[a], returns[b]) > 0.3, (a, b)


def test_sim_turbulent_regime_is_more_volatile_and_busier_than_calm() -> None:
    feed = SimFeed(symbols=("BTC/USDT",), limit=20_000)
    by_regime: dict[str, list[Candle]] = {"calm": [], "turbulent": []}
    for batch in feed.iter_batches():
        by_regime[feed.regime].extend(batch)
    calm, turbulent = by_regime["calm"], by_regime["turbulent"]
    assert len(calm) > 1_000 and len(turbulent) > 1_000

    def body_sd(candles: list[Candle]) -> float:
        return statistics.pstdev(math.log(c.close / c.open) for c in candles)

    assert body_sd(turbulent) > 1.8 * body_sd(calm)
    calm_volume = statistics.median(c.volume for c in calm)
    assert statistics.median(c.volume for c in turbulent) > 1.3 * calm_volume


def test_sim_has_occasional_jumps_far_beyond_normal_moves() -> None:
    returns = log_returns(
        flatten(SimFeed(symbols=("ETH/USDT",), limit=30_000).iter_batches()), "ETH/USDT"
    )
    sd = statistics.pstdev(returns)
    big = sum(1 for r in returns if abs(r) > 6 * sd)
    # A normal distribution would give about 0.00000002 of 30,000 moves beyond 6 sd.
    assert 1 <= big < 100


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    timeframe=st.sampled_from(["1m", "5m", "1h", "1d", "1M"]),
    extra=st.sampled_from([(), ("DOGE/USDT",), ("PEPE/USDT", "AAVE/USDT")]),
)
def test_every_sim_candle_is_a_valid_candle(
    seed: int, timeframe: str, extra: tuple[str, ...]
) -> None:
    feed = SimFeed(symbols=DEFAULT_SYMBOLS + extra, timeframe=timeframe, seed=seed, limit=400)
    previous: dict[str, Candle] = {}
    last_ts = -1
    for batch in feed.iter_batches():
        assert len(batch) == len(feed.symbols)
        ts = batch[0].ts
        assert ts > last_ts and is_aligned(ts, timeframe)
        last_ts = ts
        for c in batch:
            assert c.ts == ts
            assert 0 < c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high
            assert math.isfinite(c.high) and c.volume > 0
            if c.symbol in previous:
                assert c.open == previous[c.symbol].close
            previous[c.symbol] = c


def test_sim_limit_stops_after_that_many_batches() -> None:
    assert len(list(SimFeed(limit=7).iter_batches())) == 7
    assert list(SimFeed(limit=0).iter_batches()) == []


def test_paced_sim_starts_at_the_last_closed_candle_on_the_wall_clock() -> None:
    before = time.time() * 1000
    feed = SimFeed(speed=1.0, timeframe="5m")
    after = time.time() * 1000
    assert before - 600_000 < feed.start_ts <= after - 300_000
    assert SimFeed().start_ts == SIM_EPOCH_MS
    assert SimFeed(start_ts=SIM_EPOCH_MS + 61_234).start_ts == SIM_EPOCH_MS + 60_000


def test_speed_must_be_positive_and_finite() -> None:
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="speed"):
            SimFeed(speed=bad)
    feed = SimFeed()
    with pytest.raises(ValueError, match="speed"):
        feed.speed = 0.0


# --- pacing and closing -----------------------------------------------------------


async def test_speed_600_on_1m_candles_yields_about_ten_batches_a_second() -> None:
    batches, times = await take(SimFeed(speed=600.0), 6)
    elapsed = times[-1] - times[0]  # five gaps of 0.1 s
    assert 0.45 <= elapsed <= 1.5
    assert [b[0].ts - batches[0][0].ts for b in batches] == [n * MIN for n in range(6)]


async def test_unpaced_feed_finishes_5000_batches_quickly_and_lets_the_loop_run() -> None:
    turns = 0
    stop = asyncio.Event()

    async def ui() -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ui())
    started = time.monotonic()
    batches, _ = await take(SimFeed(speed=None), 5_000)
    elapsed = time.monotonic() - started
    stop.set()
    await task
    assert len(batches) == 5_000
    assert elapsed < 5.0
    assert turns >= 5_000 * 5 // YIELD_EVERY_CANDLES // 2


async def test_close_ends_an_unpaced_infinite_sim_promptly() -> None:
    feed = SimFeed(speed=None)
    count = 0

    async def consume() -> None:
        nonlocal count
        async for batch in feed.batches():
            count += len(batch)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    feed.close()
    feed.close()  # idempotent
    await asyncio.wait_for(task, timeout=1.0)
    assert count > 0 and feed.closed


async def test_close_ends_a_waiting_paced_sim_promptly_even_from_another_thread() -> None:
    feed = SimFeed(speed=1.0)  # a minute between 1m batches
    got: list[list[Candle]] = []

    async def consume() -> None:
        async for batch in feed.batches():
            got.append(batch)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    started = time.monotonic()
    closer = threading.Thread(target=feed.close)
    closer.start()
    await asyncio.wait_for(task, timeout=1.0)
    closer.join()
    assert time.monotonic() - started < 1.0
    assert len(got) == 1


async def test_changing_speed_while_waiting_retimes_the_wait() -> None:
    feed = SimFeed(speed=1.0)
    batches = feed.batches()
    await anext(batches)
    started = time.monotonic()
    waiting = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0.05)
    feed.speed = 6_000.0  # a minute now takes 10 ms
    await asyncio.wait_for(waiting, timeout=1.0)
    assert time.monotonic() - started < 0.5
    feed.close()
    assert [batch async for batch in batches] == []


# --- CSV replay -------------------------------------------------------------------


def test_symbol_and_timeframe_come_from_the_file_name() -> None:
    assert symbol_from_filename("binanceus_BTC-USDT_1m_2023-03.csv") == "BTC/USDT"
    assert timeframe_from_filename("binanceus_BTC-USDT_1m_2023-03.csv") == "1m"
    assert symbol_from_filename("binance_ETH-BTC_5m_2018-01.csv") == "ETH/BTC"
    assert symbol_from_filename("prices_2023-03.csv") is None
    assert timeframe_from_filename("eth.csv") is None


def test_replay_of_one_file_yields_exactly_its_rows() -> None:
    rows = read_rows(BTC_2023)
    feed = ReplayFeed([BTC_2023])
    assert (feed.symbols, feed.timeframe, feed.name) == (("BTC/USDT",), "1m", "replay")
    candles = flatten(feed.iter_batches())
    assert feed.row_count == len(candles) == len(rows) == 30_240
    first = rows[0]
    assert candles[0] == Candle("BTC/USDT", int(first[0]), *map(float, first[1:]))
    assert [c.ts for c in candles] == [int(r[0]) for r in rows]
    assert sum(feed.gaps.values()) == 0


def test_2018_files_replay_as_one_market_with_gaps_counted_and_nothing_invented() -> None:
    assert len(ALTS_2018) == 10
    expected_gaps: Counter[str] = Counter()
    expected: dict[tuple[str, int], Candle] = {}
    for path in ALTS_2018:
        symbol = path.name.split("_")[1].replace("-", "/")
        stamps = []
        for row in read_rows(path):
            ts = int(row[0])
            stamps.append(ts)
            expected[symbol, ts] = Candle(symbol, ts, *map(float, row[1:]))
        for a, b in pairwise(stamps):
            expected_gaps[symbol] += (b - a) // 300_000 - 1
    assert sum(expected_gaps.values()) > 0  # the data has gaps to find

    reported: list[tuple[str, int, int]] = []
    feed = ReplayFeed(ALTS_2018, on_gap=lambda s, ts, n: reported.append((s, ts, n)))
    assert len(feed.symbols) == 10
    emitted: list[Candle] = []
    last_ts = -1
    for batch in feed.iter_batches():
        assert batch[0].ts > last_ts
        last_ts = batch[0].ts
        assert {c.ts for c in batch} == {last_ts}
        keys = [feed.symbols.index(c.symbol) for c in batch]
        assert keys == sorted(set(keys))  # symbol order, each at most once
        emitted.extend(batch)

    assert +feed.gaps == +expected_gaps
    assert sum(n for _, _, n in reported) == sum(expected_gaps.values())
    for symbol, first_missing, n in reported:
        assert (symbol, first_missing) not in expected
        assert (symbol, first_missing - 300_000) in expected
        assert (symbol, first_missing + n * 300_000) in expected
    # Every emitted candle is a row of its file, unchanged, and every row is emitted.
    assert len(emitted) == len(expected)
    assert all(expected[c.symbol, c.ts] == c for c in emitted)
    assert all(c.low > 0 and c.open > 0 for c in emitted)


def test_gaps_inside_a_series_are_reported_once_per_run_of_missing_candles(
    tmp_path: Path,
) -> None:
    path = write_csv(tmp_path / "x_AAA-BTC_5m.csv", rows_5m(10, skip=frozenset({3, 4, 7})))
    reported: list[tuple[str, int, int]] = []
    feed = ReplayFeed([path], on_gap=lambda s, ts, n: reported.append((s, ts, n)))
    assert [b[0].ts for b in feed.iter_batches()] == [
        T0 + i * 300_000 for i in (0, 1, 2, 5, 6, 8, 9)
    ]
    assert reported == [("AAA/BTC", T0 + 3 * 300_000, 2), ("AAA/BTC", T0 + 7 * 300_000, 1)]
    assert feed.gaps == Counter({"AAA/BTC": 3})
    list(feed.iter_batches())  # a second pass counts afresh
    assert feed.gaps == Counter({"AAA/BTC": 3})


def test_sim_candles_written_to_csv_replay_identically(tmp_path: Path) -> None:
    sim = SimFeed(symbols=("BTC/USDT", "SOL/USDT"), limit=200, timeframe="15m")
    candles = flatten(sim.iter_batches())
    paths = []
    for symbol in sim.symbols:
        rows = [
            f"{c.ts},{c.open!r},{c.high!r},{c.low!r},{c.close!r},{c.volume!r}"
            for c in candles
            if c.symbol == symbol
        ]
        paths.append(write_csv(tmp_path / f"sim_{symbol.replace('/', '-')}_15m.csv", rows))
    assert flatten(ReplayFeed(paths).iter_batches()) == candles


def test_symbols_mapping_and_timeframe_stand_in_for_the_file_name(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "recording.csv", rows_5m(3))
    with pytest.raises(ReplayError, match=r"recording\.csv"):
        ReplayFeed([path], timeframe="5m")  # no pair in the name
    # No timeframe in the name: the spacing of the timestamps says 5m.
    assert ReplayFeed([path], symbols={"recording.csv": "ABC/BTC"}).timeframe == "5m"
    feed = ReplayFeed([path], symbols={"recording.csv": "ABC/BTC"}, timeframe="5m")
    assert {c.symbol for c in flatten(feed.iter_batches())} == {"ABC/BTC"}
    with pytest.raises(ReplayError, match="says 1m"):
        ReplayFeed([write_csv(tmp_path / "x_ABC-BTC_1m.csv", [])], timeframe="5m")


def test_files_of_one_symbol_join_into_one_series_but_must_not_overlap(
    tmp_path: Path,
) -> None:
    rows = rows_5m(10)
    early = write_csv(tmp_path / "x_ABC-BTC_5m_a.csv", rows[:6])
    late = write_csv(tmp_path / "x_ABC-BTC_5m_b.csv", rows[6:])
    feed = ReplayFeed([late, early])
    assert [c.ts for c in flatten(feed.iter_batches())] == [T0 + i * 300_000 for i in range(10)]
    assert feed.symbols == ("ABC/BTC",)
    overlapping = write_csv(tmp_path / "x_ABC-BTC_5m_c.csv", rows[5:])
    with pytest.raises(ReplayError, match=r"x_ABC-BTC_5m_c.csv.*overlap"):
        ReplayFeed([early, overlapping])


def test_weekly_and_monthly_files_align_on_mondays_and_month_starts(tmp_path: Path) -> None:
    monday = 1_767_571_200_000  # 2026-01-05
    week = 7 * 86_400_000
    weekly = [f"{monday + i * week},1,1,1,1,1" for i in (0, 1, 3)]
    feed = ReplayFeed([write_csv(tmp_path / "x_ABC-USDT_1w.csv", weekly)])
    assert len(list(feed.iter_batches())) == 3
    assert feed.gaps == Counter({"ABC/USDT": 1})
    months = [candle_open(candle_index(SIM_EPOCH_MS, "1M") + i, "1M") for i in (0, 1, 2, 5)]
    feed = ReplayFeed(
        [write_csv(tmp_path / "x_ABC-USDT_1M.csv", [f"{t},1,1,1,1,1" for t in months])]
    )
    assert len(list(feed.iter_batches())) == 4
    assert feed.gaps == Counter({"ABC/USDT": 2})
    thursday = write_csv(tmp_path / "y_ABC-USDT_1w.csv", [f"{monday - 4 * 86_400_000},1,1,1,1,1"])
    with pytest.raises(ReplayError, match=r"y_ABC-USDT_1w\.csv:2: timestamp .* not aligned"):
        ReplayFeed([thursday])


N = T0 + 300_000  # the timestamp the bad row should have
GOOD = f"{N + 300_000},0.0915,0.0920,0.0910,0.0912,10"
MALFORMED = [
    ("wrong column count", f"{N},1,1.2,0.9,1.1", r":3: expected 6 fields.*got 5"),
    ("non-numeric price", f"{N},1,abc,0.9,1.1,5", r":3: high 'abc' is not a number"),
    ("non-numeric timestamp", "soon,1,1.2,0.9,1.1,5", r":3: timestamp 'soon' is not an integer"),
    ("not finite", f"{N},1,nan,0.9,1.1,5", r":3: high 'nan' is not a finite number"),
    ("zero price", f"{N},1,1.2,0,1.1,5", r":3: low 0 is not positive"),
    ("negative price", f"{N},-1,1.2,0.9,1.1,5", r":3: open -1 is not positive"),
    ("high below low", f"{N},0.0915,0.091,0.092,0.0915,5", r":3: high 0.091 is below low 0.092"),
    ("open outside", f"{N},1.3,1.2,0.9,1.1,5", r":3: open 1.3 is outside \[low 0.9, high 1.2\]"),
    ("close outside", f"{N},1,1.2,0.9,0.8,5", r":3: close 0.8 is outside \[low 0.9, high 1.2\]"),
    ("negative volume", f"{N},1,1.2,0.9,1.1,-0.5", r":3: volume -0.5 is negative"),
    ("repeated timestamp", f"{T0},1,1.2,0.9,1.1,5", rf":3: timestamp {T0} is not after"),
    ("earlier timestamp", f"{T0 - 300_000},1,1.2,0.9,1.1,5", r":3: timestamp \d+ is not after"),
    ("unaligned timestamp", f"{T0 + MIN},1,1.2,0.9,1.1,5", r":3: timestamp \d+ is not aligned"),
    ("blank line", "", r":3: expected 6 fields.*got 0"),
]


@pytest.mark.parametrize(
    ("row", "message"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_row_raises_replay_error_naming_file_line_and_field(
    tmp_path: Path, row: str, message: str
) -> None:
    name = "binance_ETH-BTC_5m_2018-01.csv"
    path = write_csv(tmp_path / name, [f"{T0},1,1.2,0.9,1.1,5", row, GOOD])
    # The constructor scans the files, so a bad row fails before any candle plays.
    with pytest.raises(ReplayError, match=f"^{name}{message}") as raised:
        ReplayFeed([path])
    assert isinstance(raised.value, ValueError)
    # Streaming without the up-front scan checks every row just the same.
    feed = ReplayFeed([path], validate=False)
    with pytest.raises(ReplayError, match=f"^{name}{message}"):
        list(feed.iter_batches())


def test_the_example_message_for_high_below_low(tmp_path: Path) -> None:
    name = "binance_ETH-BTC_5m_2018-01.csv"
    rows = [*rows_5m(15), f"{T0 + 15 * 300_000},0.0915,0.091,0.092,0.0915,5"]
    path = write_csv(tmp_path / name, rows)
    with pytest.raises(ReplayError) as raised:
        ReplayFeed([path])
    assert str(raised.value) == f"{name}:17: high 0.091 is below low 0.092"


@pytest.mark.parametrize(
    ("content", "message"),
    [("", r":1: the file is empty"), ("ts,o,h,l,c,v\n", r":1: expected the header")],
    ids=["empty file", "wrong header"],
)
def test_a_file_without_the_header_is_rejected(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "x_ABC-BTC_5m.csv"
    path.write_text(content)
    with pytest.raises(ReplayError, match=f"^x_ABC-BTC_5m.csv{message}"):
        ReplayFeed([path])


def test_streaming_a_large_file_keeps_memory_flat(tmp_path: Path) -> None:
    rows = 100_000
    path = tmp_path / "big_ABC-USDT_1m.csv"
    with path.open("w") as fh:
        fh.write(HEADER)
        fh.writelines(
            f"{i * MIN},{100 + i % 7},{108 + i % 7},{99 + i % 7},{101 + i % 7},1.5\n"
            for i in range(rows)
        )
    feed = ReplayFeed([path])
    assert feed.row_count == rows
    tracemalloc.start()
    try:
        count = sum(len(batch) for batch in feed.iter_batches())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == rows
    # 100,000 Candle objects held at once would take well over 20 MB.
    assert peak < 2_000_000


def test_close_stops_a_replay_between_batches() -> None:
    feed = ReplayFeed([BTC_2023])
    seen = 0
    for _ in feed.iter_batches():
        seen += 1
        if seen == 10:
            feed.close()
    assert seen == 10


# --- store replay -----------------------------------------------------------------

SCHEMA = """CREATE TABLE IF NOT EXISTS candles (
    symbol TEXT, timeframe TEXT, ts INTEGER, open REAL, high REAL, low REAL,
    close REAL, volume REAL, PRIMARY KEY (symbol, timeframe, ts))"""


def make_store(path: Path, candles: Iterable[Candle], timeframe: str = "1m") -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute(SCHEMA)
        conn.executemany(
            "INSERT INTO candles VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (c.symbol, timeframe, c.ts, c.open, c.high, c.low, c.close, c.volume)
                for c in candles
            ],
        )
    conn.close()
    return path


def test_store_replay_plays_the_rows_of_a_sqlite_file_in_ts_order(tmp_path: Path) -> None:
    sim = flatten(SimFeed(limit=100).iter_batches())
    missing = {("ETH/USDT", SIM_EPOCH_MS + 10 * MIN), ("ETH/USDT", SIM_EPOCH_MS + 11 * MIN)}
    missing |= {("XRP/USDT", SIM_EPOCH_MS + 50 * MIN)}
    kept = [c for c in sim if (c.symbol, c.ts) not in missing]
    db = make_store(tmp_path / "store.db", kept)
    # Rows of another timeframe or symbol must not leak in.
    make_store(db, [Candle("ETH/USDT", SIM_EPOCH_MS + 10 * MIN, 1, 1, 1, 1, 1)], timeframe="5m")

    symbols = ("XRP/USDT", "ETH/USDT", "BTC/USDT")  # symbol order comes from here; no SOL
    reported: list[tuple[str, int, int]] = []
    feed = StoreReplayFeed(db, symbols, "1m", on_gap=lambda s, ts, n: reported.append((s, ts, n)))
    batches = list(feed.iter_batches())
    assert len(batches) == 100
    for batch in batches:
        present = [s for s in symbols if (s, batch[0].ts) not in missing]
        assert [c.symbol for c in batch] == present
    want = sorted(
        (c for c in kept if c.symbol in symbols), key=lambda c: (c.ts, symbols.index(c.symbol))
    )
    assert flatten(batches) == want
    assert feed.gaps == Counter({"ETH/USDT": 2, "XRP/USDT": 1})
    assert sorted(reported) == [
        ("ETH/USDT", SIM_EPOCH_MS + 10 * MIN, 2),
        ("XRP/USDT", SIM_EPOCH_MS + 50 * MIN, 1),
    ]

    window = StoreReplayFeed(
        db, ("BTC/USDT",), "1m", start_ts=SIM_EPOCH_MS + 20 * MIN, end_ts=SIM_EPOCH_MS + 30 * MIN
    )
    assert [b[0].ts for b in window.iter_batches()] == [
        SIM_EPOCH_MS + i * MIN for i in range(20, 30)
    ]


def test_store_replay_rejects_an_invalid_row_naming_symbol_ts_and_field(tmp_path: Path) -> None:
    bad = Candle("BTC/USDT", SIM_EPOCH_MS + MIN, 100.0, 99.0, 101.0, 100.0, 1.0)
    good = Candle("BTC/USDT", SIM_EPOCH_MS, 100.0, 101.0, 99.0, 100.0, 1.0)
    db = make_store(tmp_path / "store.db", [good, bad])
    feed = StoreReplayFeed(db, ("BTC/USDT",), "1m")
    with pytest.raises(
        ReplayError, match=rf"store\.db: BTC/USDT 1m {bad.ts}: high 99.0 is below low"
    ):
        list(feed.iter_batches())


def test_store_replay_needs_an_existing_store_with_a_candles_table(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        StoreReplayFeed(tmp_path / "absent.db", ("BTC/USDT",), "1m")
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(ReplayError, match="candles"):
        StoreReplayFeed(empty, ("BTC/USDT",), "1m")


def test_store_replay_opens_the_store_read_only(tmp_path: Path) -> None:
    db = make_store(tmp_path / "store.db", flatten(SimFeed(limit=3).iter_batches()))
    feed = StoreReplayFeed(db, ("BTC/USDT",), "1m")
    conn = feed._connect()
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM candles")
    finally:
        conn.close()
    assert len(list(feed.iter_batches())) == 3
