"""Opening the one ccxt exchange the feed and the broker share.

:func:`open_exchange` builds it from an :class:`ExchangeSpec` (made from the
``[exchange]`` settings by :func:`spec_of`): ``ccxt.pro``'s class where ccxt.pro has
the exchange (websockets and REST in one instance), else ``ccxt.async_support``'s;
ccxt's own rate limiter on; spot markets only; the testnet through ccxt's sandbox mode;
``api_base`` pointing every REST and websocket URL at another host (a local test
exchange or a proxy). The lead opens it once and hands the same instance to the feed
and the broker, so ccxt's rate limiter sees every request.

ccxt is imported inside the functions only: the demo market must not pay its import.
The keys are read out of their ``SecretStr`` here and nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

if TYPE_CHECKING:
    from engine.config.sections import ExchangeSettings

__all__ = [
    "ExchangeSetupError",
    "ExchangeSpec",
    "KeysLike",
    "close_exchange",
    "has_websocket",
    "open_exchange",
    "rebase_urls",
    "spec_of",
]

_BASE = re.compile(r"(https?)://([^/\s?#]+)")

# Options a spot trader needs beyond ccxt's defaults, per exchange. Binance: load only
# the spot markets (exchangeInfo of api/v3; not the futures hosts), neither the margin
# pairs nor the currencies (private sapi endpoints needing keys), and let
# fetch_open_orders() go without a symbol (reconciliation asks for all of them; ccxt
# raises otherwise, warning of its higher weight).
_SPOT_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {
        "fetchMarkets": {"types": ["spot"]},
        "fetchMargins": False,
        "fetchCurrencies": False,
        "fetchOpenOrders": {"warnWithoutSymbol": False},
    },
}
_SPOT_OPTIONS["binanceus"] = _SPOT_OPTIONS["binance"]


class ExchangeSetupError(ValueError):
    """The exchange cannot be opened as configured; the message starts with the
    setting to change (``exchange.id: ...``)."""


class KeysLike(Protocol):
    """What the session reads of an account's keys: ``engine.exchange.keys.ApiKeys``
    has this shape (a structural type, so this module does not import the keyring's)."""

    @property
    def api_key(self) -> SecretStr: ...

    @property
    def api_secret(self) -> SecretStr: ...

    @property
    def password(self) -> SecretStr | None: ...


@dataclass(frozen=True, slots=True)
class _SettingsKeys:
    api_key: SecretStr
    api_secret: SecretStr
    password: SecretStr | None = None


@dataclass(frozen=True)
class ExchangeSpec:
    """Everything needed to open the exchange; its repr shows no secret (SecretStr)."""

    id: str
    sandbox: bool = False
    api_base: str | None = None
    timeout_ms: int = 10_000
    rate_limit: bool = True
    keys: KeysLike | None = None


def spec_of(settings: ExchangeSettings, keys: KeysLike | None = None) -> ExchangeSpec:
    """The spec of the ``[exchange]`` settings. ``keys`` (from the keyring) wins over
    keys already placed in the settings; with neither, the exchange is opened public."""
    if keys is None and settings.api_key is not None and settings.api_secret is not None:
        keys = _SettingsKeys(settings.api_key, settings.api_secret)
    return ExchangeSpec(
        id=settings.id,
        sandbox=settings.sandbox,
        api_base=settings.api_base,
        timeout_ms=max(1, round(settings.timeout_seconds * 1000)),
        keys=keys,
    )


def _exchange_class(exchange_id: str, *, pro: bool) -> Any:
    import ccxt.async_support

    if pro:
        import ccxt.pro

        if exchange_id in ccxt.pro.exchanges:
            return getattr(ccxt.pro, exchange_id)
    if exchange_id in ccxt.async_support.exchanges:
        return getattr(ccxt.async_support, exchange_id)
    raise ExchangeSetupError(f"exchange.id: ccxt has no exchange {exchange_id!r}")


def open_exchange(spec: ExchangeSpec, *, pro: bool = True) -> Any:
    """A new async ccxt exchange for ``spec``; close it with :func:`close_exchange`.

    Nothing is sent yet (ccxt opens its HTTP session on the first request), so this is a
    plain function; ``await exchange.load_markets()`` is the caller's first call.
    """
    cls = _exchange_class(spec.id, pro=pro)
    config: dict[str, Any] = {
        "enableRateLimit": spec.rate_limit,
        "timeout": spec.timeout_ms,
        "options": {"defaultType": "spot", **_SPOT_OPTIONS.get(spec.id, {})},
    }
    if spec.keys is not None:
        config["apiKey"] = spec.keys.api_key.get_secret_value()
        config["secret"] = spec.keys.api_secret.get_secret_value()
        if spec.keys.password is not None:
            config["password"] = spec.keys.password.get_secret_value()
    exchange = cls(config)
    if spec.sandbox:
        if not exchange.urls.get("test"):
            raise ExchangeSetupError(
                f"exchange.sandbox: {spec.id} has no sandbox (testnet) in ccxt; set it to false"
            )
        exchange.set_sandbox_mode(True)
    if spec.api_base is not None:
        rebase_urls(exchange, spec.api_base)
    return exchange


def rebase_urls(exchange: Any, base: str) -> None:
    """Point every URL of ``exchange.urls['api']`` (nested dicts, lists or one string) at
    ``base`` (``scheme://host[:port]``): http(s) URLs get ``base``'s scheme and host,
    ws(s) URLs its websocket form (``http`` -> ``ws``, ``https`` -> ``wss``); paths and
    queries are kept. Other strings are left alone."""
    match = _BASE.fullmatch(base)
    if match is None:
        raise ExchangeSetupError(
            f"exchange.api_base: must be scheme and host only, like http://127.0.0.1:8080, "
            f"got {base!r}"
        )
    scheme, host = match.group(1), match.group(2)
    ws_scheme = "wss" if scheme == "https" else "ws"

    def rebase(value: Any) -> Any:
        if isinstance(value, str):
            parts = urlsplit(value)
            if parts.scheme in ("http", "https"):
                return urlunsplit(parts._replace(scheme=scheme, netloc=host))
            if parts.scheme in ("ws", "wss"):
                return urlunsplit(parts._replace(scheme=ws_scheme, netloc=host))
            return value
        if isinstance(value, Mapping):
            return {key: rebase(item) for key, item in value.items()}
        if isinstance(value, list):
            return [rebase(item) for item in value]
        return value

    exchange.urls["api"] = rebase(exchange.urls["api"])


async def close_exchange(exchange: Any) -> None:
    """Close the exchange's HTTP session and websockets (ccxt warns about unclosed ones)."""
    await exchange.close()


def has_websocket(exchange: Any, what: str = "watchOHLCV") -> bool:
    """Whether ``exchange`` streams ``what`` (a ccxt ``has`` key such as ``watchOHLCV`` or
    ``watchTrades``) over a websocket; a ``ccxt.async_support`` instance never does."""
    return exchange.has.get(what) in (True, "emulated")
