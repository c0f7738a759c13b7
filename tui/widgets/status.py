"""The status bar: mode (PAPER or LIVE), feed, market time, engine state, policy, session clock."""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from tui import format as fmt

#: The parts of the bar, left to right; the last one is pushed to the right edge.
PARTS = ("brand", "mode", "feed", "market", "engine", "policy", "session")
ENGINE_STATES = ("starting", "running", "paused", "stopping", "stopped")
#: The words before a part's value, left out when the bar is too narrow for them.
_WORDS = {"policy": "policy ", "session": "session "}


class StatusBar(Widget):
    """One line across the top of the main screen.

    One widget that draws its parts as styled text (each padded by a space on
    either side), rather than a label per part: it is on every frame and on the
    path to the first one, and it never needs a layout pass. Colours are the
    component classes below, set from theme variables in ``themes/cma.tcss``.

    LIVE mode is drawn in the theme's ``$mode-live`` colour, reversed and
    blinking-free (blink is unreliable over SSH), with the words themselves, so it
    cannot be mistaken for paper trading on any terminal.
    """

    DEFAULT_CSS = """
    StatusBar { height: 1; }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "status-bar--brand",
        "status-bar--paper",
        "status-bar--live",
        "status-bar--muted",
        "status-bar--warn",
        "status-bar--policy",
        *(f"status-bar--engine-{state}" for state in ENGINE_STATES),
    }

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._texts: dict[str, str] = dict.fromkeys(PARTS, "")
        self._texts.update(brand="CMA", mode="PAPER")
        self._styles: dict[str, str] = {
            "brand": "brand",
            "mode": "paper",
            "feed": "muted",
            "market": "muted",
            "engine": "",
            "policy": "policy",
            "session": "muted",
        }

    # ---- what it shows ------------------------------------------------------------

    @property
    def live(self) -> bool:
        """Whether the bar shows LIVE mode."""
        return self._styles["mode"] == "live"

    def part(self, name: str) -> str:
        """The text of one part (one of :data:`PARTS`), without its padding."""
        return self._texts[name]

    def _set(self, name: str, text: str, style: str | None = None) -> None:
        style = self._styles[name] if style is None else style
        if self._texts[name] != text or self._styles[name] != style:
            self._texts[name] = text
            self._styles[name] = style
            self.refresh()

    def set_mode(self, mode: str) -> None:
        """Show the trading mode; anything but PAPER is treated as live money."""
        live = mode.upper() != "PAPER"
        self._set("mode", " LIVE — REAL MONEY " if live else "PAPER", "live" if live else "paper")
        if self.is_attached:
            self.screen.set_class(live, "-live")

    def set_feed(self, text: str, *, warn: bool = False) -> None:
        """The feed; ``warn`` draws it in the warning colour (stale data, breaker open)."""
        self._set("feed", fmt.one_line(text, 40), "warn" if warn else "muted")

    def set_market(self, ts_ms: int) -> None:
        self._set("market", fmt.market_time(ts_ms))

    def set_engine(self, state: str) -> None:
        self._set("engine", state, f"engine-{state}" if state in ENGINE_STATES else "")

    def set_policy(self, policy: str, auto_confidence: float) -> None:
        text = f"auto {fmt.threshold(auto_confidence)}" if policy == "auto" else policy
        self._set("policy", f"policy {text}")

    def set_session(self, elapsed_seconds: float) -> None:
        self._set("session", f"session {fmt.clock(elapsed_seconds)}")

    # ---- drawing ------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.refresh()

    def _style(self, name: str) -> Style:
        key = self._styles[name]
        return self.get_component_rich_style(f"status-bar--{key}") if key else Style()

    def render(self) -> Text:
        left, right = self._parts(short=False)
        if left.cell_len + right.cell_len >= self.size.width:
            # Too narrow (80 columns in LIVE mode, say): the values without their words.
            left, right = self._parts(short=True)
        gap = self.size.width - left.cell_len - right.cell_len
        if gap > 0:
            left.append(" " * gap)
            left.append_text(right)
        return left

    def _parts(self, *, short: bool) -> tuple[Text, Text]:
        """The parts on the left, and the session clock on the right."""
        line = Text(no_wrap=True, overflow="ellipsis", end="")
        # The tabbed layout (small terminals) has no room for the feed, unless it warns.
        compact = self.is_attached and self.screen.has_class("-compact")
        for name in PARTS[:-1]:
            if compact and name == "feed" and self._styles["feed"] != "warn":
                continue  # a stale feed or an open breaker is shown even there
            text = self._texts[name]
            if short:
                text = text.removeprefix(_WORDS.get(name, ""))
            style = self._style(name)
            # The padding takes the part's background (as a label's padding would), not
            # its text style: a reversed part is reversed only under its words.
            pad = Style(bgcolor=style.bgcolor)
            line.append(" ", pad)
            line.append(text, style)
            line.append(" ", pad)
        session = self._texts["session"]
        if short:
            session = session.removeprefix(_WORDS["session"])
        return line, Text(f" {session} ", self._style("session"), end="")
