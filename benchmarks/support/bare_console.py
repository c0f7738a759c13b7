"""The baseline of ``benchmarks/tui_startup.py``: a bare Textual app with the console's layout.

It imports only ``textual`` and composes what ``tui/screens/main.py`` composes at
120×40 (the wide layout): a one-line status bar, the Proposals (with its votes
strip), Positions and Activity panes on the left, Risk and Equity on the right
(40 columns), and a footer with the main screen's key bindings. Every pane is
empty: no engine, no store, no themes, no charts. It is what "a bare Textual app
that shows the same layout empty" means in the performance targets of issue 4.

It lives in ``benchmarks/support/`` so that ``make bench`` (which runs
``benchmarks/*.py``) does not start it as a benchmark of its own. Run by hand:
``.venv/bin/python benchmarks/support/bare_console.py`` (``q`` quits).
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer, Label


class EmptyTable(ScrollView, can_focus=True):
    """An empty line-API widget where the console has a table."""

    DEFAULT_CSS = "EmptyTable { height: 1fr; border: none; }"

    def render_line(self, y: int) -> Strip:
        return Strip.blank(self.size.width, self.rich_style)


class BareConsole(App[None]):
    """Status bar, five titled panes, footer: the console's layout with nothing in it."""

    CSS = """
    #status { height: 1; background: $panel; }
    #status > Label { width: auto; padding: 0 1; }
    #status > #spacer { width: 1fr; }
    .pane { border: round $secondary; border-title-style: bold; background: $surface; }
    .pane:focus-within { border: round $primary; }
    #wide { height: 1fr; }
    #left { width: 1fr; }
    #right { width: 40; }
    #proposals-pane { height: 45%; }
    #positions-pane { height: 30%; }
    #activity-pane { height: 1fr; }
    #risk-pane { height: 13; }
    #equity-pane { height: 1fr; }
    #votes { height: 6; border-top: solid $secondary; }
    """

    # The main screen's bindings, so the footer shows the same keys (the footer shows
    # one key per action, so each has its own, doing nothing).
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "approve", "Approve"),
        Binding("r", "reject", "Reject"),
        Binding("s", "resize", "Resize"),
        Binding("enter", "detail", "Detail"),
        Binding("A", "policy", "Policy"),
        Binding("x", "close_position", "Close"),
        Binding("X", "close_all", "Close all"),
        Binding("p", "pause", "Pause"),
        Binding("h", "halt", "Halt"),
        Binding("e", "export", "Report"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def compose(self) -> ComposeResult:
        with Horizontal(id="status"):
            yield Label("CMA")
            yield Label("PAPER")
            yield Label("", id="spacer")
        with Horizontal(id="wide"):
            with Vertical(id="left"):
                with Vertical(id="proposals-pane", classes="pane") as pane:
                    pane.border_title = "Proposals"
                    yield EmptyTable(id="proposals")
                    yield EmptyTable(id="votes")
                with Vertical(id="positions-pane", classes="pane") as pane:
                    pane.border_title = "Positions"
                    yield EmptyTable()
                with Vertical(id="activity-pane", classes="pane") as pane:
                    pane.border_title = "Activity"
                    yield EmptyTable()
            with Vertical(id="right"):
                with Vertical(id="risk-pane", classes="pane") as pane:
                    pane.border_title = "Risk"
                with Vertical(id="equity-pane", classes="pane") as pane:
                    pane.border_title = "Equity"
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#proposals", EmptyTable).focus()

    def _noop(self) -> None:
        pass

    action_approve = action_reject = action_resize = action_detail = action_policy = _noop
    action_close_position = action_close_all = action_pause = action_halt = _noop
    action_export = action_help = _noop


if __name__ == "__main__":
    BareConsole().run()
