"""The search space: which settings a study tunes, and over what range.

A space file is TOML in the config's own shape. Each tuned setting is a table at
its dotted key holding either a range or choices::

    [agents.stop_atr]            # a float range
    low = 1.0
    high = 4.0

    [agents.params.sma_cross.fast]
    low = 5                      # whole numbers: an int range
    high = 20
    step = 5                     # optional; "log = true" samples on a log scale

    [strategy.on_opposite]
    choices = ["ignore", "exit", "reverse"]

Settings of the sections ``agents`` (synthesis and each agent's settings under
``agents.params.NAME``), ``approval``, ``risk`` and ``strategy`` can be tuned.
:func:`read_space` checks every entry against the settings model and the running
agents, and raises :class:`SpaceError` naming the key for an unknown setting, an
empty range, a bound the setting refuses or a key that is not ``low``, ``high``,
``step``, ``log`` or ``choices``. :func:`default_space` is the documented space used
without ``--space``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import tomllib
import typing
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from engine.config import Settings
from reports.optimization import Param, ParamValue

__all__ = [
    "DEFAULT_AGENT_SPACE",
    "DEFAULT_SPACE",
    "TUNABLE_SECTIONS",
    "SpaceError",
    "apply",
    "default_space",
    "fingerprint",
    "read_space",
    "space_toml",
]

#: The config sections whose settings a study may tune.
TUNABLE_SECTIONS = ("agents", "approval", "risk", "strategy")
_KEYS = {"low", "high", "step", "log", "choices"}

#: The default space: synthesis, approval and risk (the agents' own below).
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "agents.min_confidence": {"low": 0.2, "high": 0.8},
    "agents.stop_atr": {"low": 1.0, "high": 4.0},
    "agents.reward_risk": {"low": 1.0, "high": 4.0},
    "approval.auto_confidence": {"low": 0.3, "high": 0.9},
    "risk.max_risk_per_trade": {"low": 0.002, "high": 0.03, "log": True},
}
#: The default space of each built-in agent's settings, added for the agents that run.
DEFAULT_AGENT_SPACE: dict[str, dict[str, dict[str, Any]]] = {
    "sma_cross": {"fast": {"low": 5, "high": 20}, "slow": {"low": 25, "high": 100}},
    "momentum": {"rsi_period": {"low": 7, "high": 28}, "min_volume": {"low": 1.0, "high": 3.0}},
    "price_action": {"window": {"low": 10, "high": 60}, "near_atr": {"low": 0.1, "high": 1.0}},
}


class SpaceError(ValueError):
    """A problem with the search space, phrased for a person (names the key)."""


def read_space(path: Path, settings: Settings, agents: Mapping[str, type]) -> tuple[Param, ...]:
    """The space in ``path``, checked against ``settings`` and the running ``agents``
    (by name). Raises :class:`SpaceError` naming the file and the key."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise SpaceError(f"--space {path}: not found") from None
    except IsADirectoryError:
        raise SpaceError(f"--space {path}: is a directory") from None
    except OSError as exc:
        raise SpaceError(f"--space {path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SpaceError(f"--space {path}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"--space {path}: not valid TOML: {exc}") from None
    entries = dict(_leaves(data, ""))
    if not entries:
        raise SpaceError(f"--space {path}: tunes nothing; give at least one setting's range")
    try:
        return check_space(entries, settings, agents)
    except SpaceError as exc:
        raise SpaceError(f"--space {path}: {exc}") from None


def default_space(settings: Settings, agents: Mapping[str, type]) -> tuple[Param, ...]:
    """:data:`DEFAULT_SPACE` and, for each running built-in agent, its
    :data:`DEFAULT_AGENT_SPACE`."""
    entries = dict(DEFAULT_SPACE)
    for name in agents:
        for key, spec in DEFAULT_AGENT_SPACE.get(name, {}).items():
            entries[f"agents.params.{name}.{key}"] = spec
    return check_space(entries, settings, agents)


def _leaves(table: Mapping[str, Any], prefix: str) -> list[tuple[str, Any]]:
    """Each parameter's dotted key and spec: a table holding ``low``/``high``/``choices``
    is a parameter, any other table is walked; a plain value is an error (kept for
    :func:`check_space` to name)."""
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and not (set(value) & {"low", "high", "choices"}):
            if not value:
                out.append((dotted, value))
            out += _leaves(value, dotted + ".")
        else:
            out.append((dotted, value))
    return out


def check_space(
    entries: Mapping[str, Any], settings: Settings, agents: Mapping[str, type]
) -> tuple[Param, ...]:
    """Each entry (dotted key -> spec) as a :class:`Param`, checked; sorted by key."""
    params = [_param(key, spec, settings, agents) for key, spec in entries.items()]
    for p in params:
        if p.key.startswith("agents.params."):
            _check_agent_bounds(p, params, settings, agents)
    return tuple(sorted(params, key=lambda p: p.key))


def _check_agent_bounds(
    p: Param, params: Sequence[Param], settings: Settings, agents: Mapping[str, type]
) -> None:
    """SpaceError unless the agent takes each of ``p``'s bounds (each choice) beside its
    other tuned settings at the same side of their ranges (lows with lows, highs with
    highs), so ``fast`` up to 20 and ``slow`` from 25 are checked as a pair."""
    name = p.key.split(".")[2]
    prefix = f"agents.params.{name}."
    others = [q for q in params if q.key.startswith(prefix) and q.key != p.key]

    def side(q: Param, high: bool) -> ParamValue:
        if q.kind == "choice":
            return q.choices[0]
        value = q.high if high else q.low
        assert value is not None
        return value

    tries = [(c, False) for c in p.choices] if p.kind == "choice" else [
        (p.low, False), (p.high, True)
    ]  # fmt: skip
    for value, high in tries:
        assert value is not None
        beside = {q.key.removeprefix(prefix): side(q, high) for q in others}
        _check_value(p.key, value, settings, agents, beside)


def _param(key: str, spec: Any, settings: Settings, agents: Mapping[str, type]) -> Param:
    if not isinstance(spec, dict):
        raise SpaceError(f"{key}: give a table with low and high, or with choices (got {spec!r})")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise SpaceError(
            f"{key}: unknown {', '.join(unknown)}; a range has low, high, step and log, "
            "or give choices"
        )
    kind = _kind_of(key, settings, agents)
    if "choices" in spec:
        extra = sorted(set(spec) - {"choices"})
        if extra:
            raise SpaceError(f"{key}: choices go alone, without {', '.join(extra)}")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{key}: the choices are empty; give at least two values")
        if len(choices) < 2:
            raise SpaceError(f"{key}: one choice is no search; set it in the config instead")
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise SpaceError(f"{key}: a choice is listed twice: {choices}")
        for choice in choices:
            if not isinstance(choice, (bool, int, float, str)):
                raise SpaceError(f"{key}: a choice must be a number, text or true/false")
            if not key.startswith("agents.params."):  # those: by check_space, together
                _check_value(key, choice, settings, agents)
        return Param(key, "choice", choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        missing = "low" if "low" not in spec else "high"
        raise SpaceError(f"{key}: the range has no {missing}")
    low, high, step = spec["low"], spec["high"], spec.get("step")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{key}: log must be true or false, got {log!r}")
    for name, value in (("low", low), ("high", high), ("step", step)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpaceError(f"{key}: {name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise SpaceError(f"{key}: {name} must be a finite number, got {value!r}")
    if kind == "choice":
        raise SpaceError(f"{key}: takes one of a few values; give choices, not a range")
    if kind == "int" and not all(isinstance(v, int) for v in (low, high, step) if v is not None):
        raise SpaceError(f"{key}: takes whole numbers; low, high and step must be whole")
    if not low < high:
        raise SpaceError(f"{key}: the range {low} .. {high} is empty; low must be below high")
    if step is not None:
        if not step > 0:
            raise SpaceError(f"{key}: step must be above 0, got {step}")
        if step > high - low:
            raise SpaceError(f"{key}: step {step} is wider than the range {low} .. {high}")
        if log:
            raise SpaceError(f"{key}: a log scale takes no step")
    if log and not low > 0:
        raise SpaceError(f"{key}: a log scale needs low above 0, got {low}")
    if not key.startswith("agents.params."):  # those: by check_space, together
        for value in (low, high):
            _check_value(key, value, settings, agents)
    if kind == "float":
        low, high = float(low), float(high)
        step = None if step is None else float(step)
    return Param(key, kind, low=low, high=high, step=step, log=log)


def _kind_of(
    key: str, settings: Settings, agents: Mapping[str, type]
) -> Literal["float", "int", "choice"]:
    """ "float", "int" or "choice", from the setting's type; SpaceError for a key that
    is no tunable setting."""
    parts = key.split(".")
    section = parts[0]
    if section not in TUNABLE_SECTIONS:
        if section in Settings.model_fields:
            raise SpaceError(
                f"{key}: {section} settings are not tuned; tunable sections are "
                f"{', '.join(TUNABLE_SECTIONS)}"
            )
        raise SpaceError(
            f"{key}: no such setting; tunable sections are {', '.join(TUNABLE_SECTIONS)}"
        )
    if parts[:2] == ["agents", "params"]:
        return _agent_kind(key, parts, agents)
    model: type[BaseModel] = type(getattr(settings, section))
    if len(parts) != 2 or parts[1] not in model.model_fields:
        known = ", ".join(f"{section}.{name}" for name in _tunable_fields(model))
        raise SpaceError(f"{key}: no such setting; the tunable {section} settings are {known}")
    annotation = model.model_fields[parts[1]].annotation
    kind = _kind_of_type(annotation)
    if kind is None:
        raise SpaceError(f"{key}: is not a number, a choice or true/false, so it is not tuned")
    return kind


def _tunable_fields(model: type[BaseModel]) -> list[str]:
    return [n for n, f in model.model_fields.items() if _kind_of_type(f.annotation) is not None]


def _kind_of_type(annotation: Any) -> Literal["float", "int", "choice"] | None:
    if annotation is bool or typing.get_origin(annotation) is Literal:
        return "choice"
    if annotation is int:
        return "int"
    if annotation in (float, Decimal):
        return "float"
    return None


def _agent_kind(
    key: str, parts: list[str], agents: Mapping[str, type]
) -> Literal["float", "int", "choice"]:
    if len(parts) != 4:
        raise SpaceError(f"{key}: an agent's setting is agents.params.AGENT.SETTING")
    name, setting = parts[2], parts[3]
    cls = agents.get(name)
    if cls is None:
        raise SpaceError(
            f"{key}: no running agent is named {name!r}; running: {', '.join(sorted(agents))}"
        )
    accepted = {
        p.name: p
        for p in inspect.signature(cls).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    if setting not in accepted:
        raise SpaceError(
            f"{key}: {name} has no setting {setting!r}; its settings are "
            f"{', '.join(sorted(accepted)) or 'none'}"
        )
    default = accepted[setting].default
    if isinstance(default, (bool, str)):
        return "choice"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    raise SpaceError(f"{key}: is not a number, a choice or true/false, so it is not tuned")


def _check_value(
    key: str,
    value: ParamValue,
    settings: Settings,
    agents: Mapping[str, type],
    beside: Mapping[str, ParamValue] | None = None,
) -> None:
    """SpaceError unless the setting accepts ``value`` (an agent's, with ``beside``)."""
    parts = key.split(".")
    if parts[:2] == ["agents", "params"]:
        cls = agents[parts[2]]
        symbol = settings.feed.symbols[0]
        base = {**settings.agents.params.get(parts[2], {}), **(beside or {})}
        try:
            cls(symbol, **{**base, parts[3]: value})
        except Exception as exc:  # the agent's constructor says what is wrong
            raise SpaceError(f"{key}: {value!r} is refused by {parts[2]}: {exc}") from None
        return
    section = getattr(settings, parts[0])
    data = section.model_dump()
    data[parts[1]] = value
    try:
        type(section).model_validate(data)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"] if exc.errors() else str(exc)
        raise SpaceError(f"{key}: {value!r} is refused: {reason}") from None


def apply(settings: Settings, values: Mapping[str, ParamValue]) -> Settings:
    """``settings`` with each dotted key of ``values`` set; ValueError (pydantic's, or an
    agent's) when the combination is refused."""
    data = settings.model_dump()
    for key, value in values.items():
        parts = key.split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return Settings.model_validate(data)


def fingerprint(space: Sequence[Param]) -> str:
    """A short hash of the space: two studies with one name must share it."""
    return hashlib.sha256(space_json(space).encode()).hexdigest()[:16]


def space_json(space: Sequence[Param]) -> str:
    """The space as canonical JSON (what a study remembers of it)."""
    rows = [
        [p.key, p.kind, p.low, p.high, p.step, p.log, list(p.choices)]
        for p in sorted(space, key=lambda p: p.key)
    ]
    return json.dumps(rows, separators=(",", ":"))


def space_from_json(text: str) -> tuple[Param, ...]:
    """The space :func:`space_json` wrote."""
    return tuple(
        Param(key, kind, low=low, high=high, step=step, log=log, choices=tuple(choices))
        for key, kind, low, high, step, log, choices in json.loads(text)
    )


def space_toml(space: Sequence[Param]) -> str:
    """The space as a space file (``cma optimize --print-space``)."""
    lines: list[str] = []
    for p in space:
        lines.append(f"[{p.key}]")
        if p.kind == "choice":
            lines.append(f"choices = {json.dumps(list(p.choices))}")
        else:
            lines += [f"low = {p.low}", f"high = {p.high}"]
            if p.step is not None:
                lines.append(f"step = {p.step}")
            if p.log:
                lines.append("log = true")
        lines.append("")
    return "\n".join(lines)
