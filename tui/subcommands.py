"""What each ``cma`` subcommand does (the parser lives in :mod:`tui.cli`)."""

from __future__ import annotations

import argparse
import errno
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config import (
    Check,
    ConfigError,
    Settings,
    default_config_path,
    describe,
    example_toml,
    load_settings,
)
from tui.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE, die

if TYPE_CHECKING:
    import sqlite3


def settings_from_args(
    args: argparse.Namespace, *, check: bool | Check = False, **extra: Any
) -> Settings:
    """Load the configuration, with command-line overrides; exit 2 on a bad value.

    ``check`` True adds :func:`tui.validate.check_settings` (agents, key bindings):
    what ``run``, ``config validate`` and ``config show`` need, and ``db`` not.
    A function stands in for it (``backtest`` narrows it to the agents it runs).
    """
    overrides: dict[str, Any] = {k: dict(v) for k, v in extra.items()}
    if getattr(args, "db", None) is not None:
        overrides.setdefault("store", {})["path"] = args.db
    checks: Check | None = None
    if check is True:
        from tui.validate import check_settings

        checks = check_settings
    elif check is not False:
        checks = check
    try:
        return load_settings(getattr(args, "config", None), checks=checks, **overrides)
    except ConfigError as exc:
        die(str(exc), EXIT_USAGE)


def config_command(args: argparse.Namespace) -> int:
    if args.config_command == "show":
        # The same checks as run and validate: what show prints is what run would use.
        settings = settings_from_args(args, check=True)
        for dotted, value, desc in describe(settings):
            print(f"{dotted:36} {value:28} # {desc}")
        return EXIT_OK
    if args.config_command == "validate":
        # The file must exist here (it is what is checked), so it is always named.
        args.config = args.file or getattr(args, "config", None) or default_config_path()
        settings_from_args(args, check=True)
        print(f"{args.config}: ok")
        return EXIT_OK
    if args.config_command == "init":
        path: Path = getattr(args, "config", None) or default_config_path()
        _write_config(path, force=args.force)
        print(f"wrote {path}")
        return EXIT_OK
    raise AssertionError(args.config_command)


def _write_config(path: Path, *, force: bool) -> None:
    """Write the config template to ``path``; exit 2 naming the path if it cannot be.

    Only a regular file is ever overwritten (with ``--force``): never a directory,
    a device or a FIFO that happens to be at the path.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        die(f"cannot write {path}: {exc.strerror}", EXIT_USAGE)
    if mode is not None:
        if stat.S_ISDIR(mode):
            die(f"cannot write {path}: is a directory", EXIT_USAGE)
        if not stat.S_ISREG(mode):
            die(f"cannot write {path}: is not a regular file", EXIT_USAGE)
        if not force:
            die(f"{path} exists; pass --force to overwrite it", EXIT_USAGE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as handle:
            handle.write(example_toml())
    except OSError as exc:
        # Name the directory when it is the part that failed (mkdir in a read-only place).
        where = f"{exc.filename}: " if exc.filename not in (None, str(path)) else ""
        die(f"cannot write {path}: {where}{exc.strerror}", EXIT_USAGE)


def db_command(args: argparse.Namespace) -> int:
    """``cma db check|backup|info``: read-only, so they never change the store or leave
    a ``-wal``/``-shm`` beside it, and work in a read-only directory."""
    import sqlite3

    from persistence.errors import StoreFileError
    from persistence.storefile import damaged, inspect_store, open_readonly

    settings = settings_from_args(args)
    path = settings.store.resolved_path()
    try:
        info = inspect_store(path)
    except StoreFileError as exc:
        die(str(exc), exc.code)
    if not info.exists:
        die(f"no store at {path} (run cma first, or pass --db)", EXIT_USAGE)
    if info.is_new:
        die(f"no store at {path}: the file holds no cma data yet (run cma first)", EXIT_USAGE)
    dest = _backup_destination(args.path) if args.db_command == "backup" else None
    try:
        with open_readonly(path, settings.store.busy_timeout_ms) as conn:
            if args.db_command == "check":
                return _db_check(conn, path)
            if dest is not None:
                return _db_backup(conn, path, dest)
            if args.db_command == "info":
                return _db_info(conn, path, info.stamped)
    except sqlite3.Error as exc:
        if dest is not None:
            dest.unlink(missing_ok=True)
        die(str(damaged(path, exc)), EXIT_FAIL)
    raise AssertionError(args.db_command)


def _db_check(conn: sqlite3.Connection, path: Path) -> int:
    from persistence.checks import run_checks

    results = run_checks(conn)
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'}  {r.name}: {r.detail}")
    failed = sum(not r.ok for r in results)
    print(f"{path}: {len(results) - failed} checks passed, {failed} failed")
    return EXIT_OK if failed == 0 else EXIT_FAIL


def _backup_destination(dest: Path) -> Path:
    """Create the backup file empty and 0600, or exit 2 naming ``dest``.

    Created before the copy (VACUUM INTO accepts an empty file) so that it is never
    readable by others; O_EXCL refuses a destination that exists, even one created
    since we looked. A missing or unwritable directory is refused, not created.
    """
    if dest.is_dir():
        die(f"backup destination {dest} is a directory; name a new file in it", EXIT_USAGE)
    if dest.parent.exists() and not dest.parent.is_dir():
        die(f"cannot write backup {dest}: {dest.parent} is not a directory", EXIT_USAGE)
    if not dest.parent.is_dir():
        die(f"cannot write backup {dest}: directory {dest.parent} does not exist", EXIT_USAGE)
    try:
        fd = os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        die(f"{dest} exists; choose a new path", EXIT_USAGE)
    except OSError as exc:
        # ENOENT with the directory present: a virtual file system such as /proc.
        why = f"{dest.parent} accepts no new files" if exc.errno == errno.ENOENT else exc.strerror
        die(f"cannot write backup {dest}: {why}", EXIT_USAGE)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return dest


def _db_backup(conn: sqlite3.Connection, path: Path, dest: Path) -> int:
    import sqlite3

    journal = Path(f"{dest}-journal")
    had_journal = journal.exists()
    try:
        conn.execute("VACUUM INTO ?", (str(dest),))
    except sqlite3.Error as exc:
        dest.unlink(missing_ok=True)
        if not had_journal:
            journal.unlink(missing_ok=True)
        if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
            raise  # the store's fault: reported as damaged by the caller
        die(f"cannot write backup {dest}: {exc}", EXIT_FAIL)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    print(f"backed up {path} to {dest}")
    return EXIT_OK


def _db_info(conn: sqlite3.Connection, path: Path, stamped: bool) -> int:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    print(f"store   {path}")
    made = "" if stamped else " (made by an earlier cma; marked as cma's on its next run)"
    print(f"schema  version {version}{made}")
    for table in ("sessions", "proposals", "decisions", "orders", "fills"):
        n = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        print(f"{table:10}{n}")
    open_n, closed_n = conn.execute(
        "SELECT COUNT(*) FILTER (WHERE status = 'open'),"
        " COUNT(*) FILTER (WHERE status = 'closed') FROM positions"
    ).fetchone()
    print(f"{'positions':10}{open_n} open, {closed_n} closed")
    return EXIT_OK


def run_command(args: argparse.Namespace) -> int:
    from persistence.errors import StoreFileError
    from persistence.storefile import inspect_store

    if getattr(args, "files", None) and getattr(args, "feed", None) not in (None, "replay"):
        die(f"--files needs the replay feed (--feed replay), not --feed {args.feed}", EXIT_USAGE)
    if getattr(args, "exchange", None) and getattr(args, "feed", None) not in (None, "ccxt"):
        die(f"--exchange needs the ccxt feed (--feed ccxt), not --feed {args.feed}", EXIT_USAGE)
    # The same checks as `cma config validate`, before any store, feed or screen starts.
    settings = settings_from_args(args, check=True, **_run_overrides(args))
    # Refuse a foreign, damaged or too-new store before any UI starts (the console
    # would otherwise open and sit there with no engine).
    try:
        info = inspect_store(settings.store.resolved_path())
    except StoreFileError as exc:
        die(str(exc), exc.code)
    if info.schema_version and _holds_a_backtest(info.path):
        die(
            f"{info.path} holds a backtest's account (cma backtest wrote it): "
            "it is for reading (cma db info, reports), not for trading on; "
            "run on another --db",
            EXIT_USAGE,
        )
    live = bool(getattr(args, "live", False))
    if live:
        settings = _go_live(settings, headless=args.headless, confirmed=args.confirm_live)
    elif getattr(args, "confirm_live", False):
        die("--confirm-live goes with --live", EXIT_USAGE)
    from tui.logs import secrets_of, setup_logging
    from tui.tracking import TrackingError, dsn_from, start_tracking

    # Once, for the console and the headless run alike; the settings' secrets (and a
    # Sentry DSN) are masked in the log and in what error tracking sends.
    secrets = [*secrets_of(settings), *filter(None, [dsn_from()])]
    log_file = setup_logging(secrets=secrets)
    try:
        start_tracking(secrets)  # only with SENTRY_DSN set
    except TrackingError as exc:
        die(str(exc), EXIT_USAGE)
    if args.headless:
        from tui.headless import run_headless

        return run_headless(settings, duration=args.duration, log_file=log_file)
    from tui.app import run_console

    return run_console(settings, duration=args.duration)


def _go_live(settings: Settings, *, headless: bool, confirmed: bool) -> Settings:
    """Live trading's gate, before any screen: the keys from the keyring (a passphrase is
    asked here, never while the console is up) and the person's typed confirmation (or
    ``--confirm-live`` headless). The settings come back with the keys in memory only
    (``SecretStr``; never written, logged or shown)."""
    from engine.exchange.keys import KeysError, require_keys

    ex = settings.exchange
    if headless and not confirmed:
        die("live trading headless needs --confirm-live (nobody is there to type it)", 2)
    try:
        keys = require_keys(ex.id)
    except KeysError as exc:
        die(str(exc), EXIT_USAGE)
    if not confirmed:
        if not sys.stdin.isatty():
            die("--live asks you to type the exchange's id to confirm; no terminal to ask", 2)
        where = f"{ex.id} TESTNET (sandbox)" if ex.sandbox else f"{ex.id} with REAL MONEY"
        print(
            f"LIVE trading on {where}: {', '.join(settings.feed.symbols)}.\n"
            f"Each order at most {ex.max_order_notional}, all orders of a day at most "
            f"{ex.max_daily_notional} (quote currency).",
            file=sys.stderr,
        )
        try:
            typed = input(f"Type {ex.id} to start: ")
        except EOFError:
            typed = ""
        if typed.strip() != ex.id:
            die("not confirmed: nothing was started", EXIT_FAIL)
    exchange = ex.model_copy(
        update={
            "api_key": keys.api_key,
            "api_secret": keys.api_secret,
            "api_password": keys.password,
        }
    )
    feed = settings.feed.model_copy(update={"kind": "ccxt"})
    broker = settings.broker.model_copy(update={"kind": "ccxt"})
    return settings.model_copy(update={"exchange": exchange, "feed": feed, "broker": broker})


def _holds_a_backtest(path: Path) -> bool:
    """Whether the store's last session is a backtest (its account is history, not
    one to trade on)."""
    import sqlite3

    from persistence.storefile import open_readonly

    with open_readonly(path) as conn:
        try:
            row = conn.execute("SELECT mode FROM sessions ORDER BY id DESC LIMIT 1").fetchone()
        except sqlite3.Error:  # a store from before sessions: no backtest in it
            return False
    return row is not None and row[0] == "backtest"


def _run_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if getattr(args, "feed", None):
        out.setdefault("feed", {})["kind"] = args.feed
    if getattr(args, "speed", None) is not None:
        out.setdefault("feed", {})["speed"] = args.speed
    if getattr(args, "seed", None) is not None:
        out.setdefault("feed", {})["seed"] = args.seed
    if getattr(args, "files", None):
        out.setdefault("feed", {})["files"] = tuple(args.files)
        out["feed"].setdefault("kind", "replay")
    if getattr(args, "exchange", None):
        out.setdefault("exchange", {})["id"] = args.exchange
        out.setdefault("feed", {}).setdefault("kind", "ccxt")
    if getattr(args, "symbols", None) is not None:
        out.setdefault("feed", {})["symbols"] = tuple(s.strip() for s in args.symbols.split(","))
    if getattr(args, "timeframe", None) is not None:
        out.setdefault("feed", {})["timeframe"] = args.timeframe
    if getattr(args, "policy", None):
        out.setdefault("approval", {})["policy"] = args.policy
    if getattr(args, "theme", None):
        out.setdefault("ui", {})["theme"] = args.theme
    if getattr(args, "metrics", None) is not None:
        host, port = args.metrics
        out["metrics"] = {"enabled": True, "host": host, "port": port}
    return out
