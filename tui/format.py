"""Plain-text formatting of money, quantities, prices and times for the console.

Every function returns a ``str`` (never markup), so untrusted values pass
through unchanged and are drawn as text. Signs are always explicit where a
value can go either way, and profit or loss carries an arrow (▲ ▼) so it
reads the same without colour.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from engine.router import confidence_at_least

UP = "▲"
DOWN = "▼"
FLAT = "·"


def direction(value: Decimal | float) -> str:
    """``up``, ``down`` or ``flat``: the style key of a signed value."""
    if value > 0:
        return "up"
    if value < 0:
        return "down"
    return "flat"


def price(value: Decimal | float | None) -> str:
    """A price in about eight characters, for tables: ``91512.3``, ``135.123``, ``2.1034``."""
    if value is None:
        return "—"
    number = Decimal(str(value)) if isinstance(value, float) else value
    magnitude = abs(number)
    if magnitude >= 100_000:
        places = 0
    elif magnitude >= 1:
        places = max(1, 6 - len(str(int(magnitude))))
    else:
        places = 6
    return f"{number:.{places}f}"


def price_full(value: Decimal | float | None) -> str:
    """A price with every stored place that matters, for the detail screen."""
    if value is None:
        return "—"
    number = Decimal(str(value)) if isinstance(value, float) else value
    text = f"{number:,.8f}".rstrip("0")
    return text + "00" if text.endswith(".") else text


def qty(value: Decimal | float) -> str:
    """A quantity of base currency in about eight characters: fewer places as it grows."""
    number = Decimal(str(value)) if isinstance(value, float) else value
    digits = len(str(int(abs(number))))
    places = 6 if digits <= 1 else max(0, 7 - digits)
    text = f"{number:.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def qty_full(value: Decimal | float) -> str:
    """A quantity with every stored place that matters (up to eight), for details."""
    number = Decimal(str(value)) if isinstance(value, float) else value
    text = f"{number:.8f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def money(value: Decimal | float, *, sign: bool = False, grouped: bool = True) -> str:
    """An amount of quote currency with two places (thousands grouped unless ``grouped`` is off)."""
    number = Decimal(str(value)) if isinstance(value, float) else value
    group = "," if grouped else ""
    return f"{number:+{group}.2f}" if sign else f"{number:{group}.2f}"


def pnl(value: Decimal | float, *, grouped: bool = True) -> str:
    """Profit or loss with its arrow and sign: ``▲ +12.30``, ``▼ -4.00``, ``· 0.00``."""
    arrow = {"up": UP, "down": DOWN, "flat": FLAT}[direction(value)]
    text = money(value, sign=True, grouped=grouped) if value != 0 else money(0)
    return f"{arrow} {text}"


def percent(fraction: float, places: int = 1) -> str:
    """``0.0345`` → ``3.5%``."""
    return f"{fraction * 100:.{places}f}%"


def confidence(value: float) -> str:
    """A confidence in [0, 1] as a whole percentage."""
    return f"{value * 100:.0f}%"


#: The auto-approval threshold, ``≥ 70%``: one formatter for the status bar, the policy
#: dialog and the engine's log line (defined in the engine, which cannot import the UI).
threshold = confidence_at_least


def duration(ms: int) -> str:
    """A span of time, compact: ``45s``, ``4m05s``, ``2h03m``, ``3d04h``; negative is ``0s``."""
    seconds = max(0, ms // 1000)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def clock(seconds: float) -> str:
    """Elapsed wall time as ``HH:MM:SS`` (hours may exceed 24)."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def market_time(ts_ms: int) -> str:
    """A market timestamp (ms since the epoch, UTC) as ``YYYY-MM-DD HH:MM``."""
    if ts_ms <= 0:
        return "—"
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def market_hm(ts_ms: int) -> str:
    """A market timestamp as ``HH:MM:SS`` UTC, for activity lines."""
    if ts_ms <= 0:
        return "--:--:--"
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%H:%M:%S")


def one_line(text: str, limit: int = 200) -> str:
    """Untrusted text made safe for one table cell: control characters dropped, length capped."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
