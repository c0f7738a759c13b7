"""Cheap label updates: a label is touched only when its text changes.

``Static.update`` refreshes with a layout pass by default, and every layout
pass also redraws the scrollbars of the virtual tables in a second frame. A
live pane sets the same text many times a second, so this skips unchanged
text and asks for layout only when the text's width changes.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

_LAST = "_cma_last_text"


def set_text(widget: Static, text: Text, *, layout: bool | None = None) -> bool:
    """Show ``text`` in ``widget`` unless it already shows it; True if it changed.

    ``layout`` None asks for a layout pass only when the width changed; pass
    False for a widget whose size the stylesheet fixes.
    """
    last: Text | None = getattr(widget, _LAST, None)
    if last is not None and last == text:
        return False
    if layout is None:
        layout = last is None or last.cell_len != text.cell_len or "\n" in text.plain
    setattr(widget, _LAST, text)
    widget.update(text, layout=layout)
    return True
