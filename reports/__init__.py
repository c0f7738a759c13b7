"""Session reports: read a store (:mod:`reports.model`), write Markdown, HTML, CSV or
JSON (:mod:`reports.render`). Neither engine nor console: it reads and renders.

The console's export and ``cma report`` use these four::

    build_report(store_path, session_id) -> Report
    write_report(report, fmt, path) -> list[Path]
    default_report_path(folder, ref, fmt) -> Path
    list_sessions(store) -> list[SessionRef]

None of them uses asyncio: a worker thread may call them while the engine writes.
"""

from __future__ import annotations

from reports.model import Report, ReportError, build_report
from reports.render import write_report
from reports.sessions import FORMATS, SessionRef, default_report_path, list_sessions

__all__ = [
    "FORMATS",
    "Report",
    "ReportError",
    "SessionRef",
    "build_report",
    "default_report_path",
    "list_sessions",
    "write_report",
]
