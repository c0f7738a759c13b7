"""Small dialogs: confirm, reject reason, resize, approval policy, quit.

Every dialog is keyboard-only (mouse works too), has a help binding, and
dismisses with a typed result, or None when cancelled with escape.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from engine.models import Proposal, RejectReason
from tui import compat
from tui import format as fmt
from tui.keys import HELP_BINDING

if TYPE_CHECKING:
    from engine.risk import RiskCheck

T = TypeVar("T")


#: The reasons a person may pick when rejecting, in the order shown, with their keys.
REJECT_CHOICES: tuple[tuple[RejectReason, str, str], ...] = tuple(
    (reason, str(key), reason.label.capitalize())
    for key, reason in enumerate(
        (
            RejectReason.WEAK_SIGNAL,
            RejectReason.BAD_TIMING,
            RejectReason.TOO_MUCH_RISK,
            RejectReason.DISAGREE,
            RejectReason.NEWS,
            RejectReason.OTHER,
        ),
        start=1,
    )
)

QuitChoice = Literal["leave", "close"]


def proposal_summary(p: Proposal) -> Text:
    """One line naming a proposal: ``BTC/USDT long 0.0123 @ 91512.3 (conf 72%)``."""
    return Text(
        f"{fmt.one_line(p.symbol, 20)} {p.side.value} {fmt.qty(p.size)} @ {fmt.price(p.entry)}"
        f" (confidence {fmt.confidence(p.confidence)})"
    )


class Dialog(ModalScreen[T]):
    """A centred dialog box with a title; escape cancels (dismisses with None)."""

    DEFAULT_CSS = """
    Dialog { align: center middle; }
    Dialog > Vertical {
        width: 64;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        padding: 0 1;
    }
    Dialog .dialog-keys { margin-top: 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel"),
        HELP_BINDING,
    ]

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_mount(self) -> None:
        blink = bool(getattr(self.app, "cursor_blink", True))
        for field in self.query(Input):
            field.cursor_blink = blink


class InOrderInput(Input):
    """An :class:`Input` whose own key bindings run in order with the typed characters.

    Textual (8.2) inserts a printable key in ``Input._on_key`` at once but runs a
    bound key (backspace, ctrl+k, enter, ...) only after the key event has bubbled
    up to the app, a few message hops later; keys that arrive in one burst (a fast
    typist, a paste-like ``tmux send-keys``, a loaded machine) are then applied out
    of order: backspaces, then "30", can end as "" (Textual issue #6605, fix
    proposed in PR #6631). Here the Input's own bindings run inline, as they come.
    """

    async def _on_key(self, event: events.Key) -> None:
        await super()._on_key(event)
        if event.is_printable:
            return
        for node, bindings in compat.modal_binding_chain(self.screen):
            if node is not self:
                continue
            for binding in bindings.key_to_bindings.get(event.key, ()):
                if not binding.priority and await self.app.run_action(binding.action, self):
                    event.stop()
                    event.prevent_default()
                    return
            return


class ConfirmDialog(Dialog[bool]):
    """Ask a yes/no question: ``y`` or enter confirms, ``n`` or escape declines."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y,enter", "confirm", "Yes", id="dialog.yes"),
        Binding("n", "cancel", "No", id="dialog.no"),
    ]

    def __init__(self, title: str, message: str | Text, *, yes: str = "Yes") -> None:
        super().__init__(classes="confirm")
        self.title_text = title
        self.message = message
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Static(self.message, id="confirm-message")
            yield Label(Text(f"y / enter  {self.yes}     n / esc  Cancel"), classes="dialog-keys")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class RejectDialog(Dialog[RejectReason]):
    """Pick a reason for rejecting a proposal: 1–6, or arrows and enter."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(key, f"pick('{reason.value}')", label, id=f"reject.{reason.value}", show=False)
        for reason, key, label in REJECT_CHOICES
    ]

    def __init__(self, proposal: Proposal) -> None:
        super().__init__(classes="reject")
        self.proposal = proposal

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Reject proposal"
            yield Static(proposal_summary(self.proposal))
            yield OptionList(
                *(
                    Option(Text(f"{key}  {label}"), id=reason.value)
                    for reason, key, label in REJECT_CHOICES
                ),
                id="reject-reasons",
            )
            yield Label(Text("1–6 or ↑↓ enter  pick     esc  Cancel"), classes="dialog-keys")

    def action_pick(self, reason: str) -> None:
        self.dismiss(RejectReason(reason))

    @on(OptionList.OptionSelected, "#reject-reasons")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        assert event.option.id is not None
        self.dismiss(RejectReason(event.option.id))


def parse_positive_decimal(text: str) -> Decimal:
    """``text`` as an order quantity; ValueError with a readable message otherwise.

    Separators (``1_000``, ``1,000``) are allowed; the quantity must pass the
    engine's own check (finite, above zero, not absurdly large, no finer than
    the quantity quantum), so what the dialog accepts the engine accepts.
    """
    from engine.runtime import qty_problem

    cleaned = text.strip().replace("_", "").replace(",", "")
    if not cleaned:
        raise ValueError("enter a quantity")
    if len(cleaned) > 40:
        raise ValueError("that is not a sane quantity (too many digits)")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"{fmt.one_line(text, 30)!r} is not a number") from None
    problem = qty_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def cut_warning(qty: Decimal, check: RiskCheck) -> str | None:
    """What the risk limits would do to an entry of ``qty`` (None: it passes as typed).

    ``the risk limits cut 5 to 0.21: position cap 10.0%``, or the denial.
    """
    if not check.allowed:
        return f"the risk limits deny this entry: {check.reason}"
    if check.quantity >= qty:
        return None
    # The sizer's reason reads "<qty> <symbol> ≈ <value>: note, note, ..."; the notes
    # after the requested size are the limits that cut it.
    notes = check.reason.split(": ", 1)[-1].split(", ")
    why = ", ".join(n for n in notes if not n.startswith("requested")) or check.reason
    return f"the risk limits cut {fmt.qty_full(qty)} to {fmt.qty_full(check.quantity)}: {why}"


class ResizeDialog(Dialog[Decimal]):
    """Enter a new quantity for a proposal, then approve it (enter).

    With ``preview`` (the engine's sizing for a quantity), a size the risk limits
    would cut or deny is explained first; enter again approves it anyway.
    """

    def __init__(
        self,
        proposal: Proposal,
        preview: Callable[[Decimal], RiskCheck] | None = None,
    ) -> None:
        super().__init__(classes="resize")
        self.proposal = proposal
        self.preview = preview
        self._warned: Decimal | None = None  # the quantity whose warning is on screen

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Resize and approve"
            yield Static(proposal_summary(self.proposal))
            yield Label(Text("Quantity (base currency):"))
            yield InOrderInput(value=fmt.qty_full(self.proposal.size), id="resize-qty")
            yield Label("", id="resize-error", classes="dialog-error")
            yield Label(Text("enter  Approve at this size     esc  Cancel"), classes="dialog-keys")

    def _show(self, message: str) -> None:
        error = self.query_one("#resize-error", Label)
        error.update(Text(message))
        error.add_class("-shown")

    @on(Input.Submitted, "#resize-qty")
    def _submitted(self, event: Input.Submitted) -> None:
        try:
            qty = parse_positive_decimal(event.value)
        except ValueError as exc:
            self._show(str(exc))
            return
        if self.preview is not None and self._warned != qty:
            from engine.runtime import CommandError

            try:
                warning = cut_warning(qty, self.preview(qty))
            except CommandError as exc:
                self._show(str(exc))
                return
            if warning is not None:
                self._warned = qty
                self._show(f"{warning} (enter again to approve anyway)")
                return
        self.dismiss(qty)

    @on(Input.Changed, "#resize-qty")
    def _changed(self) -> None:
        self._warned = None
        error = self.query_one("#resize-error", Label)
        error.update("")
        error.remove_class("-shown")


#: Below this auto-approval threshold a second, explicit confirmation is asked.
AUTO_CONFIDENCE_FLOOR = 0.5


def parse_confidence(text: str) -> float:
    """A confidence typed as a percentage, ``70`` or ``70%``, as a fraction (0.7).

    One format, no guessing: ``0.7`` is 0.7 %. ValueError outside 0–100 %.
    """
    cleaned = text.strip().removesuffix("%").strip()
    try:
        percent = float(cleaned)
    except ValueError:
        raise ValueError(f"{fmt.one_line(text, 30)!r} is not a number") from None
    if not 0.0 <= percent <= 100.0:  # NaN fails too
        raise ValueError("the confidence is a percentage: between 0 and 100")
    return percent / 100


class PolicyDialog(Dialog[tuple[str, float | None]]):
    """Confirm a switch of the approval policy; switching to auto asks the confidence.

    The typed percentage is read back ("Auto-approve proposals with confidence
    ≥ 70%?") and enter again confirms it; a threshold below
    :data:`AUTO_CONFIDENCE_FLOOR` also needs ``y`` in a second dialog.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,y", "confirm", "Confirm", id="dialog.yes", show=False),
    ]

    def __init__(self, current: str, auto_confidence: float) -> None:
        super().__init__(classes="policy")
        self.current = current
        self.target = "manual" if current == "auto" else "auto"
        self.auto_confidence = auto_confidence
        self._read_back: float | None = None  # the value whose read-back is on screen

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Approval policy"
            yield Static(Text(f"Switch the approval policy from {self.current} to {self.target}?"))
            if self.target == "auto":
                yield Static(
                    Text(
                        "Auto approves every new proposal at or above this confidence, "
                        "without asking. Below it, proposals wait for you."
                    )
                )
                yield Label(Text("Approve automatically at confidence ≥ (in %, e.g. 70):"))
                yield InOrderInput(
                    value=f"{self.auto_confidence * 100:.4g}", id="policy-confidence"
                )
                yield Label("", id="policy-error", classes="dialog-error")
                yield Label("", id="policy-read-back")
                yield Label(
                    Text("enter  Check, enter again  Switch to auto     esc  Cancel"),
                    classes="dialog-keys",
                )
            else:
                yield Static(Text("Every proposal will wait for your keypress."))
                yield Label(Text("enter  Switch to manual     esc  Cancel"), classes="dialog-keys")

    def action_confirm(self) -> None:
        if self.target == "manual":
            self.dismiss(("manual", None))

    def _say(self, error: str = "", read_back: str = "") -> None:
        label = self.query_one("#policy-error", Label)
        label.update(Text(error))
        label.set_class(bool(error), "-shown")
        self.query_one("#policy-read-back", Label).update(Text(read_back))

    @on(Input.Submitted, "#policy-confidence")
    def _submitted(self, event: Input.Submitted) -> None:
        try:
            value = parse_confidence(event.value)
        except ValueError as exc:
            self._read_back = None
            self._say(error=str(exc))
            return
        if self._read_back != value:
            # Shown back before it takes effect: what was typed is what was read.
            self._read_back = value
            self._say(
                read_back=f"Auto-approve proposals with confidence {fmt.threshold(value)}?"
                " enter again to switch"
            )
            return
        if value >= AUTO_CONFIDENCE_FLOOR:
            self.dismiss(("auto", value))
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.dismiss(("auto", value))

        self.app.push_screen(FloorConfirmDialog(value), confirmed)

    @on(Input.Changed, "#policy-confidence")
    def _changed(self) -> None:
        self._read_back = None
        if self.is_mounted:
            self._say()


class FloorConfirmDialog(Dialog[bool]):
    """The second confirmation of an auto-approval threshold below the floor: only ``y``
    confirms (enter does not, so a repeated enter cannot slip through)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Yes, switch", id="floor.yes"),
        Binding("n", "cancel", "No", id="floor.no"),
    ]

    def __init__(self, value: float) -> None:
        super().__init__(classes="confirm floor")
        self.value = value

    def compose(self) -> ComposeResult:
        floor = fmt.threshold(AUTO_CONFIDENCE_FLOOR).removeprefix("≥ ")
        with Vertical() as box:
            box.border_title = "Low auto-approval threshold"
            yield Static(
                Text(
                    f"Auto-approve proposals with confidence {fmt.threshold(self.value)}? "
                    f"That is below {floor}: most proposals will be approved without you."
                ),
                id="floor-message",
            )
            yield Label(Text("y  Yes, switch to auto     n / esc  Cancel"), classes="dialog-keys")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


def plural(n: int, noun: str) -> str:
    """``1 open position``, ``2 open positions``: naive English plural."""
    return f"{n} {noun}{'s' if n != 1 else ''}"


def holdings(positions: int, entries: int) -> str:
    """``2 open positions and 1 working entry order``, or ``no open positions``."""
    what = plural(positions, "open position") if positions else "no open positions"
    if entries:
        return f"{what} and {plural(entries, 'working entry order')}"
    return what


class QuitDialog(Dialog[QuitChoice]):
    """Ask what to do with open positions and working entry orders before quitting."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "choose('leave')", "Leave open", id="quit.leave"),
        Binding("c", "choose('close')", "Close all", id="quit.close"),
    ]

    def __init__(self, open_positions: int, working_entries: int = 0) -> None:
        super().__init__(classes="quit")
        self.open_positions = open_positions
        self.working_entries = working_entries

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Quit"
            what = holdings(self.open_positions, self.working_entries)
            yield Static(Text(f"You have {what}. Everything is already stored."))
            if self.working_entries:
                leave = "l  Leave positions open, entry orders working; quit"
                close = "c  Cancel entry orders, close positions, then quit"
            else:
                leave = "l  Leave positions open and quit"
                close = "c  Close all positions, then quit"
            yield OptionList(
                Option(Text(leave), id="leave"),
                Option(Text(close), id="close"),
                id="quit-choices",
            )
            yield Label(Text("l / c or ↑↓ enter  choose     esc  Cancel"), classes="dialog-keys")

    def action_choose(self, choice: QuitChoice) -> None:
        self.dismiss(choice)

    @on(OptionList.OptionSelected, "#quit-choices")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss("close" if event.option.id == "close" else "leave")
