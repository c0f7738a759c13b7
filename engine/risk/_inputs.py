"""Checks of the risk package's inputs: a bad argument is a ValueError naming it.

Shared by the sizer, the correlation tracker, the drawdown monitor and the risk
engine; nothing here keeps state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal

from engine.models import Proposal, Side

#: Decimal digits for the risk figures: products of 8-place quantities and prices
#: of large accounts exceed the default 28.
PRECISION = 60


def require_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def require_unit(name: str, value: object, *, allow_zero: bool) -> None:
    ok = False
    # NaN fails both comparisons, so it is rejected here too.
    if isinstance(value, int | float) and not isinstance(value, bool):
        ok = 0 < value <= 1 or (allow_zero and value == 0)
    if not ok:
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")


def require_float(name: str, value: object, *, allow_zero: bool) -> None:
    ok = False
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        ok = value > 0 or (allow_zero and value == 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def require_decimal(name: str, value: object, *, positive: bool) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{name} must be a finite Decimal, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def require_ts(name: str, value: object) -> None:
    require_int(name, value, 0)


def require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def check_proposal(proposal: Proposal) -> None:
    require_text("proposal.symbol", proposal.symbol)
    require_decimal("proposal.entry", proposal.entry, positive=True)
    require_decimal("proposal.stop", proposal.stop, positive=False)
    if proposal.stop < 0:
        raise ValueError(f"proposal.stop must be >= 0 (0 means no stop), got {proposal.stop}")
    if proposal.stop == 0:
        return
    if proposal.side is Side.LONG and proposal.stop >= proposal.entry:
        raise ValueError(
            f"proposal.stop must be below proposal.entry for a long, "
            f"got stop {proposal.stop} >= entry {proposal.entry}"
        )
    if proposal.side is Side.SHORT and proposal.stop <= proposal.entry:
        raise ValueError(
            f"proposal.stop must be above proposal.entry for a short, "
            f"got stop {proposal.stop} <= entry {proposal.entry}"
        )


def check_marks(marks: Mapping[str, Decimal]) -> None:
    for symbol, mark in marks.items():
        require_decimal(f"marks[{symbol!r}]", mark, positive=True)
