"""Charts as inline SVG, written from the data: no browser, no plotting library.

:func:`line_chart` draws one series as a polyline path with its axes, a light grid
and a few labelled ticks. Colours come from CSS classes (``line``, ``area``,
``axis``, ``grid``, ``tick``) so that the page's light and dark styles apply. A
series longer than :data:`MAX_POINTS` is downsampled by keeping each bucket's
first, lowest, highest and last points, so peaks and troughs stay drawn.

For the optimization report, :func:`history_chart` draws one dot per trial's score
over the trial number, the best score so far as a step line (``best``) and one
distinct mark (``chosen``); :func:`bar_chart` draws labelled horizontal bars
(``bar``), for the parameter importances.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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

    parts += _value_grid(y0, y1, py, w, scale, unit)
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


# ---------------------------------------------------------------- optimization


def running_best(values: Sequence[float]) -> list[float]:
    """The best (highest) value so far at each point of ``values``."""
    out: list[float] = []
    for v in values:
        out.append(v if not out or v > out[-1] else out[-1])
    return out


def _value_grid(
    y0: float, y1: float, py: Callable[[float], float], w: int, scale: float, unit: str
) -> list[str]:
    """The value axis: a light grid line and a labelled tick at each round value of
    ``[y0, y1]``, ``py`` placing a value on the page."""
    out = []
    ticks = nice_ticks(y0, y1)
    for tick, text in zip(ticks, tick_labels(ticks, scale, unit), strict=True):
        yy = py(tick)
        out.append(
            f'<line class="grid" x1="{_LEFT}" x2="{w - _RIGHT}" y1="{_num(yy)}" y2="{_num(yy)}"/>'
            f'<text class="tick" x="{_LEFT - 6}" y="{_num(yy + 4)}" text-anchor="end">'
            f"{escape(text)}</text>"
        )
    return out


def _open_svg(chart_id: str, title: str, w: int, h: int) -> list[str]:
    return [
        f'<svg id="{escape(chart_id)}" class="chart" '
        f'viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]


def _no_data(parts: list[str], w: int, h: int, text: str) -> str:
    parts.append(
        f'<text class="tick" x="{w / 2}" y="{h / 2}" text-anchor="middle">{escape(text)}</text>'
        "</svg>"
    )
    return "".join(parts)


def history_chart(
    chart_id: str,
    title: str,
    numbers: Sequence[int],
    values: Sequence[float],
    *,
    chosen: tuple[int, float] | None = None,
    chosen_label: str = "chosen",
    scale: float = 1.0,
    unit: str = "",
) -> str:
    """An ``<svg id=chart_id>`` of an optimization's history: one dot per trial
    (``numbers[i]``, ``values[i]``, in trial order; non-finite values left out), the
    best value so far as a step line, and ``chosen`` (a trial number and a score)
    as a diamond. A y tick reads ``value * scale`` and ``unit``."""
    w, h = WIDTH, HEIGHT + 20
    top = _TOP + 20
    plot_w, plot_h = w - _LEFT - _RIGHT, h - top - _BOTTOM
    parts = _open_svg(chart_id, title, w, h)
    points = [
        (float(n), float(v)) for n, v in zip(numbers, values, strict=True) if math.isfinite(v)
    ]
    mark = chosen if chosen is not None and math.isfinite(chosen[1]) else None
    if not points and mark is None:
        return _no_data(parts, w, h, "no complete trial")
    xs_all = [p[0] for p in points] + ([float(mark[0])] if mark else [])
    ys_all = [p[1] for p in points] + ([float(mark[1])] if mark else [])
    x0, x1 = min(xs_all), max(xs_all)
    y0, y1 = min(ys_all), max(ys_all)
    first, last = x0, x1
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 <= y0:
        pad = abs(y0) * 0.01 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    # A margin inside the axes, so that no dot sits on an axis or the edge.
    xpad, ypad = (x1 - x0) * 0.02, (y1 - y0) * 0.05
    x0, x1, y0, y1 = x0 - xpad, x1 + xpad, y0 - ypad, y1 + ypad

    def px(v: float) -> float:
        return _LEFT + (v - x0) / (x1 - x0) * plot_w

    def py(v: float) -> float:
        return top + (y1 - v) / (y1 - y0) * plot_h

    parts += _value_grid(y0, y1, py, w, scale, unit)
    # Trial numbers: whole ones, within those drawn.
    xticks = [t for t in nice_ticks(first, last, 8) if t == int(t)] or [first]
    for tick in xticks:
        parts.append(
            f'<text class="tick" x="{_num(px(tick))}" y="{h - 10}" text-anchor="middle">'
            f"{int(tick)}</text>"
        )
    parts.append(f'<path class="axis" d="M{_LEFT},{top}V{top + plot_h}H{w - _RIGHT}" fill="none"/>')
    legend = [("dot", "in-sample mean of a trial"), ("best", "best so far")]
    if mark:
        legend.append(("chosen", chosen_label))
    lx = float(_LEFT)
    parts.append('<g class="legend">')
    for cls, text in legend:
        if cls == "dot":
            parts.append(f'<circle class="dot" cx="{_num(lx + 5)}" cy="14" r="3"/>')
        elif cls == "best":
            parts.append(f'<path class="best" fill="none" d="M{_num(lx)},14H{_num(lx + 12)}"/>')
        else:
            parts.append(f'<path class="chosen" d="{_diamond(lx + 5, 14)}"/>')
        parts.append(f'<text class="tick" x="{_num(lx + 16)}" y="18">{escape(text)}</text>')
        lx += 30 + 6.5 * len(text)
    parts.append(f'<text class="tick" x="{w - _RIGHT}" y="18" text-anchor="end">trial</text></g>')
    if points:
        for n, v in points:
            parts.append(f'<circle class="dot" cx="{_num(px(n))}" cy="{_num(py(v))}" r="2.5"/>')
        best = running_best([v for _, v in points])
        steps = [f"M{_num(px(points[0][0]))},{_num(py(best[0]))}"]
        for (n, _), b, prev in zip(points[1:], best[1:], best, strict=False):
            steps.append(f"H{_num(px(n))}")
            if b != prev:
                steps.append(f"V{_num(py(b))}")
        if len(points) == 1:
            steps.append("h1")
        parts.append(f'<path class="best" fill="none" d="{"".join(steps)}"/>')
    if mark:
        parts.append(
            f'<path class="chosen" d="{_diamond(px(mark[0]), py(mark[1]))}">'
            f"<title>{escape(f'{chosen_label}: trial {mark[0]}')}</title></path>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _diamond(x: float, y: float, r: float = 6.0) -> str:
    return (
        f"M{_num(x)},{_num(y - r)}L{_num(x + r)},{_num(y)}"
        f"L{_num(x)},{_num(y + r)}L{_num(x - r)},{_num(y)}Z"
    )


def bar_chart(
    chart_id: str,
    title: str,
    items: Sequence[tuple[str, float]],
    *,
    scale: float = 1.0,
    unit: str = "",
    decimals: int = 1,
) -> str:
    """An ``<svg id=chart_id>`` of horizontal bars, one per ``(label, value)`` in the
    order given, each as long as its value against the largest, its value written
    after it (``value * scale`` with ``decimals`` and ``unit``)."""
    row, label_w = 22, 260
    w = WIDTH
    h = _TOP + row * max(len(items), 1) + 8
    parts = _open_svg(chart_id, title, w, h)
    shown = [(k, v) for k, v in items if math.isfinite(v)]
    if not shown:
        return _no_data(parts, w, h, "no data")
    top = max(max(v for _, v in shown), 0.0) or 1.0
    bar_w = w - label_w - _RIGHT - 70
    for i, (label, v) in enumerate(shown):
        y = _TOP + i * row
        short = label if len(label) <= 40 else label[:39] + "…"
        length = max(v, 0.0) / top * bar_w
        parts.append(
            f'<text class="tick" x="{label_w - 8}" y="{_num(y + 15)}" text-anchor="end">'
            f"<title>{escape(label)}</title>{escape(short)}</text>"
            f'<rect class="bar" x="{label_w}" y="{_num(y + 4)}" width="{_num(max(length, 1.0))}" '
            f'height="{row - 8}"/>'
            f'<text class="tick" x="{_num(label_w + length + 6)}" y="{_num(y + 15)}">'
            f"{escape(f'{v * scale:.{decimals}f}{unit}')}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
