"""The ``cma`` command line.

``cma`` alone opens the console on the built-in demo market. Every subcommand
has ``--help``. Bad input exits with code 2 and a message naming the argument
or the field; nothing prints a traceback for a mistake a person can fix.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

#: The exit codes (the README lists them; deploy/cma.service names 2 and 4).
EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_NOT_YET = 3
#: A headless run ended with trading HALTED by risk (a limit, or a halt kept from before):
#: starting it again would not trade, so systemd must not restart it.
EXIT_HALTED = 4
#: Interrupted: a second signal ended a run at once, or Ctrl-C a command (128 + SIGINT).
EXIT_INTERRUPTED = 130
#: The store's disk is full: the engine stopped trading; what is stored is intact.
EXIT_DISK_FULL = 5

#: Commands listed for what is coming; each exits with EXIT_NOT_YET for now.
NOT_YET: dict[str, str] = {}
DISTRIBUTION = "crypto-market-agents"


def die(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``cma: message`` to stderr and exit."""
    print(f"cma: {message}", file=sys.stderr)
    raise SystemExit(code)


#: Longest ``--duration``: a year (a longer run needs no duration at all).
MAX_DURATION = 366 * 86_400.0


def _speed(value: str) -> float | str:
    from engine.config import parse_speed

    try:
        return parse_speed(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, got {value!r}") from None


#: The units a duration may carry; none is seconds.
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def seconds_of(text: str) -> float:
    """``text`` as seconds: a number, or one with a unit (``30s``, ``5m``, ``1h``).
    ValueError when it is neither."""
    clean = text.strip().lower()
    factor = _UNITS.get(clean[-1:])
    return float(clean[:-1] if factor is not None else clean) * (factor or 1.0)


def _duration(value: str) -> float:
    try:
        seconds = seconds_of(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must look like 20s, 5m or 1h, got {value!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value!r}")
    if not seconds <= MAX_DURATION:  # also refuses inf and nan
        raise argparse.ArgumentTypeError(f"must be at most 366 days, got {value!r}")
    return seconds


def metrics_address(value: str) -> tuple[str, int]:
    """``--metrics [HOST:]PORT`` as (host, port); HOST defaults to 127.0.0.1, and an
    IPv6 address goes in brackets (``[::1]:9464``). ValueError for anything else."""
    from engine.config.sections import check_host

    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    elif host.count(":") and not host.startswith("["):
        raise ValueError("an IPv6 address goes in brackets, like [::1]:9464")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65_535:
        raise ValueError("the port must be a number from 0 to 65535")
    return check_host(host), int(port_text)


def _metrics(value: str) -> tuple[str, int]:
    try:
        return metrics_address(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"must be [HOST:]PORT, e.g. 9464 or 127.0.0.1:9464 ({exc}), got {value!r}"
        ) from None


class _Version(argparse.Action):
    """``--version``: looked up only when asked (importlib.metadata costs a few ms)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version(DISTRIBUTION)
        except PackageNotFoundError:
            found = "(version unknown: not installed)"
        print(f"cma {found}")
        parser.exit(EXIT_OK)


def _default_speed() -> str:
    """The default of ``feed.speed``, as the settings model has it."""
    from engine.config import FeedSettings

    default = FeedSettings.model_fields["speed"].default
    return default if isinstance(default, str) else f"{default:g}"


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, every subcommand with its help."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="TOML config file (default: $XDG_CONFIG_HOME/cma/config.toml)",
    )
    common.add_argument(
        "--db",
        type=Path,
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="SQLite store (default: $XDG_DATA_HOME/cma/cma.db)",
    )

    parser = argparse.ArgumentParser(
        prog="cma",
        description="Crypto Market Agents: agents propose trades, you approve them by keypress.",
        parents=[common],
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        parents=[common],
        help="open the console (or run headless) on a market",
        description="Open the console on a market, or run the same engine headless.",
    )
    run.add_argument("--headless", action="store_true", help="no UI: print a status line")
    run.add_argument(
        "--feed",
        choices=["sim", "replay", "ccxt"],
        help="market data source: sim (the built-in demo market, the default), replay "
        "(CSV files, --files) or ccxt (an exchange's public candles, --exchange)",
    )
    run.add_argument(
        "--exchange",
        metavar="ID",
        help="ccxt exchange id, e.g. binance (sets exchange.id; implies --feed ccxt)",
    )
    run.add_argument(
        "--symbols",
        metavar="A/B,C/D",
        help="symbols to watch, comma-separated, e.g. BTC/USDT,ETH/USDT (feed.symbols)",
    )
    run.add_argument("--timeframe", metavar="TF", help="candle timeframe, e.g. 1m, 5m, 1h")
    run.add_argument("--policy", choices=["manual", "auto", "queue-only"], help="approval policy")
    run.add_argument(
        "--speed",
        type=_speed,
        help="market seconds per wall second of the sim and replay feeds, or 'max' "
        f"(default {_default_speed()}; 1 is real time)",
    )
    run.add_argument("--duration", type=_duration, help="stop after this long, e.g. 20s, 5m, 1h")
    run.add_argument(
        "--live",
        action="store_true",
        help="trade real money: orders go to the exchange ([exchange] id) with the keys "
        "stored by 'cma keys set'; asks you to type the exchange's id to confirm",
    )
    run.add_argument(
        "--confirm-live",
        action="store_true",
        help="with --live --headless: the confirmation a console would ask you to type",
    )
    run.add_argument(
        "--metrics",
        type=_metrics,
        metavar="[HOST:]PORT",
        help="serve /metrics (Prometheus), /healthz and /readyz on this address "
        "(HOST defaults to 127.0.0.1; port 0 picks a free one); sets [metrics]",
    )
    run.add_argument("--seed", type=int, help="seed of the demo market")
    run.add_argument(
        "--files",
        type=Path,
        nargs="+",
        metavar="CSV",
        help="CSV files for the replay feed (implies --feed replay)",
    )
    run.add_argument("--theme", help="console theme")

    _add_backtest(sub, common)
    _add_optimize(sub, common)
    from tui.report_cmd import add_report_parser

    add_report_parser(sub, common)
    from tui.keys_cmd import add_keys_parser

    add_keys_parser(sub, common)

    from tui.data_cmd import add_data_parser

    add_data_parser(sub, common)

    for name, what in NOT_YET.items():
        sub.add_parser(
            name,
            parents=[common],
            help=f"{what} (not available yet)",
            description=f"{what[0].upper()}{what[1:]}. Not available yet in this version: "
            f"'cma {name}' exits with code {EXIT_NOT_YET}.",
        )

    db = sub.add_parser("db", parents=[common], help="check or back up the store")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_sub.add_parser(
        "check",
        parents=[common],
        help="integrity check plus the store's invariants; exits 1 on any failure",
    )
    backup = db_sub.add_parser(
        "backup", parents=[common], help="consistent online copy of the store (VACUUM INTO)"
    )
    backup.add_argument("path", type=Path, help="where to write the copy (must not exist)")
    db_sub.add_parser("info", parents=[common], help="where the store is and what it holds")

    config = sub.add_parser("config", parents=[common], help="show, check or create the config")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    config_sub.add_parser(
        "show", parents=[common], help="print the effective configuration, secrets masked"
    )
    validate = config_sub.add_parser("validate", parents=[common], help="check a config file")
    validate.add_argument("file", type=Path, nargs="?", help="file to check (default: the config)")
    init = config_sub.add_parser(
        "init", parents=[common], help="write a commented config file with every default"
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    return parser


def _add_backtest(sub: Any, common: argparse.ArgumentParser) -> None:
    """``cma backtest``: its values are checked by the command (one ``cma:`` line each)."""
    backtest = sub.add_parser(
        "backtest",
        parents=[common],
        help="backtest agents on candle files; prints the results and the session",
        description="Run the engine's agents, approval desk, risk and paper broker over "
        "historical candles (CSV files, or candles a store kept), as fast as they go, "
        "and store the run as a session (mode backtest) in one transaction at the end. "
        "Prints the results, the store and 'session N'. On a terminal a progress bar shows the "
        "percentage, candles/s and the time left; piped, only the results are printed.",
        epilog="Ctrl-C stops the run after the current candle: what was done is stored "
        "and printed with a note saying where it stopped, and cma exits 0. A second "
        "Ctrl-C quits at once, storing nothing (exit 130). A store keeps one account, "
        "so each backtest goes to a new store of its own in backtests/ beside the "
        "configured one (its path is printed); a --db must not hold an account yet. "
        "Bad input (a file, a row, a date, an agent, a number) "
        "exits 2 naming it.",
    )
    backtest.add_argument(
        "--data",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="candle CSV files, one symbol each, all of one timeframe "
        "(named like binance_BTC-USDT_1m_2023-03.csv)",
    )
    backtest.add_argument(
        "--candles",
        metavar="SYMBOL,...",
        help="symbols whose candles a store kept (from cma run's sim or exchange feed), "
        "with or instead of --data",
    )
    backtest.add_argument(
        "--candles-from",
        type=Path,
        metavar="STORE",
        help="the store to read --candles from (default: the config's store, which "
        "cma run writes; --db is where the backtest goes)",
    )
    backtest.add_argument(
        "--timeframe",
        metavar="TF",
        help="timeframe of --candles, e.g. 1m (default: the files', or the one the store holds)",
    )
    backtest.add_argument(
        "--from",
        dest="start",
        metavar="DATE",
        help="first candle time, UTC: YYYY-MM-DD or YYYY-MM-DDTHH:MM (default: the first candle)",
    )
    backtest.add_argument(
        "--to",
        dest="end",
        metavar="DATE",
        help="stop before this time, UTC: YYYY-MM-DD or "
        "YYYY-MM-DDTHH:MM (default: after the last candle)",
    )
    backtest.add_argument(
        "--agents",
        metavar="NAME,...",
        help="agents to run: built-in names (price_action, momentum, sma_cross) or "
        "package.module:ClassName (default: the config's agents.enabled and agents.user)",
    )
    backtest.add_argument(
        "--approve",
        choices=["threshold", "all", "person"],
        help="who approves proposals: threshold (approve at or above the confidence "
        "threshold and reject below it, the default), all (the risk manager may still "
        "deny), or person (a simulated person, --delay and --reject-rate)",
    )
    backtest.add_argument(
        "--threshold",
        metavar="X",
        help="confidence threshold, 0 to 1 (default: approval.auto_confidence)",
    )
    backtest.add_argument(
        "--delay",
        metavar="SECONDS",
        help="the person's delay in market time, e.g. 30, 30s "
        "or 5m (default 0); a proposal whose time to live runs out first expires",
    )
    backtest.add_argument(
        "--reject-rate",
        metavar="X",
        help="share of proposals the person rejects, 0 to 1 (default 0)",
    )
    backtest.add_argument("--seed", metavar="N", help="seed of the person's rejections (default 0)")
    backtest.add_argument(
        "--audit", action="store_true", help="store the full per-event audit trail"
    )


def _add_optimize(sub: Any, common: argparse.ArgumentParser) -> None:
    """``cma optimize``: its values are checked by the command (one ``cma:`` line each)."""
    opt = sub.add_parser(
        "optimize",
        parents=[common],
        help="tune agent, synthesis, risk and approval settings on candle files (Optuna)",
        description="Tune settings on history without fooling yourself: each trial is "
        "backtested on the training range of each walk-forward window (the sampler sees "
        "only these in-sample scores) and then on the test range that follows it. The "
        "parameters chosen are those with the best mean out-of-sample score, written as a "
        "config fragment that cma run and cma backtest take with --config, with an "
        "optimization report (Markdown and HTML) beside it. On a terminal a progress bar "
        "shows trials done, the best value and the time left.",
        epilog="Ctrl-C stops after the running trials and keeps the study (a second Ctrl-C "
        "quits at once, marking the running trials failed). Running the command again "
        "adds trials to the same study. Workers on several machines share one study "
        "through --storage (PostgreSQL; docs/optimize-cluster.md). Bad input exits 2 "
        "naming it: a file, a space entry, an unreachable storage, a study made with "
        "another search space, a --jobs beyond the machine's cores.",
    )
    opt.add_argument(
        "--data", type=Path, nargs="+", metavar="FILE", help="candle CSV files, one symbol each"
    )
    opt.add_argument("--from", dest="start", metavar="DATE", help="first candle time, UTC")
    opt.add_argument("--to", dest="end", metavar="DATE", help="stop before this time, UTC")
    opt.add_argument("--agents", metavar="NAME,...", help="agents to tune (default: the config's)")
    opt.add_argument(
        "--trials",
        metavar="N",
        default="50",
        help="trials this command runs (default 50); "
        "0 only writes the result of what the study holds",
    )
    opt.add_argument(
        "--jobs", metavar="N", default="1", help="worker processes, at most the cores (default 1)"
    )
    opt.add_argument(
        "--objective",
        choices=["sharpe", "return", "calmar"],
        default="sharpe",
        help="what a trial maximises (default sharpe)",
    )
    opt.add_argument(
        "--min-trades",
        metavar="N",
        default="3",
        help="a trial with fewer closed trades in a training window is pruned (default 3)",
    )
    opt.add_argument("--windows", metavar="N", default="4", help="walk-forward windows (default 4)")
    opt.add_argument(
        "--space",
        type=Path,
        metavar="FILE",
        help="search space TOML (default: the documented default space; --print-space prints it)",
    )
    opt.add_argument(
        "--print-space", action="store_true", help="print the search space as TOML and exit"
    )
    opt.add_argument(
        "--seed",
        metavar="N",
        help="sampler seed; worker i uses N + i (default 0; with --storage, a fresh seed "
        "each run, so machines sharing a study do not draw the same parameters)",
    )
    opt.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna RDB URL shared by workers on several machines, e.g. "
        "postgresql+psycopg://user@host/db (default: $CMA_OPTIMIZE_STORAGE, else a "
        "journal file beside the store)",
    )
    opt.add_argument(
        "--study", metavar="NAME", help="study name (default: one derived from the setup)"
    )
    opt.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="config fragment to write (default: optimize/STUDY.toml beside the store); "
        "the report goes beside it as .md and .html",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cma`` console script."""
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    commands = {"run", "db", "config", "backtest", "report", "optimize", "keys", "data", *NOT_YET}
    if not commands & set(given) and not {"-h", "--help", "--version"} & set(given):
        # `cma` alone is `cma run`, and so is `cma --speed 100`: run's options apply.
        given = ["run", *given]
    args = parser.parse_args(given)
    if args.command is None:  # a value that names a command, e.g. `cma --db config`
        args = parser.parse_args(["run", *given])
    command = args.command
    if command in NOT_YET:
        die(
            f"'cma {command}' ({NOT_YET[command]}) is not available yet in this version",
            EXIT_NOT_YET,
        )
    try:
        if command == "config":
            from tui.subcommands import config_command

            return config_command(args)
        if command == "db":
            from tui.subcommands import db_command

            return db_command(args)
        if command == "backtest":
            from tui.backtest_cmd import backtest_command

            return backtest_command(args)
        if command == "report":
            from tui.report_cmd import report_command

            return report_command(args)
        if command == "keys":
            from tui.keys_cmd import keys_command

            return keys_command(args)
        if command == "optimize":
            from tui.optimize_cmd import optimize_command

            return optimize_command(args)
        if command == "data":
            from tui.data_cmd import data_command

            return data_command(args)
        from tui.subcommands import run_command

        return run_command(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def entry() -> None:
    """``python -m tui``."""
    try:
        code = main()
    except BrokenPipeError:
        # The reader went away (``cma config show | head``): not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush stays quiet.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_FAIL
    raise SystemExit(code)
