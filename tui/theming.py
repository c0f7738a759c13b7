"""Themes as data files, validated into Textual ``Theme`` objects, and the remembered choice.

A theme file is TOML with the fields of :class:`textual.theme.Theme` and a
``[variables]`` table. The console's own variables (:data:`CMA_VARIABLES`)
must be colours; a file that fails validation is skipped with a readable
error, and the console falls back to :data:`DEFAULT_THEME`.

Which theme the console opens with:

1. an explicit choice, ``--theme`` or ``ui.theme`` set in the config file or
   ``CMA_UI__THEME``, wins;
2. otherwise the theme last picked in the command palette, remembered in
   ``$XDG_CONFIG_HOME/cma/ui-state.json``;
3. otherwise :data:`DEFAULT_THEME`.

A choice in the palette is always remembered, so it is what the next start
shows unless the config names a theme.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from textual.color import Color, ColorParseError
from textual.theme import Theme

import themes as _themes_package

if TYPE_CHECKING:
    from textual.app import App
    from textual.notifications import SeverityLevel

DEFAULT_THEME = "cma-dark"
THEMES_DIR = Path(_themes_package.__file__).resolve().parent

#: The console's own theme variables and the values used when a theme leaves one out.
#: Values here are only fallbacks: every shipped theme sets them itself.
CMA_VARIABLES: dict[str, str] = {
    "pnl-up": "ansi_bright_green",
    "pnl-down": "ansi_bright_red",
    "pnl-flat": "ansi_white",
    "side-long": "ansi_bright_green",
    "side-short": "ansi_bright_red",
    "mode-paper": "ansi_blue",
    "mode-live": "ansi_bright_red",
    "mode-live-text": "ansi_bright_white",
    "state-active": "ansi_green",
    "state-reducing": "ansi_yellow",
    "state-halted": "ansi_red",
    "state-text": "ansi_bright_white",
    "text-dim": "ansi_bright_black",
    "pane-border": "ansi_bright_black",
    "cursor-text": "ansi_bright_white",
    "cursor-blurred": "ansi_blue",
}

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def _check_color(value: str) -> str:
    try:
        Color.parse(value)
    except ColorParseError as exc:
        raise ValueError(f"{value!r} is not a colour ({exc})") from None
    return value


class ThemeFile(BaseModel):
    """The schema of one theme file."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: str
    primary: str
    secondary: str | None = None
    accent: str | None = None
    warning: str | None = None
    error: str | None = None
    success: str | None = None
    foreground: str | None = None
    background: str | None = None
    surface: str | None = None
    panel: str | None = None
    boost: str | None = None
    dark: bool = True
    luminosity_spread: float = Field(default=0.15, ge=0.0, le=1.0)
    text_alpha: float = Field(default=0.95, ge=0.0, le=1.0)
    variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError("must be lower-case letters, digits and dashes, e.g. 'my-theme'")
        return value

    @field_validator(
        "primary",
        "secondary",
        "accent",
        "warning",
        "error",
        "success",
        "foreground",
        "background",
        "surface",
        "panel",
        "boost",
    )
    @classmethod
    def _color(cls, value: str | None) -> str | None:
        return None if value is None else _check_color(value)

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        for key, colour in value.items():
            if key in CMA_VARIABLES:
                try:
                    _check_color(colour)
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None
        return value

    def to_theme(self) -> Theme:
        """The Textual theme; raises ValueError if Textual cannot build its colours."""
        theme = Theme(**self.model_dump())
        try:
            theme.to_color_system().generate()
        except Exception as exc:  # Textual raises several kinds on odd colours
            raise ValueError(f"Textual cannot use it: {exc}") from None
        return theme


@dataclass(frozen=True, slots=True)
class ThemeProblem:
    """A theme file that could not be used, and why, phrased for a person."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"theme {self.path.name}: {self.message}"


def load_theme_file(path: Path, *, trusted: bool = False) -> Theme:
    """Read and validate one theme file; raises ValueError with a readable message.

    ``trusted`` is for the shipped themes (:data:`THEMES_DIR`), which the tests
    validate and build: they go straight into a ``Theme``, skipping the schema and
    the colour build (validating costs about 10 ms of every start, mostly pydantic
    setting up its first validator). A shipped file that does not fit ``Theme``
    (edited in place, say) is validated after all, so it is reported like any other.
    """
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not valid TOML: {exc}") from None
    if trusted:
        try:
            return Theme(**data)
        except (TypeError, ValueError):
            pass
    try:
        spec = ThemeFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            problems.append(f"{field}: {msg}")
        raise ValueError("; ".join(problems)) from None
    return spec.to_theme()


def theme_dirs() -> list[Path]:
    """Where themes come from: the shipped ones, then ``$XDG_CONFIG_HOME/cma/themes``."""
    return [THEMES_DIR, config_dir() / "themes"]


def load_themes(dirs: Iterable[Path]) -> tuple[list[Theme], list[ThemeProblem]]:
    """Every valid ``*.toml`` theme in ``dirs`` (later files override earlier names).

    The shipped themes (in :data:`THEMES_DIR`) are trusted (see :func:`load_theme_file`).
    """
    found: dict[str, Theme] = {}
    problems: list[ThemeProblem] = []
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            try:
                theme = load_theme_file(path, trusted=directory == THEMES_DIR)
            except ValueError as exc:
                problems.append(ThemeProblem(path, str(exc)))
                continue
            found[theme.name] = theme
    return list(found.values()), problems


def fallback_theme() -> Theme:
    """The default theme when even its file is unusable: Textual's dark theme, renamed."""
    from textual.theme import BUILTIN_THEMES

    base = BUILTIN_THEMES["textual-dark"]
    return Theme(
        name=DEFAULT_THEME,
        primary=base.primary,
        secondary=base.secondary,
        accent=base.accent,
        warning=base.warning,
        error=base.error,
        success=base.success,
        foreground=base.foreground,
        dark=True,
    )


# ---- the remembered choice ---------------------------------------------------------


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/cma`` (``~/.config/cma`` when unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cma"


def default_state_path() -> Path:
    """Where the console remembers its choices between runs."""
    return config_dir() / "ui-state.json"


def read_ui_state(path: Path) -> dict[str, Any]:
    """The remembered choices; an unreadable or damaged file counts as none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_ui_state(path: Path, updates: Mapping[str, Any]) -> None:
    """Merge ``updates`` into the file at ``path`` atomically (write a sibling, then rename)."""
    state = read_ui_state(path)
    state.update(updates)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ui-state-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def choose_theme(explicit: str | None, remembered: str | None) -> str:
    """The theme to open with: explicit beats remembered beats the default."""
    if explicit:
        return explicit
    if remembered:
        return remembered
    return DEFAULT_THEME


@dataclass
class ThemeBoot:
    """What :func:`boot_themes` did: the themes the palette offers, the broken theme files,
    and the notices to show once the console is up (theme problems, a fallback)."""

    names: list[str]
    problems: list[ThemeProblem]
    notices: list[tuple[str, SeverityLevel]]


def boot_themes(
    app: App[Any], explicit: str | None, search: Sequence[Path] | None, state_path: Path
) -> ThemeBoot:
    """Register the shipped and the user's themes on ``app`` (not running yet) and start it
    on the one to open with (``explicit``, else the remembered one, else the default)."""
    loaded, problems = load_themes(search if search is not None else theme_dirs())
    for theme in loaded:
        app.register_theme(theme)
    if DEFAULT_THEME not in app.available_themes:
        app.register_theme(fallback_theme())
    notices: list[tuple[str, SeverityLevel]] = [(str(problem), "error") for problem in problems]
    remembered = read_ui_state(state_path).get("theme")
    wanted = choose_theme(explicit, remembered if isinstance(remembered, str) else None)
    if wanted not in app.available_themes:
        broken = [p for p in problems if p.path.stem == wanted]
        why = "is broken (see above)" if broken else "does not exist"
        notices.append((f"theme {wanted!r} {why}: using {DEFAULT_THEME} instead", "warning"))
        wanted = DEFAULT_THEME
    _set_initial_theme(app, wanted, notices)
    names = sorted({DEFAULT_THEME, *(t.name for t in loaded)})
    return ThemeBoot(names, problems, notices)


def _set_initial_theme(app: App[Any], name: str, notices: list[tuple[str, SeverityLevel]]) -> None:
    """Start with theme ``name`` without the full stylesheet rebuild a theme change costs.

    Setting ``App.theme`` schedules ``refresh_css`` (reparse everything, about 20 ms
    before the first frame). Before the app runs there is nothing to refresh: this
    does what the theme watcher does, but gives the stylesheet, not yet parsed, the
    theme's variables directly (:func:`tui.compat.apply_theme_before_start`).
    """
    from textual.app import App

    from tui import compat

    app.set_reactive(App.theme, name)
    try:
        variables = app.get_css_variables()
    except Exception as exc:  # a shipped theme edited in place: Textual raises many kinds
        if name == DEFAULT_THEME:
            app.register_theme(fallback_theme())
        notices.append((f"theme {name!r} cannot be drawn ({exc}): using {DEFAULT_THEME}", "error"))
        _set_initial_theme(app, DEFAULT_THEME, notices)
        return
    compat.apply_theme_before_start(app, variables)


def remember_theme(path: Path, name: str) -> str | None:
    """Remember ``name`` as the theme last picked; a problem doing so, for the person."""
    try:
        write_ui_state(path, {"theme": name})
    except OSError as exc:
        return f"could not remember the theme: {exc.strerror}"
    return None
