"""The ``[report]`` config section: its fields, and ``config validate``'s check of ``dir``."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ConfigError, load_settings
from tui.validate import check_settings


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_settings(path, checks=check_settings)


@pytest.mark.usefixtures("isolated_env")
def test_the_defaults_write_html_to_reports_beside_the_store(tmp_path: Path) -> None:
    settings = load_settings(None)
    assert settings.report.formats == ("html",)
    store = settings.store.resolved_path()
    assert settings.report.resolved_dir(settings.store) == store.parent / "reports"


@pytest.mark.usefixtures("isolated_env")
def test_formats_and_dir_are_read(tmp_path: Path) -> None:
    s = _load(tmp_path, f'[report]\nformats = ["md", "json"]\ndir = "{tmp_path / "out"}"\n')
    assert s.report.formats == ("md", "json")  # type: ignore[attr-defined]
    assert s.report.resolved_dir(s.store) == tmp_path / "out"  # type: ignore[attr-defined]


@pytest.mark.usefixtures("isolated_env")
@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("formats = []", "report.formats", "at least one"),
        ('formats = ["pdf"]', "report.formats.0", "'md', 'html', 'csv' or 'json'"),
        ('formats = ["md", "md"]', "report.formats", "each format once"),
        ('dir = ""', "report.dir", "must not be empty"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, text: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, f"[report]\n{text}\n")
    assert field in str(err.value) and words in str(err.value)


@pytest.mark.usefixtures("isolated_env")
def test_a_dir_under_a_file_is_refused_by_the_check(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, f'[report]\ndir = "{blocker / "reports"}"\n')
    assert "report.dir" in str(err.value) and "is a file" in str(err.value)
