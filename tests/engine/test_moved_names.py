"""Names that moved out of engine/models.py: the engine events live in engine/events.py
and the id source in engine/ids.py; engine.models re-exports each of them, so
``from engine.models import OrderFilled`` keeps working whichever is imported first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import engine.events as events
import engine.ids as ids
import engine.models as models

ROOT = Path(__file__).resolve().parents[2]


def test_models_re_exports_every_event_as_the_same_class() -> None:
    assert set(events.__all__) <= set(models.__all__)
    for name in events.__all__:
        cls = getattr(models, name)
        assert cls is getattr(events, name)
        assert issubclass(cls, events.EngineEvent)
        assert cls.__module__ == "engine.events"


def test_every_name_models_exports_is_there() -> None:
    for name in models.__all__:
        assert getattr(models, name) is not None


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchEvent'"):
        models.NoSuchEvent  # noqa: B018


@pytest.mark.parametrize(
    "code",
    [
        "import engine.events; from engine.models import OrderFilled; print(OrderFilled)",
        "from engine.models import OrderFilled; import engine.events; print(OrderFilled)",
        "from engine.models import *; print(OrderFilled, Candle)",
    ],
)
def test_either_module_can_be_imported_first(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "<class 'engine.events.OrderFilled'>" in done.stdout


def test_new_id_is_re_exported_and_reads_the_seam_in_engine_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert models.new_id is ids.new_id
    monkeypatch.setattr(ids, "_id_bits", lambda: 0xABC)  # as tests/tui/conftest.py does
    assert models.new_id("prp") == "prp-0000000000000abc"
