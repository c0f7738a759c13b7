"""What every pane shares: the bordered region, the live table of keyed items, the side cell."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Generic, TypeVar

from textual.containers import Vertical

from engine.models import Side
from tui.widgets.table import Cell, RowSource, VirtualTable, cell

T = TypeVar("T")


def side_cell(side: Side) -> Cell:
    """The side of a proposal or position, coloured (and spelled out, never colour alone)."""
    return cell(side.value, side.value)


class Pane(Vertical):
    """A titled, bordered region of the main screen."""

    DEFAULT_CSS = """
    Pane { height: 1fr; }
    """


class LivePane(Pane, Generic[T]):
    """A pane around one live table of keyed items (proposals, positions).

    Each push hands the table the keys and a row function (``VirtualTable.set_source``),
    so a frame formats the rows on screen, not every item. Cells that change only
    with the item are cached by key in ``_static``, forgotten when the key goes.
    """

    #: The pane's title; a count follows it while there are items.
    TITLE: ClassVar[str]
    #: The id of the pane's live table.
    TABLE_ID: ClassVar[str]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = self.TITLE
        self._items: Sequence[T] = ()
        self._keys: list[str] = []
        self._static: dict[str, tuple[object, tuple[Cell, ...]]] = {}

    def key_of(self, item: T) -> str:
        raise NotImplementedError

    @property
    def table(self) -> VirtualTable:
        return self.query_one(f"#{self.TABLE_ID}", VirtualTable)

    @property
    def selected(self) -> T | None:
        """The item under the cursor, if any."""
        table = self.table
        key, index, items = table.cursor_key, table.cursor_row, self._items
        if key is None or index >= len(items) or self.key_of(items[index]) != key:
            return None
        return items[index]

    def _push(self, items: tuple[T, ...], row: RowSource) -> None:
        keys = [self.key_of(item) for item in items]
        if keys != self._keys:
            self._keys = keys
            alive = set(keys)
            for gone in [key for key in self._static if key not in alive]:
                del self._static[gone]
        self._items = items
        self.table.set_source(keys, row)
        title = f"{self.TITLE} ({len(items)})" if items else self.TITLE
        if self.border_title != title:
            self.border_title = title
