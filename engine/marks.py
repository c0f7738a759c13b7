"""Marks: the last close of each symbol, kept as the float the candle carries and
turned into a ``Decimal`` only when something reads it (equity, sizing, a view)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import TypeVar, overload

from engine.models import to_decimal

_T = TypeVar("_T")


class Marks(Mapping[str, Decimal]):
    """The last close per symbol; :meth:`set` costs a float store per candle."""

    __slots__ = ("_closes", "_decimals")

    def __init__(self) -> None:
        self._closes: dict[str, float] = {}
        self._decimals: dict[str, Decimal] = {}

    def set(self, symbol: str, close: float) -> None:
        """A new close for ``symbol`` (its Decimal is made when read)."""
        self._closes[symbol] = close
        self._decimals.pop(symbol, None)

    def __setitem__(self, symbol: str, price: Decimal) -> None:
        self._closes[symbol] = float(price)
        self._decimals[symbol] = price

    def __getitem__(self, symbol: str) -> Decimal:
        price = self._decimals.get(symbol)
        if price is None:
            price = self._decimals[symbol] = to_decimal(self._closes[symbol])
        return price

    @overload
    def get(self, symbol: str, /) -> Decimal | None: ...
    @overload
    def get(self, symbol: str, /, default: Decimal) -> Decimal: ...
    @overload
    def get(self, symbol: str, /, default: _T) -> Decimal | _T: ...
    def get(self, symbol: str, /, default: object = None) -> object:
        return self[symbol] if symbol in self._closes else default

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._closes

    def __iter__(self) -> Iterator[str]:
        return iter(self._closes)

    def __len__(self) -> int:
        return len(self._closes)
