"""Live tables: frame cost of the console's tables against a minimal line-API widget.

Run: ``.venv/bin/python benchmarks/tui_tables.py [--seconds S] [--rounds N]``

The load: 500 pending proposals and 100 open positions (one per symbol, 100
symbols) from ``engine.models``, on a market running at 100× speed. Every
10 ms of wall time is one market second: every mark moves, so every position's
mark and unrealized PnL move, and every proposal's countdown ticks: nearly
every one of the 600 rows changes between two frames, the worst case for a
live table.

1. Frame cost, in-process with ``App.run_test(size=(120, 40))``. Two apps with
   the same screen (the console's stylesheet and theme, the wide layout at
   120×40: status line, Proposals 45 % over Positions 30 % over Activity on the
   left, 40 columns on the right, footer line) differ only in the two tables:
   - real: ``tui.widgets.panes.ProposalsPane`` and ``PositionsPane`` (the
     ``VirtualTable`` of ``tui/widgets/table.py``), fed with ``show(...)`` exactly
     as ``CmaApp.redraw`` feeds them;
   - baseline: a minimal line-API widget (``LineBaseline`` below: a ScrollView
     whose ``render_line`` returns a cached ``Strip`` per row, one style per line)
     of the same size, fed the same objects, formatting each row with one f-string.
   Both push at most ``ui.max_fps`` times a second, the way ``CmaApp`` does (a
   ``set_interval(1 / max_fps)`` timer that redraws only when something changed).
   The frame cost of a drawn frame is the time to hand the new data to the
   widgets (the push) plus the time of Textual's screen update that draws it
   (``Screen._on_timer_update``: layout if needed, compositor, every
   ``render_line`` of the dirty lines, and the escape sequences for the terminal;
   ``run_test`` is headless and skips that last step, so it is done here, timed,
   as a real terminal would). Frames drawn are the updates Textual sends to the
   terminal (``App._display`` with something to show). A run's frame cost is
   its total push and screen-update time over its frames drawn. Runs alternate
   real and baseline; it reports the median over runs of each side, their ratio
   (target ≤ 1.5×), and the push and screen-update medians apart.
2. The real console under the same load: ``CmaApp`` on its real engine and store
   (a temporary file), whose feed yields nothing; the benchmark puts the 500
   proposals and 100 positions in the engine and plays the same market through
   the engine's own event path (an ``EquityUpdated`` per market second, 100 a
   second). It reports the frames per second the console actually draws (target:
   coalesced to at most 20), what its frames cost (all panes), and what the
   frames were for: how many began with a layout pass, how many repainted only
   scrollbars.

It prints figures; it is not a test and exits 0 unless something crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.segment import Segment  # noqa: E402
from rich.style import Style  # noqa: E402
from textual._compositor import CompositorUpdate  # noqa: E402
from textual.app import App, ComposeResult  # noqa: E402
from textual.containers import Horizontal, Vertical  # noqa: E402
from textual.geometry import Size  # noqa: E402
from textual.screen import Screen  # noqa: E402
from textual.scroll_view import ScrollView  # noqa: E402
from textual.scrollbar import ScrollBar  # noqa: E402
from textual.strip import Strip  # noqa: E402
from textual.widgets import Static  # noqa: E402

from engine.config import Settings  # noqa: E402
from engine.feeds.base import Feed  # noqa: E402
from engine.models import (  # noqa: E402
    AgentVote,
    Candle,
    EquityUpdated,
    Position,
    Proposal,
    Side,
    q_cash,
)
from tui.app import CmaApp  # noqa: E402
from tui.theming import (  # noqa: E402
    CMA_VARIABLES,
    DEFAULT_THEME,
    THEMES_DIR,
    load_themes,
    theme_dirs,
)
from tui.widgets.panes import Pane, PositionsPane, ProposalsPane  # noqa: E402
from tui.widgets.table import VirtualTable  # noqa: E402

SIZE = (120, 40)
N_PROPOSALS = 500
N_POSITIONS = 100
SPEED = 100  # market seconds per wall second
TICK = 1.0 / SPEED  # one market second of wall time
START_TS = 1_767_225_600_000  # 2026-01-01 UTC
TARGET_RATIO = 1.5
TARGET_FPS = 20
WARMUP = 0.5


# ---- the load ----------------------------------------------------------------------


@dataclass
class Market:
    """The data both sides draw: proposals, positions, and marks that move every tick."""

    proposals: list[Proposal]
    positions: list[Position]
    paths: list[dict[str, Decimal]]  # marks at each tick, precomputed
    ts: int = START_TS
    step: int = 0
    dirty: bool = True
    ticks: int = 0

    @property
    def marks(self) -> dict[str, Decimal]:
        return self.paths[self.step % len(self.paths)]

    def tick(self) -> None:
        self.step += 1
        self.ts += 1000
        self.ticks += 1
        self.dirty = True

    def reset(self) -> None:
        self.step, self.ts, self.ticks, self.dirty = 0, START_TS, 0, True


def build_market(seed: int = 7, steps: int = 3000) -> Market:
    rng = random.Random(seed)
    symbols = [f"T{i:03d}/USDT" for i in range(N_POSITIONS)]
    start = {s: rng.uniform(1, 5000) for s in symbols}
    price = dict(start)
    paths: list[dict[str, Decimal]] = []
    for _ in range(steps):
        for s in symbols:
            price[s] *= 1 + rng.gauss(0, 0.0005)
        paths.append({s: Decimal(f"{p:.2f}") for s, p in price.items()})
    positions = []
    for i, s in enumerate(symbols):
        side = Side.LONG if i % 2 == 0 else Side.SHORT
        entry = Decimal(f"{start[s]:.2f}")
        qty = Decimal(f"{rng.uniform(0.01, 20):.4f}")
        sign = 1 if side is Side.LONG else -1
        positions.append(
            Position(
                symbol=s,
                side=side,
                qty=qty,
                entry_price=entry,
                cost_basis=q_cash(qty * entry),
                stop=Decimal(f"{start[s] * (1 - sign * 0.03):.2f}"),
                take_profit=Decimal(f"{start[s] * (1 + sign * 0.06):.2f}"),
                opened_at=START_TS - rng.randrange(60, 6 * 3600) * 1000,
            )
        )
    proposals = []
    for i in range(N_PROPOSALS):
        s = symbols[i % len(symbols)]
        side = Side.LONG if rng.random() < 0.5 else Side.SHORT
        sign = 1 if side is Side.LONG else -1
        entry = start[s] * (1 + rng.gauss(0, 0.002))
        created = START_TS - rng.randrange(0, 600) * 1000
        proposals.append(
            Proposal(
                id=f"prop-{i:04d}",
                symbol=s,
                side=side,
                entry=Decimal(f"{entry:.2f}"),
                stop=Decimal(f"{entry * (1 - sign * 0.02):.2f}"),
                take_profit=Decimal(f"{entry * (1 + sign * 0.04):.2f}"),
                confidence=round(rng.uniform(0.3, 0.95), 2),
                size=Decimal(f"{rng.uniform(0.01, 5):.4f}"),
                created_at=created,
                # Countdowns in minutes and seconds, so the text changes every market second.
                expires_at=created + rng.randrange(40 * 60, 59 * 60) * 1000,
                votes=(
                    AgentVote(
                        agent="price_action", symbol=s, direction=side, strength=0.6, rationale="x"
                    ),
                    AgentVote(
                        agent="momentum", symbol=s, direction=side, strength=0.5, rationale="y"
                    ),
                ),
            )
        )
    proposals.sort(key=lambda p: p.created_at)
    return Market(proposals, positions, paths)


async def produce(market: Market, on_tick: Callable[[], None] | None = None) -> None:
    """The market at 100×: one market second every 10 ms of wall time (drift-free)."""
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        next_at += TICK
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        market.tick()
        if on_tick is not None:
            on_tick()


# ---- measuring frames -------------------------------------------------------------


@dataclass
class Meter:
    """Frames drawn and their cost, for one screen of one app, while ``active``."""

    app: App[Any] | None = None
    screen: Screen[Any] | None = None
    active: bool = False
    frames: int = 0
    render: list[float] = field(default_factory=list)  # each screen update that drew
    push: list[float] = field(default_factory=list)  # each push of data to the widgets
    layout_frames: int = 0  # drawn frames that began with a layout pass
    scrollbar_frames: int = 0  # drawn frames that repainted only scrollbars
    _drew: bool = False

    def start(self) -> None:
        self.frames, self.render, self.push, self.active = 0, [], [], True
        self.layout_frames = self.scrollbar_frames = 0

    def stop(self) -> None:
        self.active = False


METER = Meter()
_original_timer_update = Screen._on_timer_update
_original_display = App._display


def _metered_timer_update(self: Screen[Any]) -> None:
    meter = METER
    if not (meter.active and self is meter.screen):
        _original_timer_update(self)
        return
    meter._drew = False
    # What the frame is for (Textual's private state, read only for the diagnosis).
    layout = bool(getattr(self, "_layout_required", False))
    dirty = list(getattr(self, "_dirty_widgets", ()))
    t = time.perf_counter()
    _original_timer_update(self)
    elapsed = time.perf_counter() - t
    if meter._drew:
        meter.render.append(elapsed)
        meter.layout_frames += layout
        meter.scrollbar_frames += bool(dirty) and all(isinstance(w, ScrollBar) for w in dirty)


def _metered_display(self: App[Any], screen: Screen[Any], renderable: Any) -> None:
    _original_display(self, screen, renderable)
    meter = METER
    if renderable is None or not meter.active or self is not meter.app:
        return
    meter.frames += 1
    meter._drew = True
    if self.is_headless and isinstance(renderable, CompositorUpdate):
        # What _display does for a real terminal (headless skips it): the escape codes.
        renderable.render_segments(self.console)


def install_meter() -> None:
    Screen._on_timer_update = _metered_timer_update  # type: ignore[method-assign]
    App._display = _metered_display  # type: ignore[method-assign]


# ---- the baseline widget ----------------------------------------------------------


class LineBaseline(ScrollView, can_focus=True):
    """A minimal line-API table: one text per row, one cached Strip per row."""

    # The same geometry as VirtualTable (its DEFAULT_CSS): one-cell scrollbars.
    DEFAULT_CSS = """
    LineBaseline { height: 1fr; scrollbar-size-vertical: 1; scrollbar-size-horizontal: 1; }
    """

    def __init__(self, header: str, width: int, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.header = header
        self.line_width = width
        self.lines: list[str] = []
        self._strips: dict[int, Strip] = {}
        self.rendered_rows = 0
        self.virtual_size = Size(width, 1)

    def set_lines(self, lines: list[str]) -> None:
        old, self.lines = self.lines, lines
        if len(lines) != len(old):
            self._strips.clear()
            self.virtual_size = Size(self.line_width, len(lines) + 1)
            self.refresh()
            return
        top = round(self.scroll_y)
        height = self.scrollable_content_region.height
        strips = self._strips
        for i, (was, now) in enumerate(zip(old, lines, strict=True)):
            if was != now:
                strips.pop(i, None)
                if top <= i < top + height - 1:
                    self.refresh_line(i + 1)

    def _strip(self, text: str, style: Style) -> Strip:
        return Strip([Segment(text.ljust(self.line_width)[: self.line_width], style)])

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        style = self.rich_style
        if y == 0:
            return self._strip(self.header, style).crop_extend(0, width, style)
        index = round(self.scroll_y) + y - 1
        if index >= len(self.lines):
            return Strip.blank(width, style)
        strip = self._strips.get(index)
        if strip is None:
            strip = self._strips[index] = self._strip(self.lines[index], style)
            self.rendered_rows += 1
        return strip.crop_extend(0, width, style)


def baseline_proposal_lines(proposals: list[Proposal], ts: int, cache: dict[str, str]) -> list[str]:
    lines = []
    for p in proposals:
        static = cache.get(p.id)
        if static is None:
            static = cache[p.id] = (
                f"{p.symbol:<9} {p.side.value:<5} {p.confidence:>4.0%} {p.size:>9} "
                f"{p.entry:>8} {p.stop:>8} {p.take_profit:>8} {p.notional:>9.2f} "
            )
        left = max(0, (p.expires_at - ts) // 1000)
        lines.append(f"{static}{left // 60:>4}m{left % 60:02d}s")
    return lines


def baseline_position_lines(
    positions: list[Position], marks: dict[str, Decimal], ts: int
) -> list[str]:
    lines = []
    for p in positions:
        mark = marks[p.symbol]
        # The age as the console shows it: minutes and seconds below an hour.
        minutes, seconds = divmod((ts - p.opened_at) // 1000, 60)
        age = f"{minutes}m{seconds:02d}" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}"
        lines.append(
            f"{p.symbol:<9} {p.side.value:<5} {p.qty:>8} {p.entry_price:>8} {mark:>8} "
            f"{p.unrealized(mark):>+10.2f} {p.stop:>8} {p.take_profit:>8} {age:>6}"
        )
    return lines


# ---- the two table apps -----------------------------------------------------------


class TablesApp(App[None]):
    """The console's stylesheet, theme and wide layout; only the two tables differ."""

    CSS_PATH: ClassVar[str] = str(THEMES_DIR / "cma.tcss")

    def __init__(self, market: Market, kind: str, max_fps: int) -> None:
        super().__init__()
        self.market = market
        self.kind = kind
        self.max_fps = max_fps
        self._baseline_cache: dict[str, str] = {}
        themes, _ = load_themes(theme_dirs())
        for theme in themes:
            self.register_theme(theme)
        self.theme = DEFAULT_THEME

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(CMA_VARIABLES)

    def compose(self) -> ComposeResult:
        yield Static("status", id="status")
        with Horizontal(id="wide"):
            with Vertical(id="left"):
                if self.kind == "real":
                    yield ProposalsPane()
                    yield PositionsPane()
                else:
                    with Pane(id="proposals-pane"):
                        yield LineBaseline("Symbol Side Conf ...", 77, id="proposals-table")
                        yield LineBaseline("Agent Vote Str Rationale", 77, id="votes-table")
                    with Pane(id="positions-pane"):
                        yield LineBaseline("Symbol Side Qty ...", 77, id="positions-table")
                yield Pane(id="activity-pane")
            with Vertical(id="right"):
                yield Pane(id="risk-pane")
                yield Pane(id="equity-pane")
        yield Static("footer", id="footer")

    def on_mount(self) -> None:
        self.query_one("#proposals-table").focus()
        if self.kind == "baseline":
            votes = self.query_one("#votes-table", LineBaseline)
            votes.set_lines(["price_action   long  0.60 x", "momentum       long  0.50 y"])
        self.push()
        # As CmaApp.on_mount: a timer at 1 / ui.max_fps redraws only what is stale.
        self.set_interval(1 / self.max_fps, self._frame)

    def _frame(self) -> None:
        # A last tick can land once the harness has begun tearing the app down.
        if self.market.dirty and self.query("#proposals-table"):
            self.push()

    def push(self) -> None:
        market = self.market
        market.dirty = False
        t = time.perf_counter()
        if self.kind == "real":
            # What CmaApp.redraw does for these two panes.
            self.query_one(ProposalsPane).show(market.proposals, market.ts, {})
            self.query_one(PositionsPane).show(market.positions, market.marks, market.ts)
        else:
            proposals = self.query_one("#proposals-table", LineBaseline)
            positions = self.query_one("#positions-table", LineBaseline)
            proposals.set_lines(
                baseline_proposal_lines(market.proposals, market.ts, self._baseline_cache)
            )
            positions.set_lines(baseline_position_lines(market.positions, market.marks, market.ts))
        if METER.active and METER.app is self:
            METER.push.append(time.perf_counter() - t)

    def rendered_rows(self) -> int:
        if self.kind == "real":
            return sum(t.rendered_rows for t in self.query(VirtualTable))
        return sum(t.rendered_rows for t in self.query(LineBaseline))


@dataclass
class Result:
    frames: int
    seconds: float
    ticks: int
    push_ms: float  # per push, median
    render_ms: float  # per drawn frame, median
    frame_ms: float  # total time (pushes + screen updates) / frames drawn
    rows_per_frame: float
    visible_rows: tuple[int, int]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds


async def measure_tables(market: Market, kind: str, seconds: float, max_fps: int) -> Result:
    market.reset()
    app = TablesApp(market, kind, max_fps)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        METER.app, METER.screen = app, app.screen
        producer = asyncio.create_task(produce(market))
        await asyncio.sleep(WARMUP)
        rows0 = app.rendered_rows()
        ticks0 = market.ticks
        METER.start()
        t = time.perf_counter()
        await asyncio.sleep(seconds)
        METER.stop()
        elapsed = time.perf_counter() - t
        producer.cancel()
        rows = app.rendered_rows() - rows0
        heights = [
            app.query_one(f"#{name}-table", ScrollView).scrollable_content_region.height - 1
            for name in ("proposals", "positions")
        ]
    frames = max(1, METER.frames)
    total = sum(METER.push) + sum(METER.render)
    return Result(
        frames=METER.frames,
        seconds=elapsed,
        ticks=market.ticks - ticks0,
        push_ms=statistics.median(METER.push) * 1000 if METER.push else 0.0,
        render_ms=statistics.median(METER.render) * 1000 if METER.render else 0.0,
        frame_ms=total / frames * 1000,
        rows_per_frame=rows / frames,
        visible_rows=(heights[0], heights[1]),
    )


# ---- the real console under the same load -----------------------------------------


class QuietFeed(Feed):
    """A feed that yields nothing until it is closed: the benchmark plays the market."""

    name = "bench"

    def __init__(self, symbols: tuple[str, ...], timeframe: str) -> None:
        super().__init__(symbols, timeframe)
        self._closing = asyncio.Event()

    def close(self) -> None:
        super().close()
        self._closing.set()

    async def batches(self) -> AsyncIterator[list[Candle]]:
        await self._closing.wait()
        for batch in ():  # an async generator that ends when the feed closes
            yield batch


async def measure_console(market: Market, seconds: float) -> dict[str, float]:
    market.reset()
    symbols = tuple(p.symbol for p in market.positions)
    with tempfile.TemporaryDirectory(prefix="cma-bench-") as tmp:
        settings = Settings.model_validate(
            {
                "store": {"path": Path(tmp) / "cma.db"},
                "approval": {"ttl_seconds": 6 * 3600, "max_pending": 1000},
                "risk": {"max_open_positions": 200},
            }
        )
        app = CmaApp(
            settings,
            feed=QuietFeed(symbols, "1m"),
            state_path=Path(tmp) / "ui-state.json",
            signal_handlers=False,
            cursor_blink=False,
        )
        redraws: list[float] = []
        original_redraw = app.redraws.redraw  # what the frame timer and app.redraw call

        def timed_redraw(force: bool = False) -> None:
            t = time.perf_counter()
            original_redraw(force)
            if METER.active:
                redraws.append(time.perf_counter() - t)

        app.redraws.redraw = timed_redraw  # type: ignore[method-assign]
        async with app.run_test(size=SIZE) as pilot:
            await app.workers.wait_for_complete()
            engine = app.engine
            assert engine is not None and engine.status == "running", "engine did not start"
            engine.router.restore(market.proposals)
            engine.portfolio.positions.update({p.symbol: p for p in market.positions})
            engine.marks.update(market.marks)
            engine.market_ts = market.ts

            def tick() -> None:
                engine.market_ts = market.ts
                engine.marks.update(market.marks)
                snap = engine.equity_snapshot()
                # The engine's own event path: subscribers (the app) get it as from a candle.
                engine._emit(
                    EquityUpdated(
                        ts=market.ts,
                        equity=snap.equity,
                        cash=snap.cash,
                        unrealized=snap.unrealized,
                        realized_today=snap.realized_today,
                        drawdown=snap.drawdown,
                    )
                )

            app.redraw(force=True)
            await pilot.pause()
            METER.app, METER.screen = app, app.main
            producer = asyncio.create_task(produce(market, tick))
            await asyncio.sleep(WARMUP)
            shown = app.main.proposals.table.row_count, app.main.positions.table.row_count
            ticks0 = market.ticks
            METER.start()
            t = time.perf_counter()
            await asyncio.sleep(seconds)
            METER.stop()
            elapsed = time.perf_counter() - t
            producer.cancel()
            ticks = market.ticks - ticks0
            frames = METER.frames
            render = list(METER.render)
            layout_frames, scrollbar_frames = METER.layout_frames, METER.scrollbar_frames
            # Let the last stale panes be drawn before the app closes: CmaApp's redraw
            # timer can otherwise fire while the screen is being torn down.
            await asyncio.sleep(0.3)
    total = sum(redraws) + sum(render)
    return {
        "fps": frames / elapsed,
        "frames": frames,
        "seconds": elapsed,
        "ticks_per_s": ticks / elapsed,
        "redraws_per_s": len(redraws) / elapsed,
        "redraw_ms": statistics.median(redraws) * 1000 if redraws else 0.0,
        "render_ms": statistics.median(render) * 1000 if render else 0.0,
        "frame_ms": total / max(1, frames) * 1000,
        "busy_ms_per_s": total / elapsed * 1000,
        "layout_frames": layout_frames,
        "scrollbar_frames": scrollbar_frames,
        "proposals_shown": shown[0],
        "positions_shown": shown[1],
    }


# ---- report -----------------------------------------------------------------------


def within_fps(frames: int, seconds: float) -> bool:
    """At most TARGET_FPS a second; one frame of slack for where the window cuts."""
    return frames <= TARGET_FPS * seconds + 1


def describe(kind: str, r: Result) -> str:
    return (
        f"{kind:8} {r.fps:5.1f} fps drawn, {r.ticks / r.seconds:5.1f} ticks/s; "
        f"push {r.push_ms:6.2f} ms + screen update {r.render_ms:6.2f} ms (medians); "
        f"frame cost {r.frame_ms:6.2f} ms; {r.rows_per_frame:4.1f} rows rendered/frame"
    )


async def main_async(seconds: float, rounds: int, console_seconds: float) -> None:
    install_meter()
    max_fps = Settings().ui.max_fps
    market = build_market()
    print(
        f"== 1. Frame cost at {SIZE[0]}×{SIZE[1]}: {N_PROPOSALS} proposals, {N_POSITIONS} "
        f"positions, market at {SPEED}× (every mark and countdown changes each "
        f"{TICK * 1000:.0f} ms); pushes at most {max_fps}/s (ui.max_fps) =="
    )
    results: dict[str, list[Result]] = {"real": [], "baseline": []}
    for i in range(rounds):
        for kind in ("real", "baseline") if i % 2 == 0 else ("baseline", "real"):
            r = await measure_tables(market, kind, seconds, max_fps)
            results[kind].append(r)
            print(f"  round {i + 1} {describe(kind, r)}")
    real = statistics.median(r.frame_ms for r in results["real"])
    base = statistics.median(r.frame_ms for r in results["baseline"])
    real_push = statistics.median(r.push_ms for r in results["real"])
    base_push = statistics.median(r.push_ms for r in results["baseline"])
    real_render = statistics.median(r.render_ms for r in results["real"])
    base_render = statistics.median(r.render_ms for r in results["baseline"])
    visible = results["real"][0].visible_rows
    print(f"  rows on screen: proposals {visible[0]}, positions {visible[1]} (of 500 and 100)")
    print(
        f"  push (data → widgets)   : real {real_push:6.2f} ms, baseline {base_push:6.2f} ms, "
        f"ratio {real_push / base_push:.2f}×"
    )
    print(
        f"  screen update (drawing) : real {real_render:6.2f} ms, baseline {base_render:6.2f} ms, "
        f"ratio {real_render / base_render:.2f}×"
    )
    ratio = real / base
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(
        f"  frame cost (median of runs): real {real:.2f} ms, baseline {base:.2f} ms; "
        f"ratio {ratio:.2f}×  (target ≤ {TARGET_RATIO}×)  {verdict}"
    )
    worst = max(results["real"], key=lambda r: r.fps)
    verdict = "PASS" if within_fps(worst.frames, worst.seconds) else "FAIL"
    print(
        f"  frames drawn by the real tables: at most {worst.fps:.1f}/s  "
        f"(target ≤ {TARGET_FPS})  {verdict}"
    )
    print()
    print(
        f"== 2. The real console (CmaApp, real engine and store) under the same load, "
        f"{console_seconds:.0f} s =="
    )
    c = await measure_console(market, console_seconds)
    print(
        f"  shown: {c['proposals_shown']:.0f} proposals, {c['positions_shown']:.0f} positions; "
        f"{c['ticks_per_s']:.0f} EquityUpdated events/s; {c['redraws_per_s']:.1f} redraws/s"
    )
    print(
        f"  app.redraw (all stale panes) {c['redraw_ms']:.2f} ms + screen update "
        f"{c['render_ms']:.2f} ms (medians); {c['frame_ms']:.2f} ms per drawn frame; "
        f"drawing takes {c['busy_ms_per_s']:.0f} ms of every second"
    )
    print(
        f"  of the frames drawn: {c['layout_frames']:.0f} began with a layout pass, "
        f"{c['scrollbar_frames']:.0f} repainted only scrollbars"
    )
    verdict = "PASS" if within_fps(c["frames"], c["seconds"]) else "FAIL"
    print(
        f"  frames drawn: {c['frames']:.0f} in {c['seconds']:.1f} s = {c['fps']:.1f}/s  "
        f"(target ≤ {TARGET_FPS})  {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per run (default 4)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each side (default 5)")
    parser.add_argument(
        "--console-seconds", type=float, default=6.0, help="run of the real console (default 6)"
    )
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    asyncio.run(main_async(args.seconds, args.rounds, args.console_seconds))


if __name__ == "__main__":
    main()
