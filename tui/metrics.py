"""Prometheus metrics of one running engine (``[metrics]``, ``cma run --metrics``).

:class:`Metrics` owns a registry of its own (never prometheus-client's global one, so
tests and several sessions in one process do not mix). Three sources feed it:

- the engine's events (:meth:`Metrics.on_event`, an :meth:`Engine.subscribe` callback):
  proposals by agent and symbol, decisions and their latency, orders, fills, denials;
- the engine's hooks (:class:`engine.observe.Observer`, which :class:`Metrics` is):
  the time per candle, the store's transactions, exchange errors and rate-limit waits;
- the engine's read models, read when Prometheus scrapes (:class:`_EngineCollector`):
  equity, drawdown and its limits, exposure, open positions, pending proposals, the
  trading state, the feed's staleness, the circuit breaker. Nothing is done per candle
  for these.

The first two are counted in plain dicts and lists (:class:`_Counts`,
:class:`_Histogram`) and become metric families only when scraped: a prometheus-client
``Counter``'s ``labels(...).inc()`` takes a lock and costs about 1.7 µs, a dict add
about 0.15 µs, and at full replay speed there are a few of them per candle. Everything
is counted and read on the event loop's thread, so nothing needs the lock.

Label values are kept to small fixed sets: a denial's free-text reason is bucketed
(:func:`denial_bucket`), an agent is the name it votes with, a symbol one the feed
trades. Importing this module imports ``prometheus_client``: only a run with metrics
on does (``tui.session`` imports it then).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from engine.events import (
    DecisionMade,
    EngineEvent,
    OrderDenied,
    OrderFilled,
    OrderSubmitted,
    ProposalCreated,
)
from engine.models import TradingState
from engine.observe import CommitKind, Observer

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from engine.runtime import Engine

__all__ = ["DENIAL_BUCKETS", "Metrics", "denial_bucket"]

#: A denial's reason, by the words it starts with or holds, into a small fixed set.
_DENIALS: tuple[tuple[str, str], ...] = (
    # The exchange's and the live gate's first: their texts can hold the risk words.
    ("circuit breaker", "circuit_breaker"),
    ("refused by the exchange", "exchange_refused"),
    ("by the exchange with nothing filled", "exchange_refused"),
    ("not sent", "exchange_unreachable"),
    ("not placed", "exchange_unreachable"),
    ("never arrived", "exchange_unreachable"),
    ("live daily notional cap", "live_cap"),
    ("no price to value", "no_price"),
    ("trading ", "trading_state"),
    ("daily loss", "daily_loss"),
    ("drawdown", "drawdown"),
    ("max open positions", "max_positions"),
    ("correlation", "correlation"),
    ("exposure", "exposure"),
    ("size below minimum", "min_notional"),
    ("no edge", "no_edge"),
    (" is open", "position_open"),
    ("already", "price_moved"),
    ("equity ", "no_equity"),
    ("exit qty", "exit"),
    ("no open ", "exit"),
)
#: Every value the ``reason`` label of ``cma_order_denials_total`` can take.
DENIAL_BUCKETS: tuple[str, ...] = (*dict.fromkeys(b for _, b in _DENIALS), "other")


def denial_bucket(reason: str) -> str:
    """The fixed bucket of a denial's free-text reason ("other" when none fits)."""
    text = reason.lower()
    for words, bucket in _DENIALS:
        if words in text:
            return bucket
    return "other"


# Buckets: a candle takes tens of microseconds; a transaction a millisecond or more.
_CANDLE_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1)
_COMMIT_BUCKETS = (1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.5, 1.0, 5.0)
_SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 256, 500, 1000)
_LATENCY_BUCKETS = (0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600)
_LAG_BUCKETS = (1e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 5.0)
#: How often the event-loop lag is sampled (seconds).
LAG_INTERVAL = 0.25


class _Counts:
    """A labelled counter kept in a plain dict (about a tenth of a prometheus-client
    ``Counter``'s ``labels(...).inc()`` with its lock), made a family when scraped.

    Every count is taken and read on the event loop's thread (the engine's events, the
    store's commits after their await, the scrape's handler), so nothing is locked."""

    __slots__ = ("doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, key: tuple[str, ...] = (), amount: float = 1.0) -> None:
        values = self.values
        values[key] = values.get(key, 0.0) + amount

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in self.values.items():
            family.add_metric(key, value)
        return family


class _Histogram:
    """A labelled histogram kept as plain counts per bucket (a bisect and two adds per
    observation), made a family when scraped; like :class:`_Counts`, lock-free on the
    event loop's thread. An upper bound is inclusive, as Prometheus's ``le``."""

    __slots__ = ("bounds", "doc", "labels", "name", "values")

    def __init__(
        self, name: str, doc: str, bounds: tuple[float, ...], labels: tuple[str, ...] = ()
    ) -> None:
        self.name, self.doc, self.labels, self.bounds = name, doc, labels, bounds
        #: Per label values: the count of each bucket (the last one past every bound)
        #: and, at the end, the sum of the values observed.
        self.values: dict[tuple[str, ...], list[float]] = {}
        if not labels:  # served from the start, at 0, as prometheus-client's own
            self.preset(())

    def preset(self, key: tuple[str, ...]) -> None:
        """Serve the series of ``key`` from now on, at 0 until observed."""
        self.values.setdefault(key, [0.0] * (len(self.bounds) + 2))

    def observe(self, value: float, key: tuple[str, ...] = ()) -> None:
        counts = self.values.get(key)
        if counts is None:
            counts = self.values[key] = [0.0] * (len(self.bounds) + 2)
        counts[bisect_left(self.bounds, value)] += 1
        counts[-1] += value

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        edges = [floatToGoString(b) for b in (*self.bounds, math.inf)]  # type: ignore[no-untyped-call]
        for key, counts in self.values.items():
            buckets: list[tuple[str, float]] = []
            running = 0.0
            for edge, count in zip(edges, counts, strict=False):  # the sum is left over
                running += count
                buckets.append((edge, running))
            family.add_metric(key, buckets, counts[-1])
        return family


class Metrics(Observer):
    """The collectors of one run; see the module docstring for what feeds them."""

    timed = True

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.proposals = _Counts(
            "cma_proposals",
            "Proposals by what happened to them (created, approved, rejected, expired), "
            "counted once for each agent that voted for them.",
            ("event", "agent", "symbol"),
        )
        self.approval_latency = _Histogram(
            "cma_approval_latency_seconds",
            "Time from a proposal to its decision, by who decided (human, policy, engine).",
            _LATENCY_BUCKETS,
            ("decided_by",),
        )
        self.orders = _Counts("cma_orders", "Orders sent, by purpose (entry, exit).", ("purpose",))
        self.fills = _Counts("cma_fills", "Fills, by symbol and side.", ("symbol", "side"))
        self.denials = _Counts(
            "cma_order_denials",
            "Orders the risk checks, the live gate or the exchange denied, by reason "
            f"({', '.join(DENIAL_BUCKETS)}).",
            ("reason",),
        )
        self.candle_seconds = _Histogram(
            "cma_candle_seconds",
            "Time the engine spends on one candle (agents, synthesis, approval, risk).",
            _CANDLE_BUCKETS,
        )
        self._candle_counts = self.candle_seconds.values[()]
        self.commit_seconds = _Histogram(
            "cma_store_commit_seconds",
            "Store transaction latency: work (units of work: money moves) or batch "
            "(group commits of equity points and candles).",
            _COMMIT_BUCKETS,
            ("kind",),
        )
        self.commit_size = _Histogram(
            "cma_store_commit_size",
            "Group-commit size: units of work (work) or rows (batch) in one transaction.",
            _SIZE_BUCKETS,
            ("kind",),
        )
        self.commit_failures = _Counts(
            "cma_store_commit_failures", "Store transactions that failed.", ("kind",)
        )
        self.exchange_errors = _Counts(
            "cma_exchange_errors",
            "Failed requests to the exchange, by ccxt error class and what it means "
            "(retry, rate_limit, unknown_outcome, rejected, fatal).",
            ("error", "outcome"),
        )
        self.rate_limit_waits = _Counts(
            "cma_rate_limit_waits", "Waits because the exchange refused a read for the rate."
        )
        self.rate_limit_seconds = _Counts(
            "cma_rate_limit_wait_seconds", "Seconds spent in those waits."
        )
        self.loop_lag = _Histogram(
            "cma_event_loop_lag_seconds",
            f"How late the event loop wakes a task sleeping {LAG_INTERVAL} s.",
            _LAG_BUCKETS,
        )
        #: The last event-loop lag measured (``cma_event_loop_lag_last_seconds``).
        self.loop_lag_last = 0.0
        # Present from the start, at 0.
        self.rate_limit_waits.inc((), 0.0)
        self.rate_limit_seconds.inc((), 0.0)
        for kind in ("work", "batch"):
            self.commit_failures.inc((kind,), 0.0)
            self.commit_seconds.preset((kind,))
            self.commit_size.preset((kind,))
        for bucket in DENIAL_BUCKETS:
            self.denials.inc((bucket,), 0.0)
        self.engine: Engine | None = None
        #: Whether the last transaction of each kind failed (readiness).
        self.failing: dict[str, bool] = {"work": False, "batch": False}
        self._agents: dict[str, tuple[str, ...]] = {}
        self._handlers: dict[type, Callable[[Any], None]] = {
            ProposalCreated: self._created,
            DecisionMade: self._decided,
            OrderSubmitted: self._submitted,
            OrderFilled: self._filled,
            OrderDenied: self._denied,
        }
        self._lag_task: asyncio.Task[None] | None = None
        self.registry.register(_EngineCollector(self))

    def families(self) -> Iterable[Metric]:
        """The counts kept per event, candle and commit, as metric families."""
        for kept in (
            self.proposals,
            self.approval_latency,
            self.orders,
            self.fills,
            self.denials,
            self.candle_seconds,
            self.commit_seconds,
            self.commit_size,
            self.commit_failures,
            self.exchange_errors,
            self.rate_limit_waits,
            self.rate_limit_seconds,
            self.loop_lag,
        ):
            yield kept.family()
        last = GaugeMetricFamily(
            "cma_event_loop_lag_last_seconds", "The last event-loop lag measured."
        )
        last.add_metric([], self.loop_lag_last)
        yield last

    # --- the engine ------------------------------------------------------------------

    def attach(self, engine: Engine) -> Callable[[], None]:
        """Count ``engine``'s events and read its state when scraped; returns the
        unsubscribe."""
        self.engine = engine
        return engine.subscribe(self.on_event)

    def on_event(self, event: EngineEvent) -> None:
        """An engine subscriber (cheap for the events it does not count)."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _created(self, event: ProposalCreated) -> None:
        p = event.proposal
        agents = tuple(dict.fromkeys(v.agent for v in p.votes)) or ("none",)
        self._agents[p.id] = agents
        inc = self.proposals.inc
        for agent in agents:
            inc(("created", agent, p.symbol))

    def _decided(self, event: DecisionMade) -> None:
        d = event.decision
        # A proposal recovered from the store was created before this run: its agents
        # are unknown here.
        agents = self._agents.pop(d.proposal_id, ("unknown",))
        event_name = {"approve": "approved", "reject": "rejected", "expire": "expired"}[
            d.action.value
        ]
        inc = self.proposals.inc
        for agent in agents:
            inc((event_name, agent, event.symbol))
        self.approval_latency.observe(d.latency_ms / 1000, (d.decided_by,))

    def _submitted(self, event: OrderSubmitted) -> None:
        self.orders.inc((event.intent.purpose,))

    def _filled(self, event: OrderFilled) -> None:
        self.fills.inc((event.fill.symbol, event.fill.side.value))

    def _denied(self, event: OrderDenied) -> None:
        self.denials.inc((denial_bucket(event.reason),))

    # --- the hooks (engine.observe.Observer) ------------------------------------------

    def candle_done(self, seconds: float) -> None:
        # _Histogram.observe inlined: this runs for every candle.
        counts = self._candle_counts
        counts[bisect_left(_CANDLE_BUCKETS, seconds)] += 1
        counts[-1] += seconds

    def store_commit(self, kind: CommitKind, seconds: float, size: int, ok: bool) -> None:
        key = (kind,)
        self.commit_seconds.observe(seconds, key)
        self.commit_size.observe(size, key)
        self.failing[kind] = not ok
        if not ok:
            self.commit_failures.inc(key)

    def exchange_error(self, error: str, outcome: str) -> None:
        self.exchange_errors.inc((error, outcome))

    def rate_limit_wait(self, seconds: float) -> None:
        self.rate_limit_waits.inc()
        self.rate_limit_seconds.inc((), seconds)

    # --- event-loop lag ---------------------------------------------------------------

    def start_lag_probe(self, interval: float = LAG_INTERVAL) -> None:
        """Sample the event loop's lag every ``interval`` seconds until :meth:`stop`."""
        if self._lag_task is None:
            self._lag_task = asyncio.create_task(self._probe_lag(interval), name="cma-loop-lag")

    async def _probe_lag(self, interval: float) -> None:
        clock = time.monotonic
        while True:
            began = clock()
            await asyncio.sleep(interval)
            lag = max(0.0, clock() - began - interval)
            self.loop_lag.observe(lag)
            self.loop_lag_last = lag

    async def stop(self) -> None:
        """End the lag probe."""
        task, self._lag_task = self._lag_task, None
        if task is not None:
            task.cancel()
            # Cancelled just above: that is how the probe ends.
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- readiness --------------------------------------------------------------------

    def not_ready(self) -> list[str]:
        """Why the engine is not ready to trade (empty when it is): the feed is stale,
        the store's last transaction failed, the exchange circuit breaker is open, or
        the engine is not running."""
        engine = self.engine
        if engine is None:
            return ["engine: not started yet"]
        reasons: list[str] = []
        if engine.status in ("starting", "stopping", "stopped"):
            error = engine.error
            reasons.append(f"engine: {engine.status}" + (f" ({error})" if error else ""))
        stale = engine.feed.staleness()
        if stale is not None:
            reasons.append(f"feed: stale, no word from the market for {stale:.0f} s")
        for kind, failing in self.failing.items():
            if failing:
                what = "money moves" if kind == "work" else "equity points and candles"
                reasons.append(f"store: the last commit of {what} failed")
        if engine.breaker_open:
            reasons.append(
                f"exchange: {engine.risk.held}"
            )  # "the ... circuit breaker is open (why)"
        return reasons


class _EngineCollector(Collector):
    """The engine's state as gauges, read at each scrape (nothing per candle)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # no collect() at registration: the engine may not exist yet

    def collect(self) -> Iterable[Metric]:
        metrics = self._metrics
        engine = metrics.engine
        yield from metrics.families()
        ready = GaugeMetricFamily(
            "cma_ready", "1 when /readyz answers 200: feed fresh, store writable, breaker shut."
        )
        ready.add_metric([], 0.0 if metrics.not_ready() else 1.0)
        yield ready
        if engine is None:
            return
        risk = engine.risk_snapshot()
        equity = engine.equity_snapshot()
        for name, text, value in (
            ("cma_equity", "Account equity, in the quote currency.", float(equity.equity)),
            ("cma_cash", "Cash, in the quote currency.", float(equity.cash)),
            ("cma_drawdown_ratio", "Drawdown from the equity peak (0 to 1).", risk.drawdown),
            (
                "cma_drawdown_limit_ratio",
                "The drawdown at which trading halts (risk.max_drawdown).",
                risk.max_drawdown,
            ),
            (
                "cma_drawdown_reduce_ratio",
                "The drawdown at which trading turns to exits only (risk.reduce_drawdown).",
                risk.reduce_drawdown,
            ),
            ("cma_daily_loss_ratio", "Today's loss from the day's start equity.", risk.daily_loss),
            (
                "cma_exposure_ratio",
                "Total exposure of the open positions, a fraction of equity.",
                risk.total_exposure,
            ),
            (
                "cma_exposure_limit_ratio",
                "The total exposure limit (risk.max_total_exposure).",
                risk.max_total_exposure,
            ),
            ("cma_open_positions", "Open positions.", float(risk.open_positions)),
            (
                "cma_pending_proposals",
                "Proposals waiting for a decision.",
                float(len(engine.router)),
            ),
            ("cma_candles", "Candles the engine has taken this run.", float(engine.candles_seen)),
            (
                "cma_circuit_breaker_open",
                "1 while the exchange circuit breaker is open (exits only).",
                1.0 if engine.breaker_open else 0.0,
            ),
        ):
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], value)
            yield gauge
        state = GaugeMetricFamily(
            "cma_trading_state",
            "The trading state: 1 for the current one (ACTIVE, REDUCING, HALTED).",
            labels=["state"],
        )
        for s in TradingState:
            state.add_metric([s.value], 1.0 if risk.state is s else 0.0)
        yield state
        status = GaugeMetricFamily(
            "cma_engine_state",
            "The engine: 1 for its current status (starting, running, paused, stopping, stopped).",
            labels=["state"],
        )
        for name in ("starting", "running", "paused", "stopping", "stopped"):
            status.add_metric([name], 1.0 if engine.status == name else 0.0)
        yield status
        stale = engine.feed.staleness()
        feed = GaugeMetricFamily(
            "cma_feed_stale", "1 while the feed has not heard from its market for too long."
        )
        feed.add_metric([], 0.0 if stale is None else 1.0)
        yield feed
        age = GaugeMetricFamily(
            "cma_feed_stale_seconds", "How long the stale feed has been silent (0 when fresh)."
        )
        age.add_metric([], stale or 0.0)
        yield age
