"""Where the recorded exchange candles are: ``../shared/data`` beside the checkout.

Tests and benchmarks read them in place (they are not copied into the project).
``CMA_SHARED_DATA`` overrides the search, for a checkout that lives elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path:
    """The folder of shared candle files; fails loudly if there is none."""
    env = os.environ.get("CMA_SHARED_DATA")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    raise RuntimeError("no shared/data folder above this checkout; set CMA_SHARED_DATA")
