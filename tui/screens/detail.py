"""The detail of one proposal: every field and every vote with its full rationale."""

from __future__ import annotations

from typing import ClassVar, Protocol

from rich.cells import cell_len, set_cell_size
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Label, Static

from engine.models import Proposal
from tui import format as fmt
from tui.keys import HELP_BINDING
from tui.messages import CommandRequested
from tui.widgets.footer import KeysFooter


class ProposalViews(Protocol):
    """What the detail screen reads to stay live (the app): the market time, whether the
    proposal is still pending, and what is being done to it."""

    @property
    def market_ts(self) -> int: ...
    def find_pending(self, proposal_id: str) -> Proposal | None: ...
    def busy_word(self, proposal_id: str) -> str | None: ...


def proposal_fields(p: Proposal, market_ts: int) -> list[tuple[str, str]]:
    """(label, value) for every field of ``p``, with derived risk figures."""
    risk = abs(p.entry - p.stop)
    reward = abs(p.take_profit - p.entry)
    ratio = f"{reward / risk:.2f}" if risk > 0 else "—"
    return [
        # Read in pairs, left to right, in two columns: the id takes the wider right one.
        ("Symbol", fmt.one_line(p.symbol, 30)),
        ("Proposal", fmt.one_line(p.id, 40)),
        ("Side", p.side.value),
        ("Confidence", f"{fmt.confidence(p.confidence)} ({p.confidence:.3f})"),
        ("Size", fmt.qty_full(p.size)),
        ("Notional", fmt.money(p.notional)),
        ("Entry", fmt.price_full(p.entry)),
        ("Stop", fmt.price_full(p.stop)),
        ("Take-profit", fmt.price_full(p.take_profit)),
        ("Risk / unit", fmt.price_full(risk)),
        ("Reward : risk", ratio),
        ("Risk at stop", fmt.money(risk * p.size)),
        ("Created", fmt.market_time(p.created_at)),
        ("Expires", fmt.market_time(p.expires_at)),
        ("Market time left", fmt.duration(p.expires_at - market_ts)),
        ("Merged", f"{p.merged} later duplicate{'s' if p.merged != 1 else ''}"),
        (
            "Risk manager",
            fmt.one_line(p.risk_note, 200) if p.risk_note else "would size it as shown",
        ),
    ]


#: Below this many cells of content the fields take one column, else two.
TWO_COLUMNS_WIDTH = 76


def _fit(value: str, room: int) -> str:
    """``value`` in at most ``room`` cells, ending in an ellipsis if it was cut."""
    if cell_len(value) <= room or room < 1:
        return value
    return set_cell_size(value, room - 1) + "…"


def fields_text(rows: list[tuple[str, str]], width: int = 0) -> Text:
    """The fields as aligned lines, in two columns when ``width`` allows.

    Two columns leave an 80×24 screen room for the votes (one column took all of
    it). The last field (the risk manager's note) runs the full width and wraps.
    Each label is padded two cells past the longest of its column; a value too
    long for its column ends in an ellipsis. ``width`` 0: one column, uncut.
    """
    *fields, (last_label, last_value) = rows
    text = Text(end="")

    def pad_of(column: list[tuple[str, str]]) -> int:
        return max((cell_len(label) for label, _ in column), default=0) + 2

    if width >= TWO_COLUMNS_WIDTH:
        half = width // 2
        left, right = fields[0::2], fields[1::2]
        pad, right_pad = pad_of([*left, (last_label, "")]), pad_of(right)
        for i, (label, value) in enumerate(left):
            text.append(label.ljust(pad), style="bold")
            if i < len(right):
                # One cell at least between the left value and the right label.
                text.append(set_cell_size(_fit(value, half - pad - 1), half - pad))
                label, value = right[i]
                text.append(label.ljust(right_pad), style="bold")
                text.append(_fit(value, width - half - right_pad))
            else:
                text.append(_fit(value, width - pad))
            text.append("\n")
    else:
        pad = pad_of(rows)
        for label, value in fields:
            text.append(label.ljust(pad), style="bold")
            text.append(_fit(value, width - pad) if width else value)
            text.append("\n")
    text.append(last_label.ljust(pad), style="bold")
    text.append(last_value)
    return text


class DetailFields(Widget):
    """The proposal's fields, laid out for the width they are given (:func:`fields_text`)."""

    DEFAULT_CSS = """
    DetailFields { height: auto; }
    """

    def __init__(self, rows: list[tuple[str, str]], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows = rows
        self._columns = 0

    def show(self, rows: list[tuple[str, str]]) -> None:
        if rows != self.rows:
            self.rows = rows
            self.refresh(layout=True)

    def render(self) -> Text:
        return fields_text(self.rows, self.size.width)

    def on_resize(self) -> None:
        # The height depends on the width (one column or two): lay out again if it changed.
        columns = 2 if self.size.width >= TWO_COLUMNS_WIDTH else 1
        if columns != self._columns:
            self._columns = columns
            self.refresh(layout=True)


class ProposalDetailScreen(Screen[None]):
    """Every field of one proposal and every agent's vote; a, r and s act on it here too."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back", id="detail.back"),
        Binding("a", "approve", "Approve", id="approve", tooltip="Approve this proposal"),
        Binding("r", "reject", "Reject", id="reject", tooltip="Reject this proposal with a reason"),
        Binding("s", "resize", "Resize", id="resize", tooltip="Change the size, then approve"),
        HELP_BINDING,
    ]

    def __init__(self, proposal: Proposal, views: ProposalViews) -> None:
        super().__init__(classes="detail")
        self.proposal = proposal
        self._views = views
        self.status = "pending"
        #: The status the footer's keys were last enabled for.
        self._keys_for: str | None = None
        #: The status on screen.
        self._drawn = ""

    def compose(self) -> ComposeResult:
        p = self.proposal
        with Vertical(id="detail-box") as box:
            box.border_title = f"Proposal: {fmt.one_line(p.symbol, 20)} {p.side.value}"
            yield Label("", id="detail-status")
            yield DetailFields(proposal_fields(p, self._views.market_ts), id="detail-fields")
        with VerticalScroll(id="detail-votes") as votes:
            votes.border_title = f"Votes ({len(p.votes)})"
            votes.can_focus = True
            for v in p.votes:
                head = Text()
                head.append(fmt.one_line(v.agent, 40), style="bold")
                head.append(f"  {v.direction.value}  strength {v.strength:.2f}")
                yield Static(head, classes=f"vote-head -{v.direction.value}")
                yield Static(Text(fmt.one_line(v.rationale, 2000)), classes="vote-rationale")
            if not p.votes:
                yield Static(Text("No votes were recorded with this proposal."))
        yield KeysFooter()

    def on_mount(self) -> None:
        self.refresh_live()

    def refresh_live(self) -> None:
        """Called by the app's redraw: the time left, and whether it is still pending."""
        if not self.query("#detail-status"):
            return  # not composed yet; on_mount draws it
        views = self._views
        current = views.find_pending(self.proposal.id)
        if current is not None:
            self.proposal = current
            status = views.busy_word(current.id) or "pending"
        else:
            status = views.busy_word(self.proposal.id) or "no longer pending (decided or expired)"
        self.status = status
        # Updated only when the text changes: each update costs a layout pass.
        if status != self._drawn:
            self._drawn = status
            label = self.query_one("#detail-status", Label)
            label.update(Text(status))
            label.set_class(status == "pending", "-pending")
        self.query_one("#detail-fields", DetailFields).show(
            proposal_fields(self.proposal, views.market_ts)
        )
        # Only when the status changed: this runs on every redraw (the clock ticks each
        # second), and each refresh makes the footer rebuild all its keys.
        if status != self._keys_for:
            self._keys_for = status
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("approve", "reject", "resize"):
            return True if self.status == "pending" else None
        return True

    def action_back(self) -> None:
        self.dismiss(None)

    def action_approve(self) -> None:
        self.post_message(CommandRequested("approve", self.proposal))

    def action_reject(self) -> None:
        self.post_message(CommandRequested("reject", self.proposal))

    def action_resize(self) -> None:
        self.post_message(CommandRequested("resize", self.proposal))
