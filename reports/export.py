"""One session exported in several formats at once: the console's ``e``.

The store is read once (:func:`~reports.model.build_report`) and each format is
written from that one report. No asyncio: the console calls it in a worker
thread while its engine goes on writing the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from reports.model import build_report
from reports.render import write_report
from reports.sessions import default_report_path


def export_session(
    store_path: Path | str,
    session_id: int,
    formats: Sequence[str],
    folder: Path,
    *,
    now: datetime | None = None,
) -> list[Path]:
    """Write session ``session_id`` of ``store_path`` to ``folder`` in each of
    ``formats``; return the files written. Raises :class:`~reports.model.ReportError`
    when the store cannot be read, and ``OSError`` when a file cannot be written."""
    report = build_report(store_path, session_id)
    when = now or datetime.now(UTC)
    written: list[Path] = []
    for fmt in formats:
        path = default_report_path(folder, str(session_id), fmt, when)
        written.extend(write_report(report, fmt, path))
    return written
