"""The risk pane: the trading state in large letters, each limit against its value, the
last denials."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.console import Group
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget

from engine.models import TradingState
from tui import format as fmt
from tui.widgets.bigtext import BigText
from tui.widgets.panes.base import Pane

if TYPE_CHECKING:
    from engine.risk import RiskSnapshot


def _bar(fraction: float, width: int = 10) -> str:
    filled = max(0, min(width, round(fraction * width)))
    return "█" * filled + "░" * (width - filled)


def _limit(
    label: str, used: float, limit: float, text: str | None = None, warn_at: float | None = None
) -> tuple[str, str, float, str]:
    """A limit's line for :class:`RiskFigures`: label, value text (percentages unless
    given), fraction used and level."""
    if text is None:
        text = f"{fmt.percent(used)} / {fmt.percent(limit)}"
    return label, text, used / limit if limit > 0 else 1.0, _level(used, limit, warn_at)


def _level(used: float, limit: float, warn_at: float | None = None) -> str:
    """CSS class of a value against its limit: ok, warn (near or past a soft limit) or over."""
    if limit > 0 and used >= limit:
        return "over"
    if warn_at is not None and used >= warn_at:
        return "warn"
    if limit > 0 and used >= 0.8 * limit:
        return "warn"
    return "ok"


class RiskFigures(Widget):
    """Under the state: its reason, each limit against its value (with a bar), the last denials.

    One widget drawing styled lines rather than a label per line: fewer widgets
    to style and lay out on every start. The styles are the component classes
    below (``themes/cma.tcss``); a limit's line is ok, warn (near or past a soft
    limit) or over.
    """

    DEFAULT_CSS = """
    RiskFigures { height: auto; padding: 0 1; }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "risk-figures--muted",
        "risk-figures--title",
        "risk-figures--ok",
        "risk-figures--warn",
        "risk-figures--over",
    }

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._reason = ""
        #: (label, value text, fraction used, level) of each limit.
        self._limits: list[tuple[str, str, float, str]] = []
        self._denials: list[str] = []

    def show(
        self, reason: str, limits: list[tuple[str, str, float, str]], denials: list[str]
    ) -> None:
        if (reason, limits, denials) != (self._reason, self._limits, self._denials):
            layout = (len(limits), len(denials)) != (len(self._limits), len(self._denials))
            self._reason, self._limits, self._denials = reason, limits, denials
            self.refresh(layout=layout)

    def render(self) -> Group:
        def style(name: str) -> Style:
            return self.get_component_rich_style(f"risk-figures--{name}")

        parts: list[Text] = [Text(self._reason, style("muted"))]
        # The bar takes what room is left, up to 10 cells (8 in the 40-column Risk pane).
        bar_width = max(0, min(10, self.size.width - 11 - 14 - 1))
        for label, text, fraction, level in self._limits:
            bar = f" {_bar(fraction, bar_width)}" if bar_width >= 3 else ""
            line = Text(f"{label:<11}{text:<14}{bar}", style(level), no_wrap=True)
            line.overflow = "ellipsis"
            parts.append(line)
        parts.append(Text("\nLast denials", style("title")))
        for denial in self._denials or ["none"]:
            parts.append(Text(denial, style("muted"), no_wrap=True, overflow="ellipsis"))
        return Group(*parts)


class RiskPane(Pane, can_focus=True):
    """The trading state in large letters, each limit against its value, and the last denials."""

    DEFAULT_CSS = """
    RiskPane { height: auto; }
    """

    def __init__(self, *, id: str | None = "risk-pane") -> None:
        super().__init__(id=id)
        self.border_title = "Risk"
        self._last: RiskSnapshot | None = None

    def compose(self) -> ComposeResult:
        yield BigText("", id="trading-state")
        yield RiskFigures(id="risk-figures")

    def show(self, snap: RiskSnapshot | None) -> None:
        """Draw ``snap`` (None while the engine starts)."""
        if snap is None or snap == self._last:
            return
        self._last = snap
        state = self.query_one("#trading-state", BigText)
        state.set_word(snap.state.value)
        for s in TradingState:
            state.set_class(s is snap.state, f"-{s.value.lower()}")
        reason = fmt.one_line(snap.state_reason, 120) if snap.state_reason else ""
        limits = [
            _limit("Exposure", snap.total_exposure, snap.max_total_exposure),
            _limit("Daily loss", snap.daily_loss, snap.max_daily_loss),
            _limit("Drawdown", snap.drawdown, snap.max_drawdown, warn_at=snap.reduce_drawdown),
            _limit(
                "Positions",
                snap.open_positions,
                snap.max_open_positions,
                f"{snap.open_positions} / {snap.max_open_positions}",
            ),
        ]
        denials = [
            f"{fmt.market_hm(d.ts)[:5]} {fmt.one_line(d.symbol, 12):<9} "
            + fmt.one_line(d.reason, 100)
            for d in reversed(snap.denials[-5:])
        ]
        self.query_one(RiskFigures).show(reason, limits, denials)
