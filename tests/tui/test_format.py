"""Formatting: profit and loss never rely on colour, numbers fit their columns."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.models import (
    Decision,
    DecisionAction,
    DecisionMade,
    EngineMessage,
    EquityUpdated,
    OrderDenied,
    PositionClosed,
    Side,
)
from tui import format as fmt
from tui.activity import describe
from tui.messages import EngineEventPosted, EquityTicked
from tui.screens.modals import parse_confidence, parse_positive_decimal


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("12.3"), "▲ +12.30"),
        (Decimal("-4"), "▼ -4.00"),
        (Decimal("0"), "· 0.00"),
        (Decimal("1234.5"), "▲ +1,234.50"),
    ],
)
def test_pnl_carries_an_arrow_and_a_sign(value: Decimal, expected: str) -> None:
    assert fmt.pnl(value) == expected


@pytest.mark.parametrize(
    "value", ["91512.34", "3150.25", "135.1234", "12.34567", "2.10345", "0.2134567", "123456.7"]
)
def test_prices_and_quantities_fit_eight_characters(value: str) -> None:
    assert len(fmt.price(Decimal(value))) <= 8
    assert len(fmt.qty(Decimal(value))) <= 8


@pytest.mark.parametrize(
    ("ms", "expected"),
    [(-5, "0s"), (45_000, "45s"), (245_000, "4m05s"), (7_500_000, "2h05m"), (90_000_000, "1d01h")],
)
def test_durations_are_compact(ms: int, expected: str) -> None:
    assert fmt.duration(ms) == expected


def test_one_line_drops_control_characters_and_caps_length() -> None:
    assert fmt.one_line("a\x1b[31mb\nc\td") == "a [31mb c d"
    assert fmt.one_line("x" * 300, 10) == "x" * 9 + "…"


@pytest.mark.parametrize(
    ("text", "error"),
    [("", "enter a quantity"), ("-1", "above zero"), ("0", "above zero"), ("abc", "not a number")],
)
def test_resize_quantity_must_be_a_positive_number(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_positive_decimal(text)


def test_resize_quantity_accepts_separators() -> None:
    assert parse_positive_decimal(" 1,234.5 ") == Decimal("1234.5")
    with pytest.raises(ValueError, match="finite"):
        parse_positive_decimal("Infinity")


@pytest.mark.parametrize(
    ("text", "value"),
    [("70", 0.7), ("70%", 0.7), (" 70 % ", 0.7), ("1.5", 0.015), ("0.7", 0.007), ("100", 1.0)],
)
def test_confidence_is_typed_as_a_percentage_only(text: str, value: float) -> None:
    assert parse_confidence(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["150", "-1", "nan", "inf", "", "70 percent"])
def test_confidence_outside_0_to_100_percent_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"percentage|not a number"):
        parse_confidence(text)


@pytest.mark.parametrize(
    ("fraction", "text"), [(0.7, "≥ 70%"), (0.015, "≥ 1.5%"), (0.02, "≥ 2%"), (1.0, "≥ 100%")]
)
def test_the_threshold_reads_the_same_everywhere(fraction: float, text: str) -> None:
    assert fmt.threshold(fraction) == text


def test_activity_lines_read_as_words() -> None:
    decision = Decision(
        proposal_id="p",
        action=DecisionAction.REJECT,
        reason="too_much_risk",
        latency_ms=5,
        decided_at=0,
    )
    line = describe(DecisionMade(ts=0, decision=decision, symbol="BTC/USDT", side=Side.LONG))
    assert line is not None and line.text == "BTC/USDT long: too much risk"
    closed = PositionClosed(
        ts=0,
        symbol="ETH/USDT",
        side=Side.SHORT,
        qty=Decimal("1"),
        entry_price=Decimal("10"),
        exit_price=Decimal("11"),
        realized_pnl=Decimal("-1"),
        fees=Decimal("0"),
        reason="stop",
        opened_at=0,
    )
    line = describe(closed)
    assert line is not None and "▼ -1.00" in line.text and line.style == "down"


def test_untrusted_text_in_activity_stays_one_plain_line() -> None:
    denied = OrderDenied(ts=0, symbol="X/Y", reason="[@click=app.quit]boom[/]\nsecond line")
    line = describe(denied)
    assert line is not None
    assert line.text == "X/Y: [@click=app.quit]boom[/] second line"
    message = describe(EngineMessage(ts=0, level="error", text="\x1b]0;title\x07oops"))
    assert message is not None and "\x1b" not in message.text and message.style == "bad"


def test_only_equity_ticks_replace_each_other() -> None:
    tick = EquityUpdated(
        ts=0,
        equity=Decimal(1),
        cash=Decimal(1),
        unrealized=Decimal(0),
        realized_today=Decimal(0),
        drawdown=0.0,
    )
    older, newer = EquityTicked(tick), EquityTicked(tick)
    other = EngineEventPosted(EngineMessage(ts=0, text="x"))
    assert older.can_replace(newer)
    assert not older.can_replace(other)
    assert not other.can_replace(EngineEventPosted(EngineMessage(ts=1, text="y")))
