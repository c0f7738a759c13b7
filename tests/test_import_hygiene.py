"""The core never imports the UI: each engine and persistence module, imported
alone in a fresh interpreter, leaves ``textual`` and ``tui`` out of sys.modules.

The static side (also imports inside functions, and asyncio kept out of the
synchronous core) is import-linter's, in pyproject.toml; this is the run-time check.
A failure names the module and shows the stack of the import that pulled the UI in.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Run in a fresh interpreter as ``python -c PROBE MODULE``: a finder that looks at every
# import before the real ones do records where the first import of the UI came from.
PROBE = """
import importlib, json, sys, traceback

UI = ("textual", "tui")
first = []

class Spy:
    def find_spec(self, name, path=None, target=None):
        if not first and name.split(".")[0] in UI:
            first.extend(
                f"  {f.filename}:{f.lineno}: {f.line}"
                for f in traceback.extract_stack()[:-1]
                if not f.filename.startswith("<frozen") and "importlib" not in f.filename
            )
        return None

sys.meta_path.insert(0, Spy())
importlib.import_module(sys.argv[1])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in UI)
print(json.dumps({"loaded": loaded, "first": "\\n".join(first)}))
"""


def _modules(package: str) -> list[str]:
    names = [package]
    for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
        names.append(info.name)
    return sorted(names)


CORE = _modules("engine") + _modules("persistence") + _modules("reports")


def test_core_modules_were_found() -> None:
    assert "engine.models" in CORE
    assert "persistence.store" in CORE


def _probe(module: str) -> tuple[list[str], str]:
    """The UI modules that importing ``module`` alone loads, and where the first came from."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module], capture_output=True, text=True, cwd=ROOT
    )
    if done.returncode != 0:
        pytest.fail(f"importing {module} alone failed:\n{done.stderr}", pytrace=False)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return [str(m) for m in result["loaded"]], str(result["first"])


@pytest.mark.parametrize("module", CORE)
def test_core_module_does_not_import_textual_or_tui(module: str) -> None:
    loaded, first = _probe(module)
    packages = " and ".join(sorted({m.split(".")[0] for m in loaded}))
    assert loaded == [], (
        f"{module} imports {packages} ({len(loaded)} modules); the first such import "
        f"came through:\n{first}"
    )


def test_the_probe_sees_an_import_of_the_ui_and_where_it_came_from() -> None:
    loaded, first = _probe("tui.keys")
    assert "tui.keys" in loaded
    assert first.startswith("  <string>:")  # the probe's own import_module line


#: The synchronous core: a backtest drives these with no event loop (import-linter's
#: contract in pyproject.toml keeps asyncio out of each; this pins the list).
SYNC_CORE = (
    "engine.core",
    "engine.signals",
    "engine.desk",
    "engine.execution",
    "engine.step",
    "engine.broker.paper",
    "engine.marks",
    "engine.models",
    "engine.events",
    "engine.ids",
    "engine.risk",
    "engine.router",
    "engine.learning",
    "engine.portfolio",
    "engine.backtest",
    "engine.assembly",
)


def test_the_synchronous_core_is_under_the_no_asyncio_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    [contract] = [
        c
        for c in config["tool"]["importlinter"]["contracts"]
        if c.get("forbidden_modules") == ["asyncio"]
    ]
    missing = [m for m in SYNC_CORE if m not in contract["source_modules"]]
    assert missing == [], f"add {missing} to the no-asyncio contract in pyproject.toml"
