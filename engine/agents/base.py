"""The one base class for market agents, built-in and user-written."""

from __future__ import annotations

from abc import ABC, abstractmethod
from array import array
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from math import floor, isfinite, log10
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from engine.models import AgentVote, Candle, Side

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["Agent", "BatchVotes", "CandleColumns", "fmt_price"]


class CandleColumns(Protocol):
    """One symbol's candles as columns: equal-length numpy arrays in time order.

    ``ts`` is each candle's open time in ms (int64); the prices and the volume
    are float64. ``engine.backtest.data.Columns`` is one; anything with these
    six read-only arrays will do.
    """

    @property
    def ts(self) -> NDArray[np.int64]: ...
    @property
    def open(self) -> NDArray[np.float64]: ...
    @property
    def high(self) -> NDArray[np.float64]: ...
    @property
    def low(self) -> NDArray[np.float64]: ...
    @property
    def close(self) -> NDArray[np.float64]: ...
    @property
    def volume(self) -> NDArray[np.float64]: ...


@dataclass(frozen=True, slots=True)
class BatchVotes:
    """An agent's votes over a whole series at once, one entry per candle.

    ``direction[i]`` is +1 (LONG), -1 (SHORT) or 0 (no vote) on candle ``i``;
    ``strength[i]`` is the vote's strength in [0, 1] (0 where there is no vote).
    ``detail`` holds whatever per-candle arrays the agent's
    :meth:`Agent.batch_rationale` needs to write the rationale of a vote later,
    so a batch run formats text only for the candles that vote.
    """

    direction: NDArray[np.int8]
    strength: NDArray[np.float64]
    detail: Mapping[str, NDArray[Any] | SparseDetail] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.direction)
        sizes = {"strength": len(self.strength)} | {k: len(v) for k, v in self.detail.items()}
        wrong = {k: size for k, size in sizes.items() if size != n}
        if wrong:
            raise ValueError(f"batch votes: direction has {n} entries but {wrong}")

    def __len__(self) -> int:
        return len(self.direction)

    def sparse(self) -> BatchVotes:
        """These votes with each ``detail`` array kept only where a rationale may read it:
        on the candles that vote and the candle before each (see
        :meth:`Agent.batch_rationale`). A backtest keeps this form, so the detail of a
        million candles does not stay in memory."""
        import numpy as np  # only a backtest pays for importing numpy

        kept = np.asarray(self.direction) != 0
        kept[:-1] |= kept[1:]  # and the candle before each (no sort, as a union would)
        keep = np.flatnonzero(kept)
        rows = KeptRows(array("q", keep.tolist()))
        detail = {
            k: SparseDetail(rows, np.asarray(v)[keep], len(v)) for k, v in self.detail.items()
        }
        return BatchVotes(self.direction, self.strength, detail)


class KeptRows:
    """The candles a sparse detail keeps, ascending, shared by one agent's details: a
    rationale reads several of them at one candle and the one before it, in turns, so
    the last two rows found are kept."""

    __slots__ = ("_at", "_last", "_other")

    def __init__(self, at: array[int]) -> None:
        self._at = at
        self._last = (-1, -1)
        self._other = (-1, -1)

    def row(self, index: int) -> int:
        """Where candle ``index`` is kept; IndexError naming it when it is not."""
        last = self._last
        if last[0] == index:
            return last[1]
        other = self._other
        if other[0] == index:
            self._last, self._other = other, last
            return other[1]
        at = self._at
        k = bisect_left(at, index)
        if k == len(at) or at[k] != index:
            raise IndexError(
                f"detail of candle {index} was not kept: a batch rationale may read only "
                "the voting candle and the one before it"
            )
        self._last, self._other = (index, k), last
        return k


class SparseDetail:
    """A detail array's values at some candles only (:meth:`BatchVotes.sparse`);
    reading any other candle raises IndexError naming it."""

    __slots__ = ("_n", "_rows", "_values")

    def __init__(self, rows: KeptRows, values: NDArray[Any], n: int) -> None:
        self._rows = rows
        self._values = values
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> Any:
        return self._values[self._rows.row(index)]


class Agent(ABC):
    """A market agent: it reads closed candles of one symbol and may vote.

    Subclass ``Agent`` to add your own agent. The engine makes one instance per
    symbol, so an instance may keep whatever per-symbol state it needs
    (indicators, recent candles) in attributes. For every closed candle of that
    symbol, in time order, it calls ``on_candle``; the agent answers with an
    ``AgentVote`` (a direction, a strength in [0, 1] and a one-line rationale)
    or ``None`` when it has no opinion. The synthesizer weighs the votes of
    all agents, by each agent's record, into a proposal a person decides on.

    The contract:

    * ``name`` is a class attribute: a unique, short, lowercase identifier,
      such as ``"momentum"``. It labels the agent's votes, its record and its
      settings; changing it starts a new record.
    * ``__init__(symbol)`` takes the symbol only. Tunable parameters, if any,
      should be keyword-only arguments with defaults, so the engine can build
      the agent from its name alone and the optimizer can pass values in.
      Call ``super().__init__(symbol)``.
    * ``on_candle(candle)`` is plain, synchronous and quick: no I/O, no
      ``await``, no sleeping, no threads. It runs on the engine's hot path,
      once per candle per symbol, and a backtest calls it a million times.
      Keep state bounded (``collections.deque(maxlen=...)``, or the
      incremental indicators in ``engine.indicators``) so memory does not
      grow with the length of the run. Flat candles and zero volume are
      ordinary market data, not errors: an exception from ``on_candle`` means
      a bug in the agent, never "no opinion".
    * Return ``None`` while warming up and whenever you have nothing to say;
      an agent that votes on every candle drowns out the others.
    * ``on_gap(symbol, missing)`` is called by the feed before the next candle
      when ``missing`` candles never arrived (an exchange outage, a hole in a
      file). A missing candle is a gap, never a zero-volume candle at the last
      price. The default ignores gaps; override it to reset state that a gap
      makes meaningless.
    * Build votes with ``self.vote(direction, strength, rationale)``, which
      fills in the agent's name and symbol and clamps the strength to [0, 1].
      Keep the rationale to one line with the numbers that made the decision,
      e.g. ``"SMA(10) 27,412.3 crossed above SMA(30) 27,398.0"``.

    * Optionally, a **batch form** for backtests: override
      ``batch_votes(columns)`` to compute, with numpy over a whole series
      (a :class:`CandleColumns`: ``ts``, ``open``, ``high``, ``low``,
      ``close``, ``volume`` arrays), the vote ``on_candle`` would give on each
      candle, as a :class:`BatchVotes` (direction +1/-1/0 and strength per
      candle). Override ``batch_rationale(votes, index)`` too, to write the
      rationale of one voting candle from ``votes.detail``: a backtest asks
      for it only on the candles that vote, and keeps the detail only at
      those candles and the candle before each (``BatchVotes.sparse``), so
      read nothing else there. The batch form is an optimisation,
      never a second rule: it must give exactly the votes ``on_candle`` gives,
      and ``engine.agents.testing.assert_batch_matches`` is the test that
      proves it. It runs on a fresh instance (its settings, none of the
      incremental state) and sees no ``on_gap`` calls: an agent that resets
      on gaps finds them in ``columns.ts``. Without a batch form (the default
      ``batch_votes`` returns None) an agent still backtests, candle by
      candle. ``engine.agents.sma_cross`` is a worked example.

    Register the agent by its dotted path (``"mypkg.agents:SmaCrossAgent"``)
    in the settings; ``engine.agents.loader.load_agent_class`` loads it.

    A complete example, an agent that votes when a fast moving average crosses
    a slow one (the shipped ``sma_cross`` agent, ``engine.agents.sma_cross``,
    is a fuller version of it, with a batch form)::

        from engine.agents.base import Agent, fmt_price
        from engine.indicators import SMA
        from engine.models import AgentVote, Candle, Side


        class SmaCrossAgent(Agent):
            name = "sma_cross"

            def __init__(self, symbol: str, *, fast: int = 10, slow: int = 30) -> None:
                super().__init__(symbol)
                self.fast_period, self.slow_period = fast, slow
                self._reset()

            def _reset(self) -> None:
                self.fast = SMA(self.fast_period)
                self.slow = SMA(self.slow_period)
                self.prev_diff: float | None = None

            def on_gap(self, symbol: str, missing: int) -> None:
                self._reset()  # averages across a hole would mislead

            def on_candle(self, candle: Candle) -> AgentVote | None:
                fast = self.fast.update(candle.close)
                slow = self.slow.update(candle.close)
                if fast is None or slow is None:
                    return None  # warming up
                diff, prev = fast - slow, self.prev_diff
                self.prev_diff = diff
                if prev is None or (prev <= 0) == (diff <= 0):
                    return None  # no cross
                side = Side.LONG if diff > 0 else Side.SHORT
                word = "above" if side is Side.LONG else "below"
                strength = abs(diff) / candle.close * 1000  # 0.1 % apart = full strength
                return self.vote(
                    side,
                    strength,
                    f"SMA({self.fast_period}) {fmt_price(fast)} crossed {word} "
                    f"SMA({self.slow_period}) {fmt_price(slow)}",
                )
    """

    name: ClassVar[str]
    """Unique, short identifier of the agent, e.g. ``"momentum"``."""

    __slots__ = ("symbol",)

    def __init__(self, symbol: str) -> None:
        if not isinstance(getattr(type(self), "name", None), str) or not type(self).name:
            raise TypeError(f"{type(self).__qualname__} must set a class attribute `name: str`")
        self.symbol = symbol

    @abstractmethod
    def on_candle(self, candle: Candle) -> AgentVote | None:
        """Read one closed candle of ``self.symbol``; return a vote or None.

        Plain and synchronous: no I/O and no ``await``. Candles arrive in time
        order; a hole in the series is announced by ``on_gap`` first.
        """

    def on_gap(self, symbol: str, missing: int) -> None:  # noqa: B027 - optional hook
        """Hear that ``missing`` candles of ``symbol`` never arrived.

        Called before the candle that follows the hole. The default does
        nothing; override it to reset state a gap invalidates.
        """

    def vote(self, direction: Side, strength: float, rationale: str) -> AgentVote:
        """Build this agent's vote, clamping ``strength`` to [0, 1].

        Raises ``ValueError`` on a NaN strength, which is always a bug.
        """
        if strength != strength:
            raise ValueError(f"{self.name}: strength is NaN ({rationale})")
        if strength < 0.0:
            strength = 0.0
        elif strength > 1.0:
            strength = 1.0
        return AgentVote(self.name, self.symbol, direction, strength, rationale)

    def batch_votes(self, columns: CandleColumns) -> BatchVotes | None:
        """The votes ``on_candle`` would give on every candle of ``columns``, or None.

        The optional batch form (see the class docstring). Uses this instance's
        settings only, never its incremental state. The default, None, means
        the agent has no batch form and is run candle by candle.
        """
        return None

    def batch_rationale(self, votes: BatchVotes, index: int) -> str:
        """The rationale ``on_candle`` gives for the vote on candle ``index`` of ``votes``.

        Called only where ``votes.direction[index]`` is not 0. An agent with a
        batch form overrides it; the default raises ``NotImplementedError``.
        """
        raise NotImplementedError(f"{type(self).__qualname__} has no batch_rationale")

    def batch_vote(self, votes: BatchVotes, index: int) -> AgentVote | None:
        """The :class:`AgentVote` on candle ``index`` of ``votes`` (with its rationale), or None."""
        direction = int(votes.direction[index])
        if direction == 0:
            return None
        side = Side.LONG if direction > 0 else Side.SHORT
        return self.vote(side, float(votes.strength[index]), self.batch_rationale(votes, index))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.symbol!r})"


def fmt_price(x: float) -> str:
    """Format a price for a rationale: thousands separators, up to six significant digits.

    ``27410.53`` gives ``"27,410.5"``, ``1.234567`` gives ``"1.23457"``,
    ``0.000123456`` gives ``"0.000123456"``, ``100.3`` gives ``"100.3"``.
    """
    if x == 0.0 or not isfinite(x):
        return f"{x:,.1f}"
    decimals = max(1, 5 - floor(log10(abs(x))))
    text = f"{x:,.{decimals}f}".rstrip("0")
    return text + "0" if text.endswith(".") else text
