"""The configuration's sections: one frozen pydantic model each, and :class:`Settings`.

Every number has bounds and every field a docstring (read by
:func:`engine.config.field_docs` only when shown). The ``risk`` section is
:class:`engine.risk.limits.RiskLimits`, the one model of the limits the risk
engine applies.
"""

from __future__ import annotations

import math
import os
import re
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

from engine.risk.limits import RiskLimits

# Timeframes ccxt knows (``Exchange.timeframes`` keys across exchanges). Kept here
# rather than imported because importing ccxt costs about a second.
CCXT_TIMEFRAMES: tuple[str, ...] = (
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
    "1d", "3d", "1w", "1M",
)  # fmt: skip

_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,15}/[A-Z0-9]{2,15}$")

#: Bounds of ``feed.speed`` (market seconds per wall second). Slower than a
#: thousandth of real time is a stalled feed; faster than a million is "max".
SPEED_MIN = 0.001
SPEED_MAX = 1_000_000.0
#: Longest time field (proposal time-to-live, dedup window): thirty days.
MAX_SECONDS = 30 * 86_400.0


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/cma`` (``~/.local/share`` when unset)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cma"


def parse_speed(value: Any) -> float | str:
    """``"max"`` or a number of market seconds per wall second within the bounds.

    Accepts a number or its text (from a variable or the command line); raises
    ValueError with one message for a person otherwise.
    """
    if value == "max":
        return "max"
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not number > 0:
        raise ValueError("must be a positive number or 'max'")
    if not (math.isfinite(number) and SPEED_MIN <= number <= SPEED_MAX):
        raise ValueError(f"must be a number from {SPEED_MIN} to {SPEED_MAX:.0f}, or 'max'")
    return number


def check_symbol(value: str) -> str:
    """Upper-case and check a ``BASE/QUOTE`` symbol."""
    symbol = value.strip().upper()
    if not _SYMBOL_RE.match(symbol):
        raise ValueError(f"symbol must look like BASE/QUOTE (e.g. BTC/USDT), got {value!r}")
    return symbol


class Section(BaseModel):
    """A config section: unknown keys are errors; each field's docstring describes it.

    Validators are built on first use (``defer_build``): a start with nothing to
    validate (no file, no variables, no options) builds none. The defaults are
    code, not input; the tests check that they validate to themselves.
    """

    # allow_inf_nan=False: NaN and infinity are refused in every float field, and
    # every number has an upper bound, so any settings that validate can run.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True, allow_inf_nan=False)


def _path_text(value: Any) -> Any:
    """Refuse an empty path (pydantic would read it as ".") and one with a NUL byte."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty; leave the setting out for the default")
        if "\0" in value:
            raise ValueError("must not contain a NUL character")
    return value


class StoreSettings(Section):
    path: Path | None = None
    """SQLite file of the store. Default: $XDG_DATA_HOME/cma/cma.db."""
    equity_retention_days: int = Field(default=90, gt=0, le=36_500)
    """Equity snapshots older than this many days are pruned."""
    candle_retention_days: int = Field(default=30, gt=0, le=36_500)
    """Cached candles older than this many days are pruned."""
    busy_timeout_ms: int = Field(default=5000, gt=0, le=3_600_000)
    """How long a connection waits for a lock before failing."""

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        return _path_text(value)

    def resolved_path(self) -> Path:
        return self.path if self.path is not None else default_data_dir() / "cma.db"


class FeedSettings(Section):
    kind: Literal["sim", "replay", "ccxt"] = "sim"
    """Where candles come from: sim (the built-in demo market), replay (CSV files) or
    ccxt (an exchange's public market data; [exchange] says which)."""
    symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT")
    """Symbols to watch, each BASE/QUOTE."""
    timeframe: str = "1m"
    """Candle timeframe, one ccxt knows (1m, 5m, 1h, ...)."""
    seed: int = Field(default=7, ge=0, le=2**32 - 1)
    """Seed of the demo market: the same seed plays the same market."""
    speed: float | Literal["max"] = 60.0
    """Market seconds per wall second of the sim and replay feeds (60 plays an hour
    a minute; 1 is real time), or "max"."""
    files: tuple[Path, ...] = Field(default=(), validate_default=True)
    """CSV files for the replay feed (timestamp,open,high,low,close,volume)."""
    warmup_candles: int = Field(default=300, ge=0, le=5000)
    """Candles of history the ccxt feed fetches on start, so agents are warm."""
    stale_seconds: float = Field(default=30.0, gt=0, le=86_400)
    """The ccxt feed counts as stale after this long without word from the exchange
    (polling REST: on top of one timeframe); the candles it catches up on afterwards
    make no proposals."""

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one symbol is required")
        symbols = tuple(check_symbol(s) for s in value)
        twice = sorted({s for s in symbols if symbols.count(s) > 1})
        if twice:
            raise ValueError(f"each symbol once: {', '.join(twice)} is listed twice")
        return symbols

    @field_validator("files", mode="before")
    @classmethod
    def _file_texts(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            for item in value:
                _path_text(item)
        return value

    @field_validator("files")
    @classmethod
    def _files(cls, value: tuple[Path, ...], info: ValidationInfo) -> tuple[Path, ...]:
        # kind is declared first, so it is in info.data when it was valid.
        kind = info.data.get("kind")
        if kind == "replay" and not value:
            raise ValueError("the replay feed needs at least one CSV file (--files)")
        if kind is not None and kind != "replay" and value:
            raise ValueError(f"--files needs the replay feed (feed.kind is {kind!r})")
        return value

    @field_validator("timeframe")
    @classmethod
    def _timeframe(cls, value: str) -> str:
        if value not in CCXT_TIMEFRAMES:
            raise ValueError(
                f"timeframe must be one of {', '.join(CCXT_TIMEFRAMES)}; got {value!r}"
            )
        return value

    @field_validator("speed", mode="plain")
    @classmethod
    def _speed(cls, value: Any) -> float | str:
        # One plain validator instead of pydantic's union of float and "max", whose
        # errors come out once per branch (feed.speed.literal['max'] = ...).
        return parse_speed(value)


class ApprovalSettings(Section):
    policy: Literal["manual", "auto", "queue-only"] = "manual"
    """manual waits for a keypress; auto approves at or above auto_confidence;
    queue-only never approves."""
    auto_confidence: float = Field(default=0.7, ge=0.0, le=1.0)
    """Confidence at or above which the auto policy approves."""
    below_confidence: Literal["queue", "reject"] = "queue"
    """What the auto policy does below auto_confidence."""
    ttl_seconds: float = Field(default=1200.0, ge=1.0, le=MAX_SECONDS)
    """A proposal expires this many market seconds after it is made."""
    dedup_window_seconds: float = Field(default=300.0, ge=0, le=MAX_SECONDS)
    """A second proposal for the same symbol and side inside this window is merged."""
    max_pending: int = Field(default=50, gt=0, le=10_000)
    """At most this many proposals wait; beyond it the oldest expire first."""
    on_stop: Literal["keep", "expire"] = "keep"
    """On a graceful stop, keep pending proposals for the next start or expire them."""


class BrokerSettings(Section):
    kind: Literal["paper", "ccxt"] = "paper"
    """paper simulates fills; ccxt sends real orders to the exchange, and only with
    cma run --live."""
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
    min_votes: int = Field(default=1, gt=0, le=100)
    """Votes needed on one candle before a proposal is made."""
    min_confidence: float = Field(default=0.3, ge=0.0, le=1.0)
    """Proposals below this confidence are not made at all."""
    stop_atr: float = Field(default=2.0, gt=0, le=100)
    """Stop distance in ATRs from the entry."""
    reward_risk: float = Field(default=2.0, gt=0, le=100)
    """Take-profit distance as a multiple of the stop distance."""
    params: dict[str, dict[str, bool | int | float | str]] = Field(default_factory=dict)
    """Settings per agent, by agent name, passed to its constructor: e.g.
    [agents.params.sma_cross] with fast = 10 and slow = 30."""


class StrategySettings(Section):
    on_opposite: Literal["ignore", "exit", "reverse"] = "ignore"
    """A proposal against an open position: ignore it (the risk manager denies it),
    exit (close the position), or reverse (close it and enter the other way)."""
    brackets: bool = True
    """Give each position its proposal's stop and take-profit; false leaves exits to
    the opposite signal and to you."""


class EngineSettings(Section):
    close_positions_on_stop: bool = False
    """Close every position on a graceful stop (otherwise they stay open)."""
    status_interval_seconds: float = Field(default=5.0, ge=0.1, le=86_400)
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
    """ccxt exchange id: the ccxt feed's market data and the live broker's orders."""
    sandbox: bool = False
    """Use the exchange's testnet (ccxt's sandbox mode) where it has one."""
    api_base: str | None = None
    """Base URL (http://host:port) replacing the exchange's own REST and websocket
    hosts, paths kept: a local test exchange or a proxy. Default: the exchange's own."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """How long one request to the exchange may take."""
    max_order_notional: Decimal = Field(default=Decimal("100"), gt=0)
    """Live mode: the most one order may be worth, in the quote currency."""
    max_daily_notional: Decimal = Field(default=Decimal("1000"), gt=0)
    """Live mode: the most all orders of one UTC day may be worth together."""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]{1,39}", value):
            raise ValueError(f"must be a ccxt exchange id such as binance, got {value!r}")
        return value

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^/\s?#]+", value):
            raise ValueError(
                f"must be scheme and host only, like http://127.0.0.1:8080, got {value!r}"
            )
        return value

    api_key: SecretStr | None = Field(default=None, exclude=True)
    """Loaded from the keyring, never from the file."""
    api_secret: SecretStr | None = Field(default=None, exclude=True)
    """Loaded from the keyring, never from the file."""
    api_password: SecretStr | None = Field(default=None, exclude=True)
    """The API passphrase some exchanges use; from the keyring, never from the file."""


#: A host name (letters, digits, dots, hyphens) or an IPv4 or IPv6 address.
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$|^[0-9A-Fa-f:.]+$")


def check_host(value: str) -> str:
    """A host to bind to: a name or an address, without a port or a scheme."""
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [::1], as in a URL
    if (
        not host
        or len(host) > 253
        or not _HOST_RE.match(host)
        or (":" in host and host.count(":") < 2)
    ):
        raise ValueError(f"must be a host name or an IP address such as 127.0.0.1, got {value!r}")
    return host


class MetricsSettings(Section):
    enabled: bool = False
    """Serve /metrics (Prometheus), /healthz and /readyz over HTTP while the engine runs
    (the console and headless alike; cma run --metrics [HOST:]PORT turns it on)."""
    host: str = "127.0.0.1"
    """Address the metrics server binds to; 127.0.0.1 keeps it on this machine
    (0.0.0.0 opens it to every network the machine is on)."""
    port: int = Field(default=9464, ge=0, le=65_535)
    """TCP port of the metrics server (0: any free port, printed at start)."""

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)


#: What a dump of the settings leaves out (the keys are ``exclude=True`` too).
SECRET_FIELDS: dict[str, set[str]] = {"exchange": {"api_key", "api_secret", "api_password"}}


#: The formats a report is written in (``cma report --format`` and ``[report] formats``).
REPORT_FORMATS = ("md", "html", "csv", "json")


class ReportSettings(Section):
    formats: tuple[Literal["md", "html", "csv", "json"], ...] = ("html",)
    """Formats the console's e (export) writes: md, html, csv (a zip), json."""
    dir: Path | None = None
    """Folder reports go to. Default: reports/ beside the store (the data directory)."""

    @field_validator("formats")
    @classmethod
    def _formats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(f"must name at least one of {', '.join(REPORT_FORMATS)}")
        if len(set(value)) != len(value):
            raise ValueError("must name each format once")
        return value

    @field_validator("dir", mode="before")
    @classmethod
    def _dir(cls, value: Any) -> Any:
        return _path_text(value)

    def resolved_dir(self, store: StoreSettings) -> Path:
        """``dir``, or ``reports/`` beside the store."""
        return self.dir if self.dir is not None else store.resolved_path().parent / "reports"


class Settings(BaseModel):
    """The whole configuration of one ``cma`` process (see :func:`load_settings`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True, allow_inf_nan=False)

    store: StoreSettings = Field(default_factory=StoreSettings.model_construct)
    """The SQLite store."""
    feed: FeedSettings = Field(default_factory=FeedSettings.model_construct)
    """Market data."""
    agents: AgentSettings = Field(default_factory=AgentSettings.model_construct)
    """Market agents and synthesis."""
    approval: ApprovalSettings = Field(default_factory=ApprovalSettings.model_construct)
    """The approval queue and its policy."""
    strategy: StrategySettings = Field(default_factory=StrategySettings.model_construct)
    """How entries and exits follow the signals."""
    risk: RiskLimits = Field(default_factory=RiskLimits.model_construct)
    """The paper account's cash, the sizing and the risk limits (``engine.risk.limits``)."""
    broker: BrokerSettings = Field(default_factory=BrokerSettings.model_construct)
    """Where orders go."""
    engine: EngineSettings = Field(default_factory=EngineSettings.model_construct)
    """The engine's lifecycle."""
    ui: UiSettings = Field(default_factory=UiSettings.model_construct)
    """The console."""
    exchange: ExchangeSettings = Field(default_factory=ExchangeSettings.model_construct)
    """The exchange account for live trading."""
    report: ReportSettings = Field(default_factory=ReportSettings.model_construct)
    """Session reports (cma report, the console's e)."""
    metrics: MetricsSettings = Field(default_factory=MetricsSettings.model_construct)
    """Metrics and health checks over HTTP (Prometheus)."""


def is_collection(annotation: Any) -> bool:
    """Whether a field takes a list or table (so an env value is JSON or words)."""
    if get_origin(annotation) in (tuple, list, dict, set, frozenset):
        return True
    return any(is_collection(arg) for arg in get_args(annotation) if arg is not type(None))
