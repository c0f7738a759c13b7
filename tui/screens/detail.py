"""The detail of one proposal: every field and every vote with its full rationale."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from engine.models import Proposal
from tui import format as fmt
from tui.keys import HELP_BINDING

if TYPE_CHECKING:
    from tui.app import CmaApp


def proposal_fields(p: Proposal, market_ts: int) -> list[tuple[str, str]]:
    """(label, value) for every field of ``p``, with derived risk figures."""
    risk = abs(p.entry - p.stop)
    reward = abs(p.take_profit - p.entry)
    ratio = f"{reward / risk:.2f}" if risk > 0 else "—"
    return [
        ("Proposal", fmt.one_line(p.id, 40)),
        ("Symbol", fmt.one_line(p.symbol, 30)),
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
        ("Merged", f"{p.merged} later duplicate{'s' if p.merged != 1 else ''} folded in"),
        (
            "Risk manager",
            fmt.one_line(p.risk_note, 200) if p.risk_note else "would size it as shown",
        ),
    ]


def fields_text(rows: list[tuple[str, str]]) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, (label, value) in enumerate(rows):
        if i:
            text.append("\n")
        text.append(f"{label:<14}", style="bold")
        text.append(value)
    return text


class ProposalDetailScreen(Screen[None]):
    """Every field of one proposal and every agent's vote; a, r and s act on it here too."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back", id="detail.back"),
        Binding("a", "approve", "Approve", id="approve", tooltip="Approve this proposal"),
        Binding("r", "reject", "Reject", id="reject", tooltip="Reject this proposal with a reason"),
        Binding("s", "resize", "Resize", id="resize", tooltip="Change the size, then approve"),
        HELP_BINDING,
    ]

    def __init__(self, proposal: Proposal) -> None:
        super().__init__(classes="detail")
        self.proposal = proposal
        self.status = "pending"

    @property
    def cma(self) -> CmaApp:
        from tui.app import CmaApp

        assert isinstance(self.app, CmaApp)
        return self.app

    def compose(self) -> ComposeResult:
        p = self.proposal
        with Vertical(id="detail-box") as box:
            box.border_title = f"Proposal: {fmt.one_line(p.symbol, 20)} {p.side.value}"
            yield Label("", id="detail-status")
            yield Static(fields_text(proposal_fields(p, self.cma.market_ts)), id="detail-fields")
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
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_live()

    def refresh_live(self) -> None:
        """Called by the app's redraw: the time left, and whether it is still pending."""
        if not self.query("#detail-status"):
            return  # not composed yet; on_mount draws it
        app = self.cma
        current = app.find_pending(self.proposal.id)
        if current is not None:
            self.proposal = current
            status = app.busy_word(current.id) or "pending"
        else:
            status = app.busy_word(self.proposal.id) or "no longer pending (decided or expired)"
        self.status = status
        label = self.query_one("#detail-status", Label)
        label.update(Text(status))
        label.set_class(status == "pending", "-pending")
        self.query_one("#detail-fields", Static).update(
            fields_text(proposal_fields(self.proposal, app.market_ts))
        )
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("approve", "reject", "resize"):
            return True if self.status == "pending" else None
        return True

    def action_back(self) -> None:
        self.dismiss(None)

    def action_approve(self) -> None:
        self.cma.approve(self.proposal)

    def action_reject(self) -> None:
        self.cma.ask_reject(self.proposal)

    def action_resize(self) -> None:
        self.cma.ask_resize(self.proposal)
