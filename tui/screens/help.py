"""The help screen: every key binding of the screen it was opened from, as remapped."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Label

from tui.widgets.table import Column, Row, VirtualTable, cell

HELP_COLUMNS = (
    Column("keys", "Keys", 14),
    Column("action", "What it does", 52),
    Column("id", "Id (ui.keymap)", 20),
)


def binding_rows(screen: Screen[object]) -> list[tuple[str, Row]]:
    """One row per binding active on ``screen``: its keys (after remapping), description, id.

    Bindings are listed in the order the screen resolves them (focused widget,
    then its containers, the screen, the app); several keys for one binding
    share its row.
    """
    app = screen.app
    grouped: dict[str, tuple[list[str], str, str, bool]] = {}
    for key, active in screen.active_bindings.items():
        binding = active.binding
        # Every key of the console has an id; the rest are Textual's own (sideways
        # scrolling, copy), which a trader does not need explained.
        if binding.id is None:
            continue
        ident = binding.id or f"{type(active.node).__name__}.{binding.action}"
        shown = app.get_key_display(Binding(key, binding.action))
        description = binding.tooltip or binding.description or binding.action
        if ident in grouped:
            grouped[ident][0].append(shown)
        else:
            grouped[ident] = ([shown], description, binding.id or "", active.enabled)
    rows: list[tuple[str, Row]] = []
    for ident, (keys, description, binding_id, enabled) in grouped.items():
        style = "" if enabled else "muted"
        rows.append(
            (
                ident,
                (
                    cell(" / ".join(dict.fromkeys(keys)), "strong" if enabled else "muted"),
                    cell(description + ("" if enabled else " (not now)"), style),
                    cell(binding_id, "muted"),
                ),
            )
        )
    return rows


class HelpScreen(ModalScreen[None]):
    """Lists the keys of the screen beneath; escape, ? or q closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,f1,q", "close", "Close help", id="help.close"),
    ]

    def __init__(self, target: Screen[object], title: str) -> None:
        super().__init__(classes="help")
        self.rows = binding_rows(target)
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box") as box:
            box.border_title = f"Keys: {self.title_text}"
            yield VirtualTable(HELP_COLUMNS, rows=self.rows, show_cursor=False, id="help-table")
            yield Label(
                Text("↑↓ scroll   esc / ? / q  close   remap keys in the config: [ui.keymap]"),
                id="help-hint",
            )

    def on_mount(self) -> None:
        self.query_one("#help-table", VirtualTable).focus()

    def action_close(self) -> None:
        self.dismiss(None)
