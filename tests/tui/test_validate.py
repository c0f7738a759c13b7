"""The checks beyond each field's value (tui/validate.py): agents that exist and build,
and a keymap whose ids are real and whose keys take no key another binding of the
same screen already uses. The bindings are the console's real ones."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from textual.binding import Binding

from engine.config import ConfigError, Settings, load_settings
from tui.app import binding_classes, known_binding_ids
from tui.validate import check_keymap, check_settings


def problems(**sections: object) -> list[str]:
    return [str(p) for p in check_settings(Settings.model_validate(sections))]


def default_keys() -> dict[str, str]:
    """Each binding id with the keys it has before any remapping."""
    keys: dict[str, list[str]] = {}
    for cls in binding_classes():
        for group in cls._merged_bindings.key_to_bindings.values():
            for b in group:
                if b.id and b.key not in keys.setdefault(b.id, []):
                    keys[b.id].append(b.key)
    return {binding_id: ",".join(k) for binding_id, k in keys.items()}


def test_the_defaults_have_no_problems() -> None:
    assert check_settings(Settings()) == []


def test_remapping_every_binding_to_its_own_keys_is_no_conflict() -> None:
    # The console's own shared keys (q closes help and quits elsewhere) are its design.
    assert check_keymap(default_keys()) == []


def test_a_key_another_binding_of_the_screen_uses_is_refused_naming_both() -> None:
    assert [str(p) for p in check_keymap({"approve": "q"})] == [
        "ui.keymap.approve = 'q': q is already quit"
    ]
    # An app-level binding moved onto a screen's key clashes on that screen.
    assert [str(p) for p in check_keymap({"quit": "a"})] == [
        "ui.keymap.quit = 'a': a is already approve"
    ]
    # A character is named as Textual names it.
    assert [str(p) for p in check_keymap({"reject": "?"})] == [
        "ui.keymap.reject = '?': question_mark is already help"
    ]


def test_two_bindings_remapped_onto_one_key_are_reported_once() -> None:
    assert [str(p) for p in check_keymap({"approve": "z", "reject": "z"})] == [
        "ui.keymap.approve = 'z': z is already reject"
    ]


def test_swapping_keys_and_moving_a_binding_away_first_are_fine() -> None:
    assert check_keymap({"approve": "r", "reject": "a"}) == []
    assert check_keymap({"approve": "q", "quit": "ctrl+x"}) == []
    assert check_keymap({"approve": "y", "help.close": "escape,q"}) == []


def test_a_key_of_a_table_or_of_textual_itself_is_a_conflict_too() -> None:
    assert [str(p) for p in check_keymap({"approve": "up"})] == [
        "ui.keymap.approve = 'up': up is already table.cursor-up"
    ]
    (problem,) = check_keymap({"approve": "tab"})
    assert str(problem).startswith("ui.keymap.approve = 'tab': tab is already next-pane")


def test_unknown_ids_and_empty_keys_are_refused() -> None:
    assert [str(p) for p in check_keymap({"aprove": "y", "reject": "x,,y"})] == [
        "ui.keymap.aprove = 'y': no binding with id 'aprove' (did you mean 'approve'?) "
        "(the console's help, ?, lists every id)",
        "ui.keymap.reject = 'x,,y': must list keys, e.g. 'y' or 'y,enter'",
    ]


KEYS = st.sampled_from(["a", "r", "q", "x", "y", "z", "n", "escape", "enter", "up", "f1", "?"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(known_binding_ids())), KEYS, max_size=4))
def test_an_accepted_keymap_leaves_no_key_to_two_bindings_that_did_not_share_it(
    keymap: dict[str, str],
) -> None:
    """Apply an accepted keymap to each screen's real bindings as Textual does (the
    screen's, the app's and the table's): Textual finds no clash within any of them,
    and every key that now fires bindings of two of them did so before the keymap."""
    if check_keymap(keymap):
        return
    from textual.app import App
    from textual.screen import Screen

    normalized = App._normalize_keymap(keymap)
    classes = binding_classes()
    shared = [c for c in classes if not issubclass(c, Screen)]  # the app and the table
    for screen in (c for c in classes if issubclass(c, Screen)):
        before: dict[str, set[str]] = {}
        after: dict[str, set[str]] = {}
        for cls in [screen, *shared]:
            bindings = cls._merged_bindings.copy()
            for key, group in bindings.key_to_bindings.items():
                before.setdefault(key, set()).update(b.id or b.action for b in group)
            result = bindings.apply_keymap(normalized)
            # Textual counts a binding with several keys (y,enter) remapped to one key
            # as clashing with itself; two bindings on one key are caught below.
            clashes = {
                b
                for b in result.clashed_bindings
                if not (b.id in normalized and b.key in normalized[b.id].split(","))
            }
            assert not clashes, (screen.__name__, cls.__name__, keymap)
            for key, group in bindings.key_to_bindings.items():
                after.setdefault(key, set()).update(b.id or b.action for b in group)
        for key, users in after.items():
            if len(users) > 1:
                assert users <= before.get(key, set()), (screen.__name__, key, users, keymap)


def test_binding_classes_all_have_ids() -> None:
    # The check can only reason about bindings it can name.
    for cls in binding_classes():
        for b in cls.BINDINGS:
            assert isinstance(b, Binding) and b.id, (cls.__name__, b)


# ---- agents -----------------------------------------------------------------------------


def test_unknown_and_repeated_built_in_agents_are_refused() -> None:
    assert problems(agents={"enabled": ["momentum", "momentm"]}) == [
        "agents.enabled = ['momentum', 'momentm']: unknown agent 'momentm'; built-in agents "
        "are momentum, price_action, sma_cross (did you mean 'momentum'?)"
    ]
    assert problems(agents={"enabled": ["momentum", "momentum"]}) == [
        "agents.enabled = ['momentum', 'momentum']: 'momentum' is listed twice"
    ]
    assert problems(agents={"enabled": []}) == [
        "agents.enabled = []: at least one agent must run (agents.enabled or .user)"
    ]
    assert problems(agents={"min_votes": 3}) == [
        "agents.min_votes = 3: only 2 agents run, so no proposal could ever be made"
    ]


def test_user_agents_must_import_build_and_have_their_own_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_agents.py").write_text(
        "from engine.agents.base import Agent\n"
        "from engine.agents.momentum import MomentumAgent\n"
        "class Broken(MomentumAgent):\n"
        "    name = 'broken'\n"
        "    def __init__(self, symbol):\n"
        "        raise RuntimeError('no config')\n"
        "class Copy(MomentumAgent):\n"
        "    pass\n",
        encoding="utf-8",
    )
    (tmp_path / "raising.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = problems(
        agents={
            "user": [
                "nowhere.agents:Mine",
                "raising:Agent",
                "my_agents:Broken",
                "my_agents:Copy",
            ]
        }
    )
    assert found == [
        "agents.user.0 = 'nowhere.agents:Mine': agent path 'nowhere.agents:Mine': cannot "
        "import module 'nowhere.agents': No module named 'nowhere'",
        "agents.user.1 = 'raising:Agent': importing it raised RuntimeError: boom at import",
        "agents.user.2 = 'my_agents:Broken': Broken(symbol) raised RuntimeError: no config",
        "agents.user.3 = 'my_agents:Copy': agent name 'momentum' is already used (agents.enabled)",
    ]
    sys.modules.pop("my_agents", None)


def test_load_settings_reports_check_problems_with_their_origin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[ui]\nkeymap = {approve = 'q'}\n", encoding="utf-8")
    monkeypatch.setenv("CMA_AGENTS__ENABLED", "nope")
    with pytest.raises(ConfigError) as err:
        load_settings(path, checks=check_settings)
    assert str(err.value).splitlines() == [
        f"invalid configuration in {path}:",
        "  agents.enabled = ['nope']: unknown agent 'nope'; built-in agents are momentum, "
        "price_action, sma_cross (from CMA_AGENTS__ENABLED)",
        "  ui.keymap.approve = 'q': q is already quit",
    ]


def test_field_errors_and_check_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[feed]\nspeed = inf\n[agents]\nenabled = ['nope']\n[ui]\nmax_fps = 500\n"
        "keymap = {approve = 'q'}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={}, checks=check_settings)
    fields = [line.split(" = ")[0].strip() for line in str(err.value).splitlines()[1:]]
    # The keymap is not checked while its section has a bad value (ui.max_fps).
    assert fields == ["feed.speed", "ui.max_fps", "agents.enabled"]
