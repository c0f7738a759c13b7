"""The main screen's panes: proposals, positions, risk, equity and activity.

Panes are fed plain domain objects (``Proposal``, ``Position``, ``RiskSnapshot``,
equity figures) by the app's redraw timer; they never call the engine.
Everything from outside (symbols, rationales, reasons) is drawn as text, never
parsed as markup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from rich.cells import set_cell_size
from rich.console import Group
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Vertical
from textual.widget import Widget

from engine.models import Position, Proposal, Side, TradingState
from tui import format as fmt
from tui.activity import ActivityEntry
from tui.widgets.bigtext import BigText
from tui.widgets.table import Cell, Column, Row, RowSource, VirtualTable, cell

if TYPE_CHECKING:
    from textual_plotext import PlotextPlot

    from engine.risk import RiskSnapshot

T = TypeVar("T")

PROPOSAL_COLUMNS = (
    Column("symbol", "Symbol", 9),
    Column("side", "Side", 5),
    Column("conf", "Conf", 5, "right"),  # "100%+": merged, at full confidence
    Column("size", "Size", 9, "right"),
    Column("entry", "Entry", 8, "right"),
    Column("stop", "Stop", 8, "right"),
    Column("tp", "TP", 8, "right"),
    Column("notional", "Notional", 9, "right"),
    Column("expires", "Expires", 7, "right"),
)

VOTE_COLUMNS = (
    Column("agent", "Agent", 14),
    Column("dir", "Vote", 5),
    Column("strength", "Str", 4, "right"),
    Column("rationale", "Rationale", 20, stretch=True),
)

POSITION_COLUMNS = (
    Column("symbol", "Symbol", 9),
    Column("side", "Side", 5),
    Column("qty", "Qty", 8, "right"),
    Column("entry", "Entry", 8, "right"),
    Column("mark", "Mark", 8, "right"),
    Column("upnl", "Unrealized", 10, "right"),
    Column("stop", "Stop", 8, "right"),
    Column("tp", "TP", 8, "right"),
    # Six: ``fmt.duration`` is at most six characters below 100 days ("14m00s", "23h59m").
    Column("age", "Age", 6, "right"),
)

ACTIVITY_COLUMNS = (
    Column("time", "Time", 8),
    Column("kind", "Event", 8),
    Column("text", "", 30, stretch=True),
)

_NOTIONAL_WIDTH = next(c.width for c in PROPOSAL_COLUMNS if c.key == "notional")
_UPNL_WIDTH = next(c.width for c in POSITION_COLUMNS if c.key == "upnl")

#: How many activity lines are kept (newest first).
ACTIVITY_LIMIT = 500
#: Equity points kept for the chart; beyond this, every other point is dropped.
EQUITY_POINTS = 720


def side_cell(side: Side) -> Cell:
    """The side of a proposal or position, coloured (and spelled out, never colour alone)."""
    return cell(side.value, side.value)


def proposal_cells(p: Proposal) -> tuple[Cell, ...]:
    """The cells of a proposal row that do not depend on the clock."""
    conf = fmt.confidence(p.confidence)
    if p.merged:
        conf = f"{conf}+"
    # A proposal the risk manager would not size now is still shown, flagged, with its reason
    # in the votes below.
    unsized = bool(p.risk_note)
    return (
        cell(fmt.one_line(p.symbol, 20)),
        side_cell(p.side),
        cell(conf),
        cell("risk!", "warn") if unsized else cell(fmt.qty(p.size)),
        cell(fmt.price(p.entry)),
        cell(fmt.price(p.stop)),
        cell(fmt.price(p.take_profit)),
        cell("—", "muted") if unsized else cell(fmt.money_in(p.notional, _NOTIONAL_WIDTH)),
    )


def expiry_cell(
    p: Proposal, market_ts: int, busy: str | None = None, speed: float | None = None
) -> Cell:
    """Time left before ``p`` expires, or what is being done to it.

    With a paced market (``speed`` market seconds a wall second) the time left is
    shown in wall time, which is what a person has to decide; else in market time.
    """
    if busy is not None:
        return cell(busy, "warn")
    left = p.expires_at - market_ts
    if speed:
        left = int(left / speed)
    return cell(fmt.duration(left), "warn" if left < 60_000 else "")


def proposal_row(p: Proposal, market_ts: int, busy: str | None = None) -> Row:
    """A whole proposal row."""
    return (*proposal_cells(p), expiry_cell(p, market_ts, busy))


def position_static_cells(p: Position) -> tuple[Cell, ...]:
    """The cells of a position that do not move with the market: symbol to entry, stop, TP."""
    return (
        cell(fmt.one_line(p.symbol, 20)),
        side_cell(p.side),
        cell(fmt.qty(p.qty)),
        cell(fmt.price(p.entry_price)),
        cell(fmt.price(p.stop)),
        cell(fmt.price(p.take_profit)),
    )


def position_row(
    p: Position,
    mark: Decimal | None,
    market_ts: int,
    static: tuple[Cell, ...] | None = None,
) -> Row:
    """A position row at ``mark`` (None: no price yet); ``static`` reuses cached cells."""
    symbol, side, qty, entry, stop, take_profit = static or position_static_cells(p)
    if mark is None:
        upnl_cell, mark_cell = cell("—", "muted"), cell("—")
    else:
        upnl = p.unrealized(mark)
        upnl_cell = cell(fmt.pnl_in(upnl, _UPNL_WIDTH), fmt.direction(upnl))
        mark_cell = cell(fmt.price(mark))
    age = cell(fmt.duration(market_ts - p.opened_at), "muted")
    return (symbol, side, qty, entry, mark_cell, upnl_cell, stop, take_profit, age)


def activity_row(entry: ActivityEntry) -> Row:
    """An activity line: time, kind, text.

    Events before the first candle (the engine starting) have no market time yet:
    they read ``pre-open``.
    """
    return (
        cell(fmt.market_hm(entry.ts) if entry.ts > 0 else "pre-open", "muted"),
        cell(entry.kind, entry.style or "strong"),
        cell(entry.text, entry.style if entry.style in ("bad", "warn") else ""),
    )


class Pane(Vertical):
    """A titled, bordered region of the main screen."""

    DEFAULT_CSS = """
    Pane { height: 1fr; }
    """


class VotesTable(VirtualTable, can_focus=False):
    """The votes of the selected proposal (not focusable: it follows the proposals table)."""


class LivePane(Pane, Generic[T]):
    """A pane around one live table of keyed items (proposals, positions).

    Each push hands the table the keys and a row function (``VirtualTable.set_source``),
    so a frame formats the rows on screen, not every item. Cells that change only
    with the item are cached by key in ``_static``, forgotten when the key goes.
    """

    #: The pane's title; a count follows it while there are items.
    TITLE: ClassVar[str]
    #: The id of the pane's live table.
    TABLE_ID: ClassVar[str]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = self.TITLE
        self._items: Sequence[T] = ()
        self._keys: list[str] = []
        self._static: dict[str, tuple[object, tuple[Cell, ...]]] = {}

    def key_of(self, item: T) -> str:
        raise NotImplementedError

    @property
    def table(self) -> VirtualTable:
        return self.query_one(f"#{self.TABLE_ID}", VirtualTable)

    @property
    def selected(self) -> T | None:
        """The item under the cursor, if any."""
        table = self.table
        key, index, items = table.cursor_key, table.cursor_row, self._items
        if key is None or index >= len(items) or self.key_of(items[index]) != key:
            return None
        return items[index]

    def _push(self, items: tuple[T, ...], row: RowSource) -> None:
        keys = [self.key_of(item) for item in items]
        if keys != self._keys:
            self._keys = keys
            alive = set(keys)
            for gone in [key for key in self._static if key not in alive]:
                del self._static[gone]
        self._items = items
        self.table.set_source(keys, row)
        title = f"{self.TITLE} ({len(items)})" if items else self.TITLE
        if self.border_title != title:
            self.border_title = title


class ProposalsPane(LivePane[Proposal]):
    """The pending queue, with the selected proposal's votes underneath."""

    TITLE = "Proposals"
    TABLE_ID = "proposals-table"

    def __init__(self, *, id: str | None = "proposals-pane") -> None:
        super().__init__(id=id)
        self._votes_for: tuple[str | None, tuple[object, ...]] = (None, ())

    def compose(self) -> ComposeResult:
        yield VirtualTable(
            PROPOSAL_COLUMNS,
            empty_text="No pending proposals: the agents are watching the market.",
            id="proposals-table",
        )
        yield VotesTable(
            VOTE_COLUMNS,
            empty_text="No votes to show.",
            show_cursor=False,
            id="votes-table",
        )

    def key_of(self, item: Proposal) -> str:
        return item.id

    def _static_cells(self, p: Proposal) -> tuple[Cell, ...]:
        # Cells that change only when the proposal does.
        signature = (p.confidence, p.size, p.entry, p.stop, p.take_profit, p.merged, p.risk_note)
        cached = self._static.get(p.id)
        if cached is not None and cached[0] == signature:
            return cached[1]
        cells = proposal_cells(p)
        self._static[p.id] = (signature, cells)
        return cells

    def show(
        self,
        pending: Sequence[Proposal],
        market_ts: int,
        busy: Mapping[str, str],
        speed: float | None = None,
    ) -> None:
        """Draw ``pending`` (oldest first); ``busy`` maps ids being decided to a word."""
        items = tuple(pending)
        busy = dict(busy)

        def row(index: int) -> Row:
            p = items[index]
            return (*self._static_cells(p), expiry_cell(p, market_ts, busy.get(p.id), speed))

        self._push(items, row)
        self.show_votes()

    def show_votes(self) -> None:
        """Draw the votes of the selected proposal."""
        selected = self.selected
        key: tuple[str | None, tuple[object, ...]] = (
            (selected.id, (selected.risk_note, *selected.votes))
            if selected is not None
            else (None, ())
        )
        if key == self._votes_for:
            return
        self._votes_for = key
        votes = self.query_one("#votes-table", VotesTable)
        if selected is None:
            votes.set_rows(())
            return
        rows: list[tuple[str, Row]] = []
        if selected.risk_note:
            note = f"not sized now: {fmt.one_line(selected.risk_note, 300)}"
            rows.append(
                ("risk", (cell("risk manager", "warn"), cell(""), cell(""), cell(note, "warn")))
            )
        rows.extend(
            (
                str(i),
                (
                    cell(fmt.one_line(v.agent, 30)),
                    side_cell(v.direction),
                    cell(f"{v.strength:.2f}"),
                    cell(fmt.one_line(v.rationale, 300)),
                ),
            )
            for i, v in enumerate(selected.votes)
        )
        votes.set_rows(rows)

    def on_virtual_table_cursor_moved(self, event: VirtualTable.CursorMoved) -> None:
        if event.table.id == "proposals-table":
            self.show_votes()


class PositionsPane(LivePane[Position]):
    """Open positions with their mark, unrealized PnL, stop, take-profit and age."""

    TITLE = "Positions"
    TABLE_ID = "positions-table"

    def __init__(self, *, id: str | None = "positions-pane") -> None:
        super().__init__(id=id)

    def compose(self) -> ComposeResult:
        yield VirtualTable(POSITION_COLUMNS, empty_text="No open positions.", id="positions-table")

    def key_of(self, item: Position) -> str:
        return item.symbol

    def _static_cells(self, p: Position) -> tuple[Cell, ...]:
        # The cells that do not move with the market, for the position they show.
        cached = self._static.get(p.symbol)
        if cached is None or cached[0] is not p:
            cached = self._static[p.symbol] = (p, position_static_cells(p))
        return cached[1]

    def show(
        self, positions: Sequence[Position], marks: Mapping[str, Decimal], market_ts: int
    ) -> None:
        """Draw ``positions`` at ``marks`` (copied: rows drawn later use these marks)."""
        items = tuple(positions)
        marks = dict(marks)

        def row(index: int) -> Row:
            p = items[index]
            return position_row(p, marks.get(p.symbol), market_ts, self._static_cells(p))

        self._push(items, row)


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


class EquitySeries:
    """Equity and drawdown by market time, bounded: past the limit, every other point goes
    and the stride at which new points are kept doubles, so a long session stays evenly sampled."""

    def __init__(self, limit: int = EQUITY_POINTS) -> None:
        self.limit = limit
        self.ts: list[int] = []
        self.equity: list[float] = []
        self.drawdown: list[float] = []
        self._stride = 1
        self._seen = 0
        #: Bumped on every kept point, so a chart knows whether it is stale.
        self.version = 0

    def __len__(self) -> int:
        return len(self.ts)

    def add(self, ts: int, equity: float, drawdown: float) -> None:
        """Record one point (kept only every ``stride``-th call)."""
        self._seen += 1
        if (self._seen - 1) % self._stride:
            return
        self.ts.append(ts)
        self.equity.append(equity)
        self.drawdown.append(drawdown)
        if len(self.ts) > self.limit:
            self.ts = self.ts[::2]
            self.equity = self.equity[::2]
            self.drawdown = self.drawdown[::2]
            self._stride *= 2
        self.version += 1


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


class ActivityPane(Pane):
    """Decisions, orders, fills, denials and engine messages, newest first."""

    def __init__(self, *, id: str | None = "activity-pane") -> None:
        super().__init__(id=id)
        self.border_title = "Activity"
        self._rows: dict[int, Row] = {}

    def compose(self) -> ComposeResult:
        yield VirtualTable(ACTIVITY_COLUMNS, empty_text="Nothing yet.", id="activity-table")

    def show(self, entries: Sequence[tuple[int, ActivityEntry]]) -> None:
        """Draw ``entries`` (sequence number, entry), newest first."""
        rows: list[tuple[str, Row]] = []
        cache = self._rows
        fresh: dict[int, Row] = {}
        for seq, entry in entries:
            row = cache.get(seq)
            if row is None:
                row = activity_row(entry)
            fresh[seq] = row
            rows.append((str(seq), row))
        self._rows = fresh
        self.query_one("#activity-table", VirtualTable).set_rows(rows)
