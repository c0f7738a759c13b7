"""What the activity pane says about each engine event (plain text, never markup)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.models import (
    REJECT_REASON_LABELS,
    DecisionAction,
    DecisionMade,
    EngineEvent,
    EngineMessage,
    EngineStateChanged,
    OrderDenied,
    OrderFilled,
    OrderSubmitted,
    PositionClosed,
    PositionOpened,
    TradingState,
    TradingStateChanged,
)
from tui import format as fmt


@dataclass(frozen=True, slots=True)
class ActivityEntry:
    """One line of the activity pane: market time, a short kind, the text and its style key."""

    ts: int
    kind: str
    text: str
    style: str = ""


def reason_label(reason: str | None) -> str:
    """A reject reason code as words (unknown codes are shown as they are, made one line)."""
    if not reason:
        return "no reason"
    return REJECT_REASON_LABELS.get(reason, fmt.one_line(reason, 80))


def describe(event: EngineEvent) -> ActivityEntry | None:
    """The activity line for ``event``, or None for events the pane does not list."""
    if isinstance(event, DecisionMade):
        d = event.decision
        what = f"{fmt.one_line(event.symbol, 20)} {event.side.value}"
        who = "" if d.decided_by == "human" else f" by {d.decided_by}"
        if d.action is DecisionAction.APPROVE:
            size = f" qty {fmt.qty(d.size)}" if d.size is not None else ""
            resized = " (resized)" if d.resized else ""
            return ActivityEntry(
                event.ts, "APPROVED", f"{what}{size}{resized}{who}, {d.latency_ms} ms", "good"
            )
        if d.action is DecisionAction.REJECT:
            return ActivityEntry(
                event.ts, "REJECTED", f"{what}: {reason_label(d.reason)}{who}", "muted"
            )
        return ActivityEntry(event.ts, "EXPIRED", what, "muted")
    if isinstance(event, OrderDenied):
        return ActivityEntry(
            event.ts,
            "DENIED",
            f"{fmt.one_line(event.symbol, 20)}: {fmt.one_line(event.reason)}",
            "bad",
        )
    if isinstance(event, OrderSubmitted):
        i = event.intent
        return ActivityEntry(
            event.ts,
            "ORDER",
            f"{i.side.value} {fmt.qty(i.qty)} {fmt.one_line(i.symbol, 20)} ({i.purpose})",
        )
    if isinstance(event, OrderFilled):
        f = event.fill
        return ActivityEntry(
            event.ts,
            "FILLED",
            f"{f.side.value} {fmt.qty(f.qty)} {fmt.one_line(f.symbol, 20)}"
            f" @ {fmt.price(f.price)}, fee {fmt.money(f.fee)}",
        )
    if isinstance(event, PositionOpened):
        p = event.position
        return ActivityEntry(
            event.ts,
            "OPENED",
            f"{fmt.one_line(p.symbol, 20)} {p.side.value} {fmt.qty(p.qty)}"
            f" @ {fmt.price(p.entry_price)}",
        )
    if isinstance(event, PositionClosed):
        return ActivityEntry(
            event.ts,
            "CLOSED",
            f"{fmt.one_line(event.symbol, 20)} {event.side.value} {fmt.qty(event.qty)}"
            f" @ {fmt.price(event.exit_price)} {fmt.pnl(event.realized_pnl)}"
            f" ({fmt.one_line(event.reason, 60)})",
            fmt.direction(event.realized_pnl),
        )
    if isinstance(event, TradingStateChanged):
        style = {
            TradingState.ACTIVE: "good",
            TradingState.REDUCING: "warn",
            TradingState.HALTED: "bad",
        }[event.new]
        return ActivityEntry(
            event.ts,
            event.new.value,
            f"trading {event.old.value} → {event.new.value}: {fmt.one_line(event.reason)}",
            style,
        )
    if isinstance(event, EngineStateChanged):
        return ActivityEntry(event.ts, "ENGINE", f"engine {event.state}", "muted")
    if isinstance(event, EngineMessage):
        style = {"info": "", "warning": "warn", "error": "bad"}[event.level]
        return ActivityEntry(event.ts, event.level.upper(), fmt.one_line(event.text), style)
    return None
