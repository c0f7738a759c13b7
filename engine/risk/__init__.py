"""Risk as a package: the limits, the Kelly sizer, the correlation tracker, the
drawdown monitor and the risk engine that runs the ordered checks.

``from engine.risk import ...`` reaches every public name of the pieces.
"""

from engine.risk.correlation import CorrelationTracker, pearson
from engine.risk.drawdown import DrawdownMonitor
from engine.risk.engine import DENIALS_KEPT, RiskCheck, RiskEngine, RiskSnapshot
from engine.risk.limits import RiskLimits
from engine.risk.sizer import EdgeStats, Sizing, kelly_fraction, size_entry

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
