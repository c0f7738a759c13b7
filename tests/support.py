"""Helpers the process-level tests share, each written once here.

- ``CMA``: the ``cma`` command of the venv the suite runs in.
- ``wait_for``: poll a condition until it holds (its value returned), or fail naming it.
- ``home_env``: the environment of a temporary cma home (HOME and the XDG folders under
  it; no ``CMA_*``, ``XDG_*``, D-Bus or keyring choice of the person running the tests).
- tmux: ``tmux``, ``screen``, ``tmux_session`` (a detached session of its own, killed
  afterwards), ``session_exists``, ``pane_pid``.
- ``slow_agent``: a user agent that holds the event loop (the second-signal tests).
- ``free_port``: a port on 127.0.0.1 nothing listens on (it was free a moment ago).
- ``load_benchmark``: a script of benchmarks/ as a module.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
CMA = Path(sys.executable).with_name("cma")

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], within: float = 30.0, every: float = 0.05) -> T:
    """Poll ``check`` every ``every`` seconds until it is truthy (returned); an
    AssertionError naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} ({within} s)")
        time.sleep(every)


def home_dirs(home: Path) -> dict[str, str]:
    """HOME and the XDG folders under ``home`` (for cma and gnome-keyring alike)."""
    return {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_STATE_HOME": str(home / "state"),
    }


def home_env(home: Path, **more: str) -> dict[str, str]:
    """This process's environment for a cma of its own under ``home``: without the
    ``CMA_*``, ``XDG_*``, ``DBUS_*`` and ``PYTHON_KEYRING*`` variables of whoever runs
    the tests, with :func:`home_dirs` and ``more``."""
    drop = ("CMA_", "DBUS_", "XDG_", "PYTHON_KEYRING")
    keep = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**keep, **home_dirs(home), **more}


#: A user agent stuck in a long computation: it holds the event loop, so the graceful
#: stop a first signal asks for waits for it (its candle would be finished and stored
#: first); a second signal does not wait. It touches ``$SLOW_AGENT_MARK`` as it begins.
SLOW_AGENT = """
import os
import time
from pathlib import Path

from engine.agents.base import Agent


class Slow(Agent):
    name = "slow"

    def on_candle(self, candle):
        Path(os.environ["SLOW_AGENT_MARK"]).touch()
        time.sleep(60)
"""


def slow_agent(folder: Path, mark: Path) -> dict[str, str]:
    """:data:`SLOW_AGENT` written as ``folder/lib/slowagent.py``; the environment that
    has cma run it (the project and that folder on PYTHONPATH) and touch ``mark``."""
    lib = folder / "lib"
    lib.mkdir()
    (lib / "slowagent.py").write_text(SLOW_AGENT, encoding="utf-8")
    return {
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(lib)]),
        "CMA_AGENTS__USER": "slowagent:Slow",
        "SLOW_AGENT_MARK": str(mark),
    }


def tmux(*args: str) -> str:
    """Run ``tmux ARGS`` (it must succeed); its stdout."""
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def screen(name: str, *args: str) -> str:
    """The text on session ``name``'s pane (``args``: more capture-pane options)."""
    return tmux("capture-pane", "-p", *args, "-t", name)


def kill_session(name: str) -> None:
    """End tmux session ``name`` if it is there."""
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True, check=False)


def session_exists(name: str) -> bool:
    return subprocess.run(["tmux", "has-session", "-t", name], capture_output=True).returncode == 0


def new_session(name: str, command: str, width: int = 80, height: int = 24) -> None:
    """Start ``command`` (a shell line) in a detached tmux session ``name`` of
    ``width``×``height``."""
    tmux("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), command)


@contextmanager
def tmux_session(
    command: str, width: int = 80, height: int = 24, prefix: str = "cma-test"
) -> Iterator[str]:
    """:func:`new_session` under a fresh name (yielded), killed afterwards."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    new_session(name, command, width, height)
    try:
        yield name
    finally:
        kill_session(name)


def pane_pid(name: str) -> int:
    """The pid of the process session ``name``'s pane runs (its shell)."""
    return int(tmux("list-panes", "-t", name, "-F", "#{pane_pid}").split()[0])


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` nothing listens on (it was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def load_benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ as a module (the folder is no package, and putting it on
    sys.path would let benchmarks/engine.py shadow the engine package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
