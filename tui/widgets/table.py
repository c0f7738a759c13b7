"""A virtualised, keyed table on Textual's Line API.

Textual's ``DataTable`` repaints the whole table when any cell changes (about
60 ms a repaint for 1,000 rows). This table renders only the lines on screen,
keeps one cached :class:`~textual.strip.Strip` per row, and re-renders a row
only when its cells change. Fed from a row source
(:meth:`VirtualTable.set_source`), it also computes cells only for the rows on
screen. Column widths are fixed, so a changed row never moves another. Cells
are plain ``(text, style)`` pairs: the text is drawn as text (never parsed as
markup) and the style is a key into the widget's component classes, so every
colour comes from the theme.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.events import Click
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

#: One cell: its text and a style key ("" for none). Style keys name the
#: component classes ``virtual-table--<key>`` (see ``VirtualTable.COMPONENT_CLASSES``).
Cell = tuple[str, str]
Row = tuple[Cell, ...]
#: Computes the cells of the row at an index of the keys it was given with
#: (see :meth:`VirtualTable.set_source`).
RowSource = Callable[[int], Row]

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

    Feed it in one of two ways, as often as data arrives:

    - :meth:`set_rows` hands it every row's cells (small tables: votes, activity);
    - :meth:`set_source` hands it the keys and a :data:`RowSource` that computes a
      row's cells on demand: only the rows on screen are computed, now and as they
      scroll into view, so a push costs the same for 10 rows or 10,000.

    Either way a row whose cells are unchanged keeps its cached strip and is not
    redrawn. The cursor follows its row's key when rows move; when that row goes,
    it stays at the same position. :class:`VirtualTable.CursorMoved` is posted
    whenever the selected key changes.
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
        self._index: dict[str, int] = {}
        # With set_rows, _rows holds every row and _source is None. With set_source,
        # _rows caches the cells last computed for a key, and _checked the data
        # generation at which they were last compared with the source.
        self._rows: dict[str, Row] = {}
        self._source: RowSource | None = None
        self._generation = 0
        self._checked: dict[str, int] = {}
        self._cursor_key: str | None = None
        self._cursor_row = 0
        # Invariant: a cached strip always draws the cells in _rows for its key.
        self._strips: dict[tuple[str, int], Strip] = {}
        self._header: Strip | None = None
        self._styles: dict[str, Style] = {}
        self._base: Style | None = None
        self._line_styles: tuple[Style, Style, Style] | None = None
        self._cell_styles: dict[tuple[int, str], Style] = {}
        # Strips are drawn this wide (the table, or the view if wider), ready to show.
        self._strip_width = 0
        # While a frame is drawn: the horizontal and vertical scroll and the view's width.
        self._view: tuple[int, int, int] | None = None
        self._min_width = sum(c.width for c in self.columns) + max(0, len(self.columns) - 1)
        self._width = self._min_width
        self._widths = [c.width for c in self.columns]
        self._initial_rows = list(rows)
        #: Rows rendered into strips since mount: a measure of work for tests and benchmarks.
        self.rendered_rows = 0
        #: Rows whose cells were computed by a :data:`RowSource` (see :meth:`set_source`).
        self.computed_rows = 0
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
        """The cells of the row ``key`` (computed now if they come from a source), or None."""
        index = self._index.get(key)
        return None if index is None else self._row_at(index)

    def set_rows(self, rows: Iterable[tuple[str, Row]]) -> int:
        """Replace the table's rows with ``rows`` (keys must be unique).

        Returns how many rows changed (new or different cells). Unchanged rows
        keep their strips; if the order is the same, only changed lines on
        screen are refreshed.
        """
        old_rows = self._rows  # after set_source: the rows computed so far, as drawn
        keys: list[str] = []
        new_rows: dict[str, Row] = {}
        changed: list[int] = []
        for i, (key, row) in enumerate(rows):
            keys.append(key)
            new_rows[key] = row
            if old_rows.get(key) != row:
                changed.append(i)
        if len(new_rows) != len(keys):
            raise ValueError("row keys must be unique")
        for key in old_rows.keys() - new_rows.keys():
            self._drop_strips(key)
        for i in changed:
            self._drop_strips(keys[i])
        self._rows = new_rows
        self._source = None
        self._checked.clear()
        if keys != self._keys:
            self._set_keys(keys, {key: i for i, key in enumerate(keys)})
        else:
            self._refresh_rows(changed, self._visible_rows())
        return len(changed)

    def set_source(self, keys: Sequence[str], source: RowSource) -> None:
        """Show the rows ``keys`` (unique), whose cells ``source(i)`` computes for ``keys[i]``.

        Cells are computed only for rows on screen: now, if the order is the
        same, to refresh just the lines whose cells changed; else as the lines
        are drawn; and later as rows scroll into view or are asked for
        (:meth:`get_row`). So ``source`` must answer for this data until the
        next call. Rows are compared with the cells last drawn for their key:
        an unchanged row keeps its strip.
        """
        keys = list(keys)
        order_changed = keys != self._keys
        index = self._index
        if order_changed:
            index = {key: i for i, key in enumerate(keys)}
            if len(index) != len(keys):
                raise ValueError("row keys must be unique")
        if self._source is None:
            # From set_rows: the rows are kept as a cache, to be checked against the source.
            self._checked.clear()
        self._source = source
        self._generation += 1
        if order_changed:
            for key in [key for key in self._rows if key not in index]:
                del self._rows[key]
                self._checked.pop(key, None)
                self._drop_strips(key)
            self._set_keys(keys, index)
            return
        visible = self._visible_rows()
        self._refresh_rows([i for i in visible if self._check(i)], visible)

    def clear(self) -> None:
        """Remove every row."""
        self.set_rows(())

    def _set_keys(self, keys: list[str], index: dict[str, int]) -> None:
        """New keys or a new order: every line on screen may have moved."""
        self._keys = keys
        self._index = index
        self.virtual_size = Size(self._width, len(keys) + 1)
        self._settle_cursor()
        self.refresh()

    def _visible_rows(self) -> range:
        """Indexes of the rows on screen (line 0 is the header)."""
        top = round(self.scroll_y)
        height = self.scrollable_content_region.height - 1
        return range(top, max(top, min(top + height, len(self._keys))))

    def _refresh_rows(self, indexes: Sequence[int], visible: range) -> None:
        """Refresh the lines of the rows at ``indexes`` (ascending) that are ``visible``.

        Neighbouring lines are refreshed as one region: fewer regions for the compositor.
        """
        start = end = -1
        for i in indexes:
            if i not in visible:
                continue
            if i != end:
                if end > start:
                    self.refresh_lines(start + 1, end - start)
                start = i
            end = i + 1
        if end > start:
            self.refresh_lines(start + 1, end - start)

    def _check(self, index: int) -> bool:
        """Compute the row at ``index`` from the source; True if its cells changed."""
        key = self._keys[index]
        assert self._source is not None
        row = self._source(index)
        self.computed_rows += 1
        self._checked[key] = self._generation
        if self._rows.get(key) == row:
            return False
        self._rows[key] = row
        self._drop_strips(key)
        return True

    def _row_at(self, index: int) -> Row:
        """The current cells of the row at ``index``."""
        key = self._keys[index]
        if self._source is not None and self._checked.get(key) != self._generation:
            self._check(index)
        return self._rows[key]

    def _drop_strips(self, key: str) -> None:
        strips = self._strips
        for kind in (_PLAIN, _CURSOR, _CURSOR_BLURRED):
            strips.pop((key, kind), None)

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
        self._styles.clear()
        self._forget_styles()

    def _forget_styles(self) -> None:
        self._strips.clear()
        self._header = None
        self._base = None
        self._line_styles = None
        self._cell_styles.clear()

    def render_lines(self, crop: Region) -> list[Strip]:
        # What every line needs, once a frame rather than once a line: the widget's
        # style (Textual walks the DOM for it, about 20 µs; per line it was a third of
        # the drawing) and the view. The style is checked here, not only on a style
        # update, so no strip is ever drawn in a style that is gone.
        base = self.rich_style
        if base != self._base:
            self._forget_styles()
            self._base = base
        self._view = self._current_view()
        try:
            return super().render_lines(crop)
        finally:
            self._view = None

    def _current_view(self) -> tuple[int, int, int]:
        """The horizontal and vertical scroll offsets and the width of the view."""
        width = self.scrollable_content_region.width
        strip_width = max(width, self._width)
        if strip_width != self._strip_width:
            self._strip_width = strip_width
            self._strips.clear()
            self._header = None
        return round(self.scroll_x), round(self.scroll_y), width

    def _base_style(self) -> Style:
        base = self._base
        if base is None:
            base = self._base = self.rich_style
        return base

    def _component(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self.get_component_rich_style(f"virtual-table--{name}", partial=True)
            self._styles[name] = style
        return style

    def _line_style(self, kind: int) -> Style:
        """The style of a row line: plain, or under the cursor (focused or not)."""
        styles = self._line_styles
        if styles is None:
            base = self._base_style()
            styles = self._line_styles = (
                base,
                base + self._component("cursor"),
                base + self._component("cursor-blurred"),
            )
        return styles[kind]

    def _cell_style(self, kind: int, key: str) -> Style:
        """The style of a cell with the style key ``key`` on a line of ``kind``."""
        style = self._cell_styles.get((kind, key))
        if style is None:
            style = self._cell_styles[(kind, key)] = self._line_style(kind) + self._component(key)
        return style

    def _render_cells(self, row: Sequence[Cell], kind: int, line_style: Style) -> Strip:
        """One line of cells; neighbouring text in the same style is one segment."""
        runs: list[tuple[Style, list[str]]] = []

        def put(text: str, style: Style) -> None:
            if runs and runs[-1][0] == style:
                runs[-1][1].append(text)
            else:
                runs.append((style, [text]))

        last = len(self.columns) - 1
        widths = self._widths
        for i, column in enumerate(self.columns):
            text, style_key = row[i] if i < len(row) else ("", "")
            width = widths[i]
            if cell_len(text) > width:
                text = set_cell_size(text, width - 1) + "…" if width > 1 else text[:width]
            elif column.align == "right":
                text = " " * (width - cell_len(text)) + text
            else:
                text = set_cell_size(text, width)
            put(text, self._cell_style(kind, style_key) if style_key else line_style)
            if i != last:
                put(" ", line_style)
        # Padded to the view, in the line's style, so the strip is drawn as it is.
        if self._strip_width > self._width:
            put(" " * (self._strip_width - self._width), line_style)
        segments = [Segment("".join(parts), style) for style, parts in runs]
        return Strip(segments, max(self._width, self._strip_width))

    def _row_strip(self, key: str, kind: int) -> Strip:
        strip = self._strips.get((key, kind))
        if strip is None:
            strip = self._render_cells(self._rows[key], kind, self._line_style(kind))
            self._strips[(key, kind)] = strip
            self.rendered_rows += 1
        return strip

    def _header_style(self) -> Style:
        return self._base_style() + self._component("header")

    def _header_strip(self) -> Strip:
        if self._header is None:
            row = tuple((column.label, "") for column in self.columns)
            self._header = self._render_cells(row, _PLAIN, self._header_style())
        return self._header

    def render_line(self, y: int) -> Strip:
        """Line 0 is the header; the rest are rows from the scroll offset down."""
        scroll_x, scroll_y, width = self._view or self._current_view()
        if y == 0:
            return _fit(self._header_strip(), scroll_x, width, self._header_style())
        index = scroll_y + y - 1
        if index >= len(self._keys):
            base = self._base_style()
            if index == 0 and self.empty_text:
                text = set_cell_size(self.empty_text, max(width, 0))
                return Strip([Segment(text, base + self._component("empty"))], width)
            return Strip.blank(width, base)
        kind = _PLAIN
        if self.show_cursor and index == self._cursor_row:
            kind = _CURSOR if self.has_focus else _CURSOR_BLURRED
        self._row_at(index)  # computes it from the source if it is not current
        strip = self._row_strip(self._keys[index], kind)
        return _fit(strip, scroll_x, width, self._line_style(kind))


def _fit(strip: Strip, scroll_x: int, width: int, style: Style) -> Strip:
    """The part of ``strip`` in a view ``width`` wide from ``scroll_x`` (as is, if it fits)."""
    if scroll_x == 0 and strip.cell_length == width:
        return strip
    return strip.crop_extend(scroll_x, scroll_x + width, style)
