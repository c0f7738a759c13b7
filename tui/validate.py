"""The checks beyond each field's own value, shared by ``cma config validate`` and ``cma run``.

:func:`engine.config.load_settings` checks every field alone (types, ranges,
symbols); :func:`check_settings` checks what needs the rest of cma: that the
agents exist and can be built, and that ``ui.keymap`` names real bindings
whose new keys take no key another binding of the same screen already uses.
Both commands pass it to ``load_settings(checks=...)``, so a config that
``config validate`` accepts is one that ``run`` starts with.

Textual is imported only when ``ui.keymap`` is set: a headless run without a
keymap does not pay for it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from engine.config import Problem, Settings
from tui import compat

if TYPE_CHECKING:
    from textual.binding import Binding


def check_settings(settings: Settings) -> list[Problem]:
    """Every problem of ``settings`` that the field validators cannot see, each naming its field."""
    problems = check_agents(settings) + check_report(settings)
    if settings.broker.kind == "ccxt":
        # Live orders are never switched on by a file or a variable alone.
        problems.append(
            Problem(
                "broker.kind",
                "ccxt",
                "live orders start only with cma run --live (keys from cma keys set); "
                "leave it paper here",
            )
        )
    if settings.ui.keymap:
        problems += check_keymap(settings.ui.keymap)
    return problems


def check_report(settings: Settings) -> list[Problem]:
    """``report.dir``, when set, is a folder or can become one (nothing else is in the way)."""
    folder = settings.report.dir
    if folder is None:
        return []
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                what = "it is" if part == folder else f"{part} is"
                return [Problem("report.dir", str(folder), f"must be a folder, but {what} a file")]
            break
    return []


def check_agents(settings: Settings) -> list[Problem]:
    """``agents.enabled`` names built-in agents, each ``agents.user`` path imports a
    concrete agent that can be built, every agent name is used once, and
    ``agents.min_votes`` can be reached."""
    from engine.agents.loader import BUILTIN_AGENTS, load_agent_class

    a = settings.agents
    problems: list[Problem] = []
    names: dict[str, str] = {}  # agent name → the setting that brought it
    for name in a.enabled:
        if name not in BUILTIN_AGENTS:
            problems.append(
                Problem(
                    "agents.enabled",
                    list(a.enabled),
                    f"unknown agent {name!r}; built-in agents are "
                    f"{', '.join(sorted(BUILTIN_AGENTS))}{_did_you_mean(name, BUILTIN_AGENTS)}",
                )
            )
        elif name in names:
            problems.append(Problem("agents.enabled", list(a.enabled), f"{name!r} is listed twice"))
        else:
            names[name] = "agents.enabled"
    for index, path in enumerate(a.user):
        field = f"agents.user.{index}"
        try:
            cls = load_agent_class(path)
        except ValueError as exc:
            problems.append(Problem(field, path, str(exc)))
            continue
        except Exception as exc:  # the user's module ran and raised: say what
            problems.append(
                Problem(field, path, f"importing it raised {type(exc).__name__}: {exc}")
            )
            continue
        try:
            cls(settings.feed.symbols[0])
        except Exception as exc:  # the user's constructor: say what it raised
            problems.append(
                Problem(field, path, f"{cls.__name__}(symbol) raised {type(exc).__name__}: {exc}")
            )
            continue
        if cls.name in names:
            problems.append(
                Problem(field, path, f"agent name {cls.name!r} is already used ({names[cls.name]})")
            )
            continue
        names[cls.name] = field
    problems += _check_params(settings, names)
    if not a.enabled and not a.user:
        problems.append(
            Problem("agents.enabled", [], "at least one agent must run (agents.enabled or .user)")
        )
    agent_count = len(a.enabled) + len(a.user)
    if agent_count and a.min_votes > agent_count:
        problems.append(
            Problem(
                "agents.min_votes",
                a.min_votes,
                f"only {agent_count} agents run, so no proposal could ever be made",
            )
        )
    return problems


def _check_params(settings: Settings, names: Mapping[str, str]) -> list[Problem]:
    """Each ``agents.params`` table names a running agent, which accepts its settings."""
    from engine.agents.loader import BUILTIN_AGENTS, load_agent_class

    problems: list[Problem] = []
    for name, params in settings.agents.params.items():
        field = f"agents.params.{name}"
        source = names.get(name)
        if source is None:
            problems.append(
                Problem(
                    field,
                    dict(params),
                    f"no running agent is named {name!r}; running: "
                    f"{', '.join(sorted(names)) or 'none'}{_did_you_mean(name, names)}",
                )
            )
            continue
        if source == "agents.enabled":
            cls = BUILTIN_AGENTS[name]
        else:
            cls = load_agent_class(settings.agents.user[int(source.rsplit(".", 1)[1])])
        try:
            cls(settings.feed.symbols[0], **params)
        except Exception as exc:  # the agent's constructor says what is wrong
            problems.append(Problem(field, dict(params), f"{type(exc).__name__}: {exc}"))
    return problems


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _keys(spec: str) -> list[str]:
    """The keys of a comma-separated key list, as Textual names them (``?`` is
    ``question_mark``): the same normalisation ``App.set_keymap`` applies."""
    keys = [key.strip() for key in spec.split(",")]
    return [compat.key_name(key) if len(key) == 1 else key for key in keys]


def _contexts(classes: list[type[Any]]) -> list[list[Binding]]:
    """The sets of bindings active together: each screen with the app's bindings,
    plus the bindings of every widget class (a widget may sit on any screen)."""
    from textual.app import App
    from textual.screen import Screen

    def bindings(cls: type[Any]) -> list[Binding]:
        return [b for group in compat.merged_bindings(cls).key_to_bindings.values() for b in group]

    app = [b for cls in classes if issubclass(cls, App) for b in bindings(cls)]
    widgets = [b for cls in classes if not issubclass(cls, (App, Screen)) for b in bindings(cls)]
    return [bindings(cls) + app + widgets for cls in classes if issubclass(cls, Screen)]


def check_keymap(keymap: Mapping[str, str]) -> list[Problem]:
    """Each id of ``ui.keymap`` names a binding of the console, each value lists
    keys, and no new key is one that another binding active on the same screen
    (the screen's own, the app's, a widget's) already uses. A key two bindings
    shared before any remapping (``q`` closes help and quits elsewhere) is the
    console's own design and is not reported."""
    from tui.keys import binding_classes

    classes = binding_classes()
    known = {
        b.id for cls in classes for group in compat.merged_bindings(cls).key_to_bindings.values()
        for b in group if b.id
    }  # fmt: skip
    problems: list[Problem] = []
    new_keys: dict[str, list[str]] = {}
    for binding_id, spec in keymap.items():
        field = f"ui.keymap.{binding_id}"
        if binding_id not in known:
            problems.append(
                Problem(
                    field,
                    spec,
                    f"no binding with id {binding_id!r}{_did_you_mean(binding_id, known)} "
                    "(the console's help, ?, lists every id)",
                )
            )
        elif not all(key.strip() for key in spec.split(",")):
            problems.append(Problem(field, spec, "must list keys, e.g. 'y' or 'y,enter'"))
        else:
            new_keys[binding_id] = _keys(spec)

    # (remapped id, key) → the other bindings already on that key, in the order found.
    clashes: dict[tuple[str, str], dict[str, None]] = {}
    for context in _contexts(classes):
        default: dict[str, set[str]] = {}  # key → the labels that share it by default
        now: dict[str, set[str]] = {}  # key → the labels that use it after the keymap
        for b in context:
            label = b.id or f"Textual's {b.action!r}"
            default.setdefault(b.key, set()).add(label)
            for key in new_keys.get(b.id, [b.key]) if b.id else [b.key]:
                now.setdefault(key, set()).add(label)
        for binding_id, keys in new_keys.items():
            if not any(b.id == binding_id for b in context):
                continue
            for key in keys:
                for other in sorted(now.get(key, set()) - {binding_id}):
                    if {binding_id, other} <= default.get(key, set()):
                        continue  # shared before any remapping: the console's own design
                    if other in new_keys and (other, key) in clashes:
                        continue  # both remapped onto one key: reported once
                    clashes.setdefault((binding_id, key), {})[other] = None
    for (binding_id, key), others in clashes.items():
        names = list(others)
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        problems.append(
            Problem(f"ui.keymap.{binding_id}", keymap[binding_id], f"{key} is already {listed}")
        )
    return problems
