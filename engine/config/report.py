"""What is wrong with a configuration, and where each bad setting came from.

A :class:`Problem` is one bad setting; :func:`problems_of` turns pydantic's
errors into them, one per field, and :class:`Sources` writes the report that
:class:`engine.config.ConfigError` carries, each line with its origin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel

from engine.config.sections import Settings, is_collection


class Problem(NamedTuple):
    """One bad setting: its dotted field, the value as given, and what is wrong."""

    field: str
    value: Any
    message: str

    def __str__(self) -> str:
        return f"{self.field} = {_shown(self.field, self.value)}: {self.message}"


def _shown(field: str, value: Any) -> str:
    if field.startswith("exchange.api_"):
        return "********"
    if isinstance(value, Mapping):
        return "a table"
    return repr(value)


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


def problems_of(exc: Any) -> list[Problem]:
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
        if field is not None and is_collection(field.annotation):
            parts.append(str(loc[2]))
    return ".".join(parts)


def _known_keys(parent: tuple[int | str, ...]) -> str:
    """``; known: a, b, c`` for the section at ``parent`` (empty if not a section)."""
    model: Any = Settings
    for part in parent:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return ""
    return "; known: " + ", ".join(model.model_fields)
