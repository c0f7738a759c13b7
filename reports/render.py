"""A :class:`~reports.model.Report` written as Markdown, HTML, a CSV zip or JSON.

Markdown and HTML come from the Jinja2 templates in ``reports/templates``
(autoescaping on for HTML: agent names, reasons and rationales are data). The
HTML page is self-contained: inline CSS, light and dark through
``prefers-color-scheme``, the equity and drawdown charts as inline SVG
(:mod:`reports.svg`), no script and nothing from the network. The CSV form is a
zip of ``trades.csv``, ``decisions.csv`` and ``denials.csv``. The JSON form holds
everything, with ``"schema_version"`` (docs/report-schema.md describes it).

:func:`write_report` writes a file atomically (a temporary file renamed into
place) and makes its folder; it does no asyncio, so a worker thread may call it.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from engine.backtest.metrics import format_duration, money, pct, ratio
from reports.model import Report
from reports.sessions import FORMATS
from reports.svg import line_chart

#: What each figure of the report means, shown in the Markdown and HTML forms.
EDGE_NOTE = (
    "Approved: the real trades of the approved proposals, net of fees; the return is the "
    "net pnl over what the entry cost. Rejected and expired: what those proposals would "
    "have earned, followed on paper by the learning agent from their entry price with the "
    "same stop and take-profit (or closed after its time limit); fees are not included. "
    "Returns are fractions of the entry price, so the columns compare directly. Each "
    "proposal counts once overall and once for every agent that voted its side."
)


# ---------------------------------------------------------------- formatting


def num(value: Decimal | None) -> str:
    """An exact decimal without exponent notation (``1E-8`` is ``0.00000001``)."""
    return "" if value is None else format(value, "f")


def when(ms: int | None) -> str:
    if ms is None:
        return "n/a"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(ms: int | None) -> str:
    return "n/a" if ms is None else format_duration(ms)


def latency(ms: int | None) -> str:
    """``850 ms``, ``12.5 s``, ``20m 0s``."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    return f"{format_duration(minutes * 60_000)} {seconds}s"


def md_cell(value: object) -> str:
    """A Markdown table cell: pipes escaped, line breaks as spaces."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def environment(html: bool) -> jinja2.Environment:
    """A Jinja2 environment for the templates in ``reports/templates``: HTML autoescaped,
    an undefined name an error. Each report adds its own filters."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=html,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


@cache
def _env(html: bool) -> jinja2.Environment:
    env = environment(html)
    env.filters.update(
        pct=pct,
        ratio=ratio,
        money=money,
        num=num,
        when=when,
        duration=duration,
        latency=latency,
        md=md_cell,
    )
    return env


def _charts(report: Report) -> tuple[str, str]:
    ts = [p.ts for p in report.equity]
    equity = line_chart("equity-chart", "Equity", ts, [float(p.equity) for p in report.equity])
    drawdown = line_chart(
        "drawdown-chart",
        "Drawdown",
        ts,
        [-p.drawdown for p in report.equity],
        scale=100.0,
        unit=" %",
        area=True,
    )
    return equity, drawdown


def _context(report: Report) -> dict[str, Any]:
    return {"r": report, "s": report.session, "res": report.results, "edge_note": EDGE_NOTE}


def render_markdown(report: Report) -> str:
    return _env(False).get_template("report.md.j2").render(**_context(report))


def render_html(report: Report) -> str:
    equity, drawdown = _charts(report)
    return (
        _env(True)
        .get_template("report.html.j2")
        .render(
            **_context(report),
            equity_svg=Markup(equity),
            drawdown_svg=Markup(drawdown),
        )
    )


# ---------------------------------------------------------------- CSV


TRADE_COLUMNS = (
    "position_id", "symbol", "side", "qty", "entry_time", "exit_time", "entry_price",
    "exit_price", "close_reason", "realized_pnl", "fees", "net_pnl", "return",
    "proposal_id", "proposal_status", "confidence", "agents", "votes",
)  # fmt: skip
DECISION_COLUMNS = (
    "proposal_id", "symbol", "side", "confidence", "created_at", "status", "action",
    "decided_by", "latency_ms", "decided_at", "reason", "size", "resized", "risk_note",
)  # fmt: skip
DENIAL_COLUMNS = (
    "time", "client_order_id", "proposal_id", "symbol", "side", "qty", "purpose", "reason",
)  # fmt: skip


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([_cell(v) for v in row] for row in rows)
    return buf.getvalue()


def csv_files(report: Report) -> dict[str, str]:
    """``trades.csv``, ``decisions.csv`` and ``denials.csv``: times are ISO 8601 UTC,
    money exact decimals, returns fractions of entry, votes ``agent:direction:strength``
    joined by ``;``."""

    def iso(ms: int | None) -> str | None:
        return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()

    trades = (
        (
            t.position_id, t.symbol, t.side, t.qty, iso(t.entry_ts), iso(t.exit_ts),
            t.entry_price, t.exit_price, t.close_reason, t.realized_pnl, t.fees, t.net_pnl,
            t.ret, t.proposal_id, t.proposal_status, t.confidence, ";".join(t.agents),
            ";".join(f"{v.agent}:{v.direction}:{v.strength:.4f}" for v in t.votes),
        )
        for t in report.trades
    )  # fmt: skip
    decisions = (
        (
            d.proposal_id, d.symbol, d.side, d.confidence, iso(d.created_at), d.status,
            d.action, d.decided_by, d.latency_ms, iso(d.decided_at), d.reason, d.size,
            d.resized, d.risk_note,
        )
        for d in report.decisions
    )  # fmt: skip
    denials = (
        (iso(x.ts), x.client_order_id, x.proposal_id, x.symbol, x.side, x.qty, x.purpose, x.reason)
        for x in report.denials
    )
    return {
        "trades.csv": _csv(TRADE_COLUMNS, trades),
        "decisions.csv": _csv(DECISION_COLUMNS, decisions),
        "denials.csv": _csv(DENIAL_COLUMNS, denials),
    }


def render_csv_zip(report: Report) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, text in csv_files(report).items():
            z.writestr(name, text)
    return buf.getvalue()


# ---------------------------------------------------------------- JSON


def jsonable(value: Any) -> Any:
    """The report's records as JSON values: records as objects (their declared
    fields), Decimal as a string, a non-finite float as "inf", "-inf" or "nan"."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def render_json(report: Report) -> str:
    return json.dumps(jsonable(report), ensure_ascii=False, indent=1, allow_nan=False) + "\n"


# ---------------------------------------------------------------- files


def render(report: Report, fmt: str) -> bytes:
    """The file's bytes in ``fmt`` (md, html, csv, json)."""
    if fmt == "md":
        return render_markdown(report).encode()
    if fmt == "html":
        return render_html(report).encode()
    if fmt == "csv":
        return render_csv_zip(report)
    if fmt == "json":
        return render_json(report).encode()
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def write_report(report: Report, fmt: str, path: Path | str) -> list[Path]:
    """Write ``report`` in ``fmt`` to ``path`` (its folder made, mode 0700 when new);
    return the files written. The file appears whole or not at all."""
    return [write_atomic(render(report, fmt), path)]


def write_atomic(data: bytes, path: Path | str) -> Path:
    """Write ``data`` to ``path`` (its folder made, mode 0700 when new) through a
    temporary file renamed into place, so the file appears whole or not at all;
    refuse (FileExistsError) a ``path`` that exists and is not a regular file."""
    target = Path(path)
    if target.exists() and not target.is_file():
        # A rename over it would replace a device, a pipe or a folder with the report.
        raise FileExistsError(errno.EEXIST, "it exists and is not a regular file", str(target))
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
