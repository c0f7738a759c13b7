"""Metrics and health: a real engine scraped over HTTP.

``cma run --headless --metrics 127.0.0.1:0`` as a subprocess (the port it bound printed,
its counters moving, bound to 127.0.0.1 only); in-process sessions for what needs a
hand on the world: a ccxt feed against the local Binance exchange that stops talking
(/readyz 503, then 200 again), a store whose commits fail (a trigger, as a full disk
would), real ccxt errors and rate-limit waits counted, a port already taken.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st
from support import ROOT, wait_for

from engine import observe
from engine.config import Settings
from engine.feeds.sim import SimFeed
from tui.cli import main, metrics_address
from tui.metrics import DENIAL_BUCKETS, Metrics, denial_bucket
from tui.session import ConsoleSession, StartError

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of every sample of a Prometheus text exposition."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match is not None, f"not a sample line: {line!r}"
            out[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return out


def total(found: dict[str, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        v for key, v in found.items() if key.split("{")[0] == name and all(w in key for w in want)
    )


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def aget(url: str) -> tuple[int, str]:
    return await asyncio.to_thread(get, url)


async def until(condition: Callable[[], Any], what: str, within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await condition() if asyncio.iscoroutinefunction(condition) else condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.02)


def listening_addresses(port: int) -> list[str]:
    """The local addresses a TCP socket listens on at ``port`` (from /proc/net/tcp*)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table, encoding="ascii") as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                address, port_hex = local.split(":")
                if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                    if len(address) == 8:
                        found.append(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                    else:
                        raw = b"".join(
                            bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, 32, 8)
                        )
                        found.append(socket.inet_ntop(socket.AF_INET6, raw))
    return found


# --- the command line ---------------------------------------------------------------


def test_headless_serves_metrics_health_and_readiness_on_127_0_0_1(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    argv = [sys.executable, "-m", "tui", "run", "--headless", "--speed", "max"]
    argv += ["--policy", "auto", "--duration", "60s", "--metrics", "0"]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("metrics on "):
                break
        else:
            pytest.fail(f"no 'metrics on' line: {lines}, {proc.communicate()[1]}")
        match = re.fullmatch(r"metrics on (http://127\.0\.0\.1:(\d+)/metrics)\n", lines[-1])
        assert match is not None, lines[-1]
        url, port = match.group(1), int(match.group(2))
        base = url.removesuffix("/metrics")
        # Bound to the loopback address only, not every interface.
        assert listening_addresses(port) == ["127.0.0.1"]
        assert get(f"{base}/healthz") == (200, "ok\n")

        def moved() -> dict[str, float] | None:
            status, body = get(url)
            assert status == 200
            found = samples(body)
            if total(found, "cma_proposals_total", event="approved") and total(
                found, "cma_fills_total"
            ):
                return found
            return None

        found = wait_for("an approved proposal and a fill", moved, within=20.0)
        assert total(found, "cma_proposals_total", event="created") >= total(
            found, "cma_proposals_total", event="approved"
        )
        assert total(found, "cma_proposals_total", agent="price_action") > 0
        assert total(found, "cma_orders_total", purpose="entry") > 0
        assert found["cma_candle_seconds_count"] > 0
        assert found['cma_store_commit_seconds_count{kind="work"}'] > 0
        assert (
            found['cma_store_commit_size_sum{kind="work"}']
            >= found['cma_store_commit_size_count{kind="work"}']
        )
        assert found['cma_approval_latency_seconds_count{decided_by="policy"}'] > 0
        assert found['cma_trading_state{state="ACTIVE"}'] == 1.0
        assert found['cma_engine_state{state="running"}'] == 1.0
        assert found["cma_equity"] > 0
        assert found["cma_drawdown_limit_ratio"] == 0.1  # risk.max_drawdown's default
        assert found["cma_ready"] == 1.0
        assert get(f"{base}/readyz") == (200, '{"ready": true}')
        wait_for(
            "lag", lambda: samples(get(url)[1]).get("cma_event_loop_lag_seconds_count"), within=20.0
        )
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize(
    "value",
    ["fast", "70000", "127.0.0.1:", "::1:9464", "bad host:9464", "127.0.0.1:-1", ":9464"],
)
def test_a_bad_metrics_address_exits_2_naming_the_option(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--headless", "--metrics", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--metrics" in err and "Traceback" not in err


def test_metrics_address_defaults_the_host_to_loopback() -> None:
    assert metrics_address("9464") == ("127.0.0.1", 9464)
    assert metrics_address("0.0.0.0:80") == ("0.0.0.0", 80)
    assert metrics_address("[::1]:0") == ("::1", 0)
    assert metrics_address("localhost:9100") == ("localhost", 9100)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("[metrics]\nport = 70000\n", "metrics.port"),
        ("[metrics]\nhost = 'not a host'\n", "metrics.host"),
        ("[metrics]\nenabled = 'sometimes'\n", "metrics.enabled"),
    ],
)
def test_a_bad_metrics_setting_exits_2_naming_the_field(
    tmp_path: Path, body: str, field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(body, encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        main(["config", "validate", str(config)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("cma: ") and field in err, err


def test_metrics_are_off_by_default_and_the_console_imports_no_metrics_library() -> None:
    assert Settings().metrics.enabled is False
    assert Settings().metrics.host == "127.0.0.1"
    probe = """
import asyncio, json, sys, tempfile, pathlib
import tui.app
from engine.config import Settings
from tui.session import ConsoleSession

async def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="cma-test-"))
    session = ConsoleSession(Settings(store={"path": tmp / "cma.db"}, feed={"speed": 600}))
    await session.start()
    await asyncio.sleep(0.3)
    seen = session.engine.candles_seen
    await session.stop()
    return seen

seen = asyncio.run(main())
print(json.dumps([seen, sorted(m for m in ("prometheus_client", "aiohttp") if m in sys.modules)]))
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen > 0
    assert loaded == []


# --- in-process sessions ------------------------------------------------------------


@pytest.fixture
async def sim_session(tmp_path: Path) -> AsyncIterator[ConsoleSession]:
    """A running session on the demo market (a few symbols, paced) with metrics on."""
    settings = Settings(
        store={"path": tmp_path / "cma.db"},
        feed={"symbols": ["BTC/USDT", "ETH/USDT"], "speed": 6000},
        metrics={"enabled": True, "port": 0},
    )
    feed = SimFeed(symbols=settings.feed.symbols, speed=6000.0)
    session = ConsoleSession(settings, feed=feed)
    try:
        await session.start(paused_if_recovered=False)
        yield session
    finally:
        await session.stop()


async def test_readyz_says_503_with_the_reason_while_the_store_cannot_commit(
    sim_session: ConsoleSession,
) -> None:
    import sqlite3

    store = sim_session.store
    assert store is not None and sim_session.metrics_url is not None
    base = sim_session.metrics_url.removesuffix("/metrics")
    await until(lambda: sim_session.engine and sim_session.engine.candles_seen, "candles")
    assert await aget(f"{base}/readyz") == (200, '{"ready": true}')

    def fail(conn: sqlite3.Connection) -> None:  # as a full disk would answer
        conn.execute(
            "CREATE TRIGGER no_equity BEFORE INSERT ON equity"
            " BEGIN SELECT RAISE(ABORT, 'the disk says no'); END"
        )

    await store.run(fail)

    async def not_ready() -> dict[str, Any] | None:
        status, body = await aget(f"{base}/readyz")
        return json.loads(body) if status == 503 else None

    answer = await until(not_ready, "503")
    assert answer["ready"] is False
    assert answer["reasons"] == ["store: the last commit of equity points and candles failed"]
    found = samples((await aget(sim_session.metrics_url))[1])
    assert found["cma_ready"] == 0.0
    assert found['cma_store_commit_failures_total{kind="batch"}'] >= 1
    await store.run(lambda conn: conn.execute("DROP TRIGGER no_equity"))

    async def ready() -> bool:
        return (await aget(f"{base}/readyz"))[0] == 200

    await until(ready, "ready again")


async def test_readyz_says_503_while_the_exchange_circuit_breaker_is_open(
    sim_session: ConsoleSession,
) -> None:
    engine = sim_session.engine
    assert engine is not None and sim_session.metrics_url is not None
    url = sim_session.metrics_url
    base = url.removesuffix("/metrics")
    await until(lambda: engine.candles_seen, "candles")
    # What the exchange broker tells its listener (the engine) after failures in a row.
    engine.on_breaker(True, "5 failures in a row: RequestTimeout")

    async def breaker_shown() -> dict[str, float] | None:
        found = samples((await aget(url))[1])
        return found if found["cma_circuit_breaker_open"] == 1.0 else None

    found = await until(breaker_shown, "the breaker in /metrics")
    assert found['cma_trading_state{state="REDUCING"}'] == 1.0
    status, body = await aget(f"{base}/readyz")
    assert status == 503
    [reason] = json.loads(body)["reasons"]
    assert reason.startswith("exchange: ") and "circuit breaker is open" in reason
    assert "5 failures in a row: RequestTimeout" in reason
    engine.on_breaker(False, "the exchange answers again")

    async def ready() -> bool:
        return (await aget(f"{base}/readyz"))[0] == 200

    await until(ready, "ready again")


async def test_a_taken_port_is_a_start_error_naming_metrics(tmp_path: Path) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    settings = Settings(
        store={"path": tmp_path / "cma.db"}, metrics={"enabled": True, "port": port}
    )
    session = ConsoleSession(settings, feed=SimFeed(symbols=["BTC/USDT"], speed=60.0))
    try:
        with pytest.raises(StartError) as failed:
            await session.start()
        assert failed.value.code == 1
        assert f"metrics: cannot listen on 127.0.0.1:{port}" in str(failed.value)
        assert session.store is None  # nothing else was opened
    finally:
        await session.stop()
        taken.close()
    assert observe.current() is not None and not isinstance(observe.current(), Metrics)


async def test_the_console_serves_metrics_too(tmp_path: Path) -> None:
    from harness import SteppedFeed, make_app, make_settings

    feed = SteppedFeed()
    settings = make_settings(tmp_path / "cma.db", metrics={"enabled": True, "port": 0})
    app = make_app(tmp_path, feed, settings)
    async with app.run_test(size=(120, 40)):
        await until(lambda: app.session.engine and app.session.engine.status == "running", "run")
        await feed.advance(3)
        url = app.session.metrics_url
        assert url is not None and url.startswith("http://127.0.0.1:")
        # The console says where (a toast), as headless prints it.
        assert any(url in str(n.message) for n in app._notifications)
        found = samples((await aget(url))[1])
        assert found["cma_candles"] == 3 * len(feed.symbols)
        assert found["cma_candle_seconds_count"] == 3 * len(feed.symbols)
        assert await aget(url.replace("/metrics", "/healthz")) == (200, "ok\n")
        await app.stop_engine()
    with pytest.raises(urllib.error.URLError):  # the server closed with the session
        await asyncio.to_thread(urllib.request.urlopen, url, timeout=2)


# --- the exchange -------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[Any]:
    from fake_binance import FakeBinance
    from shared_data import shared_data_dir

    data = shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"
    async with FakeBinance([data]) as server:
        yield server


async def test_a_stale_exchange_feed_turns_readyz_503_then_200_and_a_broken_stream_counts(
    fake: Any, tmp_path: Path
) -> None:
    from engine.exchange.session import ExchangeSpec, open_exchange
    from engine.feeds.ccxt import CcxtFeed

    exchange = open_exchange(ExchangeSpec("binance", api_base=fake.url, timeout_ms=2000))
    feed = CcxtFeed(
        exchange,
        ["BTC/USDT"],
        "1m",
        owns_exchange=True,
        websocket=True,
        warmup_candles=20,
        stale_seconds=0.3,
        poll=0.05,
        grace=0.2,
    )
    settings = Settings(
        store={"path": tmp_path / "cma.db"},
        feed={"kind": "ccxt", "symbols": ["BTC/USDT"]},
        metrics={"enabled": True, "port": 0},
    )
    session = ConsoleSession(settings, feed=feed)
    try:
        await session.start(paused_if_recovered=False)
        assert session.metrics_url is not None
        base = session.metrics_url.removesuffix("/metrics")
        engine = session.engine
        assert engine is not None
        await until(lambda: engine.candles_seen >= 20, "the warm-up")
        await until(lambda: sum(len(s) for s in fake._sockets.values()) >= 1, "subscribed")
        await fake.advance()
        await until(lambda: engine.candles_seen >= 21, "a live candle")
        assert (await aget(f"{base}/readyz"))[0] == 200

        async def stale() -> dict[str, Any] | None:
            status, body = await aget(f"{base}/readyz")
            return json.loads(body) if status == 503 else None

        answer = await until(stale, "a stale feed")
        assert answer["ready"] is False
        [reason] = answer["reasons"]
        assert reason.startswith("feed: stale, no word from the market for ")
        found = samples((await aget(session.metrics_url))[1])
        assert found["cma_feed_stale"] == 1.0
        assert found["cma_feed_stale_seconds"] > 0.3
        assert found["cma_ready"] == 0.0
        await fake.advance()

        async def ready() -> bool:
            return (await aget(f"{base}/readyz"))[0] == 200

        await until(ready, "fresh again")
        await fake.close_websockets()  # the feed's stream breaks: an exchange error

        async def counted() -> float:
            found = samples((await aget(url))[1])
            return total(found, "cma_exchange_errors_total", outcome="retry")

        url = session.metrics_url
        assert await until(counted, "the websocket's error counted") >= 1
    finally:
        await session.stop()


async def test_exchange_errors_by_class_and_rate_limit_waits_are_counted(fake: Any) -> None:
    from fake_binance import client

    from engine.exchange.errors import retry_read

    metrics = Metrics()
    uninstall = observe.install(metrics)
    exchange = client(fake, pro=False, keys=False)
    try:
        fake.fault("500", "/api/v3/time")
        fake.fault("429", "/api/v3/time", retry_after=0)
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        await retry_read(
            exchange.fetch_time, what="time", exchange=exchange, base_s=0.01, sleep=sleep
        )
    finally:
        uninstall()
        await exchange.close()
    body = (await asyncio.to_thread(_exposition, metrics)).decode()
    found = samples(body)
    errors = {k: v for k, v in found.items() if k.startswith("cma_exchange_errors_total")}
    assert errors == {
        'cma_exchange_errors_total{error="ExchangeNotAvailable",outcome="retry"}': 1.0,
        # ccxt's binance raises DDoSProtection (a RateLimitExceeded sibling) for a 429.
        'cma_exchange_errors_total{error="DDoSProtection",outcome="rate_limit"}': 1.0,
    }
    assert found["cma_rate_limit_waits_total"] == 1.0
    assert found["cma_rate_limit_wait_seconds_total"] == pytest.approx(waits[1])
    assert observe.current() is not metrics


def _exposition(metrics: Metrics) -> bytes:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry)


# --- denials --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "bucket"),
    [
        ("trading HALTED (drawdown 10.5% exceeds 10.0%): exits only", "trading_state"),
        ("daily loss 3.1% exceeds 3.0%", "daily_loss"),
        ("drawdown 7.2% exceeds reduce level 7.0%: exits only", "drawdown"),
        ("max open positions 5 reached", "max_positions"),
        ("correlation 0.91 with ETH/USDT exceeds 0.80", "correlation"),
        ("total exposure 61.0% would exceed 60.0%", "exposure"),
        ("size below minimum notional: 4.00 < 10 (default 2%)", "min_notional"),
        ("no edge: Kelly fraction 0 from 30 trades (win rate 20.0%)", "no_edge"),
        ("SELL BTC/USDT is open", "position_open"),
        ("price 101 is already through the stop 100", "price_moved"),
        ("live daily notional cap 1000 reached", "live_cap"),
        ("refused by the exchange: binance Account has insufficient balance", "exchange_refused"),
        ("not sent: the exchange circuit breaker is open (timeouts)", "circuit_breaker"),
        ("something new", "other"),
    ],
)
def test_a_denial_reason_falls_in_its_fixed_bucket(reason: str, bucket: str) -> None:
    assert denial_bucket(reason) == bucket
    assert bucket in DENIAL_BUCKETS


def test_the_candle_histogram_matches_prometheus_clients_own() -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from tui.metrics import _CANDLE_BUCKETS

    metrics = Metrics()
    registry = CollectorRegistry()
    reference = Histogram("cma_candle_seconds", "x", buckets=_CANDLE_BUCKETS, registry=registry)
    for seconds in (0.0, 1e-5, 2e-5, 2.5e-5, 7e-5, 0.003, 0.1, 0.25, 3.0):
        metrics.candle_done(seconds)
        reference.observe(seconds)

    def lines(text: bytes) -> list[str]:
        return [
            line
            for line in text.decode().splitlines()
            if line.startswith("cma_candle_seconds_") and "_created" not in line
        ]

    mine = lines(generate_latest(metrics.registry))
    assert mine == lines(generate_latest(registry))
    assert 'cma_candle_seconds_bucket{le="1e-05"} 2.0' in mine  # an upper bound is inclusive


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    observations=st.lists(
        st.tuples(
            st.sampled_from(["work", "batch"]),
            st.floats(min_value=0, max_value=10, allow_nan=False),
            st.integers(min_value=0, max_value=2000),
            st.booleans(),
        ),
        max_size=40,
    )
)
def test_the_counts_kept_per_commit_expose_what_prometheus_clients_own_would(
    observations: list[tuple[str, float, int, bool]],
) -> None:
    """The store's commits are counted in plain lists (no lock per call): scraped, they
    read exactly as prometheus-client's labelled Histogram and Counter would."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from tui.metrics import _COMMIT_BUCKETS, _SIZE_BUCKETS

    metrics = Metrics()
    registry = CollectorRegistry()
    seconds = Histogram(
        "cma_store_commit_seconds", "x", ["kind"], buckets=_COMMIT_BUCKETS, registry=registry
    )
    size = Histogram(
        "cma_store_commit_size", "x", ["kind"], buckets=_SIZE_BUCKETS, registry=registry
    )
    failures = Counter("cma_store_commit_failures", "x", ["kind"], registry=registry)
    for kind in ("work", "batch"):
        seconds.labels(kind)
        size.labels(kind)
        failures.labels(kind)
    for kind, took, rows, ok in observations:
        metrics.store_commit(kind, took, rows, ok)  # type: ignore[arg-type]
        seconds.labels(kind).observe(took)
        size.labels(kind).observe(rows)
        if not ok:
            failures.labels(kind).inc()

    def lines(text: bytes) -> list[str]:
        return sorted(
            line
            for line in text.decode().splitlines()
            if line.startswith("cma_store_commit_") and "_created" not in line
        )

    assert lines(generate_latest(metrics.registry)) == lines(generate_latest(registry))
