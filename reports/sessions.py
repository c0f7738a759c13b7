"""The sessions a person can report on, and where a report goes.

One store keeps one account, so each backtest has a store of its own in
``backtests/`` beside the configured store. A session's *ref* names it across
all of them: ``N`` for session N of the configured store, ``STEM:N`` for
session N of ``backtests/STEM.db``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engine.config.sections import REPORT_FORMATS
from persistence.errors import StoreFileError
from persistence.storefile import inspect_store, open_readonly, store_error
from reports.model import ReportError, safe_config

#: The file name extension of each format (the formats are the config's).
EXTENSIONS = {"md": "md", "html": "html", "csv": "zip", "json": "json"}
FORMATS = REPORT_FORMATS
assert tuple(EXTENSIONS) == FORMATS


@dataclass(frozen=True, slots=True)
class SessionRef:
    """One line of ``cma report --list``."""

    ref: str
    store: Path
    session_id: int
    kind: str
    symbols: tuple[str, ...]
    timeframe: str
    started_at: int
    """Wall-clock ms."""
    ended_at: int | None
    first_ts: int | None
    """Market time of the first and last equity points (ms)."""
    last_ts: int | None
    trades: int
    total_return: float | None


_LIST_SQL = """
SELECT s.id, s.mode, s.started_at, s.ended_at, s.config_json,
       (SELECT MIN(ts) FROM equity e WHERE e.session_id = s.id),
       (SELECT MAX(ts) FROM equity e WHERE e.session_id = s.id),
       (SELECT equity FROM equity e WHERE e.session_id = s.id ORDER BY ts, rowid LIMIT 1),
       (SELECT equity FROM equity e WHERE e.session_id = s.id ORDER BY ts DESC, rowid DESC
        LIMIT 1),
       (SELECT COUNT(*) FROM positions p JOIN proposals pr ON pr.id = p.proposal_id
        WHERE pr.session_id = s.id AND p.status = 'closed')
FROM sessions s ORDER BY s.id
"""


def _ret(first: str | None, last: str | None) -> float | None:
    try:
        a, b = float(first or "nan"), float(last or "nan")
    except ValueError:
        return None
    return b / a - 1.0 if a > 0 and b == b else None


def sessions_of(store: Path, stem: str | None = None) -> list[SessionRef]:
    """The sessions of one store file; refs ``N``, or ``STEM:N`` when ``stem`` is given.
    Raises :class:`ReportError` when the file is not a readable cma store."""
    try:
        info = inspect_store(store, deep=False)
        if info.is_new:
            return []
        with open_readonly(store) as conn:
            rows = conn.execute(_LIST_SQL).fetchall()
    except StoreFileError as exc:
        raise ReportError(str(exc)) from None
    except sqlite3.Error as exc:
        raise ReportError(str(store_error(store, exc))) from None
    out: list[SessionRef] = []
    for sid, mode, started, ended, config, first_ts, last_ts, first_e, last_e, trades in rows:
        symbols, timeframe, _agents, _policy = safe_config(str(config))
        out.append(
            SessionRef(
                ref=f"{stem}:{sid}" if stem else str(sid),
                store=store,
                session_id=int(sid),
                kind=str(mode),
                symbols=symbols,
                timeframe=timeframe,
                started_at=int(started),
                ended_at=None if ended is None else int(ended),
                first_ts=None if first_ts is None else int(first_ts),
                last_ts=None if last_ts is None else int(last_ts),
                trades=int(trades),
                total_return=_ret(first_e, last_e),
            )
        )
    return out


def backtests_dir(store: Path) -> Path:
    """Where ``cma backtest`` puts each backtest's own store: ``backtests/`` beside ``store``."""
    return store.parent / "backtests"


def backtest_stores(store: Path) -> list[Path]:
    """The backtests' store files beside ``store`` (``backtests/*.db``), by name."""
    folder = backtests_dir(store)
    return sorted(p for p in folder.glob("*.db") if p.is_file()) if folder.is_dir() else []


def list_sessions(store: Path, *, only: Path | None = None) -> list[SessionRef]:
    """Every session of the configured ``store`` (refs ``N``) and of every backtest
    store beside it (refs ``STEM:N``), oldest first; ``only`` restricts the list to
    that one file (refs ``N``). A backtest store that cannot be read is left out;
    the configured store or ``only`` that cannot be read raises :class:`ReportError`."""
    if only is not None:
        return sessions_of(only)
    found = sessions_of(store) if store.exists() else []
    for path in backtest_stores(store):
        try:
            found += sessions_of(path, path.stem)
        except ReportError:
            continue  # a half-written or foreign file in backtests/ is not the user's ask
    return sorted(found, key=lambda s: (s.started_at, s.ref))


def find_session(store: Path, ref: str, *, only: Path | None = None) -> SessionRef:
    """The session ``ref`` names (``N`` or ``STEM:N``); :class:`ReportError` if none."""
    stem, _, number = ref.rpartition(":")
    try:
        sid = int(number)
    except ValueError:
        raise ReportError(
            f"SESSION must be N or STEM:N (see cma report --list), got {ref!r}"
        ) from None
    if only is not None:
        if stem and stem != only.stem:
            raise ReportError(f"SESSION {ref!r} is not in --db {only}")
        path, stem = only, ""
    elif stem:
        path = backtests_dir(store) / f"{stem}.db"
        if not path.is_file():
            raise ReportError(f"SESSION {ref!r}: no backtest store {path}")
    else:
        path = store
        if not path.is_file():
            raise ReportError(f"SESSION {ref!r}: no store {path}")
    for s in sessions_of(path, stem or None):
        if s.session_id == sid:
            return s
    raise ReportError(f"SESSION {ref!r}: no session {sid} in {path} (see cma report --list)")


def last_session(store: Path, *, only: Path | None = None) -> SessionRef:
    """The session started last among all of :func:`list_sessions`."""
    found = list_sessions(store, only=only)
    if not found:
        where = only if only is not None else store
        raise ReportError(f"--last: no session to report in {where} or its backtests/")
    return found[-1]


def default_report_path(folder: Path, ref: str, fmt: str, now: datetime | None = None) -> Path:
    """``folder/session-<ref>-<UTC time>.<ext>`` (a ``:`` in the ref becomes ``-``)."""
    when = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d-%H%M%S")
    return folder / f"session-{ref.replace(':', '-')}-{when}.{EXTENSIONS[fmt]}"
