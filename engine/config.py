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
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)

# Timeframes ccxt knows (``Exchange.timeframes`` keys across exchanges). Kept here
# rather than imported because importing ccxt costs about a second.
CCXT_TIMEFRAMES: tuple[str, ...] = (
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
    "1d", "3d", "1w", "1M",
)  # fmt: skip

_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,15}/[A-Z0-9]{2,15}$")


def default_config_path() -> Path:
    """``$XDG_CONFIG_HOME/cma/config.toml`` (``~/.config`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cma" / "config.toml"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/cma`` (``~/.local/share`` when unset)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cma"


def check_symbol(value: str) -> str:
    """Upper-case and check a ``BASE/QUOTE`` symbol."""
    symbol = value.strip().upper()
    if not _SYMBOL_RE.match(symbol):
        raise ValueError(f"symbol must look like BASE/QUOTE (e.g. BTC/USDT), got {value!r}")
    return symbol


ENV_PREFIX = "CMA_"


class Section(BaseModel):
    """A config section: unknown keys are errors; each field's docstring describes it.

    Validators are built on first use (``defer_build``): a start with nothing to
    validate (no file, no variables, no options) builds none. The defaults are
    code, not input; the tests check that they validate to themselves.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class StoreSettings(Section):
    path: Path | None = None
    """SQLite file of the store. Default: $XDG_DATA_HOME/cma/cma.db."""
    equity_retention_days: int = Field(default=90, gt=0)
    """Equity snapshots older than this many days are pruned."""
    candle_retention_days: int = Field(default=30, gt=0)
    """Cached candles older than this many days are pruned."""
    busy_timeout_ms: int = Field(default=5000, gt=0)
    """How long a connection waits for a lock before failing."""

    def resolved_path(self) -> Path:
        return self.path if self.path is not None else default_data_dir() / "cma.db"


class FeedSettings(Section):
    kind: Literal["sim", "replay", "ccxt"] = "sim"
    """Where candles come from: the built-in demo market, CSV replay, or an exchange."""
    symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT")
    """Symbols to watch, each BASE/QUOTE."""
    timeframe: str = "1m"
    """Candle timeframe, one ccxt knows (1m, 5m, 1h, ...)."""
    seed: int = 7
    """Seed of the demo market: the same seed plays the same market."""
    speed: float | Literal["max"] = 60.0
    """Market seconds per wall second of the sim and replay feeds (60 plays an hour
    a minute; 1 is real time), or "max"."""
    files: tuple[Path, ...] = ()
    """CSV files for the replay feed (timestamp,open,high,low,close,volume)."""
    exchange: str = "binance"
    """ccxt exchange id for the ccxt feed."""

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one symbol is required")
        return tuple(check_symbol(s) for s in value)

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str) -> str:
        if value not in CCXT_TIMEFRAMES:
            raise ValueError(
                f"timeframe must be one of {', '.join(CCXT_TIMEFRAMES)}; got {value!r}"
            )
        return value

    @field_validator("speed")
    @classmethod
    def _speed(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not value > 0:
            raise ValueError(f"speed must be > 0 or 'max', got {value!r}")
        return value


class ApprovalSettings(Section):
    policy: Literal["manual", "auto", "queue-only"] = "manual"
    """manual waits for a keypress; auto approves at or above auto_confidence;
    queue-only never approves."""
    auto_confidence: float = Field(default=0.7, ge=0.0, le=1.0)
    """Confidence at or above which the auto policy approves."""
    below_confidence: Literal["queue", "reject"] = "queue"
    """What the auto policy does below auto_confidence."""
    ttl_seconds: float = Field(default=1200.0, gt=0)
    """A proposal expires this many market seconds after it is made."""
    dedup_window_seconds: float = Field(default=300.0, ge=0)
    """A second proposal for the same symbol and side inside this window is merged."""
    max_pending: int = Field(default=50, gt=0)
    """At most this many proposals wait; beyond it the oldest expire first."""
    on_stop: Literal["keep", "expire"] = "keep"
    """On a graceful stop, keep pending proposals for the next start or expire them."""


class RiskSettings(Section):
    initial_cash: Decimal = Field(default=Decimal("100000"), gt=0)
    """Paper account's starting cash in the quote currency."""
    kelly_multiplier: float = Field(default=0.25, gt=0.0, le=1.0)
    """Fraction of full Kelly to bet (0.25 is quarter Kelly)."""
    default_risk_fraction: float = Field(default=0.02, gt=0.0, le=1.0)
    """Fraction of equity per position before there are enough trades for Kelly."""
    min_trades_for_kelly: int = Field(default=30, gt=0)
    """Trades in the record before Kelly sizing replaces the default fraction."""
    max_position_fraction: float = Field(default=0.10, gt=0.0, le=1.0)
    """Cap on one position's notional as a fraction of equity."""
    max_risk_per_trade: float = Field(default=0.01, gt=0.0, le=1.0)
    """Most equity one trade may lose at its stop."""
    min_notional: Decimal = Field(default=Decimal("10"), gt=0)
    """Smallest order notional in the quote currency."""
    max_open_positions: int = Field(default=5, gt=0)
    """Most positions open at once."""
    max_symbol_exposure: float = Field(default=0.20, gt=0.0, le=1.0)
    """Most exposure in one symbol, as a fraction of equity."""
    max_total_exposure: float = Field(default=0.60, gt=0.0, le=1.0)
    """Most total exposure, as a fraction of equity."""
    max_correlation: float = Field(default=0.80, ge=0.0, le=1.0)
    """Deny an entry whose returns correlate above this with an open position's."""
    correlation_window: int = Field(default=60, gt=2)
    """Returns in the rolling correlation window."""
    max_daily_loss: float = Field(default=0.03, gt=0.0, le=1.0)
    """Halt when today's loss exceeds this fraction of the day's starting equity."""
    max_drawdown: float = Field(default=0.10, gt=0.0, le=1.0)
    """Halt when equity falls this fraction below its peak."""
    reduce_drawdown: float = Field(default=0.07, gt=0.0, le=1.0)
    """Allow exits only (REDUCING) past this drawdown."""
    auto_resume_next_day: bool = False
    """Leave HALTED on a new UTC day by itself (otherwise only by command)."""

    @field_validator("reduce_drawdown")
    @classmethod
    def _ordered(cls, value: float, info: ValidationInfo) -> float:
        # max_drawdown is declared first, so it is in info.data when it was valid.
        max_drawdown = info.data.get("max_drawdown")
        if max_drawdown is not None and value > max_drawdown:
            raise ValueError(f"must not exceed risk.max_drawdown ({max_drawdown}), got {value}")
        return value


class BrokerSettings(Section):
    kind: Literal["paper", "ccxt"] = "paper"
    """paper simulates fills; ccxt sends orders to the exchange (LIVE)."""
    fee_rate: Decimal = Field(default=Decimal("0.001"), ge=0, le=Decimal("0.05"))
    """Fee per fill as a fraction of notional (0.001 is 10 bps)."""
    slippage_bps: Decimal = Field(default=Decimal("2"), ge=0, le=Decimal("500"))
    """Paper slippage against the fill price, in basis points."""
    allow_shorts: bool | None = None
    """Allow short positions. Default: on for paper, off on spot exchanges."""

    def shorts_allowed(self) -> bool:
        return self.allow_shorts if self.allow_shorts is not None else self.kind == "paper"


class AgentSettings(Section):
    enabled: tuple[str, ...] = ("price_action", "momentum")
    """Built-in agents to run."""
    user: tuple[str, ...] = ()
    """User agents by dotted path, e.g. "mypkg.agents:MyAgent"."""
    min_votes: int = Field(default=1, gt=0)
    """Votes needed on one candle before a proposal is made."""
    min_confidence: float = Field(default=0.3, ge=0.0, le=1.0)
    """Proposals below this confidence are not made at all."""
    stop_atr: float = Field(default=2.0, gt=0)
    """Stop distance in ATRs from the entry."""
    reward_risk: float = Field(default=2.0, gt=0)
    """Take-profit distance as a multiple of the stop distance."""


class EngineSettings(Section):
    close_positions_on_stop: bool = False
    """Close every position on a graceful stop (otherwise they stay open)."""
    status_interval_seconds: float = Field(default=5.0, gt=0)
    """How often the headless run prints its status line."""


class UiSettings(Section):
    theme: str = "cma-dark"
    """Theme name: cma-dark, cma-light, cma-contrast or any Textual theme."""
    keymap: dict[str, str] = Field(default_factory=dict)
    """Remapped keys: binding id to keys, e.g. {"approve": "y"}."""
    max_fps: int = Field(default=20, gt=0, le=60)
    """Most redraws per second of live panes."""


class ExchangeSettings(Section):
    id: str = "binance"
    """ccxt exchange id used for live trading."""
    sandbox: bool = True
    """Use the exchange's testnet where it has one."""
    api_key: SecretStr | None = Field(default=None, exclude=True)
    """Loaded from the keyring, never from the file."""
    api_secret: SecretStr | None = Field(default=None, exclude=True)
    """Loaded from the keyring, never from the file."""


class Settings(BaseModel):
    """The whole configuration of one ``cma`` process (see :func:`load_settings`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    store: StoreSettings = Field(default_factory=StoreSettings.model_construct)
    """The SQLite store."""
    feed: FeedSettings = Field(default_factory=FeedSettings.model_construct)
    """Market data."""
    agents: AgentSettings = Field(default_factory=AgentSettings.model_construct)
    """Market agents and synthesis."""
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings.model_construct)
    """The approval queue and its policy."""
    risk: RiskSettings = Field(default_factory=RiskSettings.model_construct)
    """The risk manager's sizing and limits."""
    broker: BrokerSettings = Field(default_factory=BrokerSettings.model_construct)
    """Where orders go."""
    engine: EngineSettings = Field(default_factory=EngineSettings.model_construct)
    """The engine's lifecycle."""
    ui: UiSettings = Field(default_factory=UiSettings.model_construct)
    """The console."""
    exchange: ExchangeSettings = Field(default_factory=ExchangeSettings.model_construct)
    """The exchange account for live trading."""


class ConfigError(Exception):
    """A configuration problem, already phrased for a person."""


def _is_collection(annotation: Any) -> bool:
    """Whether a field takes a list or table (so an env value is JSON or words)."""
    if get_origin(annotation) in (tuple, list, dict, set, frozenset):
        return True
    return any(_is_collection(arg) for arg in get_args(annotation) if arg is not type(None))


def env_values(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``CMA_*`` variables of ``environ`` as nested settings, and where each came from.

    ``CMA_RISK__MAX_DRAWDOWN=0.15`` gives ``{"risk": {"max_drawdown": "0.15"}}``
    (pydantic converts the text) and ``{"risk.max_drawdown": "CMA_RISK__MAX_DRAWDOWN"}``.
    Names are case-insensitive. A variable whose first part is not a section
    (``CMA_SHARED_DATA``, say) is not a setting and is ignored; an unknown field
    of a section is kept, so validation reports it.
    """
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name, raw in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        section = Settings.model_fields.get(parts[0])
        if section is None or not all(parts):
            continue
        value: Any = raw
        if len(parts) == 1:
            value = _env_json(name, raw)
        elif len(parts) == 2:
            field = section.annotation.model_fields.get(parts[1])  # type: ignore[union-attr]
            if field is not None and _is_collection(field.annotation):
                text = raw.strip()
                if text.startswith(("[", "{")):
                    value = _env_json(name, raw)
                else:
                    value = [word.strip() for word in text.split(",") if word.strip()]
        node = values
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: conflicts with another CMA_ variable")
            node = child
        node[parts[-1]] = value
        origins[".".join(parts)] = name
    return values, origins


def _env_json(name: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: not valid JSON ({exc})") from None


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``top``, tables merged key by key."""
    out = dict(base)
    for key, value in top.items():
        below = out.get(key)
        if isinstance(below, dict) and isinstance(value, Mapping):
            out[key] = _merge(below, value)
        else:
            out[key] = value
    return out


def load_settings(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults, then ``path`` (or the default file), then ``CMA_*``, then ``overrides``.

    Raises :class:`ConfigError` with one line per problem, each naming the field,
    its value, what is allowed and, for a variable, its name.
    """
    import tomllib

    from pydantic import ValidationError

    toml_path = path if path is not None else default_config_path()
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path}: not found")
    data: dict[str, Any] = {}
    from_file = toml_path.is_file()
    if from_file:
        try:
            data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {toml_path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"config file {toml_path}: cannot read: {exc.strerror}") from None
        exchange = data.get("exchange")
        if isinstance(exchange, dict):
            for key in ("api_key", "api_secret"):
                if key in exchange:
                    raise ConfigError(
                        f"invalid configuration in {toml_path}:\n  exchange.{key} = ********: "
                        "API keys never go in the config file; store them in the keyring"
                    )
    env, origins = env_values(os.environ if environ is None else environ)
    if not (data or env or overrides):
        # Nothing given: the defaults, as they are (about 30 ms of validator building
        # and pydantic plugin discovery saved on the way to the console's first frame).
        return Settings.model_construct()
    try:
        return Settings.model_validate(_merge(_merge(data, env), overrides))
    except ValidationError as exc:
        where = f" in {toml_path}" if from_file else ""
        lines = [f"invalid configuration{where}:"]
        overridden = _dotted(overrides)  # an option given beats the variable
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(top level)"
            value = err.get("input")
            shown = "(missing)" if err["type"] == "missing" else repr(value)
            if isinstance(value, dict):
                shown = "a table"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown setting" + _known_keys(err["loc"][:-1])
            origin = origins.get(field) if field not in overridden else None
            if origin is not None:
                msg += f" (from {origin})"
            if field.startswith("exchange.api_"):
                shown = "********"
            lines.append(f"  {field} = {shown}: {msg}")
        raise ConfigError("\n".join(lines)) from None


def _dotted(tree: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Every dotted key of a nested mapping, tables included."""
    out: set[str] = set()
    for key, value in tree.items():
        out.add(prefix + key)
        if isinstance(value, Mapping):
            out |= _dotted(value, f"{prefix}{key}.")
    return out


def _known_keys(parent: tuple[int | str, ...]) -> str:
    """``; known: a, b, c`` for the section at ``parent`` (empty if not a section)."""
    model: Any = Settings
    for part in parent:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return ""
    return "; known: " + ", ".join(model.model_fields)


@functools.cache
def field_docs(model: type[BaseModel]) -> dict[str, str]:
    """Each field's docstring (the string literal under it), on one line, by field name.

    Read from the source only when asked (``config show`` and ``config init``):
    pydantic's ``use_attribute_docstrings`` does the same for every class at import.
    """
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, after in itertools.pairwise(body):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(dotted field, value, description) for every setting; secrets masked."""
    rows: list[tuple[str, str, str]] = []
    for section_name, section_field in type(settings).model_fields.items():
        section: BaseModel = getattr(settings, section_name)
        docs = field_docs(type(section))
        for name in type(section).model_fields:
            value = getattr(section, name)
            if isinstance(value, SecretStr):
                shown = "********"
            elif value is None and name.startswith("api_"):
                shown = "(not set)"
            else:
                shown = _toml_value(value)
            rows.append((f"{section_name}.{name}", shown, docs.get(name, "")))
        del section_field
    return rows


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Decimal):
        return f'"{value}"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "(default)"
    return f'"{value}"'


def example_toml(settings: Settings | None = None) -> str:
    """A commented config file with every setting at its default."""
    rows = describe(settings or Settings())
    out = [
        "# cma configuration. Every setting is shown at its default; delete what you",
        "# do not change. Environment variables override this file: CMA_RISK__MAX_DRAWDOWN=0.15",
        "# API keys never go here: use `cma keys set`.",
    ]
    current = ""
    for dotted, value, desc in rows:
        section, name = dotted.split(".", 1)
        if section == "exchange" and name.startswith("api_"):
            continue
        if section != current:
            out.append(f"\n[{section}]")
            current = section
        out.append(f"# {desc}")
        if value == "(default)":
            out.append(f"# {name} =")
        else:
            out.append(f"{name} = {value}")
    return "\n".join(out) + "\n"
