"""``cma report``: a session written as Markdown, HTML, a CSV zip or JSON.

``cma report --list`` lists the sessions of the configured store (refs ``N``) and
of every backtest store in ``backtests/`` beside it (refs ``STEM:N``), in the
order they ran. ``cma report SESSION --format F`` or ``cma report --last
--format F`` writes one report; without ``--output`` it goes to the configured
``[report] dir`` (default ``reports/`` beside the store, in the data directory)
as ``session-<ref>-<UTC time>.<ext>``, and the path is printed. ``--db PATH``
restricts everything to that one store file.

The store is only read (through the read-only opening), so a report can be made
while the console runs on the same store. Bad input (an unknown session, a bad
format, a store that cannot be read, nothing to report) exits 2 with one
``cma: ...`` line naming the argument.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.config.sections import REPORT_FORMATS as FORMATS
from tui.cli import EXIT_OK, die

__all__ = ["add_report_parser", "report_command"]


def add_report_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``cma report``: its values are checked by the command (one ``cma:`` line each)."""
    report = sub.add_parser(
        "report",
        parents=[common],
        help="export session reports (Markdown, HTML, CSV, JSON)",
        description="Write a session's report: the headline results, the human edge "
        "(what the approved proposals earned beside what the rejected and expired ones "
        "would have), every trade with its votes, every decision, the risk denials, and "
        "per-agent and per-symbol tables. The store is only read: the console may be "
        "running on it.",
        epilog="Sessions are named N (the configured store) or STEM:N (a backtest's store "
        "backtests/STEM.db beside it); --list shows them, --db restricts to one store "
        "file. Without --output the report goes to [report] dir (default: reports/ beside "
        "the store) as session-REF-TIME.EXT, and its path is printed. csv is a zip of "
        "trades.csv, decisions.csv and denials.csv.",
    )
    report.add_argument("session", nargs="?", metavar="SESSION", help="N or STEM:N")
    report.add_argument("--last", action="store_true", help="the session that started last")
    report.add_argument("--list", action="store_true", help="list the sessions and exit")
    report.add_argument("--format", metavar="FORMAT", help="md, html, csv or json")
    report.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help="file to write (a folder: the default name inside it)",
    )


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _print_list(found: list[Any]) -> None:
    from engine.backtest.metrics import pct

    head = f"{'SESSION':<28} {'KIND':<8} {'MARKET':<28} {'START':<16} {'END':<16} "
    print(f"{head}{'TRADES':>7} {'RETURN':>9}")
    for s in found:
        market = f"{','.join(s.symbols)} {s.timeframe}".strip()
        if len(market) > 28:
            market = market[:27] + "~"
        ret = pct(s.total_return, signed=True)
        print(
            f"{s.ref:<28} {s.kind:<8} {market:<28} {_when(s.first_ts or s.started_at):<16} "
            f"{_when(s.last_ts or s.ended_at):<16} {s.trades:>7,} {ret:>9}"
        )


def report_command(args: argparse.Namespace) -> int:
    """``cma report``: see the module docstring."""
    from reports import ReportError, build_report, default_report_path, write_report
    from reports.sessions import find_session, last_session, list_sessions
    from tui.subcommands import settings_from_args

    only: Path | None = getattr(args, "db", None)
    # The configured store: --db only restricts which file is read.
    settings = settings_from_args(argparse.Namespace(config=getattr(args, "config", None)))
    store = settings.store.resolved_path()
    if only is not None and not only.is_file():
        die(f"--db {only}: no store file there")
    if args.list:
        if args.session or args.last:
            die("--list takes no SESSION or --last")
        try:
            _print_list(list_sessions(store, only=only))
        except ReportError as exc:
            die(f"--list: {exc}")
        return EXIT_OK
    if args.session and args.last:
        die("give SESSION or --last, not both")
    if not args.session and not args.last:
        die("name a SESSION (see cma report --list) or pass --last")
    fmt = args.format
    if fmt is None:
        die(f"--format is needed: one of {', '.join(FORMATS)}")
    if fmt not in FORMATS:
        die(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    try:
        if args.last:
            ref = last_session(store, only=only)
        else:
            ref = find_session(store, args.session, only=only)
        report = build_report(ref.store, ref.session_id, ref=ref.ref)
    except ReportError as exc:
        die(str(exc))
    folder = settings.report.resolved_dir(settings.store)
    target: Path = args.output if args.output is not None else folder
    if args.output is None or target.is_dir():
        target = default_report_path(target, ref.ref, fmt)
    try:
        written = write_report(report, fmt, target)
    except OSError as exc:
        die(f"--output {target}: cannot write it: {exc.strerror or exc}")
    for path in written:
        print(path)
    sys.stdout.flush()
    return EXIT_OK
