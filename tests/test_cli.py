"""The ``cma`` command line, run for real as ``python -m tui`` in a subprocess."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from persistence.migrations import SCHEMA_VERSION
from persistence.store import Store

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ["run", "backtest", "optimize", "report", "keys", "data", "db", "config"]
NESTED = (
    [("db", "check"), ("db", "backup"), ("db", "info")]
    + [("config", a) for a in ("show", "validate", "init")]
    + [("keys", a) for a in ("set", "delete", "status")]
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The caller's environment without CMA_*, with config and data under tmp_path."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
    out["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    out["XDG_DATA_HOME"] = str(tmp_path / "data")
    return out


def cma(env: dict[str, str], *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tui", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def make_store(path: Path) -> None:
    async def build() -> None:
        async with await Store.open(path) as store:
            await store.init_balance("USDT", Decimal("1000"), 1)

    asyncio.run(build())


@pytest.mark.parametrize("args", [[], *([c] for c in SUBCOMMANDS), *(list(n) for n in NESTED)])
def test_help_works_for_cma_and_every_subcommand(env: dict[str, str], args: list[str]) -> None:
    done = cma(env, *args, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: cma"), done.stdout
    assert " ".join(["cma", *args]) in done.stdout.splitlines()[0]
    assert done.stderr == ""


def test_top_level_help_lists_every_subcommand(env: dict[str, str]) -> None:
    out = cma(env, "--help").stdout
    for name in SUBCOMMANDS:
        assert name in out


def test_config_validate_of_a_broken_file_exits_2_naming_the_field(
    env: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[risk]\nmax_drawdown = 1.5\n[feed]\nsymbols = ['BTC-USDT']\n")
    done = cma(env, "config", "validate", str(broken))
    assert done.returncode == 2
    assert "risk.max_drawdown = 1.5" in done.stderr
    assert "feed.symbols" in done.stderr
    assert "Traceback" not in done.stderr


def test_config_validate_of_invalid_toml_exits_2_without_traceback(
    env: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[risk\n")
    done = cma(env, "config", "validate", str(broken))
    assert done.returncode == 2
    assert "not valid TOML" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_speed_exits_2_naming_the_option(env: dict[str, str]) -> None:
    done = cma(env, "run", "--speed", "fast")
    assert done.returncode == 2
    assert "--speed" in done.stderr
    assert "'fast'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("option", "value"), [("--duration", "soon"), ("--feed", "csv")])
def test_other_bad_run_options_exit_2(env: dict[str, str], option: str, value: str) -> None:
    done = cma(env, "run", option, value)
    assert done.returncode == 2
    assert option in done.stderr


def test_config_show_masks_a_secret_given_by_env(env: dict[str, str]) -> None:
    env["CMA_EXCHANGE__API_KEY"] = "supersecret-123"
    env["CMA_RISK__MAX_DRAWDOWN"] = "0.2"
    done = cma(env, "config", "show")
    assert done.returncode == 0, done.stderr
    assert "supersecret-123" not in done.stdout + done.stderr
    key_line = next(ln for ln in done.stdout.splitlines() if ln.startswith("exchange.api_key"))
    assert "********" in key_line
    assert any(
        ln.startswith("risk.max_drawdown") and " 0.2 " in ln for ln in done.stdout.splitlines()
    )


def test_config_init_writes_a_file_that_validate_accepts(
    env: dict[str, str], tmp_path: Path
) -> None:
    done = cma(env, "config", "init")
    assert done.returncode == 0, done.stderr
    written = tmp_path / "config" / "cma" / "config.toml"
    assert written.is_file()
    done = cma(env, "config", "validate")
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout
    done = cma(env, "config", "validate", str(written))
    assert done.returncode == 0, done.stderr
    # A second init does not overwrite without --force.
    written.write_text("[risk]\nmax_drawdown = 0.3\n")
    done = cma(env, "config", "init")
    assert done.returncode == 2
    assert "--force" in done.stderr
    assert written.read_text() == "[risk]\nmax_drawdown = 0.3\n"
    assert cma(env, "config", "init", "--force").returncode == 0
    assert "max_drawdown = 0.1\n" in written.read_text()


def test_db_backup_is_a_checked_0600_copy_and_refuses_an_existing_destination(
    env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "data" / "cma" / "cma.db"
    make_store(db)
    dest = tmp_path / "backups" / "copy.db"
    dest.parent.mkdir()  # a missing directory is refused, not created
    done = cma(env, "db", "backup", str(dest))  # the default store, from XDG_DATA_HOME
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    check = cma(env, "db", "check", "--db", str(dest))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "FAIL" not in check.stdout
    info = cma(env, "db", "info", "--db", str(dest))
    assert info.returncode == 0, info.stderr
    assert f"schema  version {SCHEMA_VERSION}" in info.stdout

    before = dest.read_bytes()
    again = cma(env, "db", "backup", "--db", str(db), str(dest))
    assert again.returncode == 2
    assert "exists" in again.stderr
    assert dest.read_bytes() == before


def test_db_check_on_a_missing_store_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    done = cma(env, "db", "check", "--db", str(tmp_path / "nowhere.db"))
    assert done.returncode == 2
    assert "no store at" in done.stderr
    assert not (tmp_path / "nowhere.db").exists()  # checking creates nothing
    done = cma(env, "db", "check")  # the default store does not exist either
    assert done.returncode == 2


def test_db_check_of_a_fresh_store_exits_0(env: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    make_store(db)
    done = cma(env, "db", "check", "--db", str(db))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 failed" in done.stdout


def test_a_bad_config_file_given_to_any_command_exits_2(
    env: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[ui]\nmax_fps = 500\n")
    done = cma(env, "db", "info", "--config", str(broken), "--db", str(tmp_path / "x.db"))
    assert done.returncode == 2
    assert "ui.max_fps = 500" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_options_work_without_the_word_run(env: dict[str, str]) -> None:
    done = cma(env, "--seed", "x")
    assert done.returncode == 2
    assert "--seed" in done.stderr and "'x'" in done.stderr
    done = cma(env, "--headless", "--speed", "max", "--duration", "1s", "--policy", "auto")
    assert done.returncode == 0, done.stderr
    assert "stopped" in done.stdout


# ---- hardening: every mistake a person can make exits 2 with one clear message ----------

CMA = Path(sys.executable).with_name("cma")


def real_cma(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The installed ``cma`` console script, as a person runs it."""
    return subprocess.run(
        [str(CMA), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def refused(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit 2, stderr starting ``cma: ``, each expected text in it, no traceback."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.startswith("cma: "), done.stderr
    assert "Traceback" not in done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr


def test_version_prints_the_installed_version(env: dict[str, str]) -> None:
    from importlib.metadata import version

    done = real_cma(env, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"cma {version('crypto-market-agents')}\n"


def test_the_command_list_reads_as_commands(env: dict[str, str]) -> None:
    out = real_cma(env, "--help").stdout
    for line in (
        "backtest agents on candle files",
        "tune agent, synthesis, risk and approval settings",
        "export session reports",
    ):
        assert line in out
    assert "backtesting" not in out and "optimizing" not in out and "exporting" not in out


def test_run_help_tells_the_real_speed_default_and_the_exchange_options(
    env: dict[str, str],
) -> None:
    from engine.config import FeedSettings

    out = " ".join(real_cma(env, "run", "--help").stdout.split())
    assert f"(default {FeedSettings.model_fields['speed'].default:g};" in out
    assert "(default 1)" not in out
    assert "ccxt (an exchange's public candles, --exchange)" in out
    assert (
        "--exchange ID ccxt exchange id, e.g. binance (sets exchange.id; implies --feed ccxt)"
        in out
    )
    assert "--symbols A/B,C/D" in out and "--timeframe TF" in out


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (b"[ui]\ntheme = 'caf\xe9'\n", "not UTF-8 text (byte 0xe9 at offset 17"),
        (b"\xff\xfe[\x00r\x00", "not UTF-8 text (byte 0xff at offset 0"),
    ],
)
@pytest.mark.parametrize("command", [["config", "validate"], ["run", "--headless"]])
def test_a_config_file_that_is_not_utf8_exits_2(
    env: dict[str, str], tmp_path: Path, text: bytes, says: str, command: list[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(text)
    refused(real_cma(env, *command, "--config", str(path)), f"config file {path}: {says}")


@pytest.mark.parametrize("command", [["config", "validate"], ["config", "show"], ["run"]])
def test_a_config_path_that_is_a_directory_device_or_fifo_says_what_it_is(
    env: dict[str, str], tmp_path: Path, command: list[str]
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, says in ((tmp_path, "is a directory"), (Path("/dev/null"), "is not a regular file"),
                       (fifo, "is not a regular file")):  # fmt: skip
        done = real_cma(env, *command, "--config", str(path), timeout=20)
        refused(done, f"config file {path}: {says}")
    done = real_cma(env, "config", "validate", str(tmp_path))
    refused(done, f"config file {tmp_path}: is a directory")


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: Path("/proc/cma-config.toml"), "No such file or directory"),
        (lambda tmp: Path("/dev/null"), "is not a regular file"),
        (lambda tmp: Path("/proc/self/nothing/here/config.toml"), "cannot write"),
    ],
    ids=["directory", "proc", "dev-null", "proc-subdir"],
)
def test_config_init_to_a_place_it_cannot_write_exits_2_naming_it(
    env: dict[str, str], tmp_path: Path, make: object, says: str
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    before = sorted(p.name for p in tmp_path.iterdir())
    done = real_cma(env, "config", "init", "--force", "--config", str(path))
    refused(done, f"cannot write {path}", says)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_config_init_into_a_read_only_directory_exits_2(
    env: dict[str, str], tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        done = real_cma(env, "config", "init", "--config", str(locked / "sub" / "c.toml"))
        refused(done, f"cannot write {locked / 'sub' / 'c.toml'}", "Permission denied")
    finally:
        locked.chmod(0o700)


def test_config_init_writes_no_theme_and_no_missing_command(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert real_cma(env, "config", "init").returncode == 0
    text = (tmp_path / "config" / "cma" / "config.toml").read_text()
    assert "cma keys" not in text
    assert '\n# theme = "cma-dark"\n' in text
    assert "\ntheme =" not in text


#: Configs that `run` refused (or ran wrongly) while `config validate` passed them.
ONE_PATH_CASES = [
    ("[feed]\nspeed = inf\n", "feed.speed = inf: must be a number from 0.001"),
    ("[feed]\nsymbols = ['BTC/USDT', 'btc/usdt']\n", "BTC/USDT is listed twice"),
    ("[agents]\nuser = ['nowhere.agents:Mine']\n", "agents.user.0 = 'nowhere.agents:Mine'"),
    ("[agents]\nenabled = ['momentum', 'nope']\n", "unknown agent 'nope'"),
    ("[ui.keymap]\naprove = 'y'\n", "ui.keymap.aprove = 'y': no binding with id 'aprove'"),
    ("[ui.keymap]\napprove = 'q'\n", "ui.keymap.approve = 'q': q is already quit"),
    ("[feed]\nkind = 'ccxt'\nfiles = ['x.csv']\n",
     "feed.files = ['x.csv']: --files needs the replay feed (feed.kind is 'ccxt')"),
    ("[exchange]\nid = 'Bin ance'\n", "exchange.id = 'Bin ance': must be a ccxt exchange id"),
    ("[feed]\nkind = 'replay'\n", "feed.files = (): the replay feed needs at least one CSV"),
    ("[risk]\ninitial_cash = '1e22'\n", "risk.initial_cash = '1e22': Input should be less"),
    ("[risk]\nmax_drawdown = 0.05\n", "risk.reduce_drawdown = 0.07: must not exceed"),
    ("[feed]\nspeed = 'MAX'\n", "feed.speed = 'MAX': must be a positive number or 'max'"),
]  # fmt: skip


@pytest.mark.parametrize(("toml", "line"), ONE_PATH_CASES)
def test_config_validate_and_run_refuse_the_same_configs_the_same_way(
    env: dict[str, str], tmp_path: Path, toml: str, line: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml, encoding="utf-8")
    db = tmp_path / "s.db"
    validate = real_cma(env, "config", "validate", str(path))
    refused(validate, f"invalid configuration in {path}:", line)
    run = real_cma(env, "run", "--headless", "--duration", "1s", "--config", str(path),
                   "--db", str(db), timeout=30)  # fmt: skip
    refused(run, line)
    assert run.stderr == validate.stderr
    assert not db.exists()  # refused before anything started


def test_the_union_field_speed_shows_one_plain_line(env: dict[str, str]) -> None:
    env["CMA_FEED__SPEED"] = "MAX"
    done = real_cma(env, "config", "show")
    assert done.stderr == (
        "cma: invalid configuration:\n"
        "  feed.speed = 'MAX': must be a positive number or 'max' (from CMA_FEED__SPEED)\n"
    )
    assert done.returncode == 2


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("CMA_STORE__PATH", "", "store.path = '': must not be empty"),
        ("CMA_NOPE__X", "1", "CMA_NOPE__X: no section 'nope'; known: store, feed"),
        ("CMA_RISK__NOPE", "1", "risk.nope = '1': unknown setting"),
        ("CMA_RISK__INITIAL_CASH", "1e999", "risk.initial_cash = '1e999'"),
    ],
)
def test_bad_variables_exit_2_naming_the_variable_not_the_good_config_file(
    env: dict[str, str], tmp_path: Path, name: str, value: str, says: str
) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[risk]\nmax_drawdown = 0.2\n", encoding="utf-8")
    env[name] = value
    for command in (["config", "validate", str(good)],
                    ["run", "--headless", "--duration", "1s", "--config", str(good)]):  # fmt: skip
        done = real_cma(env, *command, timeout=30)
        refused(done, says, name)
        assert str(good) not in done.stderr
    env["CMA_SHARED_DATA"] = "/somewhere"  # not a setting: still ignored
    del env[name]
    assert real_cma(env, "config", "validate", str(good)).returncode == 0


def test_files_with_another_feed_exit_2(env: dict[str, str], tmp_path: Path) -> None:
    done = real_cma(env, "run", "--feed", "sim", "--files", "x.csv")
    refused(done, "--files needs the replay feed (--feed replay), not --feed sim")
    config = tmp_path / "c.toml"
    config.write_text("[feed]\nkind = 'replay'\nfiles = ['x.csv']\n", encoding="utf-8")
    done = real_cma(env, "run", "--headless", "--config", str(config), "--feed", "sim")
    refused(done, "feed.files = ['x.csv']: --files needs the replay feed (feed.kind is 'sim')")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--speed", "1e9"], "argument --speed: must be a number from 0.001 to 1000000"),
        (["--speed", "inf"], "argument --speed: must be a number from 0.001 to 1000000"),
        (["--speed", "nan"], "argument --speed: must be a positive number or 'max'"),
        (["--duration", "1e999s"], "argument --duration: must be at most 366 days"),
        (["--seed", "99999999999999999999"], "feed.seed = 99999999999999999999"),
        (["--feed", "ccxt", "--files", "x.csv"], "--files needs the replay feed (--feed replay)"),
        (["--exchange", "Bin ance"], "exchange.id = 'Bin ance': must be a ccxt exchange id"),
        (["--exchange", "binance", "--feed", "sim"], "--exchange needs the ccxt feed"),
        (["--symbols", "BTCUSDT"], "feed.symbols"),
        (["--timeframe", "7m"], "feed.timeframe = '7m': timeframe must be one of"),
    ],
)
def test_out_of_range_run_options_exit_2(env: dict[str, str], args: list[str], says: str) -> None:
    done = real_cma(env, "run", "--headless", *args)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_the_console_refuses_a_key_conflict_before_any_screen(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[ui.keymap]\napprove = 'q'\n", encoding="utf-8")
    db = tmp_path / "s.db"
    done = real_cma(env, "--config", str(path), "--db", str(db), timeout=30)  # `cma` alone
    refused(done, f"invalid configuration in {path}:", "ui.keymap.approve = 'q': q is already quit")
    assert done.stdout == ""  # no screen was drawn
    assert not db.exists()


def test_broker_ccxt_without_live_and_confirm_live_without_live_exit_2(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[broker]\nkind = 'ccxt'\n")
    done = real_cma(env, "--config", str(path), "run", "--headless", "--duration", "1s")
    assert done.returncode == 2, done.stderr
    assert "broker.kind = 'ccxt': live orders start only with cma run --live" in done.stderr
    validate = real_cma(env, "config", "validate", str(path))
    assert validate.returncode == 2 and "live orders start only with" in validate.stderr
    done = real_cma(env, "run", "--headless", "--confirm-live", "--duration", "1s")
    assert done.returncode == 2 and "--confirm-live goes with --live" in done.stderr


def test_live_headless_needs_its_confirmation_flag_before_touching_the_keyring(
    env: dict[str, str],
) -> None:
    done = real_cma(env, "run", "--headless", "--live", "--duration", "1s")
    assert done.returncode == 2, done.stderr
    assert "live trading headless needs --confirm-live" in done.stderr
    assert "Traceback" not in done.stderr
