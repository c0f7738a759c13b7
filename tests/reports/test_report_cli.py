"""``cma report`` end to end: the real executable in a subprocess, real backtest stores
in the data directory (``backtests/``) and a store given by ``--db``."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
from report_helpers import CMA, backtest, clean_env


def cma(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CMA, "report", *args], env=clean_env(home), capture_output=True, text=True, timeout=60
    )


def refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2 with one ``cma:`` line holding ``words``, and no traceback."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cma: "), done.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert done.stdout == ""


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with two backtests' stores (made by cma backtest without --db)."""
    home = tmp_path_factory.mktemp("report-cli")
    backtest(home, None, "--approve", "person", "--reject-rate", "0.3")
    backtest(home, None, "--approve", "all")
    return home


def backtests_of(home: Path) -> list[Path]:
    """The backtests' stores in the order they ran (names are UTC times, to the second,
    with ``-2`` added within one second: so by modification time)."""
    return sorted(
        (home / "data" / "cma" / "backtests").glob("*.db"), key=lambda p: p.stat().st_mtime_ns
    )


def test_list_shows_every_backtest_store_as_stem_and_session(home: Path) -> None:
    done = cma(home, "--list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["SESSION", "KIND", "MARKET"]
    stores = backtests_of(home)
    assert len(stores) == 2 and len(lines) == 3
    for line, store in zip(lines[1:], stores, strict=True):
        ref, kind, market = line.split()[:3]
        assert ref == f"{store.stem}:1" and kind == "backtest" and market == "ETH/BTC,LTC/BTC"
        assert re.search(r"\s\d+\s+[+-]\d+\.\d\d %$", line), line


def test_last_writes_to_reports_in_the_data_directory_and_prints_the_path(home: Path) -> None:
    done = cma(home, "--last", "--format", "html")
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    last = backtests_of(home)[-1]  # the later one sorts last: names are UTC times
    assert path.parent == home / "data" / "cma" / "reports"
    assert path.name.startswith(f"session-{last.stem}-1-") and path.suffix == ".html"
    html = path.read_text()
    assert 'id="equity-chart"' in html and 'id="drawdown-chart"' in html


def test_a_ref_and_output_write_that_session_in_that_format(home: Path, tmp_path: Path) -> None:
    first = backtests_of(home)[0]
    out = tmp_path / "r.json"
    done = cma(home, f"{first.stem}:1", "--format", "json", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1 and data["session"]["ref"] == f"{first.stem}:1"
    assert data["edge"]["overall"]["rejected"]["count"] > 0  # the person rejected some
    # --output naming a folder: the default name inside it.
    done = cma(home, f"{first.stem}:1", "--format", "csv", "--output", str(tmp_path))
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(done.stdout.strip()) as z:
        assert "trades.csv" in z.namelist()


def test_db_restricts_to_one_store_and_names_its_sessions_n(home: Path, tmp_path: Path) -> None:
    store = tmp_path / "one.db"
    shutil.copyfile(backtests_of(home)[0], store)
    listed = cma(home, "--list", "--db", str(store))
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].split()[0] == "1"
    done = cma(home, "1", "--db", str(store), "--format", "md", "--output", str(tmp_path / "r.md"))
    assert done.returncode == 0, done.stderr
    assert "## The human edge" in (tmp_path / "r.md").read_text()


def test_bad_input_exits_2_naming_the_argument(home: Path, tmp_path: Path) -> None:
    refused(cma(home, "--last", "--format", "pdf"), "--format", "'pdf'")
    refused(cma(home, "--last"), "--format")
    refused(cma(home), "SESSION", "--last")
    refused(cma(home, "1", "--last", "--format", "md"), "SESSION or --last")
    refused(cma(home, "nope:1", "--format", "md"), "SESSION 'nope:1'")
    refused(cma(home, "x:y", "--format", "md"), "SESSION", "'x:y'")
    stem = backtests_of(home)[0].stem
    refused(cma(home, f"{stem}:9", "--format", "md"), "no session 9")
    refused(cma(home, "--list", "--db", str(tmp_path / "missing.db")), "--db")
    text = tmp_path / "notes.db"
    text.write_text("not a store\n")
    refused(cma(home, "--list", "--db", str(text)), "not a cma store")
    refused(cma(home, "1", "--db", str(text), "--format", "md"), "not a cma store")
    empty = tmp_path / "empty-home"
    refused(cma(empty, "--last", "--format", "html"), "--last", "no session")
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    refused(cma(home, "--last", "--format", "md", "--output", str(blocker / "r.md")), "--output")
    # A pipe (or a device) named as the output is refused and left as it was: a rename
    # over it replaced /dev/full with the report.
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    refused(
        cma(home, "--last", "--format", "md", "--output", str(pipe)),
        "--output",
        "not a regular file",
    )
    assert stat.S_ISFIFO(pipe.lstat().st_mode)


def test_a_console_session_in_the_configured_store_is_session_n(tmp_path: Path) -> None:
    """A headless ``cma run`` (the console's engine) writes the configured store; its
    session is listed as ``1`` beside the backtests', and ``--last`` after a later
    backtest picks the backtest."""
    run = subprocess.run(
        [CMA, "run", "--headless", "--policy", "auto", "--speed", "max", "--duration", "3s"],
        env=clean_env(tmp_path), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    listed = cma(tmp_path, "--list")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()[1:]
    assert line.split()[:2] == ["1", "paper"]
    done = cma(tmp_path, "1", "--format", "md")
    assert done.returncode == 0, done.stderr
    md = Path(done.stdout.strip()).read_text()
    assert md.startswith("# Session 1: paper,") and "## The human edge" in md
    backtest(tmp_path, None, "--approve", "all")
    last = cma(tmp_path, "--last", "--format", "json")
    assert last.returncode == 0, last.stderr
    assert json.loads(Path(last.stdout.strip()).read_text())["session"]["kind"] == "backtest"
