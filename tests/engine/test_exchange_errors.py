"""engine.exchange.errors: ccxt's error classes sorted, reads retried with backoff and
jitter, and keys blotted out of every message (the real ccxt classes, no server)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import ccxt
import pytest
from ccxt.base import errors as ccxt_errors
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.exchange.errors import classify, describe, redact, retry_after, retry_read

# Every class of ccxt's hierarchy: (a read's outcome, an order placement's outcome).
EXPECTED: dict[str, tuple[str, str]] = {
    "BaseError": ("fatal", "fatal"),
    "ExchangeError": ("rejected", "rejected"),
    "AuthenticationError": ("fatal", "fatal"),
    "PermissionDenied": ("fatal", "fatal"),
    "AccountNotEnabled": ("fatal", "fatal"),
    "AccountSuspended": ("fatal", "fatal"),
    "ArgumentsRequired": ("fatal", "fatal"),
    "BadRequest": ("rejected", "rejected"),
    "BadSymbol": ("fatal", "fatal"),
    "OperationRejected": ("rejected", "rejected"),
    "NoChange": ("rejected", "rejected"),
    "MarginModeAlreadySet": ("rejected", "rejected"),
    "MarketClosed": ("rejected", "rejected"),
    "ManualInteractionNeeded": ("fatal", "fatal"),
    "RestrictedLocation": ("fatal", "fatal"),
    "InsufficientFunds": ("rejected", "rejected"),
    "InvalidAddress": ("rejected", "rejected"),
    "AddressPending": ("rejected", "rejected"),
    "InvalidOrder": ("rejected", "rejected"),
    "OrderNotFound": ("rejected", "rejected"),
    "OrderNotCached": ("rejected", "rejected"),
    "OrderImmediatelyFillable": ("rejected", "rejected"),
    "OrderNotFillable": ("rejected", "rejected"),
    "DuplicateOrderId": ("rejected", "unknown_outcome"),
    "ContractUnavailable": ("rejected", "rejected"),
    "NotSupported": ("fatal", "fatal"),
    "InvalidProxySettings": ("fatal", "fatal"),
    "ExchangeClosedByUser": ("fatal", "fatal"),
    "OperationFailed": ("retry", "unknown_outcome"),
    "NetworkError": ("retry", "unknown_outcome"),
    "DDoSProtection": ("rate_limit", "rate_limit"),
    "RateLimitExceeded": ("rate_limit", "rate_limit"),
    "ExchangeNotAvailable": ("retry", "unknown_outcome"),
    "OnMaintenance": ("retry", "unknown_outcome"),
    "InvalidNonce": ("retry", "unknown_outcome"),
    "ChecksumError": ("retry", "unknown_outcome"),
    "RequestTimeout": ("retry", "unknown_outcome"),
    "BadResponse": ("retry", "unknown_outcome"),
    "NullResponse": ("retry", "unknown_outcome"),
    "CancelPending": ("retry", "unknown_outcome"),
    "UnsubscribeError": ("fatal", "fatal"),
}


def _hierarchy(tree: dict[str, Any]) -> Iterator[str]:
    for name, below in tree.items():
        yield name
        yield from _hierarchy(below)


def test_the_table_names_every_class_of_ccxts_hierarchy() -> None:
    assert sorted(_hierarchy(ccxt_errors.error_hierarchy)) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_ccxt_error_class_is_classified_for_reads_and_placements(name: str) -> None:
    exc = getattr(ccxt_errors, name)("binance something")
    read, placing = EXPECTED[name]
    assert (classify(exc), classify(exc, placing=True)) == (read, placing)


def test_rate_limit_exceeded_is_no_ddos_protection_but_both_wait_for_the_rate() -> None:
    assert not issubclass(ccxt.RateLimitExceeded, ccxt.DDoSProtection)
    assert classify(ccxt.RateLimitExceeded("x")) == classify(ccxt.DDoSProtection("x"))


def test_a_class_ccxt_adds_later_falls_to_its_nearest_known_ancestor() -> None:
    class NewTimeout(ccxt.RequestTimeout):
        pass

    class NewRejection(ccxt.InvalidOrder):
        pass

    assert classify(NewTimeout("x"), placing=True) == "unknown_outcome"
    assert classify(NewRejection("x")) == "rejected"


def test_errors_outside_ccxt_timeouts_and_sockets_are_network_errors() -> None:
    assert classify(TimeoutError()) == "retry"
    assert classify(ConnectionResetError(), placing=True) == "unknown_outcome"
    assert classify(ValueError("bug")) == "fatal"
    assert classify(KeyError("bug"), placing=True) == "fatal"


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"Content-Type": "application/json"}, None),
        ({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),
        ({"Retry-After": "-1"}, None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_of_the_header_in_any_case(
    headers: dict[str, str] | None, seconds: float | None
) -> None:
    assert retry_after(headers) == seconds


class Flaky:
    """A read failing with the given errors in turn, then answering "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def test_a_read_survives_network_errors_with_growing_jittered_waits() -> None:
    read = Flaky(ccxt.RequestTimeout("t"), ccxt.ExchangeNotAvailable("e"), ccxt.NetworkError("n"))
    sleeps, told = Sleeps(), []
    result = await retry_read(
        read,
        what="fetch_balance",
        sleep=sleeps,
        rng=random.Random(1),
        on_retry=lambda n, delay, exc: told.append((n, type(exc).__name__)),
    )
    assert result == "ok" and read.calls == 4
    assert told == [(1, "RequestTimeout"), (2, "ExchangeNotAvailable"), (3, "NetworkError")]
    assert [d <= 0.25 * 2**i for i, d in enumerate(sleeps.delays)] == [True] * 3


async def test_a_read_gives_up_after_its_attempts_with_the_last_error() -> None:
    last = ccxt.RequestTimeout("third")
    read = Flaky(ccxt.RequestTimeout("first"), ccxt.RequestTimeout("second"), last, last)
    sleeps = Sleeps()
    with pytest.raises(ccxt.RequestTimeout) as raised:
        await retry_read(read, what="fetch_ticker", attempts=3, sleep=sleeps)
    assert raised.value is last and read.calls == 3 and len(sleeps.delays) == 2


@pytest.mark.parametrize(
    "error", [ccxt.InsufficientFunds("no"), ccxt.AuthenticationError("key"), ValueError("bug")]
)
async def test_a_rejected_or_fatal_read_is_raised_at_once(error: BaseException) -> None:
    read, sleeps = Flaky(error), Sleeps()
    with pytest.raises(type(error)):
        await retry_read(read, what="fetch_order", sleep=sleeps)
    assert read.calls == 1 and sleeps.delays == []


class Headers:
    """An exchange as far as retry_read looks at it: the last response's headers."""

    def __init__(self, headers: dict[str, str] | None) -> None:
        self.last_response_headers = headers


async def test_a_rate_limit_waits_at_least_the_exchanges_retry_after() -> None:
    read, sleeps = Flaky(ccxt.DDoSProtection("429")), Sleeps()
    result = await retry_read(
        read, what="fetch_ohlcv", sleep=sleeps, exchange=Headers({"Retry-After": "3"})
    )
    assert result == "ok" and sleeps.delays == [3.0]


async def test_a_rate_limit_without_retry_after_waits_longer_than_a_network_error() -> None:
    read, sleeps = Flaky(ccxt.RateLimitExceeded("429")), Sleeps()
    await retry_read(read, what="fetch_ohlcv", sleep=sleeps, exchange=Headers(None))
    assert 0.5 <= sleeps.delays[0] <= 1.0  # [d/2, d], d = 0.25 * 2**2


async def test_a_retry_after_beyond_the_cap_gives_up_rather_than_wait_out_a_ban() -> None:
    read, sleeps = Flaky(ccxt.DDoSProtection("418")), Sleeps()
    with pytest.raises(ccxt.DDoSProtection):
        await retry_read(
            read, what="fetch_balance", sleep=sleeps, exchange=Headers({"Retry-After": "7200"})
        )
    assert read.calls == 1 and sleeps.delays == []


async def test_attempts_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="attempts"):
        await retry_read(Flaky(), what="fetch_balance", attempts=0)


@settings(max_examples=150, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["net", "rate"]), min_size=1, max_size=9),
    base_s=st.floats(0.001, 2.0),
    cap_s=st.floats(0.01, 30.0),
    seed=st.integers(0, 2**32),
    retry_after_s=st.none() | st.floats(0.0, 30.0),
)
async def test_backoff_delays_stay_within_their_bounds(
    kinds: list[str], base_s: float, cap_s: float, seed: int, retry_after_s: float | None
) -> None:
    errors = [
        ccxt.RequestTimeout("t") if k == "net" else ccxt.RateLimitExceeded("r") for k in kinds
    ]
    headers = None if retry_after_s is None else {"Retry-After": repr(retry_after_s)}
    read, sleeps = Flaky(*errors), Sleeps()
    attempts = len(kinds) + 1
    try:
        await retry_read(
            read,
            what="fetch_ohlcv",
            attempts=attempts,
            base_s=base_s,
            cap_s=cap_s,
            sleep=sleeps,
            rng=random.Random(seed),
            exchange=Headers(headers),
        )
    except ccxt.RateLimitExceeded:
        # Only a Retry-After past the cap gives up before the attempts run out.
        assert retry_after_s is not None and retry_after_s > cap_s
        return
    for n, (kind, delay) in enumerate(zip(kinds, sleeps.delays, strict=True), start=1):
        if kind == "net":
            assert 0.0 <= delay <= min(cap_s, base_s * 2 ** (n - 1))
        else:
            ceiling = min(cap_s, base_s * 2 ** (n + 1))
            floor = ceiling / 2 if retry_after_s is None else max(ceiling / 2, retry_after_s)
            assert floor <= delay <= max(ceiling, retry_after_s or 0.0) <= cap_s


KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


@pytest.mark.parametrize(
    "message",
    [
        f"binance GET https://api.binance.com/api/v3/account?timestamp=1&signature={SECRET[:64]}",
        f"binance POST /api/v3/order {{'X-MBX-APIKEY': '{KEY}', 'Content-Type': 'x'}}",
        f'binance {{"X-MBX-APIKEY": "{KEY}"}}',
        f"kucoin KC-API-KEY: {KEY} KC-API-PASSPHRASE: hunter2",
        f"okx OK-ACCESS-KEY={KEY}&OK-ACCESS-SIGN=c2lnbmVk",
        f"bybit apiKey={quote(KEY)}&sign=abc123 Authorization: Bearer {SECRET}",
    ],
)
def test_redact_blots_out_signatures_and_key_headers_without_knowing_the_keys(
    message: str,
) -> None:
    out = redact(message)
    assert KEY not in out and SECRET[:64] not in out and "hunter2" not in out
    assert "***" in out and out.split()[0] == message.split()[0]


def test_redact_keeps_the_rest_of_the_message() -> None:
    message = 'binance {"code":-2010,"msg":"Account has insufficient balance."}'
    assert redact(message, [KEY, SECRET]) == message


secrets_strategy = st.text(min_size=1, max_size=24)
around = st.text(max_size=30)


def _built(secret: str, how: int, before: str, after: str) -> str:
    forms = [
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        repr({"X-MBX-APIKEY": secret}),
        json.dumps({"secret": secret}),
        f"GET /api/v3/account?apiKey={quote(secret)}&timestamp=1",
        repr(secret),
    ]
    return before + forms[how % len(forms)] + after


@settings(max_examples=400, deadline=None)
@given(
    secrets=st.lists(secrets_strategy, min_size=1, max_size=4),
    how=st.integers(0, 100),
    before=around,
    after=around,
)
def test_no_secret_survives_in_any_message_built_around_it(
    secrets: list[str], how: int, before: str, after: str
) -> None:
    message = _built(secrets[0], how, before, after) + " ".join(secrets[1:])
    out = redact(message, secrets)
    for secret in secrets:
        assert secret not in out
        assert quote(secret, safe="") not in out


def test_describe_gives_one_line_led_by_the_exchange_and_the_class() -> None:
    exc = ccxt.AuthenticationError(
        'binance {"code":-2015,"msg":"Invalid API-key."}\nGET /api/v3/account?signature=ab12'
        f" {KEY}"
    )
    line = describe(exc, [KEY])
    assert line.startswith('binance: AuthenticationError: {"code":-2015')
    assert "\n" not in line and KEY not in line and "ab12" not in line


def test_describe_names_the_exchange_when_the_error_does_not() -> None:
    assert describe(TimeoutError(), exchange_id="binance") == "binance: TimeoutError"
    assert describe(ccxt.RequestTimeout("binance GET http://h/api/v3/time")) == (
        "binance: RequestTimeout: GET http://h/api/v3/time"
    )
    assert describe(ValueError("bad")) == "ValueError: bad"
    assert describe(TimeoutError("binance GET /x"), exchange_id="binance") == (
        "binance: TimeoutError: GET /x"
    )


def test_describe_cuts_a_long_message_after_redacting_it() -> None:
    line = describe(ccxt.ExchangeError("binance " + f"{KEY} and more words " * 20), [KEY])
    assert len(line) == 300 and line.endswith("…") and KEY[:10] not in line


async def test_an_answer_the_read_cannot_use_is_a_bad_response_retried_then_raised() -> None:
    answers = iter([{"last": None}, {"last": None}, {"last": 5}])

    async def read() -> dict[str, Any]:
        return next(answers)

    sleeps = Sleeps()
    result = await retry_read(
        read, what="fetch_ticker", sleep=sleeps, valid=lambda t: t["last"] is not None
    )
    assert result == {"last": 5} and len(sleeps.delays) == 2
    with pytest.raises(ccxt.BadResponse, match=r"^fetch_ticker: the answer could not be read$"):
        await retry_read(Flaky(), what="fetch_ticker", attempts=1, valid=lambda t: False)
