"""The soak's short form (60 s): ``benchmarks/soak.py`` as CI runs it.

The engine runs headless on the demo market at speed max for a minute, scraped every
second. Checked: it exits 0, every scrape is answered, the peak RSS grows by a bounded
amount after its first sixth, the lag histogram was fed, and ``cma db check`` passes.
No timing is asserted (the machine may be loaded); the figures are printed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import load_benchmark

soak = load_benchmark("soak")

#: Peak RSS growth allowed from the mark (10 s) to the end (60 s). A run holds about
#: 60 MiB; a leak of a few hundred bytes a candle over ~250,000 candles shows as more.
MAX_GROWTH_KIB = 40 * 1024


@pytest.mark.slow
def test_a_minute_at_speed_max_scraped_every_second_keeps_memory_and_store_sound(
    tmp_path: Path,
) -> None:
    result = soak.run_soak(60.0, every=1.0, tmp=tmp_path)
    print("\n".join(soak.report(result)))
    assert result.returncode == 0, result.stderr
    assert not result.scrape_failures, result.scrape_failures
    assert result.scrapes >= 20, result.scrapes  # about 60 under no load
    assert result.candles > 1000, result.candles
    assert result.lag_buckets and result.lag_buckets[-1][1] > 0, "the lag probe never ran"
    assert result.mem_at_mark is not None and result.mem_at_end is not None
    growth = result.mem_at_end[0] - result.mem_at_mark[0]
    assert growth <= MAX_GROWTH_KIB, f"peak RSS grew {growth} KiB after the mark"
    assert result.db_check_ok, result.db_check
    assert re.search(r"\d+ checks passed, 0 failed", result.db_check), result.db_check
    assert list(tmp_path.iterdir()) == [], "the temp dir is left behind"
