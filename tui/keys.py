"""Key bindings: the app-wide ones, those shared by several screens, and every class that
has some (what ``ui.keymap`` may remap). Kept apart so the main screen does not import the
dialogs, which load after the first frame."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textual.binding import Binding

#: ``?`` (and F1) on every screen: help for every binding of that screen.
HELP_BINDING = Binding("question_mark,f1", "app.help", "Help", id="help")

#: The app-wide keys: quit, help, the command palette.
APP_BINDINGS: tuple[Binding, ...] = (
    Binding("q", "request_quit", "Quit", id="quit", tooltip="Quit (asks about open positions)"),
    Binding(
        "ctrl+q",
        "request_quit",
        "Quit",
        id="quit-ctrl",
        show=False,
        priority=True,
        tooltip="Quit (asks about open positions)",
    ),
    Binding(
        "question_mark,f1",
        "help",
        "Help",
        id="help",
        tooltip="Every key of this screen",
    ),
    Binding(
        "ctrl+p",
        "command_palette",
        "Palette",
        id="command-palette",
        show=False,
        priority=True,
        tooltip="Command palette: every action, and themes",
    ),
)


def binding_classes() -> list[type[Any]]:
    """Every class of the console that defines key bindings."""
    from tui.app import CmaApp
    from tui.screens import modals
    from tui.screens.detail import ProposalDetailScreen
    from tui.screens.help import HelpScreen
    from tui.screens.main import MainScreen
    from tui.screens.recovery import RecoveryScreen
    from tui.widgets.table import VirtualTable

    return [
        CmaApp,
        MainScreen,
        ProposalDetailScreen,
        RecoveryScreen,
        HelpScreen,
        VirtualTable,
        modals.Dialog,
        modals.ConfirmDialog,
        modals.RejectDialog,
        modals.ResizeDialog,
        modals.PolicyDialog,
        modals.FloorConfirmDialog,
        modals.QuitDialog,
    ]


def known_binding_ids() -> set[str]:
    """Every binding id the console defines (what ``ui.keymap`` may remap)."""
    return {
        binding.id
        for cls in binding_classes()
        for binding in cls.BINDINGS
        if isinstance(binding, Binding) and binding.id
    }


def usable_keymap(keymap: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """``ui.keymap`` without the ids no binding has, and a warning naming those (None: none).

    An unknown id is reported, not fatal (``cma config check`` says more)."""
    usable = dict(keymap)
    unknown = sorted(set(usable) - known_binding_ids())
    for binding_id in unknown:
        del usable[binding_id]
    if not unknown:
        return usable, None
    return usable, f"ui.keymap: no binding with id {', '.join(unknown)} (see ? for ids)"
