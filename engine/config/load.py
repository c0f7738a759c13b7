"""Loading the configuration: defaults, then the TOML file, then ``CMA_*``, then options.

:func:`load_settings` merges what each source gives and validates it once; a
problem is a :class:`ConfigError` phrased by :mod:`engine.config.report`, which
names the field, its value, what is allowed and where it came from.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.config.report import Problem, Sources, problems_of
from engine.config.sections import Settings, is_collection

ENV_PREFIX = "CMA_"


def default_config_path() -> Path:
    """``$XDG_CONFIG_HOME/cma/config.toml`` (``~/.config`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cma" / "config.toml"


class ConfigError(Exception):
    """A configuration problem, already phrased for a person."""


#: A check beyond the field values (agents that import, keys that clash):
#: the problems it finds in settings that validated.
Check = Callable[[Settings], Sequence[Problem]]


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
                if field is not None and is_collection(field.annotation):
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
        elif key in out and isinstance(value, Mapping):
            # A value where a table belongs (`store = nan`) stays, so it is reported as
            # `config validate` reports it, rather than hidden by an option's table.
            continue
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
        for key in ("api_key", "api_secret", "api_password"):
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
            problems = problems_of(exc)
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


def _dotted(tree: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Every dotted key of a nested mapping, tables included."""
    out: set[str] = set()
    for key, value in tree.items():
        out.add(prefix + key)
        if isinstance(value, Mapping):
            out |= _dotted(value, f"{prefix}{key}.")
    return out
