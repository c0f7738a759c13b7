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

from persistence.store import Store

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ["run", "backtest", "optimize", "report", "keys", "data", "db", "config"]
NESTED = [("db", "check"), ("db", "backup"), ("db", "info")] + [
    ("config", a) for a in ("show", "validate", "init")
]


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


@pytest.mark.parametrize("command", ["backtest", "optimize", "report", "keys", "data"])
def test_unfinished_commands_exit_3_and_say_so(env: dict[str, str], command: str) -> None:
    done = cma(env, command)
    assert done.returncode == 3
    assert "not available yet" in done.stderr
    assert f"cma {command}" in done.stderr
    assert "Traceback" not in done.stderr


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
    assert "schema  version 1" in info.stdout

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
