"""The activity pane: decisions, orders, fills, denials and engine messages, newest first."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult

from tui import format as fmt
from tui.activity import ActivityEntry
from tui.widgets.panes.base import Pane
from tui.widgets.table import Column, Row, VirtualTable, cell

ACTIVITY_COLUMNS = (
    Column("time", "Time", 8),
    Column("kind", "Event", 8),
    Column("text", "", 30, stretch=True),
)

#: How many activity lines are kept (newest first).
ACTIVITY_LIMIT = 500


def activity_row(entry: ActivityEntry) -> Row:
    """An activity line: time, kind, text.

    Events before the first candle (the engine starting) have no market time yet:
    they read ``pre-open``.
    """
    return (
        cell(fmt.market_hm(entry.ts) if entry.ts > 0 else "pre-open", "muted"),
        cell(entry.kind, entry.style or "strong"),
        cell(entry.text, entry.style if entry.style in ("bad", "warn") else ""),
    )


class ActivityPane(Pane):
    """Decisions, orders, fills, denials and engine messages, newest first."""

    def __init__(self, *, id: str | None = "activity-pane") -> None:
        super().__init__(id=id)
        self.border_title = "Activity"
        self._rows: dict[int, Row] = {}

    def compose(self) -> ComposeResult:
        yield VirtualTable(ACTIVITY_COLUMNS, empty_text="Nothing yet.", id="activity-table")

    def show(self, entries: Sequence[tuple[int, ActivityEntry]]) -> None:
        """Draw ``entries`` (sequence number, entry), newest first."""
        rows: list[tuple[str, Row]] = []
        cache = self._rows
        fresh: dict[int, Row] = {}
        for seq, entry in entries:
            row = cache.get(seq)
            if row is None:
                row = activity_row(entry)
            fresh[seq] = row
            rows.append((str(seq), row))
        self._rows = fresh
        self.query_one("#activity-table", VirtualTable).set_rows(rows)
