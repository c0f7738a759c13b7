"""``benchmarks/report.py`` runs end to end at a small size and prints every figure."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_report_benchmark_prints_a_time_and_size_per_format(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "report.py"), "--candles", "20000",
         "--rounds", "1", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    trades = int(re.search(r"([\d,]+) closed trades", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert trades > 500
    assert "WARNING: fewer than 10,000 trades" in out  # the small size says so
    assert re.search(rf"build\s+[\d.]+ s\s+[\d.]+ x baseline\s+\({trades:,} trades", out)
    for fmt in ("md", "html", "csv", "json"):
        assert re.search(rf"^\s+{fmt}\s+[\d.]+ s\s+[\d.]+ x baseline\s+[\d.]+ MB", out, re.M), fmt
    for name in ("nothing to export", "exporting"):
        assert re.search(rf"^\s+{name}\s+median\s+[\d.]+ ms\s+p99\s+[\d.]+ ms\s+worst", out, re.M)
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone
