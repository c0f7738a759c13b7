"""engine.exchange against the local Binance exchange (tests/fake_binance.py): the
product's open_exchange reaches it through api_base, its reads survive the fake's faults,
its market rules read the fake's filters, and a real ccxt error about a signed request
is described without a key, a secret or a signature."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import ccxt
import pytest
import pytest_asyncio
from fake_binance import TEST_API_KEY, TEST_API_SECRET, FakeBinance
from pydantic import SecretStr
from shared_data import shared_data_dir

from engine.exchange.errors import classify, describe, retry_read
from engine.exchange.rules import Fitted, Refused, fit_order
from engine.exchange.session import ExchangeSpec, close_exchange, open_exchange

against_fake = pytest.mark.asyncio(loop_scope="module")


@dataclass(frozen=True)
class Keys:
    api_key: SecretStr
    api_secret: SecretStr
    password: SecretStr | None = None


KEYS = Keys(SecretStr(TEST_API_KEY), SecretStr(TEST_API_SECRET))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def fake() -> AsyncIterator[FakeBinance]:
    data = shared_data_dir() / "binanceus_BTC-USDT_1m_2023-03.csv"
    async with FakeBinance([data], api_key=TEST_API_KEY, api_secret=TEST_API_SECRET) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module")
async def exchange(fake: FakeBinance) -> AsyncIterator[Any]:
    """The product's exchange on the fake, keys given, markets loaded; faults cleared."""
    fake.faults.clear()
    opened = open_exchange(ExchangeSpec("binance", api_base=fake.url, timeout_ms=400, keys=KEYS))
    opened.timeout_on_exit = 0  # close() would wait 250 ms for TLS that 127.0.0.1 does not use
    try:
        await opened.load_markets()
        yield opened
    finally:
        await close_exchange(opened)
        fake.faults.clear()


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@against_fake
async def test_open_exchange_reaches_the_fake_and_loads_only_the_spot_markets(
    fake: FakeBinance,
) -> None:
    fake.requests.clear()
    opened = open_exchange(ExchangeSpec("binance", api_base=fake.url, keys=KEYS))
    opened.timeout_on_exit = 0
    try:
        markets = await opened.load_markets()
        balance = await opened.fetch_balance()
    finally:
        await close_exchange(opened)
    assert "BTC/USDT" in markets and markets["BTC/USDT"]["spot"]
    assert balance["USDT"]["free"] > 0
    paths = {path for _, path, _ in fake.requests}
    assert paths == {"/api/v3/exchangeInfo", "/api/v3/account"}


@against_fake
async def test_fit_order_reads_the_fakes_filters(fake: FakeBinance, exchange: Any) -> None:
    market = fake.markets["BTCUSDT"]
    price = Decimal("23456.789")
    fitted = fit_order(exchange, "BTC/USDT", Decimal("0.123456789"), price)
    assert isinstance(fitted, Fitted)
    assert fitted.qty % market.step_size == 0 and fitted.qty <= Decimal("0.123456789")
    assert fitted.price % market.tick_size == 0
    tiny = fit_order(exchange, "BTC/USDT", market.step_size, Decimal(1))
    assert isinstance(tiny, Refused) and "below the minimum" in tiny.reason


@against_fake
@pytest.mark.parametrize(
    ("kind", "opts", "error"),
    [
        ("500", {}, ccxt.ExchangeNotAvailable),
        ("503", {}, ccxt.ExchangeNotAvailable),
        ("429", {"retry_after": 2}, ccxt.DDoSProtection),
        ("timeout", {"seconds": 1.0}, ccxt.RequestTimeout),
        ("malformed", {}, ccxt.BadResponse),
    ],
)
async def test_a_read_survives_the_fakes_faults(
    fake: FakeBinance, exchange: Any, kind: str, opts: dict[str, Any], error: type[Exception]
) -> None:
    fake.fault(kind, "/api/v3/ticker/24hr", count=2, **opts)
    sleeps, told = Sleeps(), []
    ticker = await retry_read(
        lambda: exchange.fetch_ticker("BTC/USDT"),
        what="fetch_ticker",
        sleep=sleeps,
        rng=random.Random(3),
        on_retry=lambda n, delay, exc: told.append(exc),
        exchange=exchange,
        valid=lambda ticker: ticker["last"] is not None,
    )
    assert ticker["symbol"] == "BTC/USDT" and ticker["last"] > 0
    assert len(told) == 2 and all(isinstance(exc, error) for exc in told)
    if kind == "429":
        assert sleeps.delays == [2.0, 2.0]  # the fake's Retry-After, over the backoff
    if kind == "malformed":  # ccxt raises nothing on broken JSON: valid() caught it
        assert describe(told[0]) == (
            "binance: BadResponse: fetch_ticker: the answer could not be read"
        )


@against_fake
async def test_a_read_gives_up_after_its_attempts_on_a_lasting_fault(
    fake: FakeBinance, exchange: Any
) -> None:
    fake.fault("500", "/api/v3/account", count=10)
    sleeps = Sleeps()
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await retry_read(exchange.fetch_balance, what="fetch_balance", attempts=3, sleep=sleeps)
    assert len(sleeps.delays) == 2
    assert sum(1 for _, path, _ in fake.requests[-3:] if path == "/api/v3/account") == 3


@against_fake
async def test_an_ip_ban_longer_than_the_cap_is_not_waited_out(
    fake: FakeBinance, exchange: Any
) -> None:
    fake.fault("418", "/api/v3/account", count=5, retry_after=600)
    sleeps = Sleeps()
    with pytest.raises(ccxt.DDoSProtection):
        await retry_read(
            exchange.fetch_balance, what="fetch_balance", sleep=sleeps, exchange=exchange
        )
    assert sleeps.delays == []


@against_fake
async def test_a_wrong_secret_is_a_fatal_error_described_without_any_key(fake: FakeBinance) -> None:
    wrong = Keys(SecretStr(TEST_API_KEY), SecretStr("not-the-secret-but-a-secret-still"))
    opened = open_exchange(ExchangeSpec("binance", api_base=fake.url, keys=wrong))
    opened.timeout_on_exit = 0
    try:
        await opened.load_markets()
        with pytest.raises(ccxt.AuthenticationError) as raised:
            await opened.fetch_balance()
    finally:
        await close_exchange(opened)
    secrets = [TEST_API_KEY, "not-the-secret-but-a-secret-still"]
    assert classify(raised.value) == "fatal"
    line = describe(raised.value, secrets)
    assert line.startswith("binance: AuthenticationError: ") and "-1022" in line
    assert all(secret not in line for secret in secrets)


@against_fake
async def test_a_timed_out_signed_request_is_described_without_its_signature(
    fake: FakeBinance, exchange: Any
) -> None:
    fake.fault("timeout", "/api/v3/openOrders", seconds=1.0)
    with pytest.raises(ccxt.RequestTimeout) as raised:
        await exchange.fetch_open_orders()
    message = str(raised.value)
    signature = message.split("signature=")[1].split("&")[0].split()[0]
    assert len(signature) == 64  # ccxt put the signed query string in its message
    line = describe(raised.value, [TEST_API_KEY, TEST_API_SECRET])
    assert signature not in line and "signature=***" in line
    assert line.startswith("binance: RequestTimeout: GET http://127.0.0.1:")
    assert classify(raised.value, placing=True) == "unknown_outcome"
