"""Soak: the headless engine on the demo market at speed max, scraped every second.

Run: ``.venv/bin/python benchmarks/soak.py [--minutes 10 | --seconds S] [--every 1]``

It starts ``cma run --headless --speed max --policy auto --metrics 127.0.0.1:0`` as a
subprocess (the demo market: the sim feed at speed max plays forever, from 2026-01-01,
so it trades the whole time) with a store, config and logs in a temporary directory,
and ``--duration`` set to the run's length, so the engine stops itself gracefully.
While it runs:

* ``/metrics`` is scraped every ``--every`` seconds (the scrape's latency is timed,
  its answer checked to hold ``cma_candles``);
* the process's memory is read from ``/proc/PID/status`` at each scrape: VmHWM (the peak
  resident set so far) and VmRSS, kept at the mark (minute 1 of a 10-minute run; a
  sixth of a shorter one) and at the end;
* the event-loop lag comes from the engine's own probe: the histogram
  ``cma_event_loop_lag_seconds`` (sampled four times a second all run long; its p99 is
  the upper bound of the bucket it falls in, as ``histogram_quantile`` would read it
  without interpolation) and the gauge ``cma_event_loop_lag_last_seconds`` read at each
  scrape (its p99 over the scrapes).

At the end ``cma db check`` runs on the store, which must pass. It prints the figures
and exits 0 when the engine exited 0, every scrape was answered and the check passed,
else 1. It is a measurement, not a test; ``tests/test_soak.py`` runs a short form.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_METRICS_URL = re.compile(r"^metrics on (http://\S+/metrics)$")
_SAMPLE = re.compile(r"^([a-z_:]+)(\{[^}]*\})? (\S+)$")


@dataclass
class Soak:
    """What one soak run measured."""

    seconds: float
    mark_s: float
    returncode: int | None = None
    scrapes: int = 0
    scrape_failures: list[str] = field(default_factory=list)
    scrape_latency: list[float] = field(default_factory=list)
    lag_last: list[float] = field(default_factory=list)
    #: The lag histogram as last scraped: (upper bound, cumulative count).
    lag_buckets: list[tuple[float, float]] = field(default_factory=list)
    candles: float = 0.0
    fills: float = 0.0
    #: (VmHWM, VmRSS) in KiB at the mark and at the end.
    mem_at_mark: tuple[int, int] | None = None
    mem_at_end: tuple[int, int] | None = None
    db_check: str = ""
    db_check_ok: bool = False
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.returncode == 0
            and self.scrapes > 0
            and not self.scrape_failures
            and self.db_check_ok
            and self.mem_at_mark is not None
            and self.mem_at_end is not None
        )


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank) of ``values``; NaN if there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def bucket_p99(buckets: list[tuple[float, float]]) -> float:
    """The upper bound of the bucket holding the 99th percentile of a histogram."""
    if not buckets or buckets[-1][1] == 0:
        return math.nan
    want = 0.99 * buckets[-1][1]
    for bound, count in buckets:
        if count >= want:
            return bound
    return math.inf


def memory_kib(pid: int) -> tuple[int, int] | None:
    """(VmHWM, VmRSS) of ``pid`` in KiB from /proc, or None once it has gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = dict(re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB$", text, re.MULTILINE))
    if len(found) < 2:
        return None  # a zombie has no memory lines
    return int(found["VmHWM"]), int(found["VmRSS"])


def parse_metrics(body: str, soak: Soak) -> None:
    buckets: list[tuple[float, float]] = []
    for line in body.splitlines():
        m = _SAMPLE.match(line)
        if m is None:
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        if name == "cma_event_loop_lag_last_seconds":
            soak.lag_last.append(value)
        elif name == "cma_event_loop_lag_seconds_bucket":
            le = re.search(r'le="([^"]+)"', labels)
            assert le is not None
            buckets.append((float(le.group(1)), value))
        elif name == "cma_candles":
            soak.candles = value
        elif name == "cma_fills_total":
            soak.fills += value
    if buckets:
        soak.lag_buckets = sorted(buckets)


def _scrape(url: str, every: float, proc: subprocess.Popen[str], soak: Soak) -> None:
    began = time.monotonic()
    tick = began
    # The engine's --duration runs from about when it printed the URL; in its last
    # half second it closes the metrics server, and a refused scrape then means nothing.
    end = began + soak.seconds - 0.5
    while proc.poll() is None:
        tick += every
        if tick > end:
            return
        time.sleep(max(0.0, tick - time.monotonic()))
        mem = memory_kib(proc.pid)
        if mem is None:
            return  # exited meanwhile
        if soak.mem_at_mark is None and time.monotonic() - began >= soak.mark_s:
            soak.mem_at_mark = mem
        soak.mem_at_end = mem
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                body = answer.read().decode()
        except OSError as exc:
            if proc.poll() is not None:
                return  # the engine stopped at its duration while we asked
            soak.scrape_failures.append(f"{type(exc).__name__}: {exc}")
            continue
        soak.scrape_latency.append(time.perf_counter() - start)
        soak.scrapes += 1
        if "cma_candles " not in body:
            soak.scrape_failures.append("an answer without cma_candles")
            continue
        soak.fills = 0.0
        parse_metrics(body, soak)


def env_for(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
    env.update(
        XDG_DATA_HOME=str(tmp / "data"),
        XDG_CONFIG_HOME=str(tmp / "config"),
        XDG_STATE_HOME=str(tmp / "state"),
        PYTHONPATH=str(ROOT),
        CMA_ENGINE__STATUS_INTERVAL_SECONDS="10",
    )
    return env


def run_soak(seconds: float, every: float = 1.0, tmp: Path | None = None) -> Soak:
    """Run the engine for ``seconds``, scraped every ``every`` seconds (see the module)."""
    soak = Soak(seconds=seconds, mark_s=min(60.0, seconds / 6))
    with tempfile.TemporaryDirectory(prefix="cma-soak-", dir=tmp) as where:
        tmp_dir = Path(where)
        db = tmp_dir / "cma.db"
        env = env_for(tmp_dir)
        cmd = [sys.executable, "-m", "tui", "run", "--headless", "--speed", "max"]
        cmd += ["--policy", "auto", "--metrics", "127.0.0.1:0", "--db", str(db)]
        cmd += ["--duration", f"{seconds:g}s"]
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            url = None
            for line in proc.stdout:
                m = _METRICS_URL.match(line.strip())
                if m is not None:
                    url = m.group(1)
                    break
            if url is None:
                soak.returncode = proc.wait()
                assert proc.stderr is not None
                soak.stderr = proc.stderr.read()
                return soak
            # Keep reading the status lines, so the pipe never fills up.
            drain = threading.Thread(target=proc.stdout.read, daemon=True)
            drain.start()
            scraper = threading.Thread(target=_scrape, args=(url, every, proc, soak))
            scraper.start()
            _, soak.stderr = proc.communicate(timeout=seconds + 120)
            soak.returncode = proc.returncode
            scraper.join()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        check = subprocess.run(
            [sys.executable, "-m", "tui", "db", "check", "--db", str(db)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        soak.db_check = (check.stdout + check.stderr).strip()
        soak.db_check_ok = check.returncode == 0
    return soak


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def report(soak: Soak) -> list[str]:
    lines = [f"engine exit code: {soak.returncode}"]
    lines.append(
        f"candles: {soak.candles:,.0f} ({soak.candles / soak.seconds:,.0f}/s), "
        f"fills: {soak.fills:,.0f}"
    )
    for what, mem in (
        (f"at {soak.mark_s:g} s", soak.mem_at_mark),
        (f"at the end (the last scrape of {soak.seconds:g} s)", soak.mem_at_end),
    ):
        if mem is None:
            lines.append(f"memory {what}: not read")
        else:
            lines.append(f"memory {what}: peak RSS (VmHWM) {_mib(mem[0])}, RSS {_mib(mem[1])}")
    if soak.mem_at_mark and soak.mem_at_end:
        growth = soak.mem_at_end[0] - soak.mem_at_mark[0]
        lines.append(f"peak RSS growth after the mark: {_mib(growth)}")
    lines.append(
        f"event-loop lag p99: {bucket_p99(soak.lag_buckets) * 1000:g} ms "
        f"(histogram bucket bound, {soak.lag_buckets[-1][1] if soak.lag_buckets else 0:.0f} "
        f"samples), {p99(soak.lag_last) * 1000:.1f} ms (last-lag gauge at each scrape; "
        f"max {max(soak.lag_last, default=math.nan) * 1000:.1f} ms)"
    )
    lines.append(
        f"scrapes: {soak.scrapes} answered, {len(soak.scrape_failures)} failed; "
        f"latency p99 {p99(soak.scrape_latency) * 1000:.1f} ms, "
        f"max {max(soak.scrape_latency, default=math.nan) * 1000:.1f} ms"
    )
    for failure in soak.scrape_failures[:5]:
        lines.append(f"  scrape failed: {failure}")
    lines.append(f"cma db check: {'passed' if soak.db_check_ok else 'FAILED'}")
    if not soak.db_check_ok:
        lines.append(soak.db_check)
    if soak.stderr.strip():
        lines.append(f"engine stderr: {soak.stderr.strip()[-2000:]}")
    lines.append("soak: " + ("PASS" if soak.ok else "FAIL"))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length (default 10)")
    parser.add_argument("--seconds", type=float, default=None, help="length in seconds")
    parser.add_argument("--every", type=float, default=1.0, help="scrape every S seconds")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    print(
        f"soak: cma run --headless on the demo market, speed max, policy auto, "
        f"{seconds:g} s, /metrics every {args.every:g} s; {os.cpu_count()} CPUs",
        flush=True,
    )
    soak = run_soak(seconds, args.every)
    print("\n".join(report(soak)))
    return 0 if soak.ok else 1


if __name__ == "__main__":
    sys.exit(main())
