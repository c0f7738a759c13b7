"""``benchmarks/backtest.py`` runs at a tiny size and prints every figure.

The figures themselves are not checked (speed is measured by running the
benchmark, never in a test); only that each is printed, that the bare loop and
the backtest agree on the trades (no WARNING), and that it exits 0.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: A line each figure prints (a regular expression, searched for).
FIGURES = [
    r"cold load \(parse, check, cache\) .* candles/s",
    r"cached load \(hash, map, checksum\) .* candles/s",
    r"tiled: tiled_BTC-USDT_1m_20000\.csv, 20,000 candles",
    r"bare loop \(best of 1\) .* candles/s .* closed trades",
    r"sma_cross backtest \(best of 1\) .* candles/s .* closed trades",
    r"to store [\d,]+ units of work \([\d,]+ statements, one transaction",
    r"sma_cross backtest / bare loop: [\d.]+ of its candles/s \(target >= 0\.30\): (PASS|FAIL)",
    r"closed trades: backtest ([\d,]+), bare loop \1$",
    r"default agents backtest \(best of 1\) .* candles/s",
    r"default agents: [\d,]+ candles/s \(target >= 500,000\): (PASS|FAIL)",
    r"^ +20,000( +[\d.]+){4} +-?[\d.]+$",
    r"^ +10,000( +[\d.]+){4} +-?[\d.]+$",
    r"growth at 20,000 candles: -?[\d.]+ MiB \(target <= 100\): (PASS|FAIL); at half",
    r"6\. The live per-candle path: skipped \(--skip-live\)",
]


def test_the_backtest_benchmark_prints_every_figure_at_a_tiny_size(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "backtest.py"),
            "--candles", "20000", "--rounds", "1", "--skip-live", "--dir", str(tmp_path),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    missing = [f for f in FIGURES if not re.search(f, out, re.MULTILINE)]
    assert not missing, f"figures not printed: {missing}\n{out}"
    assert "WARNING" not in out, out
    assert list(tmp_path.iterdir()) == [], "the temp dir is left behind"
