"""What an exchange error means, retrying reads, and keeping keys out of messages.

:func:`classify` sorts an exception by ccxt's current error hierarchy
(``ccxt/base/errors.py``: ``BaseError`` → ``ExchangeError`` for what the exchange
refused, ``OperationFailed`` → ``NetworkError`` for what may work when tried again; there
``RateLimitExceeded`` and ``DDoSProtection`` are siblings under ``NetworkError``):

- ``retry``: the request did not get through (timeouts, lost connections, the exchange
  down or in maintenance, a garbled response); a read may be sent again;
- ``rate_limit``: the exchange refused it for the rate (429, 418, "too many requests");
  wait longer, honouring its Retry-After;
- ``unknown_outcome``: an order placement whose request may have reached the exchange
  (a timeout or network error after sending, a garbled response): the caller looks the
  order up by its client order id before anything else;
- ``rejected``: the exchange answered no for this request (funds, order rules, an
  unknown order, a bad parameter); sending it again gets the same answer;
- ``fatal``: trading cannot go on as configured (keys, permissions, an unknown symbol,
  an unsupported call): a person has to act.

:func:`retry_read` retries reads (balances, orders, tickers, candles) with exponential
backoff and full jitter. It is never used for ``create_order``: a placement is sent
once, and an ``unknown_outcome`` is resolved by looking the order up.

:func:`redact` and :func:`describe`: ccxt puts the signed query string (with
``signature=``), the URL and sometimes the request headers (``X-MBX-APIKEY``) into its
messages. Every message about an exchange error goes through them before it is logged,
stored or shown.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar
from urllib.parse import quote, quote_plus

__all__ = [
    "Outcome",
    "classify",
    "describe",
    "redact",
    "retry_after",
    "retry_read",
]

Outcome = Literal["retry", "rate_limit", "unknown_outcome", "rejected", "fatal"]
T = TypeVar("T")

# ccxt class name -> (outcome of a read, outcome of an order placement). classify walks
# the exception's MRO, so the most specific ccxt class listed wins and a class ccxt adds
# later falls to its nearest listed ancestor.
TABLE: dict[str, tuple[Outcome, Outcome]] = {
    "BaseError": ("fatal", "fatal"),
    "UnsubscribeError": ("fatal", "fatal"),
    # OperationFailed: "may succeed if retried"; for a placement, it may have succeeded.
    "OperationFailed": ("retry", "unknown_outcome"),
    "NetworkError": ("retry", "unknown_outcome"),
    "RequestTimeout": ("retry", "unknown_outcome"),
    "ExchangeNotAvailable": ("retry", "unknown_outcome"),
    "OnMaintenance": ("retry", "unknown_outcome"),
    "InvalidNonce": ("retry", "unknown_outcome"),
    "ChecksumError": ("retry", "unknown_outcome"),
    "BadResponse": ("retry", "unknown_outcome"),
    "NullResponse": ("retry", "unknown_outcome"),
    "CancelPending": ("retry", "unknown_outcome"),
    # Refused for the rate before being processed (429, 418, Binance's -1003).
    "RateLimitExceeded": ("rate_limit", "rate_limit"),
    "DDoSProtection": ("rate_limit", "rate_limit"),
    # ExchangeError: the exchange answered, and the answer is no.
    "ExchangeError": ("rejected", "rejected"),
    "BadRequest": ("rejected", "rejected"),
    "OperationRejected": ("rejected", "rejected"),
    "NoChange": ("rejected", "rejected"),
    "MarginModeAlreadySet": ("rejected", "rejected"),
    "MarketClosed": ("rejected", "rejected"),
    "InsufficientFunds": ("rejected", "rejected"),
    "InvalidAddress": ("rejected", "rejected"),
    "AddressPending": ("rejected", "rejected"),
    "InvalidOrder": ("rejected", "rejected"),
    "OrderNotFound": ("rejected", "rejected"),
    "OrderNotCached": ("rejected", "rejected"),
    "OrderImmediatelyFillable": ("rejected", "rejected"),
    "OrderNotFillable": ("rejected", "rejected"),
    "ContractUnavailable": ("rejected", "rejected"),
    # An order with this client order id exists already: look it up, it may be ours.
    "DuplicateOrderId": ("rejected", "unknown_outcome"),
    "ManualInteractionNeeded": ("fatal", "fatal"),
    "RestrictedLocation": ("fatal", "fatal"),
    "AuthenticationError": ("fatal", "fatal"),
    "PermissionDenied": ("fatal", "fatal"),
    "AccountNotEnabled": ("fatal", "fatal"),
    "AccountSuspended": ("fatal", "fatal"),
    "ArgumentsRequired": ("fatal", "fatal"),
    "BadSymbol": ("fatal", "fatal"),
    "NotSupported": ("fatal", "fatal"),
    "InvalidProxySettings": ("fatal", "fatal"),
    "ExchangeClosedByUser": ("fatal", "fatal"),
}


def classify(exc: BaseException, *, placing: bool = False) -> Outcome:
    """What ``exc`` means for the call that raised it (see the module's docstring).

    ``placing``: the call was an order placement (``create_order``), where a request
    that may have reached the exchange is an ``unknown_outcome`` rather than a ``retry``.
    Outside ccxt's classes: timeouts and connection errors (``TimeoutError``,
    ``OSError``) count as network errors; anything else is ``fatal``.
    """
    for cls in type(exc).__mro__:
        if cls.__module__ == "ccxt.base.errors" and cls.__name__ in TABLE:
            read, place = TABLE[cls.__name__]
            return place if placing else read
    if isinstance(exc, (TimeoutError, OSError)):
        return "unknown_outcome" if placing else "retry"
    return "fatal"


def retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds (any case), else None."""
    if not headers:
        return None
    for name, value in headers.items():
        if str(name).lower() == "retry-after":
            try:
                seconds = float(str(value).strip())
            except ValueError:
                return None  # an HTTP date: rare from exchanges, the backoff serves
            return seconds if seconds >= 0 else None
    return None


async def retry_read(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int = 5,
    base_s: float = 0.25,
    cap_s: float = 10.0,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[int, float, BaseException], Any] | None = None,
    exchange: Any = None,
    valid: Callable[[T], bool] | None = None,
) -> T:
    """``await call()``, again after a backoff when it fails with a ``retry`` or
    ``rate_limit`` error, at most ``attempts`` times in all; then the last error is
    raised as it was. Other errors are raised at once.

    Backoff before retry ``n`` (1-based) is full jitter: uniform in
    ``[0, min(cap_s, base_s * 2**(n-1))]``. A rate limit waits longer: uniform in
    ``[d/2, d]`` with ``d = min(cap_s, base_s * 2**(n+1))``, and at least the
    ``Retry-After`` of ``exchange.last_response_headers`` when ``exchange`` is given; a
    Retry-After beyond ``cap_s`` (a ban) gives up at once rather than wait it out.
    ``on_retry(n, delay, exc)`` is told before each wait (a log line; ``what`` names the
    read, e.g. "fetch_balance", for the caller's messages).

    ``valid(result)``: False makes the answer a ccxt ``BadResponse`` (retried like one).
    ccxt does not raise on a body it cannot parse as JSON: it hands back empty structures
    (a ticker whose ``last`` is None, candles of None), so a read says what it needs.

    Reads only: never wrap ``create_order`` in this (a placement is never retried
    blindly; its ``unknown_outcome`` is resolved by a lookup).
    """
    if attempts < 1:
        raise ValueError(f"retry_read({what}): attempts must be at least 1, got {attempts}")
    draw = rng if rng is not None else random.Random()
    for attempt in range(1, attempts + 1):
        try:
            result = await call()
            if valid is not None and not valid(result):
                import ccxt  # an exchange answered: ccxt is loaded

                who = f"{exchange.id} " if exchange is not None else ""
                raise ccxt.BadResponse(f"{who}{what}: the answer could not be read")
            return result
        except Exception as exc:
            outcome = classify(exc)
            if outcome not in ("retry", "rate_limit") or attempt == attempts:
                raise
            if outcome == "rate_limit":
                ceiling = min(cap_s, base_s * 2 ** (attempt + 1))
                delay = draw.uniform(ceiling / 2, ceiling)
                headers = getattr(exchange, "last_response_headers", None)
                wait = retry_after(headers) if exchange is not None else None
                if wait is not None:
                    if wait > cap_s:
                        raise
                    delay = max(delay, wait)
            else:
                delay = draw.uniform(0.0, min(cap_s, base_s * 2 ** (attempt - 1)))
            if on_retry is not None:
                on_retry(attempt, delay, exc)
            await sleep(delay)
    raise AssertionError("unreachable")  # the last attempt returned or raised


MASK = "***"
# Credential parameters and headers by name: value after "=", ":" or a quoted ": ".
_NAMES = (
    r"signature|sign|secret|api[-_]?secret|api[-_]?key|apikey|password|passphrase"
    r"|x-mbx-apikey|x-mbx-signature|[a-z]+-(?:access|api)-(?:key|sign|passphrase|signature)"
    r"|access-(?:key|sign|passphrase)|api-(?:key|sign|signature|passphrase)"
    r"|authorization|x-api-key|x-api-sign|x-api-signature"
)
_PARAM = re.compile(
    rf"(?i)(?<![a-z0-9_-])({_NAMES})(['\"]?\s*[:=]\s*['\"]?)"
    r"((?:Bearer |Basic )?[^'\"&\s,;}\])]+)"
)


def _forms(secret: str) -> set[str]:
    """The ways ``secret`` appears in a message: raw, URL-encoded, repr- and JSON-escaped."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    forms.add(repr(secret)[1:-1])
    forms.add(json.dumps(secret)[1:-1])
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    return {form for form in forms if form}


def _mask(forms: set[str]) -> str:
    """MASK, or three of a character no secret has: a mask holding a secret would be
    blotted out again and again."""
    for code in (ord("*"), ord("#"), ord("~"), *range(0x2580, 0x25A0), *range(0xE000, 0xF900)):
        if not any(chr(code) in form for form in forms):
            return chr(code) * 3
    raise AssertionError("more secrets than characters")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with signatures, API-key headers and parameters, and every known secret
    (raw, URL-encoded or escaped) blotted out."""
    text = _PARAM.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    forms = set()
    for secret in secrets:
        forms |= _forms(secret)
    if not forms:
        return text
    mask = _mask(forms)
    pattern = re.compile("|".join(re.escape(form) for form in sorted(forms, key=len)[::-1]))
    # Replace until no form is left: blotting one occurrence out can join its
    # neighbours into another. Each round shortens the text (every new occurrence
    # reaches past a mask it overlaps), so this ends.
    while True:
        spans: list[tuple[int, int]] = []
        for start in range(len(text)):
            found = pattern.match(text, start)
            if found is None:
                continue
            end = found.end()
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(spans[-1][1], end))
            else:
                spans.append((start, end))
        if not spans:
            return text
        pieces: list[str] = []
        last = 0
        for start, end in spans:
            pieces += [text[last:start], mask]
            last = end
        pieces.append(text[last:])
        text = "".join(pieces)


_EXCHANGE_ID = re.compile(r"([a-z][a-z0-9_]{1,39})(?=[ {\[])")


def describe(
    exc: BaseException, secrets: Iterable[str] = (), *, exchange_id: str | None = None
) -> str:
    """One redacted line for the screen and the log: ``binance: RateLimitExceeded: ...``.

    ccxt starts its messages with the exchange id; that id (or ``exchange_id``) leads
    the line. The line is at most 300 characters.
    """
    message = " ".join(str(exc).split())
    exchange = exchange_id
    if type(exc).__module__.startswith("ccxt"):
        import ccxt  # loaded already: it raised exc

        found = _EXCHANGE_ID.match(message)
        known = exchange is None and found is not None and found.group(1) in ccxt.exchanges
        if found is not None and (known or found.group(1) == exchange):
            exchange = found.group(1)
            message = message[found.end() :].lstrip()
    if exchange is not None and message.startswith(exchange + " "):
        message = message[len(exchange) + 1 :]
    head = f"{exchange}: " if exchange else ""
    line = redact(f"{head}{type(exc).__name__}: {message}".rstrip(" :"), secrets)
    return line if len(line) <= 300 else line[:299] + "…"
