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
from engine.timeframes import DAY_MS

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


_SCALES = ((Decimal(10) ** 12, "T"), (Decimal(10) ** 9, "B"), (Decimal(10) ** 6, "M"))


def money_in(value: Decimal | float, width: int, *, sign: bool = False) -> str:
    """An amount in at most ``width`` characters, for a table column: two places if they
    fit, else none, else in thousands or more (``1234.6k``, ``12.35M``)."""
    number = Decimal(str(value)) if isinstance(value, float) else value
    text = money(number, sign=sign, grouped=False)
    if len(text) <= width:
        return text
    plus = "+" if sign else ""
    whole = f"{number:{plus}.0f}"
    if len(whole) <= width:
        return whole
    scale, suffix = next(((s, x) for s, x in _SCALES if abs(number) >= s), (Decimal(1000), "k"))
    for places in (2, 1, 0):
        short = f"{number / scale:{plus}.{places}f}{suffix}"
        if len(short) <= width:
            return short
    return text  # wider than any column: the table's ellipsis says so


def pnl_in(value: Decimal | float, width: int) -> str:
    """:func:`pnl` in at most ``width`` characters (see :func:`money_in`)."""
    arrow = {"up": UP, "down": DOWN, "flat": FLAT}[direction(value)]
    if value == 0:
        return f"{arrow} {money(0)}"
    return f"{arrow} {money_in(value, width - 2, sign=True)}"


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


_MINUTE_MS = 60_000
#: Steps between time labels on a chart axis, shortest first.
_TICK_STEPS_MS = tuple(
    m * _MINUTE_MS for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720)
) + tuple(d * DAY_MS for d in (1, 2, 7, 14, 28, 91, 182, 364))


def time_ticks(start_ms: int, end_ms: int, most: int) -> list[tuple[int, str]]:
    """Up to ``most`` round market times between ``start_ms`` and ``end_ms``, labelled.

    ``HH:MM`` (UTC) while the span is a day or less, else dates (``Jan 05``): an
    hour alone would be ambiguous across days. Empty if the span is empty.
    """
    span = end_ms - start_ms
    if span <= 0 or most < 1:
        return []
    long_span = span > DAY_MS
    steps = [s for s in _TICK_STEPS_MS if s >= DAY_MS] if long_span else _TICK_STEPS_MS

    def first(step: int) -> int:
        return -(-start_ms // step) * step  # the first multiple of step from the start

    # The shortest step that puts at most ``most`` labels in the span.
    index = next(
        (i for i, s in enumerate(steps) if (end_ms - first(s)) // s + 1 <= most), len(steps) - 1
    )
    times = list(range(first(steps[index]), end_ms + 1, steps[index]))
    if len(times) < 2 <= most and index > 0:
        # That step leaves one label (5 min gives 3, 10 min gives 1 in a quarter hour):
        # take the shorter step and every k-th of its times, so the axis keeps two.
        shorter = list(range(first(steps[index - 1]), end_ms + 1, steps[index - 1]))
        times = shorter[:: -(-len(shorter) // most)]
    shape = "%b %d" if long_span else "%H:%M"
    return [(ts, datetime.fromtimestamp(ts / 1000, UTC).strftime(shape)) for ts in times[:most]]


#: Tops of a percentage axis, so that its middle tick is a round number too.
_PERCENT_TOPS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 25.0, 50.0, 100.0)


def percent_ticks(peak: float) -> list[tuple[float, str]]:
    """Three labelled ticks for a percentage axis from 0 past ``peak`` (a percentage):
    0, a round top at or above the peak, and half of it (``0%``, ``1%``, ``2%``)."""
    top = next((t for t in _PERCENT_TOPS if t >= peak), max(peak, 100.0))
    return [(v, f"{v:g}%") for v in (0.0, top / 2, top)]
