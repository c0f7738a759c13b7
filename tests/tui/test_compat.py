"""The private Textual parts behind ``tui.compat`` are still there and still behave.

An upgrade of Textual that renames or reshapes one of them fails here, with the name,
the installed version and the version ``tui.compat`` was written for, rather than as
a console that hangs on a hang-up, types keys out of order or starts in wrong colours.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import io
import os
import re
import signal
import sys
import textwrap
import threading
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.drivers._writer_thread import WriterThread
from textual.filter import ANSIToTruecolor
from textual.screen import ModalScreen, Screen
from textual.widgets import Input

from tui import compat
from tui.driver import HangUpSafeDriver
from tui.screens.modals import ConfirmDialog, InOrderInput

TUI = Path(compat.__file__).resolve().parent
INSTALLED = version("textual")


def upgrade(what: str) -> str:
    """The failure message: what changed, on which Textual, against which it was written."""
    return (
        f"Textual {INSTALLED} (tui.compat was written for {compat.TEXTUAL_TESTED}): {what}. "
        "See tui/compat.py."
    )


def _owner(p: compat.PrivateName) -> type[Any]:
    owner = getattr(importlib.import_module(p.module), p.owner, None)
    assert isinstance(owner, type), upgrade(f"{p.module}.{p.owner} is gone")
    return owner


def _assigned_in_init(cls: type[Any], name: str) -> bool:
    """Whether ``cls.__init__`` (or a base's) sets ``self.<name>``."""
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None or not inspect.isfunction(init):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and node.attr == name
            ):
                return True
    return False


def _self_attributes(function: Any) -> set[str]:
    """Every ``self.<name>`` a function reads or calls."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    }


def _where(p: compat.PrivateName) -> str:
    return f"{p.owner or p.module}.{p.name}"


@pytest.mark.parametrize("private", compat.PRIVATE_NAMES, ids=_where)
def test_each_private_name_still_exists(private: compat.PrivateName) -> None:
    if private.owner:
        owner = _owner(private)
        found = hasattr(owner, private.name) or _assigned_in_init(owner, private.name)
    else:  # a module's function
        found = callable(getattr(importlib.import_module(private.module), private.name, None))
    assert found, upgrade(f"{_where(private)} is gone ({private.used_by} needs another way)")


def test_every_private_textual_name_is_used_only_behind_the_adapter() -> None:
    """The private names appear in tui/compat.py only (but for the two overrides)."""
    allowed = {
        "_sigcont_application": {"compat.py", "driver.py"},
        "_on_key": {"compat.py", "screens/modals.py"},
    }
    for private in compat.PRIVATE_NAMES:
        pattern = re.compile(rf"\b{private.name}\b")
        users = {
            str(path.relative_to(TUI))
            for path in TUI.rglob("*.py")
            if pattern.search(path.read_text(encoding="utf-8"))
        }
        assert users <= allowed.get(private.name, {"compat.py"}), (
            f"{private.name} used outside tui/compat.py: {sorted(users)}"
        )


# ---- the initial theme -----------------------------------------------------------------


def test_the_theme_watcher_does_only_what_the_initial_theme_copies_or_leaves_out() -> None:
    """``apply_theme_before_start`` does the watcher's steps but the refresh and signal.

    A new step in ``App._watch_theme`` may be one the initial theme must copy too.
    """
    copied = {
        "current_theme",
        "classes",
        "update_classes",
        "_refresh_truecolor_filter",
        "ansi_theme",
    }
    left_out = {"_invalidate_css", "call_next", "refresh_css", "theme_changed_signal"}
    steps = _self_attributes(App._watch_theme)
    assert steps == copied | left_out, upgrade(
        f"App._watch_theme now uses {sorted(steps - copied - left_out)} and no longer "
        f"{sorted((copied | left_out) - steps)}: check apply_theme_before_start"
    )
    parameters = list(inspect.signature(App._refresh_truecolor_filter).parameters)
    assert parameters == ["self", "theme"], upgrade(
        f"App._refresh_truecolor_filter takes {parameters}"
    )


def _theme_state(app: App[Any]) -> tuple[object, ...]:
    filters = [f for f in app._filters if isinstance(f, ANSIToTruecolor)]
    assert len(filters) == 1, upgrade(f"the app has {len(filters)} ANSI-to-truecolor filters")
    return (
        sorted(c for c in app.classes if c.startswith("-theme-") or c.endswith("-mode")),
        filters[0]._terminal_theme,
        dict(app.stylesheet._variables),
    )


async def test_the_initial_theme_leaves_the_app_as_a_theme_change_would() -> None:
    """Classes, the ANSI colour filter and the stylesheet's variables match a real change."""
    changed: App[None] = App()
    async with changed.run_test() as pilot:
        changed.theme = "textual-light"  # from the dark default: every part changes
        await pilot.pause()
        expected = _theme_state(changed)

    started: App[None] = App()
    before = _theme_state(started)
    started.set_reactive(App.theme, "textual-light")
    compat.apply_theme_before_start(started, started.get_css_variables())
    assert _theme_state(started) == expected
    assert before[:2] != expected[:2]  # (the comparison shows something)


# ---- the dialogs' InOrderInput ---------------------------------------------------------


class _Dialog(ModalScreen[None]):
    def __init__(self, field: type[Input]) -> None:
        super().__init__()
        self.field = field

    def compose(self) -> ComposeResult:
        yield self.field(value="abc")


async def _burst(field: type[Input]) -> str:
    """Three backspaces then "30", posted at once as a fast typist's keys arrive."""
    app: App[None] = App()
    async with app.run_test() as pilot:
        await app.push_screen(_Dialog(field))
        entry = app.screen.query_one(Input)
        entry.focus()
        await pilot.pause()
        entry.cursor_position = len(entry.value)
        for key in ("backspace", "backspace", "backspace", "3", "0"):
            app.post_message(events.Key(key, key if len(key) == 1 else None))
        await pilot.pause()
        await pilot.pause()
        return entry.value


async def test_the_modal_binding_chain_starts_at_the_focused_input() -> None:
    app: App[None] = App()
    async with app.run_test() as pilot:
        await app.push_screen(_Dialog(InOrderInput))
        entry = app.screen.query_one(InOrderInput)
        entry.focus()
        await pilot.pause()
        chain = compat.modal_binding_chain(app.screen)
        assert isinstance(vars(Screen)["_modal_binding_chain"], property), upgrade(
            "Screen._modal_binding_chain is no longer a property"
        )
        node, bindings = chain[0]
        assert node is entry, upgrade("the binding chain no longer starts at the focused node")
        assert "backspace" in bindings.key_to_bindings, upgrade(
            "BindingsMap.key_to_bindings no longer maps keys to an Input's bindings"
        )


def test_in_order_input_overrides_the_key_handler_input_still_has() -> None:
    handler = Input._on_key
    assert inspect.iscoroutinefunction(handler), upgrade("Input._on_key is not a coroutine")
    assert list(inspect.signature(handler).parameters) == ["self", "event"], upgrade(
        f"Input._on_key takes {list(inspect.signature(handler).parameters)}"
    )
    assert "_on_key" in vars(InOrderInput)


async def test_in_order_input_applies_a_burst_of_keys_in_order() -> None:
    assert await _burst(InOrderInput) == "30"


async def test_a_plain_input_still_reorders_a_burst_so_in_order_input_is_still_needed() -> None:
    assert await _burst(Input) != "30", upgrade(
        "Textual issue #6605 is fixed (a plain Input keeps a burst of keys in order): "
        "InOrderInput and compat.modal_binding_chain can go"
    )


# ---- the keymap check ----------------------------------------------------------------


def test_merged_bindings_include_the_inherited_ones() -> None:
    own = {b.key for b in vars(ConfirmDialog)["BINDINGS"] if isinstance(b, Binding)}
    merged = compat.merged_bindings(ConfirmDialog).key_to_bindings
    assert "escape" in merged and "escape" not in own, upgrade(  # the escape of Dialog
        "DOMNode._merged_bindings no longer holds a class's inherited bindings"
    )


@pytest.mark.parametrize(
    ("character", "key"), [("?", "question_mark"), ("+", "plus"), ("a", "a"), ("1", "1")]
)
def test_key_name_is_the_name_textual_gives_a_typed_character(character: str, key: str) -> None:
    assert compat.key_name(character) == key, upgrade(
        f"textual.keys._character_to_key({character!r}) is {compat.key_name(character)!r}"
    )


# ---- the hang-up safe driver -----------------------------------------------------------


class _GoneApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.gone = 0

    def terminal_gone(self) -> None:
        self.gone += 1


@pytest.fixture
def saved_signals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """LinuxDriver installs SIGTSTP and SIGCONT handlers: put the test runner's back.

    It also reads ``sys.__stdin__``, which is None where the tests run with stdin closed.
    """
    with open(os.devnull, encoding="utf-8") as stdin:
        monkeypatch.setattr(sys, "__stdin__", stdin)
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTSTP, signal.SIGCONT)}
        yield
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@pytest.mark.usefixtures("saved_signals")
async def test_the_driver_reaches_its_app_and_writer_and_handles_sigcont() -> None:
    app = _GoneApp()
    driver = HangUpSafeDriver(app)
    assert compat.driver_app(driver) is app, upgrade("Driver._app is not the app")
    assert compat.writer_thread(driver) is None, upgrade(
        "LinuxDriver._writer_thread is not None before application mode"
    )
    assert issubclass(WriterThread, threading.Thread), upgrade("WriterThread is not a Thread")
    # LinuxDriver installs _sigcont_application as the SIGCONT handler: the override runs.
    assert signal.getsignal(signal.SIGCONT) == driver._sigcont_application, upgrade(
        "LinuxDriver no longer handles SIGCONT with _sigcont_application"
    )


@pytest.mark.usefixtures("saved_signals")
async def test_a_dead_writer_drops_output_and_tells_the_app_once() -> None:
    app = _GoneApp()
    driver = HangUpSafeDriver(app)
    driver._app_loop = asyncio.get_running_loop()
    dead = WriterThread(io.StringIO())  # never started: not alive, as after an EIO
    driver._writer_thread = dead
    driver.write("lost")
    driver.write("lost again")
    driver.close()  # returns at once: no sentinel queued for a thread that is gone
    driver._sigcont_application()  # a hang-up's SIGCONT: nothing to resume
    await asyncio.sleep(0)
    assert app.gone == 1
    assert dead._queue.qsize() == 0
