"""A virtualised, keyed table on Textual's Line API.

Textual's ``DataTable`` repaints the whole table when any cell changes (about
60 ms a repaint for 1,000 rows). This table renders only the lines on screen,
keeps one cached :class:`~textual.strip.Strip` per row, and re-renders a row
only when its cells change. Column widths are fixed, so a changed row never
moves another. Cells are plain ``(text, style)`` pairs: the text is drawn as
text (never parsed as markup) and the style is a key into the widget's
component classes, so every colour comes from the theme.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

#: One cell: its text and a style key ("" for none). Style keys name the
#: component classes ``virtual-table--<key>`` (see ``VirtualTable.COMPONENT_CLASSES``).
Cell = tuple[str, str]
Row = tuple[Cell, ...]

STYLE_KEYS = ("up", "down", "flat", "long", "short", "muted", "warn", "bad", "good", "strong")

_PLAIN, _CURSOR, _CURSOR_BLURRED = 0, 1, 2


def cell(text: str, style: str = "") -> Cell:
    """A cell with ``text`` drawn in the style ``style`` (one of :data:`STYLE_KEYS`, or "")."""
    return (text, style)


@dataclass(frozen=True, slots=True)
class Column:
    """A fixed-width column; a ``stretch`` column (the last one) also takes any spare width."""

    key: str
    label: str
    width: int
    align: Literal["left", "right"] = "left"
    stretch: bool = False


class VirtualTable(ScrollView, can_focus=True):
    """A table of keyed rows that redraws only what changed.

    Feed it with :meth:`set_rows` as often as data arrives: rows whose cells are
    unchanged keep their cached strips and are not redrawn. The cursor follows
    its row's key when rows move; when that row goes, it stays at the same
    position. :class:`VirtualTable.CursorMoved` is posted whenever the selected
    key changes.
    """

    DEFAULT_CSS = """
    VirtualTable {
        height: 1fr;
        scrollbar-size-vertical: 1;
        scrollbar-size-horizontal: 1;
        & > .virtual-table--header { color: $text-accent; text-style: bold; }
        & > .virtual-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
        & > .virtual-table--cursor-blurred {
            background: $block-cursor-blurred-background;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .virtual-table--empty { color: $text-muted; text-style: italic; }
        & > .virtual-table--up { color: $text-success; }
        & > .virtual-table--down { color: $text-error; }
        & > .virtual-table--flat { color: $text-muted; }
        & > .virtual-table--long { color: $text-success; }
        & > .virtual-table--short { color: $text-error; }
        & > .virtual-table--muted { color: $text-muted; }
        & > .virtual-table--warn { color: $text-warning; }
        & > .virtual-table--bad { color: $text-error; text-style: bold; }
        & > .virtual-table--good { color: $text-success; }
        & > .virtual-table--strong { text-style: bold; }
    }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "virtual-table--header",
        "virtual-table--cursor",
        "virtual-table--cursor-blurred",
        "virtual-table--empty",
        *(f"virtual-table--{key}" for key in STYLE_KEYS),
    }

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Up", show=False, id="table.cursor-up"),
        Binding("down", "cursor_down", "Down", show=False, id="table.cursor-down"),
        Binding("pageup", "page_up_rows", "Page up", show=False, id="table.page-up"),
        Binding("pagedown", "page_down_rows", "Page down", show=False, id="table.page-down"),
        Binding("home", "first_row", "First row", show=False, id="table.first"),
        Binding("end", "last_row", "Last row", show=False, id="table.last"),
    ]

    class CursorMoved(Message):
        """The selected row changed (``key`` is None when the table is empty)."""

        def __init__(self, table: VirtualTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> VirtualTable:
            return self.table

    show_cursor: reactive[bool] = reactive(True)

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        empty_text: str = "",
        show_cursor: bool = True,
        rows: Iterable[tuple[str, Row]] = (),
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns: tuple[Column, ...] = tuple(columns)
        self.empty_text = empty_text
        self.set_reactive(VirtualTable.show_cursor, show_cursor)
        self._keys: list[str] = []
        self._rows: dict[str, Row] = {}
        self._index: dict[str, int] = {}
        self._cursor_key: str | None = None
        self._cursor_row = 0
        self._strips: dict[tuple[str, int], Strip] = {}
        self._header: Strip | None = None
        self._styles: dict[str, Style] = {}
        self._min_width = sum(c.width for c in self.columns) + max(0, len(self.columns) - 1)
        self._width = self._min_width
        self._widths = [c.width for c in self.columns]
        self._initial_rows = list(rows)
        #: Rows rendered into strips since mount: a measure of work for tests and benchmarks.
        self.rendered_rows = 0
        self.virtual_size = Size(self._width, 1)

    # ---- data -------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        """How many rows the table holds."""
        return len(self._keys)

    @property
    def keys(self) -> Sequence[str]:
        """Row keys, top to bottom."""
        return self._keys

    @property
    def cursor_key(self) -> str | None:
        """The key of the selected row, or None when the table is empty."""
        return self._cursor_key

    @property
    def cursor_row(self) -> int:
        """The index of the selected row (0 when the table is empty)."""
        return self._cursor_row

    def get_row(self, key: str) -> Row | None:
        """The cells of the row ``key``, or None."""
        return self._rows.get(key)

    def set_rows(self, rows: Iterable[tuple[str, Row]]) -> int:
        """Replace the table's rows with ``rows`` (keys must be unique).

        Returns how many rows changed (new or different cells). Unchanged rows
        keep their strips; if the order is the same, only changed lines on
        screen are refreshed.
        """
        old_rows = self._rows
        keys: list[str] = []
        new_rows: dict[str, Row] = {}
        changed: list[str] = []
        strips = self._strips
        for key, row in rows:
            keys.append(key)
            new_rows[key] = row
            if old_rows.get(key) != row:
                changed.append(key)
                for kind in (_PLAIN, _CURSOR, _CURSOR_BLURRED):
                    strips.pop((key, kind), None)
        if len(new_rows) != len(keys):
            raise ValueError("row keys must be unique")
        for gone in old_rows.keys() - new_rows.keys():
            for kind in (_PLAIN, _CURSOR, _CURSOR_BLURRED):
                strips.pop((gone, kind), None)
        order_changed = keys != self._keys
        self._rows = new_rows
        if order_changed:
            self._keys = keys
            self._index = {key: i for i, key in enumerate(keys)}
            self.virtual_size = Size(self._width, len(keys) + 1)
            self._settle_cursor()
            self.refresh()
        elif changed:
            top = round(self.scroll_y)
            height = self.scrollable_content_region.height
            for key in changed:
                y = self._index[key] - top + 1
                if 1 <= y < height:
                    self.refresh_line(self._index[key] + 1)
        return len(changed)

    def clear(self) -> None:
        """Remove every row."""
        self.set_rows(())

    def _settle_cursor(self) -> None:
        """After the rows changed: keep the cursor on its key, else at its position."""
        before = self._cursor_key
        if before is not None and before in self._index:
            self._cursor_row = self._index[before]
        elif self._keys:
            self._cursor_row = min(self._cursor_row, len(self._keys) - 1)
            self._cursor_key = self._keys[self._cursor_row]
        else:
            self._cursor_row = 0
            self._cursor_key = None
        if self._cursor_key != before:
            self.post_message(self.CursorMoved(self, self._cursor_key))

    # ---- cursor -----------------------------------------------------------------

    def move_cursor(self, row: int) -> None:
        """Select the row at index ``row`` (clamped) and scroll it into view."""
        if not self._keys:
            return
        row = max(0, min(row, len(self._keys) - 1))
        old_key = self._cursor_key
        old_row = self._cursor_row
        self._cursor_row = row
        self._cursor_key = self._keys[row]
        self._scroll_cursor_into_view()
        self.refresh_line(old_row + 1)
        self.refresh_line(row + 1)
        if self._cursor_key != old_key:
            self.post_message(self.CursorMoved(self, self._cursor_key))

    def select_key(self, key: str) -> bool:
        """Select the row ``key``; False if there is no such row."""
        index = self._index.get(key)
        if index is None:
            return False
        self.move_cursor(index)
        return True

    @property
    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 2)

    def _scroll_cursor_into_view(self) -> None:
        visible = max(1, self.scrollable_content_region.height - 1)
        top = round(self.scroll_y)
        if self._cursor_row < top:
            self.scroll_to(y=self._cursor_row, animate=False, immediate=True)
        elif self._cursor_row >= top + visible:
            self.scroll_to(y=self._cursor_row - visible + 1, animate=False, immediate=True)

    def action_cursor_up(self) -> None:
        self.move_cursor(self._cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self._cursor_row + 1)

    def action_page_up_rows(self) -> None:
        self.move_cursor(self._cursor_row - self._page)

    def action_page_down_rows(self) -> None:
        self.move_cursor(self._cursor_row + self._page)

    def action_first_row(self) -> None:
        self.move_cursor(0)

    def action_last_row(self) -> None:
        self.move_cursor(len(self._keys) - 1)

    def on_click(self, event: Click) -> None:
        if event.y >= 1:
            self.move_cursor(round(self.scroll_y) + event.y - 1)

    def watch_show_cursor(self) -> None:
        self.refresh()

    def on_focus(self) -> None:
        self.refresh_line(self._cursor_row + 1)

    def on_blur(self) -> None:
        self.refresh_line(self._cursor_row + 1)

    def on_mount(self) -> None:
        if self._initial_rows:
            self.set_rows(self._initial_rows)
            self._initial_rows = []

    def on_resize(self) -> None:
        if not (self.columns and self.columns[-1].stretch):
            return
        # Room for a vertical scrollbar is kept either way, so one appearing later does
        # not push the last column under it.
        room = self.content_region.width - self.styles.scrollbar_size_vertical
        spare = max(0, room - self._min_width)
        widths = [c.width for c in self.columns]
        widths[-1] += spare
        if widths != self._widths:
            self._widths = widths
            self._width = self._min_width + spare
            self.virtual_size = Size(self._width, len(self._keys) + 1)
            self._strips.clear()
            self._header = None
            self.refresh()

    # ---- rendering --------------------------------------------------------------

    def notify_style_update(self) -> None:
        """Theme or CSS changed: every cached strip and style is stale."""
        super().notify_style_update()
        self._strips.clear()
        self._styles.clear()
        self._header = None

    def _component(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self.get_component_rich_style(f"virtual-table--{name}", partial=True)
            self._styles[name] = style
        return style

    def _render_cells(self, row: Sequence[Cell], line_style: Style) -> Strip:
        segments: list[Segment] = []
        last = len(self.columns) - 1
        for i, column in enumerate(self.columns):
            text, style_key = row[i] if i < len(row) else ("", "")
            width = self._widths[i]
            if cell_len(text) > width:
                text = set_cell_size(text, width - 1) + "…" if width > 1 else text[:width]
            elif column.align == "right":
                text = " " * (width - cell_len(text)) + text
            else:
                text = set_cell_size(text, width)
            style = line_style + self._component(style_key) if style_key else line_style
            segments.append(Segment(text, style))
            if i != last:
                segments.append(Segment(" ", line_style))
        return Strip(segments, self._width)

    def _line_style(self, kind: int) -> Style:
        if kind == _CURSOR:
            return self.rich_style + self._component("cursor")
        if kind == _CURSOR_BLURRED:
            return self.rich_style + self._component("cursor-blurred")
        return self.rich_style

    def _row_strip(self, key: str, kind: int) -> Strip:
        strip = self._strips.get((key, kind))
        if strip is None:
            strip = self._render_cells(self._rows[key], self._line_style(kind))
            self._strips[(key, kind)] = strip
            self.rendered_rows += 1
        return strip

    def _header_strip(self) -> Strip:
        if self._header is None:
            row = tuple((column.label, "") for column in self.columns)
            self._header = self._render_cells(row, self.rich_style + self._component("header"))
        return self._header

    def render_line(self, y: int) -> Strip:
        """Line 0 is the header; the rest are rows from the scroll offset down."""
        scroll_x = round(self.scroll_x)
        width = self.scrollable_content_region.width
        if y == 0:
            header_style = self.rich_style + self._component("header")
            return self._header_strip().crop_extend(scroll_x, scroll_x + width, header_style)
        index = round(self.scroll_y) + y - 1
        if index >= len(self._keys):
            base = self.rich_style
            if index == 0 and self.empty_text:
                text = set_cell_size(self.empty_text, max(width, 0))
                return Strip([Segment(text, base + self._component("empty"))], width)
            return Strip.blank(width, base)
        kind = _PLAIN
        if self.show_cursor and index == self._cursor_row:
            kind = _CURSOR if self.has_focus else _CURSOR_BLURRED
        strip = self._row_strip(self._keys[index], kind)
        return strip.crop_extend(scroll_x, scroll_x + width, self._line_style(kind))
