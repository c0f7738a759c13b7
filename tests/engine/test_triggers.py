"""The one stop/take-profit rule, used by paper exits (Decimal) and counterfactuals (float)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.models import Side, stop_or_take_profit

# side, stop, take-profit, (open, high, low), expected (price, which) or None
CASES = [
    (Side.LONG, 95, 110, (100, 104, 96), None),
    (Side.LONG, 95, 110, (100, 104, 94), (95, "stop")),
    (Side.LONG, 95, 110, (100, 111, 99), (110, "take-profit")),
    (Side.LONG, 95, 110, (100, 111, 94), (95, "stop")),  # both inside: the stop first
    (Side.LONG, 95, 110, (90, 92, 88), (90, "stop")),  # a gap through the stop: the open
    (Side.LONG, 95, 110, (115, 116, 112), (115, "take-profit")),
    (Side.SHORT, 105, 90, (100, 106, 99), (105, "stop")),
    (Side.SHORT, 105, 90, (100, 101, 89), (90, "take-profit")),
    (Side.SHORT, 105, 90, (100, 106, 89), (105, "stop")),
    (Side.SHORT, 105, 90, (108, 109, 107), (108, "stop")),
    (Side.SHORT, 105, 90, (85, 86, 84), (85, "take-profit")),
    (Side.SHORT, None, None, (100, 200, 1), None),
]


@pytest.mark.parametrize(("side", "stop", "tp", "candle", "expected"), CASES)
def test_float_and_decimal_trigger_alike(
    side: Side,
    stop: int | None,
    tp: int | None,
    candle: tuple[int, int, int],
    expected: tuple[int, str] | None,
) -> None:
    o, h, lo = candle
    as_float = stop_or_take_profit(
        side,
        None if stop is None else float(stop),
        None if tp is None else float(tp),
        float(o),
        float(h),
        float(lo),
    )
    as_decimal = stop_or_take_profit(
        side,
        None if stop is None else Decimal(stop),
        None if tp is None else Decimal(tp),
        Decimal(o),
        Decimal(h),
        Decimal(lo),
    )
    if expected is None:
        assert as_float is None and as_decimal is None
    else:
        assert as_float == (float(expected[0]), expected[1])
        assert as_decimal == (Decimal(expected[0]), expected[1])
