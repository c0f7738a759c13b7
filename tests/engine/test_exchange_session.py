"""engine.exchange.session: the real ccxt classes opened as the settings say (no server
here; tests/engine/test_exchange_fake.py reaches the local exchange)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from engine.config.sections import ExchangeSettings
from engine.exchange.session import (
    ExchangeSetupError,
    ExchangeSpec,
    close_exchange,
    has_websocket,
    open_exchange,
    rebase_urls,
    spec_of,
)


class Keys:
    def __init__(self, key: str, secret: str, password: str | None = None) -> None:
        self.api_key = SecretStr(key)
        self.api_secret = SecretStr(secret)
        self.password = None if password is None else SecretStr(password)


async def test_binance_opens_as_ccxt_pro_with_the_rate_limiter_and_spot_markets_only() -> None:
    exchange = open_exchange(ExchangeSpec("binance", timeout_ms=2500))
    try:
        assert type(exchange).__module__ == "ccxt.pro.binance"
        assert exchange.enableRateLimit is True and exchange.timeout == 2500
        assert exchange.options["fetchMarkets"]["types"] == ["spot"]
        assert exchange.options["fetchMargins"] is False
        assert exchange.options["fetchCurrencies"] is False
        assert exchange.options["defaultType"] == "spot"
        assert exchange.options["fetchOpenOrders"] == {"warnWithoutSymbol": False}
        assert has_websocket(exchange) and has_websocket(exchange, "watchTrades")
        assert not exchange.apiKey and not exchange.secret
    finally:
        await close_exchange(exchange)


async def test_without_pro_it_is_the_async_rest_class_with_no_websocket() -> None:
    exchange = open_exchange(ExchangeSpec("binance", rate_limit=False), pro=False)
    try:
        assert type(exchange).__module__ == "ccxt.async_support.binance"
        assert exchange.enableRateLimit is False
        assert not has_websocket(exchange)
    finally:
        await close_exchange(exchange)


async def test_an_exchange_ccxt_pro_lacks_opens_from_async_support() -> None:
    import ccxt.pro

    rest_only = next(
        e for e in ("bitbns", "btcbox", "zaif", "coinmate") if e not in ccxt.pro.exchanges
    )
    exchange = open_exchange(ExchangeSpec(rest_only))
    try:
        assert type(exchange).__module__ == f"ccxt.async_support.{rest_only}"
        assert not has_websocket(exchange)
    finally:
        await close_exchange(exchange)


def test_an_unknown_exchange_id_fails_naming_the_setting() -> None:
    with pytest.raises(ExchangeSetupError, match=r"^exchange\.id: ccxt has no exchange 'nosuch'$"):
        open_exchange(ExchangeSpec("nosuch"))
    assert issubclass(ExchangeSetupError, ValueError)


async def test_sandbox_mode_switches_to_the_testnet_urls() -> None:
    exchange = open_exchange(ExchangeSpec("binance", sandbox=True))
    try:
        assert exchange.isSandboxModeEnabled
        assert exchange.urls["api"]["public"] == "https://testnet.binance.vision/api/v3"
        assert exchange.urls["api"]["ws"]["spot"] == "wss://stream.testnet.binance.vision/ws"
    finally:
        await close_exchange(exchange)


def test_sandbox_on_an_exchange_without_a_testnet_fails_naming_the_setting() -> None:
    with pytest.raises(ExchangeSetupError, match=r"^exchange\.sandbox: bitstamp has no sandbox"):
        open_exchange(ExchangeSpec("bitstamp", sandbox=True))


async def test_api_base_points_rest_and_websocket_urls_at_it_after_the_sandbox() -> None:
    spec = ExchangeSpec("binance", sandbox=True, api_base="http://127.0.0.1:8123")
    exchange = open_exchange(spec)
    try:
        api = exchange.urls["api"]
        assert api["public"] == "http://127.0.0.1:8123/api/v3"
        assert api["ws"]["spot"] == "ws://127.0.0.1:8123/ws"
        assert api["ws"]["ws-api"]["spot"] == "ws://127.0.0.1:8123/ws-api/v3"
        assert exchange.urls["test"]["public"] == "https://testnet.binance.vision/api/v3"
    finally:
        await close_exchange(exchange)


class Urls:
    def __init__(self, api: Any) -> None:
        self.urls = {"api": api, "www": "https://example.com"}


def test_rebase_urls_walks_strings_lists_and_dicts_and_keeps_paths_and_queries() -> None:
    exchange = Urls(
        {
            "rest": "https://api.x.com:443/v1?a=1",
            "list": ["wss://ws.x.com/stream", "http://old/p"],
            "nested": {"ws": "ws://w.x.com:9443/ws", "note": "not a url", "n": 3},
        }
    )
    rebase_urls(exchange, "https://proxy.local:8443")
    assert exchange.urls["api"] == {
        "rest": "https://proxy.local:8443/v1?a=1",
        "list": ["wss://proxy.local:8443/stream", "https://proxy.local:8443/p"],
        "nested": {"ws": "wss://proxy.local:8443/ws", "note": "not a url", "n": 3},
    }
    assert exchange.urls["www"] == "https://example.com"
    one = Urls("https://api.y.com/{hostname}/v2")
    rebase_urls(one, "http://127.0.0.1:1")
    assert one.urls["api"] == "http://127.0.0.1:1/{hostname}/v2"


@pytest.mark.parametrize("base", ["127.0.0.1:80", "http://h/path", "ftp://h", "http://"])
def test_rebase_urls_refuses_a_base_that_is_not_scheme_and_host(base: str) -> None:
    with pytest.raises(ExchangeSetupError, match=r"^exchange\.api_base: "):
        rebase_urls(Urls({}), base)


async def test_keys_reach_ccxt_out_of_their_secret_strings() -> None:
    spec = ExchangeSpec("okx", keys=Keys("the-key", "the-secret", "the-pass"))
    assert "the-key" not in repr(spec) and "the-secret" not in repr(spec)
    exchange = open_exchange(spec)
    try:
        assert (exchange.apiKey, exchange.secret, exchange.password) == (
            "the-key",
            "the-secret",
            "the-pass",
        )
    finally:
        await close_exchange(exchange)


def test_spec_of_the_settings_carries_id_sandbox_base_timeout_and_keys() -> None:
    settings = ExchangeSettings(
        id="binance", sandbox=True, api_base="http://127.0.0.1:9", timeout_seconds=2.5
    )
    keys = Keys("k", "s")
    spec = spec_of(settings, keys)
    assert spec == ExchangeSpec("binance", True, "http://127.0.0.1:9", 2500, True, keys)
    assert spec_of(ExchangeSettings()).keys is None


def test_spec_of_takes_keys_placed_in_the_settings_when_none_are_given() -> None:
    settings = ExchangeSettings(api_key=SecretStr("k"), api_secret=SecretStr("s"))
    keys = spec_of(settings).keys
    assert keys is not None
    assert (keys.api_key.get_secret_value(), keys.api_secret.get_secret_value()) == ("k", "s")
    assert spec_of(settings, Keys("k2", "s2")).keys.api_key.get_secret_value() == "k2"  # type: ignore[union-attr]
