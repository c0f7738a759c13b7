"""The console's commands: approve, reject, resize, detail, policy, close, close all,
pause, halt or resume trading, export.

Screens ask for a command by posting :class:`~tui.messages.CommandRequested` with
what they have selected; the app hands it to :meth:`ConsoleCommands.run`. A command
that needs an answer first opens its dialog; then the work runs in a worker of the
``commands`` group. Each awaits the engine, which returns only once the store has
the change; until then the proposal stays on screen marked as in progress
(:attr:`ConsoleCommands.inflight`), and a failure becomes an error notification
(:meth:`ConsoleCommands.worker_changed`) with the proposal still pending.

:data:`MAIN_COMMANDS` is the registry of main-screen commands the palette offers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.worker import Worker, WorkerState

from engine.models import Position, Proposal, RejectReason, TradingState
from tui import format as fmt
from tui.activity import reason_label

if TYPE_CHECKING:
    from engine.risk import RiskCheck
    from engine.runtime import Engine
    from tui.app import CmaApp

log = logging.getLogger("cma.tui")

#: Main-screen actions offered in the command palette: (title, help, action).
MAIN_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("Approve proposal", "Approve the selected proposal at its size", "approve"),
    ("Reject proposal", "Reject the selected proposal with a reason", "reject"),
    ("Resize and approve", "Change the selected proposal's size, then approve", "resize"),
    ("Proposal detail", "Every field and vote of the selected proposal", "detail"),
    ("Switch approval policy", "Manual ↔ auto above a confidence", "policy"),
    ("Close position", "Close the selected position", "close_position"),
    ("Close all positions", "Cancel working entry orders, close every position", "close_all"),
    ("Pause or resume engine", "No new proposals while paused", "pause"),
    ("Halt or resume trading", "Stop new entries, or resume", "halt"),
    ("Export report", "Export a session report", "export"),
    ("Next pane", "Move to the next pane", "next_pane"),
)


class ConsoleCommands:
    """Every command of the console, run against the app's engine and shown on its screens."""

    def __init__(self, app: CmaApp) -> None:
        self.app = app
        #: Proposals with a decision in flight: id → (proposal, what is being done).
        self.inflight: dict[str, tuple[Proposal, str]] = {}
        self._labels: dict[Worker[Any], str] = {}
        #: A report export is running (one at a time).
        self._exporting = False

    # ---- dispatch ---------------------------------------------------------------

    def run(self, command: str, subject: Proposal | Position | None = None) -> None:
        """Run ``command`` (a screen's action name) on ``subject`` (its selection)."""
        if isinstance(subject, Proposal):
            on_proposal: dict[str, Callable[[Proposal], None]] = {
                "approve": self.approve,
                "reject": self.ask_reject,
                "resize": self.ask_resize,
                "detail": self.show_detail,
            }
            on_proposal[command](subject)
        elif isinstance(subject, Position):
            if command == "close_position":
                self.ask_close_position(subject)
        else:
            on_console: dict[str, Callable[[], None]] = {
                "policy": self.ask_policy,
                "close_all": self.ask_close_all,
                "pause": self.toggle_pause,
                "halt": self.ask_halt,
                "export": self.export_report,
            }
            on_console[command]()

    def _start(
        self, label: str, work: Callable[..., Coroutine[Any, Any, None]], *args: object
    ) -> None:
        # A function, not a coroutine: a worker cancelled before it runs leaves nothing unawaited.
        run: Callable[[], Coroutine[Any, Any, None]] = partial(work, *args)
        worker: Worker[None] = self.app.run_worker(
            run, name=work.__name__, group="commands", exit_on_error=False
        )
        self._labels[worker] = label

    def _engine_or_warn(self) -> Engine | None:
        engine = self.app.engine
        if engine is None:
            self.app.notify("the engine is still starting", severity="warning")
        return engine

    def _changed(self, *panes: str) -> None:
        self.app.redraws.mark(*panes)

    # ---- views ------------------------------------------------------------------

    def proposal_view(self) -> list[Proposal]:
        """Pending proposals, plus those whose decision is still being stored, oldest first."""
        engine = self.app.engine
        if engine is None:
            return []
        pending = engine.pending()
        if not self.inflight:
            return pending
        ids = {p.id for p in pending}
        extra = [p for p, _ in self.inflight.values() if p.id not in ids]
        return sorted([*pending, *extra], key=lambda p: p.created_at)

    def busy_words(self) -> dict[str, str]:
        return {pid: word for pid, (_, word) in self.inflight.items()}

    def busy_word(self, proposal_id: str) -> str | None:
        entry = self.inflight.get(proposal_id)
        return entry[1] if entry is not None else None

    def working_entry_count(self) -> int:
        """Entry orders not yet filled, counting approvals still being stored."""
        engine = self.app.engine
        if engine is None:
            return 0
        approving = sum(1 for _, word in self.inflight.values() if word.startswith("approve"))
        return len(engine.working_entries()) + approving

    # ---- proposals --------------------------------------------------------------

    def approve(self, proposal: Proposal, size: Decimal | None = None) -> None:
        """Approve ``proposal`` (at ``size`` if given); shown done once stored."""
        engine = self._engine_or_warn()
        if engine is None or not self._claim(proposal, "approve…"):
            return
        what = f"approve {fmt.one_line(proposal.symbol, 20)} {proposal.side.value}"
        self._start(what, self._decide, proposal, partial(engine.approve, proposal.id, size))

    def reject(self, proposal: Proposal, reason: RejectReason) -> None:
        """Reject ``proposal`` with ``reason``; shown done once stored."""
        engine = self._engine_or_warn()
        if engine is None or not self._claim(proposal, "reject…"):
            return
        what = f"reject {fmt.one_line(proposal.symbol, 20)} ({reason_label(reason.value)})"
        self._start(what, self._decide, proposal, partial(engine.reject, proposal.id, reason))

    def _claim(self, proposal: Proposal, word: str) -> bool:
        if proposal.id in self.inflight:
            self.app.notify("that proposal is already being decided", severity="warning")
            return False
        self.inflight[proposal.id] = (proposal, word)
        self._changed("proposals")
        self.app.redraw()
        return True

    async def _decide(
        self, proposal: Proposal, decide: Callable[[], Coroutine[Any, Any, object]]
    ) -> None:
        try:
            await decide()
        finally:
            self.inflight.pop(proposal.id, None)
            self._changed("proposals")

    def ask_reject(self, proposal: Proposal) -> None:
        def picked(reason: RejectReason | None) -> None:
            if reason is not None:
                self.reject(proposal, reason)

        from tui.screens.modals import RejectDialog

        self.app.push_screen(RejectDialog(proposal), picked)

    def ask_resize(self, proposal: Proposal) -> None:
        def entered(size: Decimal | None) -> None:
            if size is not None:
                self.approve(proposal, size)

        from tui.screens.modals import ResizeDialog

        engine = self.app.engine
        preview = None
        if engine is not None:

            def preview(size: Decimal) -> RiskCheck:
                return engine.preview_entry(proposal.id, size)

        self.app.push_screen(ResizeDialog(proposal, preview), entered)

    def show_detail(self, proposal: Proposal) -> None:
        from tui.screens.detail import ProposalDetailScreen

        self.app.push_screen(ProposalDetailScreen(proposal, self.app))

    # ---- the engine and positions ---------------------------------------------

    def ask_policy(self) -> None:
        engine = self._engine_or_warn()
        if engine is None:
            return

        def chosen(choice: tuple[str, float | None] | None) -> None:
            if choice is not None:
                policy, confidence = choice
                self._start(f"switch to {policy}", self._set_policy, engine, policy, confidence)

        from tui.screens.modals import PolicyDialog

        self.app.push_screen(PolicyDialog(engine.policy, engine.auto_confidence), chosen)

    async def _set_policy(self, engine: Engine, policy: str, confidence: float | None) -> None:
        await engine.set_policy(policy, confidence)
        self._changed("status")

    def ask_close_position(self, position: Position) -> None:
        engine = self._engine_or_warn()
        if engine is None:
            return
        symbol = position.symbol
        message = Text(
            f"Close {fmt.one_line(symbol, 20)} {position.side.value} {fmt.qty(position.qty)}"
            " with a market order at the next price?"
        )

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._start(f"close {fmt.one_line(symbol, 20)}", self._close, engine, symbol)

        from tui.screens.modals import ConfirmDialog

        self.app.push_screen(ConfirmDialog("Close position", message, yes="Close it"), confirmed)

    async def _close(self, engine: Engine, symbol: str | None) -> None:
        if symbol is None:
            await engine.close_all()
        else:
            await engine.close_position(symbol)
        self._changed("positions", "risk")

    def ask_close_all(self) -> None:
        engine = self._engine_or_warn()
        if engine is None:
            return
        n = len(engine.positions())
        entries = self.working_entry_count()
        if n == 0 and entries == 0:
            self.app.notify("there are no open positions or working entry orders")
            return
        from tui.screens.modals import holdings, plural

        def each(count: int, noun: str) -> str:
            return f"the {noun}" if count == 1 else f"all {plural(count, noun)}"

        steps = []
        if entries:
            steps.append(f"cancel {each(entries, 'working entry order')}")
        if n:
            steps.append(f"close {each(n, 'open position')} at the next prices")
        question = ", then ".join(steps)
        lines = [f"You have {holdings(n, entries)}.", f"{question[0].upper()}{question[1:]}?"]
        for order in engine.working_entries()[:5]:
            lines.append(
                f"  entry {fmt.one_line(order.symbol, 20)} {order.side.value}"
                f" {fmt.qty(order.qty)}, fills at the next price"
            )
        message = Text("\n".join(lines))
        title = "Close all positions" if n else "Cancel working entry orders"
        yes = "Close all" if n else "Cancel them"

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._start("close all", self._close, engine, None)

        from tui.screens.modals import ConfirmDialog

        self.app.push_screen(ConfirmDialog(title, message, yes=yes), confirmed)

    def toggle_pause(self) -> None:
        engine = self._engine_or_warn()
        if engine is None:
            return
        if engine.status == "paused":
            engine.resume()
        elif engine.status == "running":
            engine.pause()
        else:
            self.app.notify(f"the engine is {engine.status}", severity="warning", markup=False)
        self._changed("status")
        self.app.redraw()

    def ask_halt(self) -> None:
        engine = self._engine_or_warn()
        if engine is None:
            return
        state = engine.risk_snapshot().state
        if state is TradingState.ACTIVE:
            title, yes = "Halt trading", "Halt"
            message = Text(
                "Halt trading? No new entries until you resume; open positions keep their"
                " stops and take-profits."
            )
        else:
            title, yes = "Resume trading", "Resume"
            message = Text(f"Trading is {state.value}. Resume normal trading (ACTIVE)?")

        def confirmed(ok: bool | None) -> None:
            if ok:
                if state is TradingState.ACTIVE:
                    self._start("halt trading", self._halt, engine, True)
                else:
                    self._start("resume trading", self._halt, engine, False)

        from tui.screens.modals import ConfirmDialog

        self.app.push_screen(ConfirmDialog(title, message, yes=yes), confirmed)

    async def _halt(self, engine: Engine, halt: bool) -> None:
        if halt:
            await engine.halt("halted by hand")
        else:
            await engine.resume_trading("resumed by hand")
        self._changed("risk", "status")

    def export_report(self) -> None:
        """Write the running session's report in the configured formats, in a worker
        thread: the engine goes on; the activity pane shows each file's path."""
        engine = self._engine_or_warn()
        if engine is None:
            return
        if engine.session_id is None:
            self.app.notify("the session has not begun yet", severity="warning")
            return
        if self._exporting:
            self.app.notify("a report is already being written", severity="warning")
            return
        self._exporting = True
        self._start("export the report", self._export, engine, engine.session_id)

    async def _export(self, engine: Engine, session_id: int) -> None:
        import asyncio
        from pathlib import Path

        from engine.models import EngineMessage
        from engine.runtime import CommandError
        from reports.export import export_session
        from reports.model import ReportError

        settings = self.app.settings
        folder = settings.report.resolved_dir(settings.store)
        try:
            # What the engine has queued (equity points, candles) goes into the store first.
            await engine.store.flush()
            paths = await asyncio.to_thread(
                export_session, Path(engine.store.path), session_id, settings.report.formats, folder
            )
        except ReportError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"cannot write to {folder}: {exc.strerror or exc}") from None
        finally:
            self._exporting = False
        for path in paths:
            self.app.events.posted(
                EngineMessage(ts=engine.market_ts, text=f"report written: {path}")
            )
        self.app.notify(
            "\n".join(str(p) for p in paths), title="Report written", timeout=15, markup=False
        )

    # ---- outcomes ---------------------------------------------------------------

    def worker_changed(self, event: Worker.StateChanged) -> None:
        """Turn a failed command (or engine start) into an error the person sees."""
        worker = event.worker
        if event.state not in (WorkerState.ERROR, WorkerState.SUCCESS, WorkerState.CANCELLED):
            return
        label = self._labels.pop(worker, None) or worker.name or "background work"
        self._changed("proposals")
        if event.state is not WorkerState.ERROR:
            return
        from engine.runtime import CommandError

        error = worker.error
        log.error("could not %s", label, exc_info=error)  # the notice shows one line
        if isinstance(error, CommandError):
            text = f"Could not {label}: {error}"
        else:
            text = f"Could not {label}: internal error: {type(error).__name__}: {error}"
        self.app.notify(fmt.one_line(text, 400), severity="error", timeout=15, markup=False)
