"""Validated configuration: defaults, then a TOML file, then ``CMA_*`` variables.

Environment variables use ``__`` for nesting, e.g. ``CMA_RISK__MAX_DRAWDOWN=0.15``;
a list or table is written as JSON (``CMA_FEED__SYMBOLS='["BTC/USDT"]'``), a list
of words also comma-separated (``CMA_FEED__SYMBOLS=BTC/USDT,ETH/USDT``). Every
field carries a docstring; ``cma config show`` prints them, and a bad value is
reported with its field, its value, what is allowed and where it came from.

Plain pydantic models, read by :func:`load_settings`: the console starts on every
``cma`` and this module is on its path to the first frame, so it avoids
pydantic-settings (about 50 ms of imports) and reads the docstrings only when
they are shown (:func:`field_docs`, about 15 ms at class creation otherwise).

The package: :mod:`~engine.config.sections` holds the section models and
:class:`Settings`, :mod:`~engine.config.load` reads the file, the variables and
the options into them, :mod:`~engine.config.report` says what is wrong and where
it came from, and :mod:`~engine.config.document` writes the settings out for a
person (``config show``, ``config init``). Every public name is importable from
``engine.config``.
"""

from engine.config.document import describe, example_toml, field_docs
from engine.config.load import (
    ENV_PREFIX,
    Check,
    ConfigError,
    default_config_path,
    env_values,
    load_settings,
    read_config_file,
)
from engine.config.report import Problem, Sources
from engine.config.sections import (
    CCXT_TIMEFRAMES,
    MAX_SECONDS,
    SPEED_MAX,
    SPEED_MIN,
    AgentSettings,
    ApprovalSettings,
    BrokerSettings,
    EngineSettings,
    ExchangeSettings,
    FeedSettings,
    Section,
    Settings,
    StoreSettings,
    StrategySettings,
    UiSettings,
    check_symbol,
    default_data_dir,
    parse_speed,
)
from engine.risk.limits import RiskLimits

__all__ = [
    "CCXT_TIMEFRAMES",
    "ENV_PREFIX",
    "MAX_SECONDS",
    "SPEED_MAX",
    "SPEED_MIN",
    "AgentSettings",
    "ApprovalSettings",
    "BrokerSettings",
    "Check",
    "ConfigError",
    "EngineSettings",
    "ExchangeSettings",
    "FeedSettings",
    "Problem",
    "RiskLimits",
    "Section",
    "Settings",
    "Sources",
    "StoreSettings",
    "StrategySettings",
    "UiSettings",
    "check_symbol",
    "default_config_path",
    "default_data_dir",
    "describe",
    "env_values",
    "example_toml",
    "field_docs",
    "load_settings",
    "parse_speed",
    "read_config_file",
]
