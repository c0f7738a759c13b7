"""The equity pane: equity and drawdown charts of an :class:`~tui.equity_series.EquitySeries`,
and today's realized and unrealized PnL."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from rich.cells import set_cell_size
from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Vertical
from textual.widget import Widget

from tui import format as fmt
from tui.equity_series import EquitySeries
from tui.widgets.panes.base import Pane

if TYPE_CHECKING:
    from textual_plotext import PlotextPlot


class EquityFigures(Protocol):
    """What the equity pane shows: an ``EquityUpdated`` event or the engine's snapshot."""

    @property
    def equity(self) -> Decimal: ...
    @property
    def cash(self) -> Decimal: ...
    @property
    def unrealized(self) -> Decimal: ...
    @property
    def realized_today(self) -> Decimal: ...
    @property
    def drawdown(self) -> float: ...


class EquityNumbers(Widget):
    """Equity and cash, then today's realized and the unrealized PnL, in two columns.

    One widget for the four figures (see :class:`RiskFigures`); a PnL is coloured
    by its direction, with ▲ or ▼ too (``fmt.pnl``). Its size is fixed, so new
    numbers never need a layout pass.
    """

    DEFAULT_CSS = """
    EquityNumbers { height: 2; padding: 0 1; }
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "equity-numbers--equity",
        "equity-numbers--cash",
        "equity-numbers--up",
        "equity-numbers--down",
        "equity-numbers--flat",
    }

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._cells: tuple[tuple[str, str], ...] = ()

    def show(self, figures: EquityFigures) -> None:
        today, unrealized = figures.realized_today, figures.unrealized
        cells = (
            (f"Equity {fmt.money(figures.equity)}", "equity"),
            (f"Cash {fmt.money(figures.cash)}", "cash"),
            (f"Today {fmt.pnl(today)}", fmt.direction(today)),
            (f"Unrealized {fmt.pnl(unrealized)}", fmt.direction(unrealized)),
        )
        if cells != self._cells:
            self._cells = cells
            self.refresh()

    def render(self) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis", end="")
        half = self.size.width - self.size.width // 2  # the left column takes the odd cell
        for row in (self._cells[:2], self._cells[2:]):
            if out:
                out.append("\n")
            for i, (text, key) in enumerate(row):
                style = self.get_component_rich_style(f"equity-numbers--{key}")
                width = half if i == 0 else self.size.width - half
                out.append(set_cell_size(text, width) if i == 0 else text, style)
        return out


class EquityPane(Pane, can_focus=True):
    """Equity and drawdown charts, and today's realized and unrealized PnL.

    The charts are redrawn by :meth:`replot`, which the app calls on an
    interval, and which does nothing while the pane is hidden or the series
    has not changed. They are mounted after the first frame: importing
    textual-plotext (and plotext) costs about a tenth of the console's start.
    """

    def __init__(self, series: EquitySeries, *, id: str | None = "equity-pane") -> None:
        super().__init__(id=id)
        self.border_title = "Equity"
        self.series = series
        self._plotted = (-1, -1, "")
        self._charts = False
        #: How many times the charts were drawn (tests check that hidden panes are skipped).
        self.replots = 0

    def compose(self) -> ComposeResult:
        yield EquityNumbers(id="equity-numbers")
        yield Vertical(id="equity-charts")

    def on_mount(self) -> None:
        after_first_frame = getattr(self.app, "after_first_frame", self.call_after_refresh)
        after_first_frame(self._mount_charts)

    def _mount_charts(self) -> None:
        if not self.is_attached:
            return
        from textual_plotext import PlotextPlot

        charts = self.query_one("#equity-charts", Vertical)
        charts.mount(PlotextPlot(id="equity-chart"), PlotextPlot(id="drawdown-chart"))
        self._charts = True
        self.call_after_refresh(self.replot)

    def show(self, figures: EquityFigures | None) -> None:
        """Update the numbers (cheap; the charts wait for :meth:`replot`)."""
        if figures is not None:
            self.query_one(EquityNumbers).show(figures)

    @property
    def visible_now(self) -> bool:
        """Whether any of the pane is on screen (hidden tabs and covered screens are not)."""
        return self.is_mounted and self.screen.is_current and self.region.area > 0

    def on_resize(self) -> None:
        # The first size (and a tab coming into view) is when a chart can first be drawn.
        self.call_after_refresh(self.replot)

    def replot(self, *, force: bool = False) -> bool:
        """Redraw the charts from the series if it changed and the pane is visible."""
        series = self.series
        if not (self._charts and self.visible_now):
            return False
        stamp = (series.version, self.region.area, self.app.theme)
        if stamp == self._plotted and not force:
            return False
        self._plotted = stamp
        self.replots += 1
        start = series.ts[0] if series.ts else 0
        # x: minutes into the series, labelled with market times (plotext's own labels
        # would be bare numbers).
        xs = [(x - start) / 60_000 for x in series.ts]
        variables = self.app.theme_variables
        up = Color.parse(variables.get("pnl-up", "green")).rgb
        down = Color.parse(variables.get("pnl-down", "red")).rgb
        # Drawdown is a loss from the peak: 0 or more, charted in percent from 0 up.
        drawdown = [max(0.0, d) * 100 for d in series.drawdown]
        y_ticks = fmt.percent_ticks(max(drawdown, default=0.0))

        def drawdown_plot(plt: Any) -> None:
            plt.plot(xs, drawdown, color=down, marker="braille", fillx=True)
            plt.ylim(0, y_ticks[-1][0])
            plt.yticks([v for v, _ in y_ticks], [label for _, label in y_ticks])

        self._draw(
            "#equity-chart",
            lambda plt: plt.plot(xs, series.equity, color=up, marker="braille"),
            "equity",
        )
        self._draw("#drawdown-chart", drawdown_plot, "drawdown")
        return True

    def _draw(self, selector: str, plot: Callable[[Any], object], label: str) -> None:
        chart: PlotextPlot = self.query_one(selector)  # type: ignore[assignment]
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(label)
        series = self.series
        # Two points at one market time (the first fills) are no span: plotext would
        # divide by zero.
        if len(series) >= 2 and series.ts[-1] > series.ts[0]:
            plot(plt)
            start, end = series.ts[0], series.ts[-1]
            # About one label per 9 cells of the plot ("HH:MM" or "Jan 05", and room).
            most = max(2, min(6, (chart.size.width - 10) // 9))
            ticks = fmt.time_ticks(start, end, most)
            plt.xlim(0, (end - start) / 60_000)
            plt.xticks([(ts - start) / 60_000 for ts, _ in ticks], [text for _, text in ticks])
        chart.refresh()
