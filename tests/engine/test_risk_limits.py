"""One defaults source for the risk limits: the configuration's ``RiskSettings``."""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal

from engine.config import RiskSettings, Settings
from engine.risk import RiskLimits


def test_every_limit_is_a_setting_with_the_same_default() -> None:
    settings = RiskSettings.model_fields
    for f in fields(RiskLimits):
        assert f.name in settings, f"RiskLimits.{f.name} has no risk setting"
        assert f.default == settings[f.name].default, f.name


def test_the_default_limits_are_the_default_configuration_s() -> None:
    assert RiskLimits() == RiskLimits.from_settings(Settings().risk)
    limits = RiskLimits()
    # The figures the review found in conflict, now the configuration's.
    assert limits.max_total_exposure == 0.60
    assert limits.max_drawdown == 0.10
    assert limits.reduce_drawdown == 0.07
    assert limits.max_symbol_exposure == 0.20


def test_limits_from_settings_carry_every_value() -> None:
    risk = RiskSettings(
        max_open_positions=3,
        max_symbol_exposure=0.3,
        max_total_exposure=0.9,
        max_correlation=0.5,
        correlation_window=20,
        max_daily_loss=0.05,
        max_drawdown=0.25,
        reduce_drawdown=0.2,
        kelly_multiplier=0.5,
        max_position_fraction=0.2,
        max_risk_per_trade=0.02,
        default_risk_fraction=0.03,
        min_trades_for_kelly=10,
        min_notional=Decimal(5),
        auto_resume_next_day=True,
    )
    limits = RiskLimits.from_settings(risk)
    for f in fields(RiskLimits):
        assert getattr(limits, f.name) == getattr(risk, f.name), f.name
