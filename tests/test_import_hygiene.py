"""The core never imports the UI: each engine and persistence module, imported
alone in a fresh interpreter, leaves ``textual`` and ``tui`` out of sys.modules."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str) -> list[str]:
    names = [package]
    for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
        names.append(info.name)
    return sorted(names)


CORE = _modules("engine") + _modules("persistence")


def test_core_modules_were_found() -> None:
    assert "engine.models" in CORE
    assert "persistence.store" in CORE


@pytest.mark.parametrize("module", CORE)
def test_core_module_does_not_import_textual_or_tui(module: str) -> None:
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'tui'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"
