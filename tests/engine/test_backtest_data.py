"""engine.backtest.data: replay CSVs as numpy columns, checked as a replay checks them, cached.

Bad files fail with the replay's own ReplayError (same message, file, line and
field); the arrays are the replay's candles; the cache is keyed by content,
opened memory-mapped, and rebuilt when damaged or of another format version.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from shared_data import shared_data_dir

from engine.backtest.data import (
    FORMAT_MAGIC,
    FORMAT_VERSION,
    Columns,
    DataError,
    default_cache_dir,
    load_columns,
    save_csv,
    tile,
)
from engine.feeds import ReplayError, ReplayFeed

DATA = shared_data_dir()
BTC = DATA / "binanceus_BTC-USDT_1m_2023-03.csv"
HEADER = "timestamp,open,high,low,close,volume\n"
T0 = 1_677_628_800_000  # 2023-03-01 00:00 UTC
MIN = 60_000
NAME = "test_BTC-USDT_1m_x.csv"


def rows(count: int, start: int = T0) -> list[str]:
    return [
        f"{start + i * MIN},{100 + i}.5,{102 + i}.0,{99 + i}.0,{101 + i}.0,{i + 1}\n"
        for i in range(count)
    ]


def write(path: Path, lines: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "".join(lines), encoding="utf-8")
    return path


def replay_error(path: Path) -> str:
    with pytest.raises(ReplayError) as caught:
        list(ReplayFeed([path]).iter_batches())
    return str(caught.value)


def load_error(path: Path, cache: Path) -> str:
    with pytest.raises(ReplayError) as caught:
        load_columns(path, cache_dir=cache)
    assert isinstance(caught.value, ValueError)
    return str(caught.value)


def as_arrays(columns: Columns) -> list[np.ndarray]:
    return [columns.ts, columns.open, columns.high, columns.low, columns.close, columns.volume]


def assert_same(a: Columns, b: Columns) -> None:
    assert (a.symbol, a.timeframe, len(a)) == (b.symbol, b.timeframe, len(b))
    for x, y in zip(as_arrays(a), as_arrays(b), strict=True):
        assert x.dtype == y.dtype
        assert np.array_equal(x, y)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


# --- bad input: the replay's rule and message, naming file, line and field -------------------


@pytest.mark.parametrize(
    ("change", "line", "words"),
    [
        pytest.param(lambda r: [r[0], r[2], r[1], *r[3:]], 4, "timestamp", id="unordered"),
        pytest.param(lambda r: [r[0], r[1], r[1], *r[3:]], 4, "timestamp", id="duplicate"),
        pytest.param(
            lambda r: [*r[:2], f"{T0 + 2 * MIN},100.5,98.0,99.0,99.5,1\n", *r[3:]],
            4,
            "high 98.0 is below low 99.0",
            id="high-below-low",
        ),
        pytest.param(
            lambda r: [*r[:3], f"{T0 + 3 * MIN},100.5,abc,99.0,99.5,1\n", *r[4:]],
            5,
            "high 'abc' is not a number",
            id="non-numeric",
        ),
    ],
)
def test_a_bad_row_is_the_replays_error_naming_file_line_and_field(
    tmp_path: Path, change, line: int, words: str
) -> None:
    path = write(tmp_path / NAME, change(rows(6)))
    message = load_error(path, tmp_path / "cache")
    assert message.startswith(f"{NAME}:{line}: ")
    assert words in message
    assert message == replay_error(path)  # one rule per check: the replay's own
    assert not list((tmp_path / "cache").glob("*.npy"))  # nothing cached for a bad file


def test_an_empty_file_and_a_header_only_file_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / NAME
    empty.write_bytes(b"")
    assert (
        load_error(empty, tmp_path / "cache") == f"{NAME}:1: the file is empty; expected the header"
    )
    write(empty, [])
    assert load_error(empty, tmp_path / "cache") == f"{NAME}: no candles after the header"


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / NAME
    assert load_error(missing, tmp_path / "cache") == f"{missing}: not found"


def test_a_file_naming_no_pair_needs_a_symbol(tmp_path: Path) -> None:
    path = write(tmp_path / "candles_1m.csv", rows(3))
    assert "names no pair" in load_error(path, tmp_path / "cache")
    assert load_columns(path, cache_dir=tmp_path / "cache", symbol="ETH/BTC").symbol == "ETH/BTC"


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    count=st.integers(1, 12),
    where=st.integers(0, 11),
    field=st.integers(0, 5),
    text=st.sampled_from(["", "x", "nan", "inf", "-1", "0", "1e400", "1_0", " 7 ", "3.5"]),
)
def test_a_damaged_row_fails_as_the_replay_fails_or_loads_as_it_plays(
    tmp_path: Path, count: int, where: int, field: int, text: str
) -> None:
    lines = rows(count)
    at = where % count
    cells = lines[at].rstrip("\n").split(",")
    cells[field] = text
    lines[at] = ",".join(cells) + "\n"
    with tempfile.TemporaryDirectory(dir=tmp_path) as work:
        path = write(Path(work) / NAME, lines)
        try:
            candles = [c for batch in ReplayFeed([path]).iter_batches() for c in batch]
        except ReplayError as exc:
            assert load_error(path, Path(work) / "cache") == str(exc)
        else:
            columns = load_columns(path, cache_dir=Path(work) / "cache")
            assert columns.ts.tolist() == [c.ts for c in candles]
            assert columns.close.tolist() == [c.close for c in candles]
            assert columns.volume.tolist() == [c.volume for c in candles]


# --- the arrays are the replay's candles -----------------------------------------------------


@pytest.mark.parametrize("path", sorted(DATA.glob("*.csv")), ids=lambda p: p.name)
def test_the_columns_are_the_replays_candles(tmp_path: Path, path: Path) -> None:
    feed = ReplayFeed([path])
    candles = [c for batch in feed.iter_batches() for c in batch]
    columns = load_columns(path, cache_dir=tmp_path)
    assert (columns.symbol, columns.timeframe) == (feed.symbols[0], feed.timeframe)
    assert len(columns) == len(candles) == feed.row_count
    assert columns.ts.dtype == np.int64
    assert columns.ts.tolist() == [c.ts for c in candles]
    for field in ("open", "high", "low", "close", "volume"):
        values = getattr(columns, field)
        assert values.dtype == np.float64
        assert values.tolist() == [getattr(c, field) for c in candles], field
    assert_same(load_columns(path, cache_dir=tmp_path), columns)  # and from the cache


# --- the cache -------------------------------------------------------------------------------


def test_the_first_load_parses_with_progress_and_a_hit_parses_nothing(tmp_path: Path) -> None:
    path = tmp_path / BTC.name
    path.write_bytes(BTC.read_bytes())
    cache = tmp_path / "cache"
    first = Recorder()
    cold = load_columns(path, cache_dir=cache, progress=first)
    size = path.stat().st_size
    assert first.calls, "the first load reports progress as it parses"
    assert all(total == size for _, total in first.calls)
    done = [d for d, _ in first.calls]
    assert done == sorted(done) and done[-1] == size
    [cached] = cache.glob("*.npy")
    assert cached.name == f"{hashlib.sha256(path.read_bytes()).hexdigest()}-1m.npy"
    before = cached.stat()

    # The CSV is touched, not changed: the content hash still finds the cache file.
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**12))
    again = Recorder()
    warm = load_columns(path, cache_dir=cache, progress=again)
    assert again.calls == []  # nothing parsed
    after = cached.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert_same(warm, cold)
    assert isinstance(warm.close.base, np.memmap) or isinstance(
        getattr(warm.close.base, "base", None), np.memmap
    )

    # One price changed: another content, another cache file, the new price.
    text = path.read_text(encoding="utf-8").splitlines(keepends=True)
    ts, o, h, low, _close, v = text[1].rstrip("\n").split(",")
    text[1] = f"{ts},{o},{h},{low},{low},{v}\n"
    path.write_text("".join(text), encoding="utf-8")
    changed = Recorder()
    edited = load_columns(path, cache_dir=cache, progress=changed)
    assert changed.calls
    assert len(list(cache.glob("*.npy"))) == 2
    assert edited.close[0] == float(low) != cold.close[0]
    assert np.array_equal(edited.close[1:], cold.close[1:])


def damage_flip(cached: Path) -> None:
    data = bytearray(cached.read_bytes())
    data[-5] ^= 0x40  # inside the last volume
    cached.write_bytes(bytes(data))


def damage_truncate(cached: Path) -> None:
    cached.write_bytes(cached.read_bytes()[:-100])


def damage_garbage(cached: Path) -> None:
    cached.write_bytes(b"not a numpy file at all\n" * 10)


def damage_version(cached: Path) -> None:
    """A well-formed file, checksum right, of another format version."""
    table = np.load(cached)
    table[1, 0] = FORMAT_VERSION + 1
    np.save(cached, table)


def damage_magic(cached: Path) -> None:
    table = np.load(cached)
    table[0, 0] = FORMAT_MAGIC + 1
    np.save(cached, table)


def damage_size(cached: Path) -> None:
    """The rows are right but for a CSV of another size (a stale header)."""
    table = np.load(cached)
    table[4, 0] += 1
    np.save(cached, table)


def damage_float(cached: Path) -> None:
    np.save(cached, np.load(cached).astype(np.float64))


@pytest.mark.parametrize(
    "damage",
    [
        damage_flip,
        damage_truncate,
        damage_garbage,
        damage_version,
        damage_magic,
        damage_size,
        damage_float,
    ],
)
def test_a_damaged_or_other_version_cache_file_is_rebuilt(tmp_path: Path, damage) -> None:
    path = write(tmp_path / NAME, rows(50))
    cache = tmp_path / "cache"
    load_columns(path, cache_dir=cache)
    [cached] = cache.glob("*.npy")
    damage(cached)  # in place: a mapping of this file would see it, so compare with another
    good = load_columns(path, cache_dir=tmp_path / "elsewhere")
    seen = Recorder()
    rebuilt = load_columns(path, cache_dir=cache, progress=seen)
    assert seen.calls, "a damaged cache file is parsed again, not trusted"
    assert_same(rebuilt, good)
    hit = Recorder()
    assert_same(load_columns(path, cache_dir=cache, progress=hit), good)
    assert hit.calls == []  # the rebuilt file is good again
    assert [p.name for p in cache.iterdir()] == [cached.name]  # no temporary file left


def test_the_cache_folder_is_private_and_defaults_under_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "cma" / "candles"
    path = write(tmp_path / NAME, rows(5))
    load_columns(path)
    folder = tmp_path / "xdg" / "cma" / "candles"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert len(list(folder.glob("*.npy"))) == 1
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "cma" / "candles"


def test_a_cache_that_cannot_be_written_still_loads(tmp_path: Path) -> None:
    path = write(tmp_path / NAME, rows(5))
    blocked = tmp_path / "a-file"
    blocked.write_text("in the way")
    columns = load_columns(path, cache_dir=blocked)
    assert columns.close.tolist() == [101.0 + i for i in range(5)]
    assert not columns.close.flags.writeable


def test_the_cache_is_per_timeframe(tmp_path: Path) -> None:
    # The same bytes read at 1m and at 5m are different checks: two entries.
    # Gaps everywhere: the spacing says no timeframe, so both fit.
    stamps = [T0, T0 + 10 * MIN, T0 + 25 * MIN, T0 + 40 * MIN]
    one = write(tmp_path / "a_BTC-USDT.csv", [f"{ts},1.0,1.2,0.9,1.1,5\n" for ts in stamps])
    cache = tmp_path / "cache"
    assert load_columns(one, cache_dir=cache, timeframe="5m").timeframe == "5m"
    assert load_columns(one, cache_dir=cache, timeframe="1m").timeframe == "1m"
    assert len(list(cache.glob("*.npy"))) == 2


# --- Columns ---------------------------------------------------------------------------------


def test_columns_are_read_only(tmp_path: Path) -> None:
    columns = load_columns(write(tmp_path / NAME, rows(5)), cache_dir=tmp_path / "cache")
    for values in as_arrays(columns):
        with pytest.raises(ValueError, match="read-only"):
            values[0] = 1
    mine = np.arange(3, dtype=np.int64)
    made = Columns("X/Y", "1m", mine, *(np.ones(3) for _ in range(5)))
    mine[0] = 7  # the caller's array stays theirs to write; the column is a read-only view
    assert made.ts[0] == 7 and not made.ts.flags.writeable
    with pytest.raises(ValueError, match=r"Columns.close: expected 3 float64"):
        Columns("X/Y", "1m", mine, np.ones(3), np.ones(3), np.ones(3), np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match=r"Columns.ts: expected 3 int64"):
        Columns("X/Y", "1m", mine.astype(np.float64), *(np.ones(3) for _ in range(5)))


def test_a_time_range_is_half_open_and_an_empty_one_names_the_dates(tmp_path: Path) -> None:
    columns = load_columns(BTC, cache_dir=tmp_path)
    day = 86_400_000
    march_2 = columns.between(T0 + day, T0 + 2 * day)
    assert len(march_2) == 1440
    assert march_2.ts[0] == T0 + day and march_2.ts[-1] == T0 + 2 * day - MIN
    assert len(columns.between(None, T0 + MIN)) == 1
    assert len(columns.between(T0 + 20 * day, None)) == 1440
    assert len(columns.between()) == len(columns)
    april = 1_680_307_200_000  # 2023-04-01 00:00 UTC
    with pytest.raises(DataError) as caught:
        columns.between(april, april + day)
    assert str(caught.value) == (
        "BTC/USDT has no 1m candles from 2023-04-01 00:00 to 2023-04-02 00:00 UTC "
        "(its candles run from 2023-03-01 00:00 to 2023-03-21 23:59 UTC)"
    )
    with pytest.raises(DataError, match="from the start to 2023-03-01 00:00 UTC"):
        columns.between(None, T0)
    with pytest.raises(DataError, match="2023-03-02 00:00 to 2023-03-01 00:00 UTC is empty"):
        columns.between(T0 + day, T0)
    assert isinstance(DataError("x"), ValueError)


# --- tile ------------------------------------------------------------------------------------


def test_tile_joins_copies_up_and_always_moves_forward(tmp_path: Path) -> None:
    columns = load_columns(write(tmp_path / NAME, rows(4)), cache_dir=tmp_path / "cache")
    tiled = tile(columns, 11)
    assert len(tiled) == 11
    assert tiled.ts.tolist() == [T0 + i * MIN for i in range(11)]
    o, c = columns.open.tolist(), columns.close.tolist()
    # copy 0 as is, copy 1 backwards with open and close swapped, copy 2 as is again
    assert tiled.open.tolist() == o + c[::-1] + o[:3]
    assert tiled.close.tolist() == c + o[::-1] + c[:3]
    assert (
        tiled.high.tolist()
        == columns.high.tolist() + columns.high.tolist()[::-1] + columns.high.tolist()[:3]
    )
    assert tiled.volume.tolist()[4:8] == columns.volume.tolist()[::-1]
    parts = [tile(columns, 3, start=0), tile(columns, 5, start=3), tile(columns, 3, start=8)]
    for field in ("ts", "open", "high", "low", "close", "volume"):
        joined = np.concatenate([getattr(part, field) for part in parts])
        assert np.array_equal(joined, getattr(tiled, field)), field
    with pytest.raises(ValueError, match="at least one candle"):
        tile(columns, 0)
    with pytest.raises(ValueError, match="not -1"):
        tile(columns, 3, start=-1)


def test_a_tiled_file_saved_as_csv_replays_and_loads_back_exactly(tmp_path: Path) -> None:
    columns = load_columns(BTC, cache_dir=tmp_path / "cache")
    tiled = tile(columns, 70_000)  # three copies: two seams
    seams = [len(columns) - 1, 2 * len(columns) - 1]
    for i in seams:
        assert tiled.close[i] == tiled.open[i + 1]
    out = tmp_path / "tiled_BTC-USDT_1m.csv"
    save_csv(tiled, out)
    assert ReplayFeed([out]).row_count == 70_000  # every replay check passes
    assert_same(load_columns(out, cache_dir=tmp_path / "cache"), tiled)


def test_a_cache_entry_that_cannot_be_replaced_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = write(tmp_path / NAME, rows(5))
    cache = tmp_path / "cache"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (cache / f"{digest}-1m.npy").mkdir(parents=True)  # a folder where the file would go
    columns = load_columns(path, cache_dir=cache)
    assert columns.close.tolist() == [101.0 + i for i in range(5)]
    assert [p.name for p in cache.iterdir()] == [f"{digest}-1m.npy"]


def test_nothing_to_tile_and_no_candles_in_a_range() -> None:
    empty = Columns("X/Y", "1m", np.array([], dtype=np.int64), *(np.array([]) for _ in range(5)))
    with pytest.raises(ValueError, match="X/Y: no candles to tile"):
        tile(empty, 3)
    with pytest.raises(
        DataError, match=r"X/Y has no 1m candles from the start to the end UTC \(it has none\)"
    ):
        empty.between()
    monthly = Columns("X/Y", "1M", np.array([T0], dtype=np.int64), *(np.ones(1) for _ in range(5)))
    with pytest.raises(ValueError, match="fixed-length timeframe"):
        tile(monthly, 3)
