"""What each ``cma`` subcommand does (the parser lives in :mod:`tui.cli`)."""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path
from typing import Any

from engine.config import (
    ConfigError,
    Settings,
    default_config_path,
    describe,
    example_toml,
    load_settings,
)
from tui.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE, die


def settings_from_args(args: argparse.Namespace, *, check: bool = False, **extra: Any) -> Settings:
    """Load the configuration, with command-line overrides; exit 2 on a bad value.

    ``check`` adds :func:`tui.validate.check_settings` (agents, key bindings):
    what ``run`` and ``config validate`` need, and ``config show`` and ``db`` not.
    """
    overrides: dict[str, Any] = {k: dict(v) for k, v in extra.items()}
    if getattr(args, "db", None) is not None:
        overrides.setdefault("store", {})["path"] = args.db
    checks = None
    if check:
        from tui.validate import check_settings

        checks = check_settings
    try:
        return load_settings(getattr(args, "config", None), checks=checks, **overrides)
    except ConfigError as exc:
        die(str(exc), EXIT_USAGE)


def config_command(args: argparse.Namespace) -> int:
    if args.config_command == "show":
        settings = settings_from_args(args)
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
    import sqlite3

    from persistence.checks import run_checks
    from persistence.connection import connect_reader

    settings = settings_from_args(args)
    path = settings.store.resolved_path()
    if not path.exists():
        die(f"no store at {path} (run cma first, or pass --db)", EXIT_USAGE)
    try:
        conn = connect_reader(path, settings.store.busy_timeout_ms)
    except sqlite3.Error as exc:
        die(f"cannot open {path}: {exc}", EXIT_FAIL)
    try:
        if args.db_command == "check":
            try:
                results = run_checks(conn)
            except sqlite3.DatabaseError as exc:
                print(f"FAIL  sqlite: {exc}")
                return EXIT_FAIL
            for r in results:
                print(f"{'ok  ' if r.ok else 'FAIL'}  {r.name}: {r.detail}")
            failed = sum(not r.ok for r in results)
            print(f"{path}: {len(results) - failed} checks passed, {failed} failed")
            return EXIT_OK if failed == 0 else EXIT_FAIL
        if args.db_command == "backup":
            dest: Path = args.path
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Create the copy empty and 0600 first (VACUUM INTO accepts an empty
            # file), so it is never readable by others, and O_EXCL refuses a
            # destination that exists, even one created since we looked.
            try:
                os.close(os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                die(f"{dest} exists; choose a new path", EXIT_USAGE)
            try:
                conn.execute("VACUUM INTO ?", (str(dest),))
            except BaseException:
                dest.unlink(missing_ok=True)
                raise
            dest.chmod(0o600)
            print(f"backed up {path} to {dest}")
            return EXIT_OK
        if args.db_command == "info":
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            print(f"store   {path}")
            print(f"schema  version {version}")
            for table in ("sessions", "proposals", "decisions", "orders", "fills", "positions"):
                n = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                print(f"{table:10}{n}")
            return EXIT_OK
    finally:
        conn.close()
    raise AssertionError(args.db_command)


def run_command(args: argparse.Namespace) -> int:
    if getattr(args, "files", None) and getattr(args, "feed", None) not in (None, "replay"):
        die(f"--files needs the replay feed (--feed replay), not --feed {args.feed}", EXIT_USAGE)
    # The same checks as `cma config validate`, before any store, feed or screen starts.
    settings = settings_from_args(args, check=True, **_run_overrides(args))
    from tui.logs import setup_logging

    log_file = setup_logging()  # once, for the console and the headless run alike
    if args.headless:
        from tui.headless import run_headless

        return run_headless(settings, duration=args.duration, log_file=log_file)
    from tui.app import run_console

    return run_console(settings, duration=args.duration)


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
    if getattr(args, "policy", None):
        out.setdefault("approval", {})["policy"] = args.policy
    if getattr(args, "theme", None):
        out.setdefault("ui", {})["theme"] = args.theme
    return out
