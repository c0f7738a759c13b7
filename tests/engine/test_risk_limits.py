"""One settings model for the risk limits: ``RiskLimits`` is the configuration's ``[risk]``."""

from __future__ import annotations

import math
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from engine.config import Section, Settings, load_settings
from engine.risk import RiskEngine, RiskLimits


def test_the_configuration_s_risk_section_is_the_limits_model() -> None:
    settings = Settings.model_fields["risk"]
    assert settings.annotation in (RiskLimits, "RiskLimits")
    assert type(Settings().risk) is RiskLimits
    # The same model configuration as every other section.
    assert RiskLimits.model_config == Section.model_config


def test_the_default_limits_are_the_default_configuration_s() -> None:
    limits = RiskLimits()
    assert limits == Settings().risk
    # The figures the review found in conflict, now the configuration's.
    assert limits.max_total_exposure == 0.60
    assert limits.max_drawdown == 0.10
    assert limits.reduce_drawdown == 0.07
    assert limits.max_symbol_exposure == 0.20


@pytest.mark.usefixtures("isolated_env")
def test_the_engine_enforces_the_configured_limits_unchanged() -> None:
    risk = load_settings(environ={}, risk={"max_open_positions": 3, "max_drawdown": 0.25}).risk
    engine = RiskEngine(risk)
    assert engine.limits is risk
    assert engine.limits.max_open_positions == 3


def test_the_limits_are_frozen() -> None:
    limits = RiskLimits()
    with pytest.raises(ValidationError):
        limits.max_drawdown = 0.5  # type: ignore[misc]


BAD: list[tuple[str, dict[str, Any]]] = [
    ("max_open_positions", {"max_open_positions": 0}),
    ("max_open_positions", {"max_open_positions": 2.5}),
    ("max_symbol_exposure", {"max_symbol_exposure": 0.0}),
    ("max_total_exposure", {"max_total_exposure": 1.5}),
    ("max_correlation", {"max_correlation": -0.1}),
    ("correlation_window", {"correlation_window": 2}),
    ("max_daily_loss", {"max_daily_loss": 0.0}),
    ("max_drawdown", {"max_drawdown": math.nan}),
    ("reduce_drawdown", {"max_drawdown": 0.2, "reduce_drawdown": 0.3}),
    ("kelly_multiplier", {"kelly_multiplier": 0.0}),
    ("max_position_fraction", {"max_position_fraction": 2.0}),
    ("max_risk_per_trade", {"max_risk_per_trade": -0.01}),
    ("default_risk_fraction", {"default_risk_fraction": 1.01}),
    ("min_trades_for_kelly", {"min_trades_for_kelly": 0}),
    ("min_notional", {"min_notional": Decimal(0)}),
    ("min_notional", {"initial_cash": Decimal(400), "min_notional": Decimal(500)}),
    ("auto_resume_next_day", {"auto_resume_next_day": "maybe"}),
]


@pytest.mark.parametrize(("field", "values"), BAD, ids=[f"{i}-{f}" for i, (f, _) in enumerate(BAD)])
def test_a_bad_limit_is_a_value_error_naming_the_field(field: str, values: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=field) as caught:
        RiskLimits(**values)
    assert isinstance(caught.value, ValidationError)
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


def test_the_ordering_messages_are_the_configuration_s() -> None:
    with pytest.raises(ValidationError, match=r"must not exceed risk\.max_drawdown \(0\.2\)"):
        RiskLimits(max_drawdown=0.2, reduce_drawdown=0.3)
    with pytest.raises(ValidationError, match=r"must be below risk\.initial_cash \(400\)"):
        RiskLimits(initial_cash=Decimal(400), min_notional=Decimal(500))


def test_min_correlation_samples_is_half_the_window_and_at_least_three() -> None:
    assert RiskLimits(correlation_window=60).min_correlation_samples == 30
    assert RiskLimits(correlation_window=5).min_correlation_samples == 3


def test_the_engine_refuses_anything_but_the_limits_model() -> None:
    with pytest.raises(ValueError, match="limits must be a RiskLimits"):
        RiskEngine({"max_drawdown": 0.1})  # type: ignore[arg-type]


def test_every_public_name_of_the_package_resolves() -> None:
    import engine.risk

    for name in engine.risk.__all__:
        assert getattr(engine.risk, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'RiskManager'"):
        _ = engine.risk.RiskManager  # type: ignore[attr-defined]


def test_the_configuration_loads_the_limits_and_not_the_rest_of_risk() -> None:
    probe = (
        "import sys, engine.config; "
        "print(sorted(m for m in sys.modules if m.startswith('engine.')"
        " and not m.startswith('engine.config.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['engine.config', 'engine.risk', 'engine.risk.limits']"
