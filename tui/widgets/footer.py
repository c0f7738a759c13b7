"""The footer of the console's screens: every key shown, on two rows if one is too narrow."""

from __future__ import annotations

from typing import ClassVar

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.events import Resize
from textual.widgets import Footer


class KeysFooter(Footer):
    """Textual's footer in its compact style, which wraps onto a second row when its keys
    do not fit on one (Textual's footer scrolls them off the right edge instead, under
    the command palette's key).

    On two rows the keys are laid out in a grid of half as many columns, each as
    wide as its widest key.
    """

    DEFAULT_CSS: ClassVar[str] = """
    KeysFooter { padding-left: 1; }
    KeysFooter.-two-rows {
        layout: grid;
        height: 2;
        grid-rows: 1;
        grid-columns: auto;
        grid-gutter: 0 1;
        FooterKey { margin: 0; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, compact=True)
        #: Cells the keys need on one row (palette key included), as last composed.
        self.needed_width = 0

    def compose(self) -> ComposeResult:
        yield from super().compose()
        # Footer sets as many grid columns as it has keys; two rows need half as many.
        columns = self.styles.grid_size_columns or 1
        self.styles.grid_size_columns = max(1, (columns + 1) // 2)
        self.needed_width = self._needed_width()
        self._fit(self.size.width or self.app.size.width)

    def _needed_width(self) -> int:
        """What one row of keys takes: each ``key description`` and its margin, the palette
        key with its border, as the compact style draws them."""
        app = self.app
        seen: set[str] = set()
        width = 1  # the padding on the left
        for _, binding, _, _ in self.screen.active_bindings.values():
            if binding.show and binding.action not in seen:
                seen.add(binding.action)
                width += cell_len(app.get_key_display(binding))
                width += 1 + cell_len(binding.description) + 1 if binding.description else 1
        if self.show_command_palette and app.ENABLE_COMMAND_PALETTE:
            palette = self.screen.active_bindings.get(app.COMMAND_PALETTE_BINDING)
            if palette is not None:
                binding = palette.binding
                width += 1 + cell_len(app.get_key_display(binding))
                width += 1 + cell_len(binding.description)
        return width

    def _fit(self, width: int) -> None:
        self.set_class(self.needed_width > width, "-two-rows")

    def on_resize(self, event: Resize) -> None:
        self._fit(event.size.width)
