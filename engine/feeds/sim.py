"""The built-in demo market: seeded, deterministic, no network and no files.

Each candle's log return is ``beta * market + idiosyncratic + jumps``, with a
weak pull back towards the start price so a session that runs for days still
shows plausible prices (over a month they stay between about half and twice
where they began). A two-state Markov switch moves the whole market
between calm and turbulent regimes; in turbulence the market factor grows
more than the idiosyncratic noise, so correlations rise as they do in real
sell-offs. Jumps arrive as Poisson processes, one for the market and one per
symbol. Wicks and volume are drawn per candle; volume is lognormal and grows
with turbulence and with the size of the move. Volatility is about 80 % a year
for a symbol that moves one for one with the market: crypto at its livelier.

On top of that each symbol goes through phases of its own, and two of them
carry a modest edge that the shipped agents can find:

* **trend** (about 30 % of the time): it opens with an impulse on heavy volume,
  then drifts a quarter of a standard deviation per candle its way, with volume
  on the candles that go with it and thin volume on the pullbacks. Momentum's
  MACD turns and price action's breakouts in its direction tend to pay; RSI
  reversals against it tend to lose.
* **range** (about 45 %): prices are pulled back towards where the range began,
  and a close beyond either edge is rejected: the candle reaches past the
  edge and closes back inside, with a long wick on volume. Pushes towards an
  edge come on thin volume. Price action's rejection candles at support and
  resistance tend to pay; breakouts mostly fail.
* **drift** (about 25 %): the plain random walk, with no edge for anyone.

Turbulence swamps the drift of a trend, and jumps ignore the phases. So the
edge is modest: with every proposal taken, the default agents end a few days of
candles ahead after fees (each of five seeds tried), Kelly sizes price action
small, and momentum's record, whose RSI reversals fight the trends, is
sometimes flat, so some of its proposals come out at size 0. The risk limits
still matter. A symbol's phase is ``SimFeed.phases`` (the regime,
``SimFeed.regime``), for tests and curiosity; the engine never reads them.

Everything comes from one ``random.Random(seed)`` in a fixed order, so the
same seed and symbols always give the same candles.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from engine.feeds.base import GapCallback, SyncFeed
from engine.models import Candle
from engine.timeframes import candle_index, candle_open, floor_ts


@dataclass(frozen=True, slots=True)
class SimSymbol:
    """How one demo symbol behaves, per 1m candle in the calm regime."""

    price: float  # start price, quote currency
    beta: float  # loading on the market factor
    idio: float  # idiosyncratic volatility, in units of the market's
    volume: float  # median volume per 1m candle, base currency
    decimals: int  # prices are rounded to this many decimal places


#: The default demo market: start prices and volumes in the range of early 2026.
DEFAULT_MARKET: dict[str, SimSymbol] = {
    "BTC/USDT": SimSymbol(price=91_500.0, beta=1.0, idio=0.35, volume=12.0, decimals=2),
    "ETH/USDT": SimSymbol(price=3_150.0, beta=1.15, idio=0.6, volume=260.0, decimals=2),
    "SOL/USDT": SimSymbol(price=135.0, beta=1.2, idio=0.9, volume=2_600.0, decimals=3),
    "BNB/USDT": SimSymbol(price=880.0, beta=0.75, idio=0.65, volume=180.0, decimals=2),
    "XRP/USDT": SimSymbol(price=2.1, beta=0.9, idio=0.95, volume=450_000.0, decimals=4),
}
DEFAULT_SYMBOLS: tuple[str, ...] = tuple(DEFAULT_MARKET)

#: Deterministic start when the feed is not paced against the wall clock: 2026-01-01 UTC.
SIM_EPOCH_MS = 1_767_225_600_000

# Market volatility per 1m candle: about 80 % a year, crypto at its livelier. A 2-ATR
# stop then sits some 0.5 % from the entry, clear of a 0.1 % fee each way.
_MARKET_SIGMA_1M = 0.0011
# Per-candle regime switch probabilities: calm lasts ~480 candles, turbulence ~90.
_P_TO_TURBULENT = 1 / 480
_P_TO_CALM = 1 / 90
# Turbulence multiplies (market, idiosyncratic, wick, volume) by these.
_TURBULENT = (2.8, 1.8, 2.2, 1.9)
_CALM = (1.0, 1.0, 1.0, 1.0)
# Poisson jump rates per candle and jump size in per-candle standard deviations.
_MARKET_JUMP_RATE = 1 / 6_000
_IDIO_JUMP_RATE = 1 / 3_000
_JUMP_SIGMAS = 8.0
# Pull of log price towards its start, per minute of market time (half-life ~48 days).
_REVERSION_PER_MIN = 1e-5
# Hard bound on log price drift from the start: prices stay far from a zero tick.
_MAX_LOG_DRIFT = 4.0
# Mean wick beyond the body, in per-candle standard deviations.
_WICK = 0.8
# Volume: lognormal spread, and extra volume per standard deviation of move.
_VOLUME_SPREAD = 0.5
_VOLUME_PER_SIGMA = 0.6

# Each symbol's phase: drift (no edge), trend or range. Per-candle probability of
# leaving each (mean lengths ~80, ~90 and ~150 candles: a quarter, 30 % and 45 % of
# the time); a phase left goes to either of the other two.
_DRIFT, _TREND, _RANGE = range(3)
_LEAVE = (1 / 80, 1 / 90, 1 / 150)
_PHASE_NAMES = ("drift", "trend", "range")
# Volume per phase: (lognormal spread, share of the extra volume a big move brings).
# Drifts and ranges trade on steadier volume than trends, so fewer of their moves
# look like a confirmed breakout.
_PHASE_VOLUME = ((0.3, 0.4), (_VOLUME_SPREAD, 1.0), (0.25, 0.3))
# Trend: drift per candle and the opening impulse, in per-candle standard deviations;
# volume on the impulse, on candles with the trend and on candles against it.
_TREND_DRIFT = 0.25
_TREND_IMPULSE = 2.5
_TREND_IMPULSE_VOLUME = 3.0
_TREND_WITH_VOLUME = 1.6
_TREND_AGAINST_VOLUME = 0.6
# Range: half-width around the price where it began and pull back to that middle per
# candle, in standard deviations.
# A close beyond an edge is rejected: the candle closes back inside, past its open,
# with a wick reaching ``_RANGE_WICK`` (plus an exponential) beyond the edge, on volume.
# Moves towards an edge come on thin volume.
_RANGE_HALF_WIDTH = 7.0
_RANGE_PULL = 0.045
_RANGE_WICK = 0.8
_RANGE_REJECT_VOLUME = 3.0
_RANGE_EDGE_VOLUME = 0.7


def sim_symbol(symbol: str) -> SimSymbol:
    """Parameters of ``symbol``: the default market's, or derived from its name."""
    known = DEFAULT_MARKET.get(symbol)
    if known is not None:
        return known
    # Seeding by name (sha512 of the string) is stable across runs and machines.
    rng = random.Random(f"cma-sim:{symbol}")
    price = 10 ** rng.uniform(-1.0, 3.5)
    return SimSymbol(
        price=price,
        beta=rng.uniform(0.6, 1.2),
        idio=rng.uniform(0.4, 0.9),
        volume=round(10 ** rng.uniform(5.0, 6.0) / price, 2),
        decimals=max(2, 5 - math.floor(math.log10(price))),
    )


def _phase_name(phase: int, trend: int) -> str:
    if phase == _TREND:
        return "trend up" if trend > 0 else "trend down"
    return _PHASE_NAMES[phase]


class SimFeed(SyncFeed):
    """A seeded demo market of correlated symbols with volatility regimes and jumps.

    ``start_ts`` defaults to the last closed candle on the wall clock when the
    feed is paced (``speed`` set), else to 2026-01-01 UTC so runs are
    reproducible; it is rounded down to a candle open. ``limit`` stops after
    that many batches (None: forever). The seed fixes the prices; the start
    only fixes the timestamps.
    """

    name = "sim"

    def __init__(
        self,
        symbols: Sequence[str] = DEFAULT_SYMBOLS,
        timeframe: str = "1m",
        seed: int = 7,
        speed: float | None = None,
        start_ts: int | None = None,
        limit: int | None = None,
        on_gap: GapCallback | None = None,
    ) -> None:
        super().__init__(symbols, timeframe, speed=speed, on_gap=on_gap)
        if not self.symbols:
            raise ValueError("SimFeed needs at least one symbol")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        self.seed = seed
        self.limit = limit
        if start_ts is None:
            if speed is None:
                start_ts = SIM_EPOCH_MS
            else:
                now_ms = time.time_ns() // 1_000_000
                start_ts = candle_open(candle_index(now_ms, timeframe) - 1, timeframe)
        self.start_ts = floor_ts(start_ts, timeframe)
        self.params = tuple(sim_symbol(s) for s in self.symbols)
        #: The regime of the latest batch: "calm" or "turbulent".
        self.regime = "calm"
        #: Each symbol's phase in the latest batch: "drift", "trend up", "trend down", "range".
        self.phases = ["drift"] * len(self.symbols)

    def iter_batches(self) -> Iterator[list[Candle]]:
        """Yield the market's batches from ``start_ts``; each pass replays the same market."""
        self.gaps.clear()
        self.regime = "calm"
        rng = random.Random(self.seed)
        gauss, rand, expo = rng.gauss, rng.random, rng.expovariate
        exp = math.exp
        tf, limit = self.timeframe, self.limit
        minutes = self.timeframe_ms / 60_000
        sigma_m = _MARKET_SIGMA_1M * math.sqrt(minutes)
        reversion = min(0.5, _REVERSION_PER_MIN * minutes)
        symbols = self.symbols
        n = len(symbols)
        betas = [p.beta for p in self.params]
        idio = [p.idio * sigma_m for p in self.params]
        # Total per-candle standard deviation of each symbol in the calm regime.
        sd = [math.hypot(p.beta, p.idio) * sigma_m for p in self.params]
        wick = [_WICK * s for s in sd]
        jump = [_JUMP_SIGMAS * s for s in sd]
        vol_base = [p.volume * minutes * exp(-0.5 * _VOLUME_SPREAD**2) for p in self.params]
        surge = [_VOLUME_PER_SIGMA / s for s in sd]
        decimals = [p.decimals for p in self.params]
        price = [p.price for p in self.params]
        drift = [0.0] * n  # log price minus log start price
        next_jump = [expo(_IDIO_JUMP_RATE) for _ in range(n)]
        next_market_jump = expo(_MARKET_JUMP_RATE)
        market_jump = _JUMP_SIGMAS * sigma_m
        turbulent = False
        phase = [_DRIFT] * n
        trend = [0] * n  # +1 or -1 in a trend
        center = [0.0] * n  # a range's middle, as a log offset from the start price
        self.phases = ["drift"] * n
        index = candle_index(self.start_ts, tf)
        ts = self.start_ts
        step = 0 if tf == "1M" else self.timeframe_ms
        emitted = 0
        while limit is None or emitted < limit:
            if self._closed:
                return
            if rand() < (_P_TO_CALM if turbulent else _P_TO_TURBULENT):
                turbulent = not turbulent
                self.regime = "turbulent" if turbulent else "calm"
            m_mult, i_mult, w_mult, v_mult = _TURBULENT if turbulent else _CALM
            market = gauss() * sigma_m * m_mult
            next_market_jump -= 1.0
            while next_market_jump <= 0.0:
                market += gauss() * market_jump
                next_market_jump += expo(_MARKET_JUMP_RATE)
            batch: list[Candle] = []
            for i in range(n):
                x = drift[i]
                s = sd[i]
                ph = phase[i]
                impulse = 0.0
                if rand() < _LEAVE[ph]:
                    # Leave for one of the two other phases; a trend leans against the drift.
                    ph = phase[i] = (ph + 1 + (rand() < 0.5)) % 3
                    if ph == _TREND:
                        up = rand() < 0.5 - 0.25 * math.tanh(x / 0.5)
                        trend[i] = 1 if up else -1
                        impulse = trend[i] * _TREND_IMPULSE * s
                    elif ph == _RANGE:
                        center[i] = x
                    self.phases[i] = _phase_name(ph, trend[i])
                r = betas[i] * market + gauss() * idio[i] * i_mult - reversion * x
                nj = next_jump[i] - 1.0
                while nj <= 0.0:
                    r += gauss() * jump[i]
                    nj += expo(_IDIO_JUMP_RATE)
                next_jump[i] = nj
                v_phase = 1.0
                reach = 0.0  # how far beyond a range's edge the candle reached before rejection
                if ph == _TREND:
                    r += impulse + trend[i] * _TREND_DRIFT * s
                    if impulse:
                        v_phase = _TREND_IMPULSE_VOLUME
                    else:
                        v_phase = _TREND_WITH_VOLUME if r * trend[i] > 0 else _TREND_AGAINST_VOLUME
                elif ph == _RANGE:
                    dev = x - center[i]
                    r -= _RANGE_PULL * dev
                    edge = _RANGE_HALF_WIDTH * s
                    beyond = abs(dev + r) - edge
                    if beyond > 0.0:
                        # Rejected: the candle reaches past the edge and closes back inside.
                        side = 1.0 if dev + r > 0.0 else -1.0
                        extreme = edge + beyond + s * (_RANGE_WICK + expo(1.0))
                        # It closes back inside, past its own open, so never beyond the
                        # levels of the candles before it (a rejection, not a breakout).
                        inside = min(side * dev, edge) - s * (0.2 + 0.6 * rand())
                        r = side * inside - dev
                        reach = side * (extreme - side * dev)
                        v_phase = _RANGE_REJECT_VOLUME
                    elif (dev + r) * r > 0.0:
                        v_phase = _RANGE_EDGE_VOLUME
                x += r
                if x > _MAX_LOG_DRIFT or x < -_MAX_LOG_DRIFT:
                    r -= 2.0 * (x - math.copysign(_MAX_LOG_DRIFT, x))
                    x = drift[i] + r
                drift[i] = x
                o = price[i]
                c = o * exp(r)
                price[i] = c
                w = wick[i] * w_mult
                d = decimals[i]
                up_wick = w * expo(1.0)
                down_wick = w * expo(1.0)
                if reach > 0.0:
                    up_wick = reach
                elif reach < 0.0:
                    down_wick = -reach
                hi = round((c if c > o else o) * exp(up_wick), d)
                lo = round((o if c > o else c) * exp(-down_wick), d)
                spread, surge_k = _PHASE_VOLUME[ph]
                volume = vol_base[i] * v_mult * v_phase * exp(spread * gauss())
                volume *= 1.0 + surge[i] * abs(r) * surge_k
                batch.append(
                    Candle(symbols[i], ts, round(o, d), hi, lo, round(c, d), round(volume, 4))
                )
            yield batch
            emitted += 1
            index += 1
            ts = ts + step if step else candle_open(index, tf)
