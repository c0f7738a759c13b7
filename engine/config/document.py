"""The settings written out for a person: each field's docstring, ``config show``'s
rows and ``config init``'s commented template.
"""

from __future__ import annotations

import functools
import itertools
from decimal import Decimal

from pydantic import BaseModel, SecretStr

from engine.config.sections import Settings


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
