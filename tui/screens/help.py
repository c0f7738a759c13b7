"""The help screen: every key binding of the screen it was opened from, as remapped."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Label

from tui.widgets.table import Row, cell


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


class HelpTable(Widget):
    """The rows as a table as wide as the screen allows: keys and ids whole, the
    description wrapped (a table of fixed columns cut the ids at 80 columns)."""

    DEFAULT_CSS = """
    HelpTable { height: auto; }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "help-table--header",
        "help-table--strong",
        "help-table--muted",
    }

    def __init__(self, rows: list[tuple[str, Row]], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows = rows

    def render(self) -> Table:
        def style(key: str) -> str | Style:
            return self.get_component_rich_style(f"help-table--{key}") if key else ""

        table = Table(
            box=None,
            expand=True,
            padding=(0, 2, 0, 0),
            header_style=style("header"),
            show_edge=False,
            pad_edge=False,
        )
        table.add_column("Keys", no_wrap=True)
        table.add_column("What it does", ratio=1, overflow="fold")
        table.add_column("Id (ui.keymap)", no_wrap=True)
        for _, row in self.rows:
            table.add_row(*(Text(text, style(key)) for text, key in row))
        return table


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
            with VerticalScroll(id="help-scroll"):
                yield HelpTable(self.rows, id="help-table")
            yield Label(
                Text("↑↓ scroll   esc / ? / q  close   remap keys in the config: [ui.keymap]"),
                id="help-hint",
            )

    def on_mount(self) -> None:
        self.query_one("#help-scroll", VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)


def help_title(screen: Screen[Any]) -> str:
    """What the help screen opened on ``screen`` calls it ("main screen", "reject dialog")."""
    from tui.screens.detail import ProposalDetailScreen
    from tui.screens.main import MainScreen
    from tui.screens.modals import FloorConfirmDialog
    from tui.screens.recovery import RecoveryScreen

    titles: dict[type[Screen[Any]], str] = {
        MainScreen: "main screen",
        ProposalDetailScreen: "proposal detail",
        RecoveryScreen: "restart summary",
        FloorConfirmDialog: "low threshold",
    }
    title = titles.get(type(screen), type(screen).__name__.removesuffix("Dialog").lower())
    if isinstance(screen, ModalScreen) and title != type(screen).__name__.lower():
        title = f"{title} dialog"
    return title
