"""deploy/cma.service: systemd accepts it, it sandboxes the engine, it does not restart a
run that would only fail or halt again, its command runs, and the README shows that command.

``systemd-analyze verify`` checks the unit where systemd is installed (it is on the test
machines: dbus and gnome-keyring pull it in); the unit is parsed and checked either way.
"""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tui.cli import EXIT_HALTED, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "cma.service"
README = ROOT / "README.md"
#: Where the unit expects cma installed (the README's install steps put it there).
INSTALLED_CMA = "/opt/cma/.venv/bin/cma"
VENV_CMA = Path(sys.executable).with_name("cma")


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def exec_start() -> list[str]:
    return shlex.split(unit()["Service"]["ExecStart"])


def test_the_unit_runs_the_headless_engine_sandboxed_and_restarts_only_on_failure() -> None:
    service = unit()["Service"]
    argv = exec_start()
    assert argv[0] == INSTALLED_CMA
    assert argv[1:3] == ["run", "--headless"]
    assert service["Restart"] == "on-failure"
    # Bad input (2) and trading HALTED (4) would only come back: no restart loop.
    assert set(service["RestartPreventExitStatus"].split()) == {str(EXIT_USAGE), str(EXIT_HALTED)}
    # A halt is risk doing its job: stopping a halted engine does not mark the unit failed.
    assert service["SuccessExitStatus"] == str(EXIT_HALTED)
    assert service["KillSignal"] == "SIGTERM"  # one signal: the graceful stop
    assert int(service["TimeoutStopSec"]) >= 30  # room for closing positions on stop
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    # Under ProtectSystem=strict only these are writable: the store's and the log's.
    db = Path(argv[argv.index("--db") + 1])
    assert db.parent == Path("/var/lib") / service["StateDirectory"]
    environment = dict(pair.split("=", 1) for pair in shlex.split(service["Environment"]))
    assert environment["XDG_STATE_HOME"] == "/var/log"  # the log: $XDG_STATE_HOME/cma
    assert service["LogsDirectory"] == "cma"


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the test above still parses the unit)")
    # verify also checks that ExecStart's program exists: point it at this venv's cma.
    text = UNIT.read_text(encoding="utf-8").replace(INSTALLED_CMA, str(VENV_CMA))
    copy = tmp_path / "cma.service"
    copy.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    # An unknown key or a bad value is only a warning (exit 0): none is allowed.
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_the_unit_s_command_runs(tmp_path: Path) -> None:
    """ExecStart as written, cma's paths moved into a temporary folder, for a second."""
    argv = exec_start()
    config = Path(argv[argv.index("--config") + 1])
    db = Path(argv[argv.index("--db") + 1])
    moved = {INSTALLED_CMA: str(VENV_CMA), str(config): str(tmp_path / "config.toml")}
    moved[str(db)] = str(tmp_path / "cma.db")
    command = [moved.get(arg, arg) for arg in argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMA_")}
    env.update(XDG_STATE_HOME=str(tmp_path / "log"), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    (tmp_path / "config.toml").write_text("# every setting at its default\n")
    done = subprocess.run(
        [*command, "--speed", "max", "--duration", "1s"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cma headless: PAPER on sim")
    assert (tmp_path / "cma.db").exists() and (tmp_path / "log" / "cma" / "cma.log").exists()


def test_the_readme_shows_the_unit_s_exec_start() -> None:
    text = README.read_text(encoding="utf-8")
    if "deploy/cma.service" not in text:
        pytest.skip("the README has no systemd section yet (it names deploy/cma.service)")
    line = f"ExecStart={unit()['Service']['ExecStart']}"
    assert line in text.splitlines(), f"the README does not show {line!r}"
