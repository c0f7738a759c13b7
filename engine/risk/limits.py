"""The risk limits: one frozen settings model, the configuration's ``[risk]`` section.

:class:`RiskLimits` is both what ``engine.config`` reads from the file and the
variables (``Settings.risk``) and what the risk engine enforces, so there is one
source of every default, range and message. Fractions are of equity. It is a
pydantic model (pydantic stays at the edges: this is configuration), frozen and
validated on creation; a bad value raises ``pydantic.ValidationError`` (a
``ValueError``) naming the field.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

#: Largest money amounts: the paper account's cash and the smallest order.
MAX_CASH = Decimal(10**12)
MAX_MIN_NOTIONAL = Decimal(10**9)


class RiskLimits(BaseModel):
    """The ``[risk]`` settings: the paper account's cash, the sizing and the limits.

    The model configuration is ``engine.config.Section``'s (unknown keys are
    errors, frozen, validators built on first use, no NaN or infinity).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True, allow_inf_nan=False)

    initial_cash: Decimal = Field(default=Decimal("100000"), gt=0, le=MAX_CASH)
    """Paper account's starting cash in the quote currency."""
    sizing: Literal["kelly", "fraction"] = "kelly"
    """kelly sizes each entry by the agents' record and the proposal's confidence;
    fraction makes every entry equity_fraction of equity. The limits below apply
    to both."""
    equity_fraction: float = Field(default=1.0, gt=0.0, le=1.0)
    """With sizing = "fraction", each entry's share of equity (1.0 is all of it)."""
    kelly_multiplier: float = Field(default=0.25, gt=0.0, le=1.0)
    """Fraction of full Kelly to bet (0.25 is quarter Kelly)."""
    default_risk_fraction: float = Field(default=0.02, gt=0.0, le=1.0)
    """Fraction of equity per position before there are enough trades for Kelly."""
    min_trades_for_kelly: int = Field(default=30, gt=0, le=1_000_000)
    """Trades in the record before Kelly sizing replaces the default fraction."""
    max_position_fraction: float = Field(default=0.10, gt=0.0, le=1.0)
    """Cap on one position's notional as a fraction of equity."""
    max_risk_per_trade: float = Field(default=0.01, gt=0.0, le=1.0)
    """Most equity one trade may lose at its stop."""
    # validate_default: the ordering checks must also hold against a default.
    min_notional: Decimal = Field(
        default=Decimal("10"), gt=0, le=MAX_MIN_NOTIONAL, validate_default=True
    )
    """Smallest order notional in the quote currency."""
    max_open_positions: int = Field(default=5, gt=0, le=1_000)
    """Most positions open at once."""
    max_symbol_exposure: float = Field(default=0.20, gt=0.0, le=1.0)
    """Most exposure in one symbol, as a fraction of equity."""
    max_total_exposure: float = Field(default=0.60, gt=0.0, le=1.0)
    """Most total exposure, as a fraction of equity."""
    max_correlation: float = Field(default=0.80, ge=0.0, le=1.0)
    """Deny an entry whose returns correlate above this with an open position's."""
    correlation_window: int = Field(default=60, gt=2, le=10_000)
    """Returns in the rolling correlation window."""
    max_daily_loss: float = Field(default=0.03, gt=0.0, le=1.0)
    """Halt when today's loss exceeds this fraction of the day's starting equity."""
    max_drawdown: float = Field(default=0.10, gt=0.0, le=1.0)
    """Halt when equity falls this fraction below its peak."""
    reduce_drawdown: float = Field(default=0.07, gt=0.0, le=1.0, validate_default=True)
    """Allow exits only (REDUCING) past this drawdown."""
    auto_resume_next_day: bool = False
    """Leave HALTED on a new UTC day by itself (otherwise only by command)."""

    @field_validator("min_notional")
    @classmethod
    def _below_cash(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        # initial_cash is declared first, so it is in info.data when it was valid.
        cash = info.data.get("initial_cash")
        if cash is not None and value >= cash:
            raise ValueError(f"must be below risk.initial_cash ({cash}), got {value}")
        return value

    @field_validator("reduce_drawdown")
    @classmethod
    def _ordered(cls, value: float, info: ValidationInfo) -> float:
        # max_drawdown is declared first, so it is in info.data when it was valid.
        max_drawdown = info.data.get("max_drawdown")
        if max_drawdown is not None and value > max_drawdown:
            raise ValueError(f"must not exceed risk.max_drawdown ({max_drawdown}), got {value}")
        return value

    @property
    def min_correlation_samples(self) -> int:
        """Fewest aligned returns for which a correlation is trusted."""
        return max(3, self.correlation_window // 2)
