"""The main screen: status bar, the five panes, and the trading keys.

Wide terminals get the panes side by side; below :data:`COMPACT_WIDTH` ×
:data:`COMPACT_HEIGHT` they collapse into tabs, one pane at a time. The
layout is rebuilt when the terminal crosses that size; the data lives in the
app, so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.events import DescendantFocus, Resize
from textual.geometry import Size
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget

from engine.models import Position, Proposal
from tui.keys import HELP_BINDING
from tui.messages import CommandRequested
from tui.widgets.footer import KeysFooter
from tui.widgets.panes import ActivityPane, EquityPane, PositionsPane, ProposalsPane, RiskPane
from tui.widgets.status import StatusBar
from tui.widgets.table import VirtualTable

if TYPE_CHECKING:
    from textual.widgets import TabbedContent

    from tui.equity_series import EquitySeries

#: Below either of these, the panes collapse into tabs.
COMPACT_WIDTH = 110
COMPACT_HEIGHT = 32

#: Panes in tab order: (pane id, tab label).
PANES: tuple[tuple[str, str], ...] = (
    ("proposals-pane", "Proposals"),
    ("positions-pane", "Positions"),
    ("risk-pane", "Risk"),
    ("equity-pane", "Equity"),
    ("activity-pane", "Activity"),
)

#: What each pane focuses when tab lands on it.
_FOCUS_TARGET = {
    "proposals-pane": "#proposals-table",
    "positions-pane": "#positions-table",
    "risk-pane": "#risk-pane",
    "equity-pane": "#equity-pane",
    "activity-pane": "#activity-table",
}


def is_compact(size: Size) -> bool:
    """Whether a terminal of ``size`` gets the tabbed layout."""
    return size.width < COMPACT_WIDTH or size.height < COMPACT_HEIGHT


class MainScreen(Screen[None]):
    """Proposals, positions, risk, equity and activity, with every trading key.

    It draws nothing itself: ``draw_all`` (the app's redraw) fills the panes, and each
    trading key posts :class:`~tui.messages.CommandRequested` with the selection.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "approve", "Approve", id="approve", tooltip="Approve the selected proposal"),
        Binding(
            "r",
            "reject",
            "Reject",
            id="reject",
            tooltip="Reject the selected proposal, with a reason",
        ),
        Binding(
            "s",
            "resize",
            "Resize",
            id="resize",
            tooltip="Change the selected proposal's size, then approve it",
        ),
        Binding(
            "enter",
            "detail",
            "Detail",
            id="detail",
            tooltip="Every field and vote of the selected proposal",
        ),
        Binding(
            "A",
            "policy",
            "Policy",
            id="policy",
            tooltip="Switch the approval policy between manual and auto",
        ),
        Binding(
            "x",
            "close_position",
            "Close",
            id="close-position",
            tooltip="Close the selected position (asks first)",
        ),
        Binding(
            "X",
            "close_all",
            "Close all",
            id="close-all",
            tooltip="Cancel working entry orders, close every position",
        ),
        Binding(
            "p",
            "pause",
            "Pause",
            id="pause",
            tooltip="Pause or resume the engine (paused: no new proposals)",
        ),
        Binding(
            "h",
            "halt",
            "Halt",
            id="halt",
            tooltip="Halt trading (no new entries), or resume it",
        ),
        Binding("e", "export", "Report", id="export", tooltip="Export a session report"),
        Binding("tab", "next_pane", "Next pane", id="next-pane", show=False, tooltip="Next pane"),
        Binding(
            "shift+tab",
            "previous_pane",
            "Previous pane",
            id="previous-pane",
            show=False,
            tooltip="Previous pane",
        ),
        HELP_BINDING,
    ]

    compact: reactive[bool] = reactive(False)

    def __init__(self, equity_series: EquitySeries, draw_all: Callable[[], None]) -> None:
        super().__init__(id="main")
        self.equity_series = equity_series
        self._draw_all = draw_all
        #: Whether close-all has anything to do (open positions or working entry orders),
        #: as of the last redraw.
        self.holdings = False
        self._pane_index = 0
        # Focus moves a refresh or two after a pane change; until it lands, focus events
        # (including Textual moving focus off a hidden tab) do not say which pane is current.
        self._pending_target: Widget | None = None
        #: True while the layout is being rebuilt: the app does not draw into it then.
        self.rebuilding = False
        self._composed = False
        self._key_state: tuple[bool, bool, bool] | None = None

    # ---- layout -----------------------------------------------------------------

    def compose(self) -> ComposeResult:
        self.set_reactive(MainScreen.compact, is_compact(self.app.size))
        self.set_class(self.compact, "-compact")
        yield StatusBar(id="status")
        if self.compact:
            # Imported here: the wide layout (and its first frame) does without tabs.
            from textual.widgets import TabbedContent, TabPane

            with TabbedContent(id="tabs"):
                with TabPane("Proposals", id="tab-proposals"):
                    yield ProposalsPane()
                with TabPane("Positions", id="tab-positions"):
                    yield PositionsPane()
                with TabPane("Risk", id="tab-risk"):
                    yield RiskPane()
                with TabPane("Equity", id="tab-equity"):
                    yield EquityPane(self.equity_series)
                with TabPane("Activity", id="tab-activity"):
                    yield ActivityPane()
        else:
            with Horizontal(id="wide"):
                with Vertical(id="left"):
                    yield ProposalsPane()
                    yield PositionsPane()
                    yield ActivityPane()
                with Vertical(id="right"):
                    yield RiskPane()
                    yield EquityPane(self.equity_series)
        yield KeysFooter(id="footer")

    @property
    def ready(self) -> bool:
        """Whether the panes are there to draw into: composed, not being rebuilt, and the
        app not shutting down (it removes the panes while its timers may still fire)."""
        return self._composed and self.is_mounted and not self.rebuilding and self.app.is_running

    def on_mount(self) -> None:
        self._composed = True
        self._after_layout()

    def _after_layout(self) -> None:
        tables = self.query("#proposals-table")
        if not tables:
            return  # the app is closing before the layout was ever built
        tables.first(VirtualTable).focus()
        self._pane_index = 0
        self._draw_all()

    async def on_resize(self, event: Resize) -> None:
        compact = is_compact(event.size)
        if compact != self.compact:
            selected_proposal = self.selected_proposal
            selected = selected_proposal.id if selected_proposal is not None else None
            self.compact = compact
            self.set_class(compact, "-compact")
            self.rebuilding = True
            try:
                await self.recompose()
            finally:
                self.rebuilding = False
            self._after_layout()
            if selected is not None:
                self.query_one("#proposals-table", VirtualTable).select_key(selected)

    def on_screen_resume(self) -> None:
        self._draw_all()

    # ---- panes ------------------------------------------------------------------

    @property
    def selected_proposal(self) -> Proposal | None:
        """The proposal under the cursor (None while there are no panes to ask)."""
        return self.proposals.selected if self.ready else None

    @property
    def selected_position(self) -> Position | None:
        """The position under the cursor (None while there are no panes to ask)."""
        return self.positions.selected if self.ready else None

    @property
    def proposals(self) -> ProposalsPane:
        return self.query_one(ProposalsPane)

    @property
    def positions(self) -> PositionsPane:
        return self.query_one(PositionsPane)

    def show_pane(self, index: int) -> None:
        """Bring pane ``index`` (in :data:`PANES` order) forward and focus it."""
        self._pane_index = index % len(PANES)
        pane_id, _ = PANES[self._pane_index]
        if self.compact:
            tabs: TabbedContent = self.query_one("#tabs")  # type: ignore[assignment]
            tabs.active = "tab-" + pane_id.removesuffix("-pane")
        target = self.query_one(_FOCUS_TARGET[pane_id], Widget)
        self._pending_target = target

        def land() -> None:
            # A later pane change wins: focusing an older target would switch the tabs back.
            if self._pending_target is target:
                target.focus()

        self.call_after_refresh(land)
        self._draw_all()

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        if self._pending_target is not None:
            if event.widget is self._pending_target:
                self._pending_target = None
            return
        index = self._pane_of(event.widget)
        if index is not None:
            self._pane_index = index  # the person moved focus some other way (a click)

    def _pane_of(self, widget: Widget) -> int | None:
        for i, (pane_id, _) in enumerate(PANES):
            if widget.id == pane_id or any(a.id == pane_id for a in widget.ancestors):
                return i
        return None

    def action_next_pane(self) -> None:
        self.show_pane(self._pane_index + 1)

    def action_previous_pane(self) -> None:
        self.show_pane(self._pane_index - 1)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab_id = event.pane.id or ""
        if tab_id != event.tabbed_content.active:
            return  # an older change, already superseded by a later one
        for i, (pane_id, _) in enumerate(PANES):
            if tab_id == "tab-" + pane_id.removesuffix("-pane") and i != self._pane_index:
                self.show_pane(i)  # a tab picked with the mouse: focus its pane
                return
        self._draw_all()

    def on_virtual_table_cursor_moved(self, event: VirtualTable.CursorMoved) -> None:
        self.update_keys()

    def update_keys(self, holdings: bool | None = None) -> None:
        """Refresh which keys are available, only when that changed (the footer redraws);
        ``holdings``: whether there are open positions or working entry orders now."""
        if holdings is not None:
            self.holdings = holdings
        state = (
            self.selected_proposal is not None,
            self.selected_position is not None,
            self.holdings,
        )
        if state != self._key_state:
            self._key_state = state
            self.refresh_bindings()

    # ---- actions ----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Grey out keys that have nothing to act on (None: shown but disabled)."""
        if action in ("approve", "reject", "resize", "detail"):
            return True if self.selected_proposal is not None else None
        if action == "close_position":
            return True if self.selected_position is not None else None
        if action == "close_all":
            return True if self.holdings else None
        return True

    def _on_selected(self, command: str, subject: Proposal | Position | None) -> None:
        if subject is not None:
            self.post_message(CommandRequested(command, subject))

    def action_approve(self) -> None:
        self._on_selected("approve", self.selected_proposal)

    def action_reject(self) -> None:
        self._on_selected("reject", self.selected_proposal)

    def action_resize(self) -> None:
        self._on_selected("resize", self.selected_proposal)

    def action_detail(self) -> None:
        self._on_selected("detail", self.selected_proposal)

    def action_policy(self) -> None:
        self.post_message(CommandRequested("policy"))

    def action_close_position(self) -> None:
        self._on_selected("close_position", self.selected_position)

    def action_close_all(self) -> None:
        self.post_message(CommandRequested("close_all"))

    def action_pause(self) -> None:
        self.post_message(CommandRequested("pause"))

    def action_halt(self) -> None:
        self.post_message(CommandRequested("halt"))

    def action_export(self) -> None:
        self.post_message(CommandRequested("export"))
