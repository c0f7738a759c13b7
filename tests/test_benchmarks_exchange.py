"""``benchmarks/exchange.py`` runs at a tiny size and prints every figure.

The figures are not checked (speed is measured by running the benchmark, never in a
test); only that each is printed and that it exits 0 (it asserts on the way that
every order was filled and reported, and every candle reached the engine).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FIGURES = [
    r"bare ccxt create_order \(limiter off\) +[\d.]+ orders/s",
    r"broker, rate limiter off +[\d.]+ orders/s \([\d.]+ of bare\); with the fills reported"
    r" +[\d.]+ orders/s",
    r"broker, rate limiter on, 2 orders +[\d.]+ orders/s",
    r"bare ccxt markets \+ 20 candles of history +[\d.]+ ms",
    r"engine start to first proposal, limiter on +[\d.]+ ms \([\d.]+ x bare; markets [\d.]+ ms, "
    r"engine start [\d.]+ ms, warm-up [\d.]+ ms, live candle [\d.]+ ms\)",
    r"engine start to first proposal, limiter off +[\d.]+ ms",
    r"bare ccxt.pro watch_ohlcv +median +[\d.]+ ms +p95 +[\d.]+ ms",
    r"engine core +median +[\d.]+ ms +p95 +[\d.]+ ms",
    r"engine / bare \(median\): [\d.]+",
]


def test_the_exchange_benchmark_prints_every_figure_at_a_tiny_size(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, str(ROOT / "benchmarks" / "exchange.py"),
            "--orders", "5", "--limited-orders", "2", "--warmup", "20", "--candles", "5",
            "--dir", str(tmp_path),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    missing = [f for f in FIGURES if not re.search(f, done.stdout, re.MULTILINE)]
    assert not missing, f"figures not printed: {missing}\n{done.stdout}"
    assert list(tmp_path.iterdir()) == [], "the temp dir is left behind"
