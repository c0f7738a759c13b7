"""Key bindings shared by several screens (kept apart so the main screen does not
import the dialogs, which load after the first frame)."""

from __future__ import annotations

from textual.binding import Binding

#: ``?`` (and F1) on every screen: help for every binding of that screen.
HELP_BINDING = Binding("question_mark,f1", "app.help", "Help", id="help")
