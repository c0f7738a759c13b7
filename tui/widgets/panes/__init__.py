"""The main screen's panes, one module each: proposals, positions, risk, equity, activity.

Panes are fed plain domain objects (``Proposal``, ``Position``, ``RiskSnapshot``,
equity figures) by the app's redraw timer; they never call the engine.
Everything from outside (symbols, rationales, reasons) is drawn as text, never
parsed as markup.
"""

from tui.equity_series import EQUITY_POINTS, EquitySeries
from tui.widgets.panes.activity import ACTIVITY_COLUMNS, ACTIVITY_LIMIT, ActivityPane, activity_row
from tui.widgets.panes.base import LivePane, Pane, side_cell
from tui.widgets.panes.equity import EquityFigures, EquityNumbers, EquityPane
from tui.widgets.panes.positions import (
    POSITION_COLUMNS,
    PositionsPane,
    position_row,
    position_static_cells,
)
from tui.widgets.panes.proposals import (
    PROPOSAL_COLUMNS,
    VOTE_COLUMNS,
    ProposalsPane,
    VotesTable,
    expiry_cell,
    proposal_cells,
    proposal_row,
)
from tui.widgets.panes.risk import RiskFigures, RiskPane

__all__ = [
    "ACTIVITY_COLUMNS",
    "ACTIVITY_LIMIT",
    "EQUITY_POINTS",
    "POSITION_COLUMNS",
    "PROPOSAL_COLUMNS",
    "VOTE_COLUMNS",
    "ActivityPane",
    "EquityFigures",
    "EquityNumbers",
    "EquityPane",
    "EquitySeries",
    "LivePane",
    "Pane",
    "PositionsPane",
    "ProposalsPane",
    "RiskFigures",
    "RiskPane",
    "VotesTable",
    "activity_row",
    "expiry_cell",
    "position_row",
    "position_static_cells",
    "proposal_cells",
    "proposal_row",
    "side_cell",
]
