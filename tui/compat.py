"""Textual's private parts the console relies on, each behind one small adapter.

Textual offers no public way to do these four things:

* start on a theme without the stylesheet rebuild a theme change costs
  (:func:`apply_theme_before_start`, a copy of ``App._watch_theme``'s steps);
* run an :class:`~textual.widgets.Input`'s own bindings in order with the typed
  characters, a workaround for Textual issue #6605 (:func:`modal_binding_chain`, for
  the dialogs' ``InOrderInput``, which also overrides ``Input._on_key``);
* notice a terminal that went away and ignore the SIGCONT of a hang-up
  (:func:`writer_thread` and :func:`driver_app`, for ``tui.driver``, whose
  ``HangUpSafeDriver`` also overrides ``LinuxDriver._sigcont_application``);
* check ``ui.keymap`` against the bindings of each class before any is made
  (:func:`merged_bindings` and :func:`key_name`, for ``tui.validate``).

They are written for :data:`TEXTUAL_TESTED` (pyproject.toml allows ``textual>=8.2,<9``).
:data:`PRIVATE_NAMES` lists every private name used; ``tests/tui/test_compat.py`` checks
each still exists with the shape used here, so an upgrade that moves one fails there,
naming it and the installed version, instead of hanging or drawing wrong colours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from textual.app import App
    from textual.binding import BindingsMap
    from textual.dom import DOMNode
    from textual.driver import Driver
    from textual.drivers._writer_thread import WriterThread
    from textual.drivers.linux_driver import LinuxDriver
    from textual.screen import Screen

#: The Textual release these adapters were written for and checked against.
TEXTUAL_TESTED = "8.2"


class PrivateName(NamedTuple):
    """One private Textual name the console uses: where it lives and who needs it."""

    module: str
    owner: str
    name: str
    used_by: str


PRIVATE_NAMES: tuple[PrivateName, ...] = (
    PrivateName("textual.app", "App", "_watch_theme", "apply_theme_before_start copies it"),
    PrivateName("textual.app", "App", "_refresh_truecolor_filter", "apply_theme_before_start"),
    PrivateName("textual.screen", "Screen", "_modal_binding_chain", "modal_binding_chain"),
    PrivateName(
        "textual.widgets", "Input", "_on_key", "tui.screens.modals.InOrderInput overrides it"
    ),
    PrivateName("textual.dom", "DOMNode", "_merged_bindings", "merged_bindings"),
    PrivateName("textual.keys", "", "_character_to_key", "key_name"),
    PrivateName("textual.driver", "Driver", "_app", "driver_app"),
    PrivateName("textual.drivers.linux_driver", "LinuxDriver", "_writer_thread", "writer_thread"),
    PrivateName(
        "textual.drivers.linux_driver",
        "LinuxDriver",
        "_sigcont_application",
        "tui.driver.HangUpSafeDriver overrides it",
    ),
)


def apply_theme_before_start(app: App[Any], variables: dict[str, str]) -> None:
    """Apply ``app.theme`` (just set with ``set_reactive``) as ``App._watch_theme`` would.

    The watcher also schedules ``refresh_css`` (reparse every stylesheet) and publishes
    ``theme_changed_signal``; before the app runs there is nothing to refresh and no
    one listening, so this gives the stylesheet, not yet parsed, ``variables`` (from
    ``app.get_css_variables()``) instead.
    """
    theme = app.current_theme
    classes = {c: False for c in app.classes if c.startswith("-theme-")}
    classes.update(
        {f"-theme-{app.theme}": True, "-dark-mode": theme.dark, "-light-mode": not theme.dark}
    )
    app.update_classes(classes, update=False)
    # The ANSI-to-truecolor filter maps the 16 ANSI colours through the theme's palette.
    app._refresh_truecolor_filter(app.ansi_theme)
    app.stylesheet.set_variables(variables)


def modal_binding_chain(screen: Screen[Any]) -> list[tuple[DOMNode, BindingsMap]]:
    """The nodes whose bindings a key on ``screen`` may run, focused node first."""
    return screen._modal_binding_chain


def writer_thread(driver: LinuxDriver) -> WriterThread | None:
    """The thread that writes ``driver``'s output (None outside application mode)."""
    return driver._writer_thread


def driver_app(driver: Driver) -> App[Any]:
    """The app ``driver`` drives."""
    return driver._app


def merged_bindings(cls: type[DOMNode]) -> BindingsMap:
    """The bindings of widget, screen or app class ``cls``, its bases' merged in.

    Textual merges them when the class is made; ``BINDINGS`` alone misses the inherited.
    """
    merged = cls._merged_bindings
    if merged is None:  # DOMNode itself: every subclass has its merged map
        raise AssertionError(f"{cls.__name__} has no merged bindings")
    return merged


def key_name(character: str) -> str:
    """The key Textual names a typed ``character`` (``?`` is ``question_mark``)."""
    from textual.keys import _character_to_key

    return _character_to_key(character)
