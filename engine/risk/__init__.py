"""Risk as a package: the limits, the Kelly sizer, the correlation tracker, the
drawdown monitor and the risk engine that runs the ordered checks.

``from engine.risk import ...`` reaches every public name of the pieces. The
names are loaded on first use: ``engine.config`` imports ``engine.risk.limits``
on the console's path to its first frame, which should not wait for the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.risk.correlation import CorrelationTracker, pearson
    from engine.risk.drawdown import DrawdownMonitor
    from engine.risk.engine import DENIALS_KEPT, RiskCheck, RiskEngine, RiskSnapshot
    from engine.risk.limits import RiskLimits
    from engine.risk.sizer import EdgeStats, Sizing, kelly_fraction, size_entry

_MODULE_OF = {
    "CorrelationTracker": "correlation",
    "pearson": "correlation",
    "DrawdownMonitor": "drawdown",
    "DENIALS_KEPT": "engine",
    "RiskCheck": "engine",
    "RiskEngine": "engine",
    "RiskSnapshot": "engine",
    "RiskLimits": "limits",
    "EdgeStats": "sizer",
    "Sizing": "sizer",
    "kelly_fraction": "sizer",
    "size_entry": "sizer",
}

__all__ = [
    "DENIALS_KEPT",
    "CorrelationTracker",
    "DrawdownMonitor",
    "EdgeStats",
    "RiskCheck",
    "RiskEngine",
    "RiskLimits",
    "RiskSnapshot",
    "Sizing",
    "kelly_fraction",
    "pearson",
    "size_entry",
]


if not TYPE_CHECKING:  # mypy sees the imports above, so a wrong name is still its error

    def __getattr__(name: str) -> Any:
        module = _MODULE_OF.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value  # the next lookup is a plain one
        return value
