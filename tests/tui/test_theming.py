"""Themes as data files: validation, fallback, the remembered choice, and theme-only colours."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from harness import SteppedFeed, make_app, make_settings

from tui.theming import (
    CMA_VARIABLES,
    DEFAULT_THEME,
    THEMES_DIR,
    choose_theme,
    load_theme_file,
    load_themes,
    read_ui_state,
    write_ui_state,
)

SHIPPED = ("cma-dark", "cma-light", "cma-contrast")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_theme_validates_and_sets_every_console_variable(name: str) -> None:
    theme = load_theme_file(THEMES_DIR / f"{name}.toml")
    assert theme.name == name
    assert set(CMA_VARIABLES) <= set(theme.variables)


def test_contrast_theme_does_not_use_red_and_green_for_profit_and_loss() -> None:
    from textual.color import Color

    theme = load_theme_file(THEMES_DIR / "cma-contrast.toml")
    for var in ("pnl-up", "pnl-down"):
        r, g, b = Color.parse(theme.variables[var]).rgb
        # Neither a green (g far above r and b) nor a red (r far above g and b).
        assert not (g > 1.5 * r and g > 1.5 * b), var
        assert not (r > 1.5 * g and r > 1.5 * b and g < 100), var


def test_stylesheet_has_no_hex_colours() -> None:
    css = (THEMES_DIR / "cma.tcss").read_text(encoding="utf-8")
    assert re.findall(r"#[0-9a-fA-F]{3,8}\b", css) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('name = "x"\nprimary = "#zzzzzz"\n', "primary"),
        ('name = "Bad Name"\nprimary = "#112233"\n', "name"),
        ('name = "x"\nprimary = "#112233"\n[variables]\npnl-up = "nope"\n', "pnl-up"),
        ('name = "x"\nprimary = "#112233"\ncolour = "#112233"\n', "unknown field"),
        ("name = \n", "not valid TOML"),
    ],
)
def test_a_broken_theme_file_is_reported_not_loaded(
    tmp_path: Path, text: str, problem: str
) -> None:
    (tmp_path / "x.toml").write_text(text, encoding="utf-8")
    themes, problems = load_themes([tmp_path])
    assert themes == []
    assert len(problems) == 1
    assert problem in str(problems[0])


def test_explicit_theme_beats_remembered_beats_default() -> None:
    assert choose_theme("cma-light", "cma-contrast") == "cma-light"
    assert choose_theme(None, "cma-contrast") == "cma-contrast"
    assert choose_theme(None, None) == DEFAULT_THEME


def test_ui_state_is_written_atomically_and_merged(tmp_path: Path) -> None:
    path = tmp_path / "cma" / "ui-state.json"
    write_ui_state(path, {"theme": "cma-light"})
    write_ui_state(path, {"other": 1})
    assert json.loads(path.read_text()) == {"other": 1, "theme": "cma-light"}
    assert [p.name for p in path.parent.iterdir()] == ["ui-state.json"]
    path.write_text("{broken", encoding="utf-8")
    assert read_ui_state(path) == {}


async def test_a_broken_configured_theme_falls_back_to_the_default_with_a_notice(
    tmp_path: Path,
) -> None:
    themes = tmp_path / "themes"
    themes.mkdir()
    for name in SHIPPED:
        (themes / f"{name}.toml").write_text((THEMES_DIR / f"{name}.toml").read_text())
    (themes / "mine.toml").write_text('name = "mine"\nprimary = "not a colour"\n')
    settings = make_settings(tmp_path / "cma.db", ui={"theme": "mine"})
    app = make_app(tmp_path, SteppedFeed(), settings, theme_search=[themes])
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()  # the notices follow the engine's start
        await pilot.pause()
        assert app.theme == DEFAULT_THEME
        messages = " ".join(str(n.message) for n in app._notifications)
        assert "mine.toml" in messages and "primary" in messages
        assert "using cma-dark instead" in messages


async def test_a_theme_picked_at_runtime_is_remembered_for_the_next_start(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    app = make_app(tmp_path, SteppedFeed(), make_settings(db))
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.theme == DEFAULT_THEME
        app.theme = "cma-contrast"
        await pilot.pause()
    assert read_ui_state(tmp_path / "ui-state.json") == {"theme": "cma-contrast"}

    again = make_app(tmp_path, SteppedFeed(), make_settings(db))
    async with again.run_test(size=(100, 30)):
        assert again.theme == "cma-contrast"

    explicit = make_app(tmp_path, SteppedFeed(), make_settings(db, ui={"theme": "cma-light"}))
    async with explicit.run_test(size=(100, 30)):
        assert explicit.theme == "cma-light"


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_theme_loads_the_same_trusted_or_validated(name: str) -> None:
    # The console starts with the shipped themes trusted (no schema, no colour build);
    # that shortcut must give exactly the theme that full validation gives.
    path = THEMES_DIR / f"{name}.toml"
    assert load_theme_file(path, trusted=True) == load_theme_file(path)


def test_a_trusted_theme_file_that_does_not_fit_is_still_reported(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text('name = "x"\nprimary = "#112233"\ncolour = "#112233"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="colour: unknown field"):
        load_theme_file(path, trusted=True)


async def test_a_shipped_theme_broken_in_place_falls_back_with_a_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shipped themes are trusted at start (no validation): a bad colour in one of them
    # still must not stop the console.
    shipped = tmp_path / "themes"
    shipped.mkdir()
    for name in SHIPPED:
        (shipped / f"{name}.toml").write_text((THEMES_DIR / f"{name}.toml").read_text())
    broken = (shipped / "cma-dark.toml").read_text()
    broken = re.sub(r"(?m)^primary = .*$", 'primary = "not a colour"', broken)
    (shipped / "cma-dark.toml").write_text(broken)
    monkeypatch.setattr("tui.theming.THEMES_DIR", shipped)
    app = make_app(
        tmp_path, SteppedFeed(), make_settings(tmp_path / "cma.db"), theme_search=[shipped]
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()  # the notices follow the engine's start
        await pilot.pause()
        assert app.theme == DEFAULT_THEME
        assert app.current_theme.primary != "not a colour"
        messages = " ".join(str(n.message) for n in app._notifications)
        assert "cannot be drawn" in messages


async def test_the_palette_offers_the_users_own_themes_too(tmp_path: Path) -> None:
    own = tmp_path / "config" / "cma" / "themes"  # $XDG_CONFIG_HOME/cma/themes
    own.mkdir(parents=True)
    (own / "ocean.toml").write_text('name = "ocean"\nprimary = "#1166aa"\n', encoding="utf-8")
    app = make_app(tmp_path, SteppedFeed(), make_settings(tmp_path / "cma.db"))
    async with app.run_test(size=(100, 30)) as pilot:
        commands = {c.title: c for c in app.get_system_commands(app.main)}
        for name in (*SHIPPED, "ocean"):
            assert f"Theme: {name}" in commands
        assert "Theme: textual-dark" not in commands  # Textual's own stay in its theme picker
        commands["Theme: ocean"].callback()
        await pilot.pause()
        assert app.theme == "ocean"
