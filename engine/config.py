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
import math
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args, get_origin

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


def default_config_path() -> Path:
    """``$XDG_CONFIG_HOME/cma/config.toml`` (``~/.config`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cma" / "config.toml"


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


ENV_PREFIX = "CMA_"


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
    """Where candles come from: sim (the built-in demo market) or replay (CSV files);
    ccxt (an exchange) is not available yet."""
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
    exchange: str = "binance"
    """ccxt exchange id for the ccxt feed."""

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value == "ccxt":
            raise ValueError("the ccxt exchange feed is not available yet; use sim or replay")
        return value

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
    """paper simulates fills; ccxt (live orders on the exchange) is not available yet."""
    fee_rate: Decimal = Field(default=Decimal("0.001"), ge=0, le=Decimal("0.05"))
    """Fee per fill as a fraction of notional (0.001 is 10 bps)."""
    slippage_bps: Decimal = Field(default=Decimal("2"), ge=0, le=Decimal("500"))
    """Paper slippage against the fill price, in basis points."""
    allow_shorts: bool | None = None
    """Allow short positions. Default: on for paper, off on spot exchanges."""

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value == "ccxt":
            # Refused rather than run as paper: a person who asked for live orders
            # must not believe they are trading when nothing reaches the exchange.
            raise ValueError("live orders through ccxt are not available yet; use paper")
        return value

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
    """ccxt exchange id used for live trading."""
    sandbox: bool = True
    """Use the exchange's testnet where it has one."""
    api_key: SecretStr | None = Field(default=None, exclude=True)
    """Loaded from the keyring, never from the file."""
    api_secret: SecretStr | None = Field(default=None, exclude=True)
    """Loaded from the keyring, never from the file."""


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


class ConfigError(Exception):
    """A configuration problem, already phrased for a person."""


class Problem(NamedTuple):
    """One bad setting: its dotted field, the value as given, and what is wrong."""

    field: str
    value: Any
    message: str

    def __str__(self) -> str:
        return f"{self.field} = {_shown(self.field, self.value)}: {self.message}"


#: A check beyond the field values (agents that import, keys that clash):
#: the problems it finds in settings that validated.
Check = Callable[["Settings"], Sequence[Problem]]


def _shown(field: str, value: Any) -> str:
    if field.startswith("exchange.api_"):
        return "********"
    if isinstance(value, Mapping):
        return "a table"
    return repr(value)


def _is_collection(annotation: Any) -> bool:
    """Whether a field takes a list or table (so an env value is JSON or words)."""
    if get_origin(annotation) in (tuple, list, dict, set, frozenset):
        return True
    return any(_is_collection(arg) for arg in get_args(annotation) if arg is not type(None))


def env_values(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``CMA_*`` variables of ``environ`` as nested settings, and where each came from.

    ``CMA_RISK__MAX_DRAWDOWN=0.15`` gives ``{"risk": {"max_drawdown": "0.15"}}``
    (pydantic converts the text) and ``{"risk.max_drawdown": "CMA_RISK__MAX_DRAWDOWN"}``.
    Names are case-insensitive. A name without ``__`` that is not a section
    (``CMA_SHARED_DATA``, say) is not a setting and is ignored; a name with
    ``__`` is meant as one, so an unknown section there is a :class:`ConfigError`
    naming the variable, and an unknown field of a section is kept, so
    validation reports it.
    """
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    problems: list[str] = []
    for name, raw in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        section = Settings.model_fields.get(parts[0])
        if len(parts) == 1 and section is None:
            continue
        if not all(parts):
            problems.append(f"{name}: not a setting name; write CMA_SECTION__FIELD")
            continue
        if section is None:
            problems.append(
                f"{name}: no section {parts[0]!r}; known: {', '.join(Settings.model_fields)}"
            )
            continue
        value: Any = raw
        try:
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
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        node = values
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(f"{name}: conflicts with another CMA_ variable")
                break
            node = child
        else:
            node[parts[-1]] = value
            origins[".".join(parts)] = name
            # CMA_RISK__MAX_DRAWDOWN__X makes risk.max_drawdown a table: name the variable there.
            for end in range(2, len(parts)):
                origins.setdefault(".".join(parts[:end]), name)
            if isinstance(value, Mapping):  # CMA_RISK='{"max_drawdown": 0.2}'
                origins.update(dict.fromkeys(_dotted(value, ".".join(parts) + "."), name))
    if problems:
        raise ConfigError("\n".join(problems))
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


def read_config_file(path: Path, *, required: bool) -> dict[str, Any] | None:
    """The TOML table in ``path``; None when it does not exist and is not ``required``.

    Raises :class:`ConfigError` naming the file for anything else: not found
    (when required), a directory, not a regular file (a FIFO is never opened,
    so this cannot hang), unreadable, not UTF-8, not TOML, or holding API keys.
    """
    import tomllib

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path}: not found") from None
        return None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"config file {path}: is a directory")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"config file {path}: is not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc.strerror}") from None
    try:
        # utf-8-sig: a byte-order mark, as some editors write, is not an error.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path}: not UTF-8 text "
            f"(byte 0x{raw[exc.start]:02x} at offset {exc.start}: {exc.reason})"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    exchange = data.get("exchange")
    if isinstance(exchange, dict):
        for key in ("api_key", "api_secret"):
            if key in exchange:
                raise ConfigError(
                    f"invalid configuration in {path}:\n  exchange.{key} = ********: "
                    "API keys never go in the config file; store them in the keyring"
                )
    return data


def load_settings(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    checks: Check | None = None,
    **overrides: Any,
) -> Settings:
    """Defaults, then ``path`` (or the default file), then ``CMA_*``, then ``overrides``.

    ``checks`` looks beyond the field values (see :data:`Check`); its problems
    are reported with the field errors' format and origins. Raises
    :class:`ConfigError` with one line per problem, each naming the field, its
    value, what is allowed and where it came from (the variable, or the
    command line); the header names the file only if a problem came from it.
    """
    from pydantic import ValidationError

    toml_path = path if path is not None else default_config_path()
    data = read_config_file(toml_path, required=path is not None) or {}
    env, origins = env_values(os.environ if environ is None else environ)
    overridden = _dotted(overrides)  # an option given beats the variable and the file
    sources = Sources(toml_path, _dotted(data), origins, overridden)
    if not (data or env or overrides):
        # Nothing given: the defaults, as they are (about 30 ms of validator building
        # and pydantic plugin discovery saved on the way to the console's first frame).
        settings = Settings.model_construct()
    else:
        merged = _merge(_merge(data, env), overrides)
        try:
            settings = Settings.model_validate(merged)
        except ValidationError as exc:
            problems = _problems(exc)
            if checks is not None:
                # Every problem at once: the checks also run over the sections that
                # validated (the others at their defaults), for their sections only.
                bad = {problem.field.split(".")[0] for problem in problems}
                try:
                    partial = _valid_sections(merged, bad)
                except ValidationError:  # not expected: no validator spans two sections
                    partial = None
                if partial is not None:
                    problems += [p for p in checks(partial) if p.field.split(".")[0] not in bad]
            raise ConfigError(sources.report(problems)) from None
    if checks is not None:
        found = list(checks(settings))
        if found:
            raise ConfigError(sources.report(found))
    return settings


def _valid_sections(merged: Mapping[str, Any], bad: set[str]) -> Settings:
    """Settings with each section of ``merged`` not in ``bad`` validated, the rest default."""
    sections: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        if name in merged and name not in bad:
            sections[name] = field.annotation.model_validate(merged[name])  # type: ignore[union-attr]
    return Settings.model_construct(**sections)


#: Fields whose default is checked against another setting: that setting is what
#: made the default wrong, so the report names where it came from.
_CHECKED_AGAINST = {
    "risk.reduce_drawdown": "risk.max_drawdown",
    "risk.min_notional": "risk.initial_cash",
    "feed.files": "feed.kind",
}


class Sources:
    """Where each setting came from, to say so in an error report."""

    def __init__(
        self, file: Path, in_file: set[str], env: Mapping[str, str], options: set[str]
    ) -> None:
        self.file = file
        self.in_file = in_file
        self.env = env
        self.options = options

    def origin(self, field: str) -> str | None:
        """``"options"``, a variable's name, ``"file"`` or None (the default)."""
        parts = field.split(".")
        # The longest prefix that was given: feed.symbols for feed.symbols.1. A section
        # given ([risk]) does not give each of its fields, so stop at the field.
        for end in range(len(parts), min(len(parts), 2) - 1, -1):
            key = ".".join(parts[:end])
            if key in self.options:
                return "options"
            if key in self.env:
                return self.env[key]
            if key in self.in_file:
                return "file"
        return None

    def report(self, problems: Sequence[Problem]) -> str:
        """One header line, then one line per problem with its origin."""
        lines: list[str] = []
        from_file = False
        for problem in problems:
            origin = self.origin(problem.field)
            line = f"  {problem}"
            if origin == "options":
                line += " (from the command line)"
            elif origin == "file":
                from_file = True
            elif origin is not None:
                line += f" (from {origin})"
            else:  # a default that another setting made wrong (reduce_drawdown, say)
                line += " (the default"
                cause = _CHECKED_AGAINST.get(problem.field, "")
                cause_origin = self.origin(cause) if cause else None
                if cause_origin == "file":
                    from_file = True
                elif cause_origin == "options":
                    line += f"; {cause} from the command line"
                elif cause_origin is not None:
                    line += f"; {cause} from {cause_origin}"
                line += ")"
            lines.append(line)
        where = f" in {self.file}" if from_file else ""
        return "\n".join([f"invalid configuration{where}:", *lines])


def _problems(exc: Any) -> list[Problem]:
    """One :class:`Problem` per field of a pydantic ``ValidationError``.

    The location is cut to the field (plus a list index or table key), so a
    union's branch names never show; a field with several errors gets one line.
    """
    out: dict[str, Problem] = {}
    for err in exc.errors():
        field = _field_of(err["loc"])
        value = err.get("input")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting" + _known_keys(err["loc"][:-1])
        if field in out:
            if msg not in out[field].message:
                out[field] = out[field]._replace(message=f"{out[field].message}; or {msg}")
            continue
        out[field] = Problem(field or "(top level)", value, msg)
    return list(out.values())


def _field_of(loc: Sequence[int | str]) -> str:
    """The dotted field of an error location: section and field, then only the
    index or key that names an item of a list or table (not a union branch)."""
    parts = [str(p) for p in loc[:2]]
    if len(loc) > 2:
        section = Settings.model_fields.get(str(loc[0]))
        model = section.annotation if section is not None else None
        field = (
            model.model_fields.get(str(loc[1]))
            if isinstance(model, type) and issubclass(model, BaseModel)
            else None
        )
        if field is not None and _is_collection(field.annotation):
            parts.append(str(loc[2]))
    return ".".join(parts)


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


#: Settings the template writes commented out although they have a value, each with
#: why: setting ``ui.theme`` at all makes it beat the theme last picked in the palette.
_TEMPLATE_COMMENTED: dict[str, tuple[str, ...]] = {
    "ui.theme": (
        "Uncomment to always open with this theme; otherwise the console",
        "opens with the theme last picked in the command palette (ctrl+p).",
    ),
}


def example_toml(settings: Settings | None = None) -> str:
    """A commented config file with every setting at its default.

    Settings without a value (``store.path``) and those in
    :data:`_TEMPLATE_COMMENTED` are written as comments, so the file loads to
    exactly the defaults and sets nothing explicitly.
    """
    rows = describe(settings or Settings())
    out = [
        "# cma configuration. Every setting is shown at its default; delete what you",
        "# do not change. Environment variables override this file: CMA_RISK__MAX_DRAWDOWN=0.15",
        "# API keys never go here: live trading (not available yet) will read them",
        "# from the system keyring.",
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
        elif dotted in _TEMPLATE_COMMENTED:
            out.extend(f"# {why}" for why in _TEMPLATE_COMMENTED[dotted])
            out.append(f"# {name} = {value}")
        else:
            out.append(f"{name} = {value}")
    return "\n".join(out) + "\n"
