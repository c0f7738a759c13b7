"""Line charts as inline SVG, written from the data: no browser, no plotting library.

:func:`line_chart` draws one series as a polyline path with its axes, a light grid
and a few labelled ticks. Colours come from CSS classes (``line``, ``area``,
``axis``, ``grid``, ``tick``) so that the page's light and dark styles apply. A
series longer than :data:`MAX_POINTS` is downsampled by keeping each bucket's
first, lowest, highest and last points, so peaks and troughs stay drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from itertools import pairwise

import numpy as np
import numpy.typing as npt

#: At most this many points are drawn per chart.
MAX_POINTS = 2000

WIDTH = 800
HEIGHT = 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 78, 16, 12, 30


def downsample(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], limit: int = MAX_POINTS
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """At most ``limit`` points of the series, keeping each bucket's first, lowest,
    highest and last point (in time order)."""
    n = len(x)
    if n <= limit:
        return x, y
    buckets = max(limit // 4, 1)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    keep: list[int] = []
    for a, b in pairwise(edges.tolist()):
        if b <= a:
            continue
        seg = y[a:b]
        keep += [a, a + int(np.argmin(seg)), a + int(np.argmax(seg)), b - 1]
    idx = np.unique(np.asarray(keep, dtype=np.int64))
    return x[idx], y[idx]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values spanning ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks: list[float] = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


def tick_labels(ticks: Sequence[float], scale: float = 1.0, unit: str = "") -> list[str]:
    """The ticks as text with the fewest decimals (up to 8) that tells them apart."""
    texts: list[str] = []
    for decimals in range(9):
        # round() first, and + 0.0: a tick of -0.0 reads 0, not -0.
        texts = [f"{round(t * scale, decimals) + 0.0:,.{decimals}f}{unit}" for t in ticks]
        if len(set(texts)) == len(texts):
            break
    return texts


def _when(ms: float, span_ms: float) -> str:
    when = datetime.fromtimestamp(ms / 1000, UTC)
    return when.strftime("%H:%M" if span_ms < 86_400_000 else "%Y-%m-%d")


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def line_chart(
    chart_id: str,
    title: str,
    ts: Sequence[int],
    values: Sequence[float],
    *,
    scale: float = 1.0,
    unit: str = "",
    area: bool = False,
) -> str:
    """An ``<svg id=chart_id>`` line chart of ``values`` over ``ts`` (ms, increasing).
    A y tick reads ``value * scale`` and ``unit`` (e.g. 100 and " %"); ``area`` fills
    between the line and the top (for a drawdown drawn downwards)."""
    w, h = WIDTH, HEIGHT
    plot_w, plot_h = w - _LEFT - _RIGHT, h - _TOP - _BOTTOM
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" '
        f'viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    x = np.asarray(ts, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(y)
    x, y = x[finite], y[finite]
    if len(x) == 0:
        parts.append(
            f'<text class="tick" x="{w / 2}" y="{h / 2}" text-anchor="middle">no data</text></svg>'
        )
        return "".join(parts)
    x, y = downsample(x, y)
    x0, x1 = float(x[0]), float(x[-1])
    y0, y1 = float(y.min()), float(y.max())
    if y1 <= y0:
        pad = abs(y0) * 0.01 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    xspan = x1 - x0 or 1.0

    def px(v: float) -> float:
        return _LEFT + (v - x0) / xspan * plot_w

    def py(v: float) -> float:
        return _TOP + (y1 - v) / (y1 - y0) * plot_h

    ticks = nice_ticks(y0, y1)
    for tick, text in zip(ticks, tick_labels(ticks, scale, unit), strict=True):
        yy = py(tick)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{w - _RIGHT}" y1="{_num(yy)}" y2="{_num(yy)}"/>'
            f'<text class="tick" x="{_LEFT - 6}" y="{_num(yy + 4)}" text-anchor="end">'
            f"{escape(text)}</text>"
        )
    for i in range(5):
        xv = x0 + xspan * i / 4
        xx = px(xv)
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(
            f'<text class="tick" x="{_num(xx)}" y="{h - 10}" text-anchor="{anchor}">'
            f"{_when(xv, xspan)}</text>"
        )
    parts.append(
        f'<path class="axis" d="M{_LEFT},{_TOP}V{_TOP + plot_h}H{w - _RIGHT}" fill="none"/>'
    )
    xs = (_LEFT + (x - x0) / xspan * plot_w).round(1)
    ys = (_TOP + (y1 - y) / (y1 - y0) * plot_h).round(1)
    coords = " ".join(f"{_num(a)},{_num(b)}" for a, b in zip(xs.tolist(), ys.tolist(), strict=True))
    if len(xs) == 1:
        coords += f" {_num(float(xs[0]) + 1)},{_num(float(ys[0]))}"
    if area:
        parts.append(
            f'<path class="area" d="M{_num(float(xs[0]))},{_TOP} L{coords} '
            f'L{_num(float(xs[-1]))},{_TOP} Z"/>'
        )
    parts.append(f'<path class="line" fill="none" d="M{coords}"/>')
    parts.append("</svg>")
    return "".join(parts)
