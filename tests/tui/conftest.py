"""Fixtures for the console tests (the harness itself is in ``harness.py``)."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest

import engine.ids as ids


@pytest.fixture(autouse=True)
def _private_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the user's config and remembered theme."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture
def seeded_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proposal and order ids from a seeded generator, so screens that show ids are stable."""
    rng = random.Random(1234)
    # The ids the snapshots were drawn with: the first 64 bits of a seeded uuid4.
    monkeypatch.setattr(
        ids, "_id_bits", lambda: uuid.UUID(int=rng.getrandbits(128), version=4).int >> 64
    )
