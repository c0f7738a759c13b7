"""The log file is JSON lines rendered by structlog: one object a record, the traceback in
its ``exception`` field, and never a secret from the settings."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.config import Settings
from tui.logs import MASK, json_handler, secrets_of

ROOT = Path(__file__).resolve().parents[2]
KEY, SECRET = "sk-live-4f9a8b7c6d", "shh-0123456789abcdef"


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[tuple[logging.Logger, Path]]:
    path = tmp_path / "cma.log"
    settings = Settings(exchange={"api_key": KEY, "api_secret": SECRET})
    handler = json_handler(path, secrets_of(settings))
    logger = logging.getLogger("cma.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, path
    finally:
        logger.removeHandler(handler)
        handler.close()


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_record_is_one_json_line_with_its_traceback(
    logged: tuple[logging.Logger, Path],
) -> None:
    logger, path = logged
    logger.warning("held %d rows", 3, extra={"held": 3})
    try:
        raise ValueError("bad tick")
    except ValueError:
        logger.exception("agent failed")
    first, second = records(path)
    assert list(first)[:4] == ["ts", "level", "logger", "event"]
    assert first["ts"].endswith("Z")
    assert (first["level"], first["logger"], first["event"], first["held"]) == (
        "warning", "cma.test_logs", "held 3 rows", 3,
    )  # fmt: skip
    assert second["level"] == "error" and second["event"] == "agent failed"
    assert second["exception"].startswith("Traceback (most recent call last)")
    assert 'raise ValueError("bad tick")' in second["exception"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_secrets_from_the_settings_never_reach_the_log(
    logged: tuple[logging.Logger, Path],
) -> None:
    logger, path = logged
    settings = Settings(exchange={"api_key": KEY, "api_secret": SECRET})
    key = settings.exchange.api_key
    assert key is not None
    logger.warning("settings %r", settings)
    logger.warning("signing with %s", key.get_secret_value())  # the bug this guards
    logger.warning("extras", extra={"key": key, "both": [KEY, {"s": SECRET}], "n": 2})
    try:
        raise PermissionError(f"exchange refused key {KEY} / {SECRET}")
    except PermissionError:
        logger.exception("login failed")
    text = path.read_text()
    assert KEY not in text and SECRET not in text
    lines = records(path)
    assert lines[1]["event"] == f"signing with {MASK}"
    assert lines[2]["key"] == MASK and lines[2]["both"] == [MASK, {"s": MASK}]
    assert lines[2]["n"] == 2
    assert f"refused key {MASK} / {MASK}" in lines[3]["exception"]


SCRIPT = """
import logging, sys
from pathlib import Path
import structlog
from engine.config import Settings
from tui.logs import secrets_of, setup_logging

settings = Settings(exchange={"api_key": sys.argv[2], "api_secret": sys.argv[3]})
print(setup_logging(Path(sys.argv[1]), secrets=secrets_of(settings)))
logging.getLogger("cma.engine").info("key %s", sys.argv[2])
logging.getLogger("elsewhere").info("below warning: not logged")
structlog.get_logger("cma.store").error("structured", secret=sys.argv[3], rows=5)
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("cma.engine").exception("oops")
"""


def test_setup_logging_writes_json_lines_from_logging_and_structlog_alike(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "cma" / "cma.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path), KEY, SECRET],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nothing on the terminal
    assert done.stdout.strip() == str(path)
    text = path.read_text()
    assert KEY not in text and SECRET not in text
    lines = records(path)
    assert [(r["logger"], r["level"], r["event"]) for r in lines] == [
        ("cma.engine", "info", f"key {MASK}"),
        ("cma.store", "error", "structured"),
        ("cma.engine", "error", "oops"),
    ]
    assert lines[1]["secret"] == MASK and lines[1]["rows"] == 5
    assert "ZeroDivisionError" in lines[2]["exception"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


LAZY = """
import logging, sys
from pathlib import Path
from tui.logs import setup_logging

setup_logging(Path(sys.argv[1]))
print("structlog" in sys.modules)  # not yet: the console's first frame does not wait for it
logging.getLogger("cma.engine").warning("first")
import structlog
structlog.get_logger("cma.store").warning("second", rows=2)
"""


def test_structlog_is_imported_on_the_first_record_and_then_its_loggers_reach_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cma.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", LAZY, str(path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("False\n", "")
    assert [(r["event"], r.get("rows")) for r in records(path)] == [("first", None), ("second", 2)]


def test_with_keys_known_a_signed_query_string_is_blotted_out_too(tmp_path: Path) -> None:
    handler = json_handler(tmp_path / "signed.log", ["a-known-key-1234"])
    logger = logging.getLogger("cma.test.signed")
    logger.addHandler(handler)
    try:
        logger.warning(
            "binance GET https://api.binance.com/api/v3/account?timestamp=1&signature="
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 "
            "{'X-MBX-APIKEY': 'a-known-key-1234'}"
        )
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = (tmp_path / "signed.log").read_text()
    assert "9f86d081884c7d659a2feaa0" not in text and "a-known-key-1234" not in text
    assert "timestamp=1" in text  # the rest of the line is kept
