"""The live parts on one shared exchange instance: the ccxt feed, the exchange broker
and the order gate, opened together before trading starts and closed together."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from engine.config import Settings
from engine.exchange.broker import ExchangeBroker
from engine.exchange.errors import classify, describe
from engine.exchange.gate import LiveGate
from engine.exchange.session import close_exchange, open_exchange, spec_of
from engine.feeds.ccxt import CcxtFeed


class LiveSetupError(ValueError):
    """A live start the person must fix (keys refused, no such market); nothing traded."""


class LiveUnavailable(ConnectionError):
    """The exchange could not be reached to start live trading; nothing traded."""


def secrets_of(settings: Settings) -> list[str]:
    """The keys in the settings, as the strings redaction blots out."""
    ex = settings.exchange
    keys = (ex.api_key, ex.api_secret, ex.api_password)
    return [k.get_secret_value() for k in keys if k is not None and k.get_secret_value()]


@dataclass(slots=True)
class LiveParts:
    """One exchange instance and what trades on it."""

    exchange: Any
    feed: CcxtFeed
    broker: ExchangeBroker
    gate: LiveGate

    async def close(self) -> None:
        """Stop polling, stop the feed, close the exchange's connections. Idempotent."""
        await self.broker.close()
        await self.feed.aclose()
        # Closing sockets on the way out: a failure there has nothing left to protect.
        with contextlib.suppress(Exception):
            await close_exchange(self.exchange)


async def open_live(settings: Settings) -> LiveParts:
    """Open the exchange with the keys the settings carry (from the keyring), load its
    markets, check the symbols and that the keys are accepted (a balance read).

    Raises :class:`LiveSetupError` (keys refused, a symbol it does not list) or
    :class:`LiveUnavailable` (unreachable), with every secret blotted out.
    """
    secrets = secrets_of(settings)
    exchange = open_exchange(spec_of(settings.exchange))
    try:
        feed = CcxtFeed.from_settings(settings, exchange=exchange)
        broker = ExchangeBroker(exchange, secrets=secrets)
        try:
            await feed.prepare()
            await broker.balances()
        except (ValueError, ConnectionError):
            raise
        except Exception as exc:
            text = describe(exc, secrets)
            if classify(exc) == "fatal":
                raise LiveSetupError(f"exchange {settings.exchange.id}: {text}") from None
            raise LiveUnavailable(f"exchange {settings.exchange.id}: {text}") from None
        return LiveParts(exchange, feed, broker, LiveGate(exchange, settings.exchange))
    except BaseException:
        # The start's own error is the one to report, not a failure to close after it.
        with contextlib.suppress(Exception):
            await close_exchange(exchange)
        raise
