"""The status bar: mode (PAPER or LIVE), feed, market time, engine state, policy, session clock."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label

from tui import format as fmt
from tui.widgets.text import set_text


class StatusBar(Horizontal):
    """One line across the top of the main screen.

    LIVE mode is drawn in the theme's ``$mode-live`` colour, reversed and
    blinking-free (blink is unreliable over SSH), with the word itself, so it
    cannot be mistaken for paper trading on any terminal.
    """

    DEFAULT_CSS = """
    StatusBar { height: 1; }
    StatusBar > Label { width: auto; padding: 0 1; }
    StatusBar > #status-spacer { width: 1fr; padding: 0; }
    """

    def compose(self) -> ComposeResult:
        yield Label("CMA", id="status-brand")
        yield Label("PAPER", id="status-mode")
        yield Label("", id="status-feed")
        yield Label("", id="status-market")
        yield Label("", id="status-engine")
        yield Label("", id="status-policy")
        yield Label("", id="status-spacer")
        yield Label("", id="status-session")

    def _label(self, widget_id: str) -> Label | None:
        # None while the bar is not composed (or is being torn down by a layout change).
        found = self.query(f"#{widget_id}")
        return found.first(Label) if found else None

    def set_mode(self, mode: str) -> None:
        """Show the trading mode; anything but PAPER is treated as live money."""
        label = self._label("status-mode")
        if label is None:
            return
        live = mode.upper() != "PAPER"
        set_text(label, Text(" LIVE — REAL MONEY " if live else "PAPER"))
        label.set_class(live, "-live")
        label.set_class(not live, "-paper")
        self.screen.set_class(live, "-live")

    def set_feed(self, text: str) -> None:
        if (label := self._label("status-feed")) is not None:
            set_text(label, Text(fmt.one_line(text, 40)))

    def set_market(self, ts_ms: int) -> None:
        if (label := self._label("status-market")) is not None:
            set_text(label, Text(fmt.market_time(ts_ms)))

    def set_engine(self, state: str) -> None:
        if (label := self._label("status-engine")) is None:
            return
        set_text(label, Text(state))
        for name in ("starting", "running", "paused", "stopping", "stopped"):
            label.set_class(name == state, f"-{name}")

    def set_policy(self, policy: str, auto_confidence: float) -> None:
        text = f"auto ≥ {fmt.confidence(auto_confidence)}" if policy == "auto" else policy
        if (label := self._label("status-policy")) is not None:
            set_text(label, Text(f"policy {text}"))

    def set_session(self, elapsed_seconds: float) -> None:
        if (label := self._label("status-session")) is not None:
            set_text(label, Text(f"session {fmt.clock(elapsed_seconds)}"))
