"""Configuration: defaults, then a TOML file, then ``CMA_*`` variables; every bad
value is refused with its dotted field, its value and what is allowed."""

from __future__ import annotations

import os
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from engine.config import (
    CCXT_TIMEFRAMES,
    ConfigError,
    Settings,
    default_config_path,
    describe,
    example_toml,
    load_settings,
)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CMA_* variables and no config file of the person running the tests."""
    for key in list(os.environ):
        if key.startswith("CMA_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def write(tmp_path: Path, text: str, name: str = "cma.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load_with_no_file(tmp_path: Path) -> None:
    assert not default_config_path().exists()
    settings = load_settings()
    assert settings == Settings()
    assert settings.feed.kind == "sim"
    assert settings.risk.max_drawdown == 0.10
    assert settings.risk.initial_cash == Decimal("100000")
    assert settings.store.resolved_path() == tmp_path / "data" / "cma" / "cma.db"


def test_toml_file_values_apply(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [risk]
        max_drawdown = 0.2
        reduce_drawdown = 0.15
        initial_cash = "2500.50"

        [feed]
        symbols = ["btc/usdt", "ETH/BTC"]
        timeframe = "5m"
        speed = "max"

        [store]
        path = "/var/tmp/x.db"
        """,
    )
    s = load_settings(path)
    assert s.risk.max_drawdown == 0.2
    assert s.risk.reduce_drawdown == 0.15
    assert s.risk.initial_cash == Decimal("2500.50")
    assert s.feed.symbols == ("BTC/USDT", "ETH/BTC")  # upper-cased
    assert s.feed.timeframe == "5m"
    assert s.feed.speed == "max"
    assert s.store.resolved_path() == Path("/var/tmp/x.db")
    assert s.approval == Settings().approval  # untouched sections keep their defaults


def test_default_config_file_is_read_when_present() -> None:
    path = default_config_path()
    path.parent.mkdir(parents=True)
    path.write_text("[approval]\npolicy = 'auto'\n", encoding="utf-8")
    assert load_settings().approval.policy == "auto"


def test_env_variable_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[risk]\nmax_drawdown = 0.15\nreduce_drawdown = 0.12\n")
    monkeypatch.setenv("CMA_RISK__MAX_DRAWDOWN", "0.2")
    s = load_settings(path)
    assert s.risk.max_drawdown == 0.2
    assert s.risk.reduce_drawdown == 0.12  # the rest of the file's section still applies


def test_a_bad_env_value_is_reported_like_a_bad_file_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CMA_RISK__MAX_DRAWDOWN", "lots")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "risk.max_drawdown = 'lots'" in str(err.value)
    assert "valid number" in str(err.value)


@pytest.mark.parametrize(
    ("toml", "field", "value", "allowed"),
    [
        ("[risk]\nmax_drawdown = 1.5", "risk.max_drawdown", "1.5", "less than or equal to 1"),
        ("[risk]\nmax_total_exposure = -0.1", "risk.max_total_exposure", "-0.1", "greater than"),
        ("[approval]\nauto_confidence = 2", "approval.auto_confidence", "2", "or equal to 1"),
        ("[feed]\nsymbols = ['BTCUSDT']", "feed.symbols", "['BTCUSDT']", "BASE/QUOTE"),
        ("[feed]\nsymbols = []", "feed.symbols", "[]", "at least one symbol"),
        ("[risk]\nmax_open_positions = 0", "risk.max_open_positions", "0", "greater than 0"),
        ("[risk]\nmin_notional = '-5'", "risk.min_notional", "'-5'", "greater than 0"),
        ("[approval]\nttl_seconds = 0", "approval.ttl_seconds", "0", "greater than or equal to 1"),
        ("[feed]\ntimeframe = '7m'", "feed.timeframe", "'7m'", "1m, 3m, 5m"),
        ("[feed]\nspeed = -1.0", "feed.speed", "-1.0", "a positive number or 'max'"),
        ("[feed]\nkind = 'csv'", "feed.kind", "'csv'", "'sim', 'replay' or 'ccxt'"),
        ("[risk]\nmax_drawdwn = 0.1", "risk.max_drawdwn", "0.1", "known: initial_cash"),
        ("[riskk]\nmax_drawdown = 0.1", "riskk", "", "known: store, feed"),
        (
            "[risk]\nmax_drawdown = 0.05\nreduce_drawdown = 0.09",
            "risk.reduce_drawdown", "0.09", "must not exceed risk.max_drawdown (0.05)",
        ),
    ],
)  # fmt: skip
def test_each_bad_value_names_its_field_value_and_what_is_allowed(
    tmp_path: Path, toml: str, field: str, value: str, allowed: str
) -> None:
    path = write(tmp_path, toml + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    message = str(err.value)
    line = next((ln for ln in message.splitlines() if ln.strip().startswith(f"{field} ")), None)
    assert line is not None, f"{field} not named in:\n{message}"
    assert f"{field} = {value}" in line, line
    assert allowed in line, line
    assert str(path) in message  # and which file it came from


def test_every_bad_value_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "[risk]\nmax_drawdown = 3\n[feed]\ntimeframe = '2m'\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "risk.max_drawdown = 3" in str(err.value)
    assert "feed.timeframe = '2m'" in str(err.value)


def test_timeframes_are_the_ones_ccxt_knows() -> None:
    for tf in CCXT_TIMEFRAMES:
        assert Settings(feed={"timeframe": tf}).feed.timeframe == tf


def test_invalid_toml_syntax_gives_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[risk\nmax_drawdown = 0.2\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    message = str(err.value)
    assert str(path) in message
    assert "not valid TOML" in message
    assert "line 1" in message


def test_a_missing_named_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_example_toml_is_a_valid_config_that_loads_to_the_defaults(tmp_path: Path) -> None:
    text = example_toml()
    tomllib.loads(text)  # parses
    for line in text.splitlines():
        # Every line is blank, a comment, a [section] or a key = value: a wrapped
        # description must not leak out of its comment.
        assert not line or line.startswith(("#", "[")) or " = " in line, line
    assert load_settings(write(tmp_path, text)) == Settings()
    assert "api_key" not in text.replace("# API keys", "")


def test_secrets_are_masked_and_never_dumped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMA_EXCHANGE__API_KEY", "supersecret-123")
    s = load_settings()
    assert s.exchange.api_key is not None
    assert s.exchange.api_key.get_secret_value() == "supersecret-123"
    rows = {field: value for field, value, _ in describe(s)}
    assert rows["exchange.api_key"] == "********"
    assert rows["exchange.api_secret"] == "(not set)"
    assert "supersecret-123" not in repr(s)
    assert "supersecret-123" not in s.model_dump_json()
    assert "supersecret-123" not in example_toml(s)


def test_describe_gives_one_line_per_setting_with_a_description() -> None:
    rows = describe(Settings())
    assert len({field for field, _, _ in rows}) == len(rows)
    for field, value, desc in rows:
        assert desc, f"{field} has no description"
        assert "\n" not in desc and "\n" not in value, field


def test_env_lists_are_json_or_comma_separated_and_names_are_case_insensitive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CMA_FEED__SYMBOLS", '["eth/usdt", "BTC/USDT"]')
    monkeypatch.setenv("cma_ui__keymap", '{"approve": "y"}')
    s = load_settings()
    assert s.feed.symbols == ("ETH/USDT", "BTC/USDT")
    assert s.ui.keymap == {"approve": "y"}
    monkeypatch.setenv("CMA_FEED__SYMBOLS", "sol/usdt, xrp/usdt")
    assert load_settings().feed.symbols == ("SOL/USDT", "XRP/USDT")


def test_env_variables_that_name_no_section_are_not_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CMA_SHARED_DATA", "/somewhere")
    monkeypatch.setenv("CMA_", "x")
    assert load_settings() == Settings()


def test_a_bad_env_variable_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMA_RISK__MAX_DRAWDWN", "0.1")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "risk.max_drawdwn = '0.1': unknown setting" in str(err.value)
    assert "(from CMA_RISK__MAX_DRAWDWN)" in str(err.value)
    monkeypatch.delenv("CMA_RISK__MAX_DRAWDWN")
    monkeypatch.setenv("CMA_FEED__SYMBOLS", "[not json")
    with pytest.raises(ConfigError, match="CMA_FEED__SYMBOLS: not valid JSON"):
        load_settings()


def test_a_command_line_override_beats_env_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[feed]\nseed = 1\nspeed = 5.0\n")
    monkeypatch.setenv("CMA_FEED__SEED", "2")
    s = load_settings(path, feed={"seed": 3})
    assert (s.feed.seed, s.feed.speed) == (3, 5.0)


def test_the_defaults_validate_to_themselves() -> None:
    # A start with nothing to validate uses the defaults unvalidated (model_construct):
    # they must be exactly what validation would make of them.
    from engine.config import Section

    for section in Section.__subclasses__():
        assert section.model_validate({}) == section.model_construct(), section.__name__
    assert Settings.model_validate({}) == Settings.model_construct() == load_settings()
    assert Settings.model_validate(Settings().model_dump()) == Settings()
