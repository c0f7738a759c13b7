"""The commit pipeline: Steps stored in order, then sent, then announced.

The candle loop hands the Steps of each batch to :meth:`CommitPipeline.put` and
goes on; one consumer task stores the Steps' units of work, then sends their
orders to a live broker, then announces their events. The loop's Steps queued in
a row go into one transaction (one fsync for all of them, while the loop runs
on), and a transaction holds whole batches: a batch's Steps are stored all or
none, so a kill never keeps part of one (a restart resumes after the last batch
stored and would never make the rest). A command's Step is a transaction of its
own. The store commits in order, so after a crash it holds a prefix of the
batches and commands: never a fill without its order, nor an announced decision
that is not stored.

A failed commit of the candle loop stops the pipeline (crash-only: the engine
stops with the error). A command's Step that fails runs its undo and fails the
command's future; the pipeline goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from engine.broker.port import Broker
from engine.events import EngineEvent, EquityUpdated
from engine.ports import StorePort
from engine.step import Step

log = logging.getLogger("cma.engine")

#: Steps waiting before the candle loop has to wait for the store.
QUEUE_SIZE = 256


class PipelineStopped(Exception):
    """The pipeline stopped on a failed commit; no Step is taken any more."""


class CommitPipeline:
    """One consumer task storing Steps in order (see the module docstring)."""

    def __init__(
        self,
        store: StorePort,
        broker: Broker,
        announce: Callable[[list[EngineEvent]], None],
        on_error: Callable[[BaseException], None],
        size: int = QUEUE_SIZE,
    ) -> None:
        self._store = store
        self._broker = broker
        self._announce = announce
        self._on_error = on_error
        self._size = size
        # (Step, a command's future, whether the Step ends its batch: a group ends there)
        self._queue: deque[tuple[Step, asyncio.Future[None] | None, bool]] = deque()
        self._ready = asyncio.Event()  # something to take
        self._room = asyncio.Event()  # below the bound
        self._room.set()
        self._idle = asyncio.Event()  # nothing queued nor in hand
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        #: The commit failure that stopped the pipeline.
        self.error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._consume(), name="cma-commits")

    @property
    def idle(self) -> bool:
        """Nothing queued nor being stored."""
        return self._idle.is_set()

    async def put(self, step: Step, *more: Step) -> None:
        """Queue the Steps of one batch of the candle loop, stored in one transaction
        (all or none); waits only while the queue is full. Steps with nothing to store
        and nothing ahead of them are announced at once."""
        if self.error is not None:
            raise PipelineStopped(str(self.error)) from self.error
        steps = (step, *more)
        if self._idle.is_set() and not any(s.work or s.send for s in steps):
            for s in steps:
                self._finish(s)
            return
        while len(self._queue) >= self._size:
            self._room.clear()
            await self._room.wait()
            if self.error is not None:
                raise PipelineStopped(str(self.error)) from self.error
        # No await between them: a batch is always whole in the queue, and only its last
        # Step ends it (a group of Steps committed together ends there).
        append = self._queue.append
        for s in steps[:-1]:
            append((s, None, False))
        self._push(steps[-1], None)

    def put_nowait(self, step: Step) -> None:
        """Queue a Step past the bound (an announcement outside the candle loop)."""
        self._push(step, None)

    async def run(self, step: Step) -> None:
        """Queue a command's Step and wait until it is stored and announced; raises
        the commit's error (after the Step's undo ran)."""
        if not self.running:
            await self._do(step, command=True)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._push(step, future)
        await future

    async def drain(self) -> None:
        """Until every queued Step is stored and announced; raises a commit failure."""
        if self.running:
            await self._idle.wait()
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        """Drain, then end the consumer task; a commit failure stays in :attr:`error`
        (the engine reports it), so a stop after one still ends the session."""
        try:
            if self.running:
                await self._idle.wait()
        finally:
            if self._task is not None:
                self._task.cancel()
                # The consumer was cancelled just above: that is how it ends.
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    def _push(self, step: Step, future: asyncio.Future[None] | None) -> None:
        self._queue.append((step, future, True))
        self._idle.clear()
        self._ready.set()

    async def _consume(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                self._idle.set()
                self._ready.clear()
                await self._ready.wait()
                continue
            step, future, _ = queue[0]
            if future is not None:
                await self._command(step, future)
                queue.popleft()
            else:
                await self._group()
            if len(queue) < self._size:
                self._room.set()

    async def _command(self, step: Step, future: asyncio.Future[None]) -> None:
        """A command's Step, committed alone so a failure is its own (and undone)."""
        try:
            if self.error is not None:
                raise PipelineStopped(str(self.error))
            await self._do(step, command=True)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(None)

    async def _group(self) -> None:
        """The candle loop's Steps queued in a row, committed in ONE transaction (one
        fsync while the loop runs on), then sent and announced one by one, in order.
        The group ends at a batch's end: past the bound by the rest of one batch."""
        queue = self._queue
        group: list[Step] = []
        size = self._size
        for step, future, ends in queue:
            if future is not None:
                break
            group.append(step)
            if ends and len(group) >= size:
                break
        try:
            if self.error is not None:
                raise PipelineStopped(str(self.error))
            await self._store.commit(*(s.work for s in group))
            for step in group:
                await self._after_commit(step)
        except Exception as exc:
            if self.error is None:
                self.error = exc
                self._on_error(exc)
        finally:
            for _ in group:
                queue.popleft()

    async def _do(self, step: Step, *, command: bool) -> None:
        try:
            await self._store.commit(step.work)
        except Exception:
            if command and step.on_failed is not None:
                step.on_failed()
            raise
        await self._after_commit(step)

    async def _after_commit(self, step: Step) -> None:
        if self._broker.live:
            for intent in step.send:
                await self._broker.submit(intent)
        self._finish(step)

    def _finish(self, step: Step) -> None:
        """A stored Step's equity points go to the store's group commit; its events out."""
        events = step.events
        if events:
            for event in events:
                if isinstance(event, EquityUpdated):
                    self._store.record_equity(event)
            self._announce(events)
