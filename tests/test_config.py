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

pytestmark = pytest.mark.usefixtures("isolated_env")


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


# ---- the config file itself ------------------------------------------------------------


def test_a_config_file_that_is_not_utf8_is_named_with_the_offending_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes("[ui]\ntheme = 'caf\xe9'\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value) == (
        f"config file {path}: not UTF-8 text (byte 0xe9 at offset 17: invalid continuation byte)"
    )


def test_a_utf8_byte_order_mark_is_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf[feed]\nseed = 3\n")
    assert load_settings(path).feed.seed == 3


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: Path("/dev/null"), "is not a regular file"),
        (lambda tmp: (os.mkfifo(tmp / "fifo"), tmp / "fifo")[1], "is not a regular file"),
        (lambda tmp: tmp / "missing.toml", "not found"),
    ],
    ids=["directory", "dev-null", "fifo", "missing"],
)
def test_a_config_path_that_is_no_file_says_what_it_is(
    tmp_path: Path, make: object, says: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(ConfigError) as err:
        load_settings(path)  # a FIFO is never opened, so this cannot hang
    assert str(err.value) == f"config file {path}: {says}"


def test_a_directory_at_the_default_config_path_is_an_error_not_ignored() -> None:
    default_config_path().mkdir(parents=True)
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings()


# ---- numbers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "line"),
    [
        ('[risk]\ninitial_cash = "1e22"',
         "risk.initial_cash = '1e22': Input should be less than or equal to 1000000000000"),
        ("[risk]\ninitial_cash = 1e22",
         "risk.initial_cash = 1e+22: Input should be less than or equal to 1000000000000"),
        ('[risk]\nmin_notional = "1e999"', "risk.min_notional = '1e999': Input should be less"),
        ("[feed]\nspeed = inf",
         "feed.speed = inf: must be a number from 0.001 to 1000000, or 'max'"),
        ("[feed]\nspeed = nan", "feed.speed = nan: must be a positive number or 'max'"),
        ("[approval]\nttl_seconds = inf", "approval.ttl_seconds = inf: Input should be a finite"),
        ("[approval]\nttl_seconds = 2592001.0",
         "approval.ttl_seconds = 2592001.0: Input should be less than or equal to 2592000"),
        ("[risk]\nmax_drawdown = nan", "risk.max_drawdown = nan: Input should be a finite number"),
        ("[feed]\nseed = -1", "feed.seed = -1: Input should be greater than or equal to 0"),
        ("[risk]\nmax_open_positions = 9223372036854775807",
         "risk.max_open_positions = 9223372036854775807: Input should be less than or equal"),
        ("[engine]\nstatus_interval_seconds = 1e-300",
         "engine.status_interval_seconds = 1e-300: Input should be greater than or equal to 0.1"),
    ],
)  # fmt: skip
def test_huge_non_finite_and_out_of_range_numbers_are_refused(
    tmp_path: Path, toml: str, line: str
) -> None:
    path = write(tmp_path, toml + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert line in str(err.value)


def test_the_drawdown_order_is_checked_against_the_default_too(tmp_path: Path) -> None:
    # max_drawdown alone below the default reduce_drawdown (0.07): validate passed it,
    # then the engine refused to start.
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "[risk]\nmax_drawdown = 0.05\n"))
    assert (
        "risk.reduce_drawdown = 0.07: must not exceed risk.max_drawdown (0.05), got 0.07 "
        "(the default)" in str(err.value)
    )
    with pytest.raises(ConfigError, match=r"risk.min_notional = Decimal\('10'\): must be below"):
        load_settings(write(tmp_path, "[risk]\ninitial_cash = '5'\n"))


# ---- messages -------------------------------------------------------------------------


def test_speed_in_capitals_is_one_plain_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "[feed]\nspeed = 'MAX'\n"))
    assert str(err.value) == (
        f"invalid configuration in {tmp_path / 'cma.toml'}:\n"
        "  feed.speed = 'MAX': must be a positive number or 'max'"
    )


def _all_fields() -> list[tuple[str, str]]:
    return [
        (section, name)
        for section, info in Settings.model_fields.items()
        for name in info.annotation.model_fields  # type: ignore[union-attr]
    ]


@pytest.mark.parametrize(("section", "field"), _all_fields())
def test_no_field_error_shows_pydantic_union_or_literal_branches(section: str, field: str) -> None:
    bad_values: list[object] = ["MAX", "", {"a": 1}, [{"a": 1}], -1, 1e999, True, "x" * 3]
    for value in bad_values:
        try:
            load_settings(environ={}, **{section: {field: value}})
        except ConfigError as exc:
            lines = str(exc).splitlines()[1:]
            for line in lines:
                named = line.strip().split(" = ", 1)[0]
                # the field itself, or one item of a list (.0) or table (.a)
                assert named in (
                    f"{section}.{field}",
                    f"{section}.{field}.0",
                    f"{section}.{field}.a",
                ), line
                assert "literal[" not in line and "function-" not in line, line
            fields = [ln.strip().split(" = ", 1)[0] for ln in lines]
            assert len(fields) == len(set(fields)), f"one line per field:\n{exc}"


def test_broker_kind_ccxt_is_a_valid_setting_that_only_cma_run_live_acts_on(
    tmp_path: Path,
) -> None:
    settings = load_settings(write(tmp_path, "[broker]\nkind = 'ccxt'\n"))
    assert settings.broker.kind == "ccxt" and not settings.broker.shorts_allowed()


@pytest.mark.parametrize(
    ("feed", "line"),
    [
        (
            {"kind": "ccxt", "files": ["x.csv"]},
            "feed.files = ['x.csv']: --files needs the replay feed (feed.kind is 'ccxt')",
        ),
        ({"kind": "replay"}, "feed.files = (): the replay feed needs at least one CSV file"),
        ({"files": ["x.csv"]}, "feed.files = ['x.csv']: --files needs the replay feed"),
        ({"symbols": ["BTC/USDT", "btc/usdt"]}, "BTC/USDT is listed twice"),
        ({"files": [""], "kind": "replay"}, "feed.files = ['']: must not be empty"),
    ],
)
def test_feed_settings_run_would_refuse_are_refused_here(
    feed: dict[str, object], line: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(environ={}, feed=feed)
    assert line in str(err.value)


# ---- environment variables ------------------------------------------------------------


def test_an_empty_store_path_variable_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CMA_STORE__PATH", "")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == (
        "invalid configuration:\n  store.path = '': must not be empty; leave the setting out "
        "for the default (from CMA_STORE__PATH)"
    )


@pytest.mark.parametrize("name", ["CMA_NOPE__X", "cma_nope__x"])
def test_a_variable_for_an_unknown_section_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value) == (
        f"{name}: no section 'nope'; known: store, feed, agents, approval, strategy, risk, "
        "broker, engine, ui, exchange, report, metrics"
    )


def test_a_variable_with_an_empty_part_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMA_RISK__", "1")
    with pytest.raises(ConfigError, match="CMA_RISK__: not a setting name"):
        load_settings()


def test_a_variable_error_does_not_blame_a_config_file_that_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[risk]\nmax_drawdown = 0.2\n[feed]\nspeed = 'MAX'\n")
    monkeypatch.setenv("CMA_RISK__INITIAL_CASH", "1e999")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    lines = str(err.value).splitlines()
    assert lines[0] == f"invalid configuration in {path}:"  # the file has a problem too
    assert any("(from CMA_RISK__INITIAL_CASH)" in ln for ln in lines)
    path.write_text("[risk]\nmax_drawdown = 0.2\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert str(err.value).splitlines()[0] == "invalid configuration:"
    assert str(path) not in str(err.value)


# ---- the template ---------------------------------------------------------------------


def test_the_template_sets_no_theme_and_points_to_no_missing_command(tmp_path: Path) -> None:
    text = example_toml()
    assert "cma keys" not in text
    assert "keyring" in text
    assert '# theme = "cma-dark"' in text
    settings = load_settings(write(tmp_path, text))
    # Setting ui.theme at all makes it beat the theme remembered from the palette.
    assert "theme" not in settings.ui.model_fields_set


def test_a_value_where_a_table_belongs_is_reported_even_under_an_option(tmp_path: Path) -> None:
    # `store = 5` in the file, --db on the command line: the option's table must not hide
    # the file's mistake (config validate reports it; so must run).
    path = tmp_path / "c.toml"
    path.write_text("store = 5\n")
    with pytest.raises(ConfigError, match="store = 5"):
        load_settings(path, store={"path": tmp_path / "x.db"})
