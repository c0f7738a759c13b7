"""``cma keys set|delete|status``: exchange API keys in the keyring (engine.exchange.keys).

Keys are read from the terminal without echo, or as lines on stdin with ``--stdin``;
never as arguments, so they never show in the process list. Nothing printed holds key
material: ``status`` says "set" or "not set", ``set`` says where the keys went. A
problem a person must fix (an unknown exchange, an empty key, a wrong passphrase, a
keyring file others can read) exits 2 with one ``cma: ...`` line; ``delete`` of keys
that are not there exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from tui.cli import EXIT_FAIL, EXIT_OK, die

__all__ = ["add_keys_parser", "keys_command"]

EXAMPLES = """\
examples:
  cma keys set binance                  ask for the API key and secret (no echo)
  cma keys set okx --password           also ask for the key's passphrase
  printf '%s\\n%s\\n' "$KEY" "$SECRET" | cma keys set binance --stdin
  cma keys status                       the keyring, and which exchanges have keys
  cma keys status binance               whether binance has keys
  cma keys delete binance               remove them

The keyring: the Secret Service (gnome-keyring, KWallet, KeePassXC) when one is
running and unlocked, else an encrypted file, $XDG_DATA_HOME/cma/keyring.cfg (0600),
whose passphrase comes from $CMA_KEYRING_PASSPHRASE or is asked on the terminal.
CMA_KEYRING=secretservice|file chooses one. Never a plaintext file.
"""


def add_keys_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``cma keys``: its values are checked by the command (one ``cma:`` line each)."""
    keys = sub.add_parser(
        "keys",
        parents=[common],
        help="store exchange API keys in the keyring",
        description="Store, remove or check an exchange's API keys in the keyring that "
        "live trading reads them from. Without an action: status.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    put = actions.add_parser(
        "set",
        parents=[common],
        help="store an exchange's API key and secret (asked, or read with --stdin)",
        description="Store an exchange's API key and secret, replacing what was stored. "
        "On a terminal they are asked without echo; with --stdin they are read as lines "
        "from stdin. They are never arguments, so they never show in the process list.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    put.add_argument("exchange", metavar="EXCHANGE", help="ccxt exchange id, e.g. binance")
    put.add_argument(
        "--stdin",
        action="store_true",
        help="read the key, the secret (and with --password the passphrase) as lines "
        "from stdin, for scripts",
    )
    put.add_argument(
        "--password",
        action="store_true",
        help="also store the key's passphrase (OKX, KuCoin and others have one)",
    )
    delete = actions.add_parser(
        "delete",
        parents=[common],
        help="remove an exchange's keys (exit 1 when none were stored)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    delete.add_argument("exchange", metavar="EXCHANGE", help="ccxt exchange id, e.g. binance")
    status = actions.add_parser(
        "status",
        parents=[common],
        help="the keyring used, and which exchanges have keys (never the keys)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument(
        "exchange", metavar="EXCHANGE", nargs="?", help="only this exchange (default: all)"
    )


def keys_command(args: argparse.Namespace) -> int:
    """Run ``cma keys ACTION``."""
    from engine.exchange.keys import KeysError

    action = args.keys_command or "status"
    try:
        if action == "set":
            return _set(args)
        if action == "delete":
            return _delete(args)
        return _status(args)
    except KeysError as exc:
        die(str(exc))


def _exchange_id(value: str, *, known: bool) -> str:
    """The EXCHANGE argument, checked for its shape and, when ``known``, against ccxt."""
    from engine.exchange.keys import KeysError, check_exchange_id

    try:
        check_exchange_id(value)
    except KeysError as exc:
        die(f"EXCHANGE: {exc}")
    if known:
        import ccxt

        if value not in ccxt.exchanges:
            die(f"EXCHANGE: ccxt knows no exchange {value!r} (e.g. binance, kraken, okx)")
    return value


def _set(args: argparse.Namespace) -> int:
    from pydantic import SecretStr

    from engine.exchange.keys import ApiKeys, backend_name, choose_backend, store_keys, unlock

    exchange = _exchange_id(args.exchange, known=True)
    names = ["API key", "API secret"] + (["passphrase"] if args.password else [])
    if args.stdin:
        values = _nonempty(names, _read_stdin(names))
        backend = choose_backend(prompt=False)
    else:
        if not sys.stdin.isatty():
            die("no terminal to ask for the keys on: pipe them in with --stdin")
        backend = choose_backend(prompt=True)
        unlock(backend)  # the keyring's passphrase first: no keys typed in vain
        import getpass

        asked = [getpass.getpass(f"{name} for {exchange}: ").strip() for name in names]
        values = _nonempty(names, asked)
    keys = ApiKeys(
        SecretStr(values[0]),
        SecretStr(values[1]),
        SecretStr(values[2]) if args.password else None,
    )
    store_keys(exchange, keys, backend)
    parts = "API key, secret and passphrase" if args.password else "API key and secret"
    print(f"stored the {parts} for {exchange} in {backend_name(backend)}")
    return EXIT_OK


def _nonempty(names: list[str], values: list[str]) -> list[str]:
    for name, value in zip(names, values, strict=True):
        if not value:
            die(f"the {name} is empty: nothing was stored")
    return values


def _read_stdin(names: list[str]) -> list[str]:
    lines = sys.stdin.read().splitlines()
    if len(lines) < len(names):
        missing = names[len(lines)]
        die(f"--stdin: the {missing} is missing (one line each: {', '.join(names)})")
    if any(line.strip() for line in lines[len(names) :]):
        die(f"--stdin: more lines than the {len(names)} expected ({', '.join(names)})")
    return [line.strip() for line in lines[: len(names)]]


def _delete(args: argparse.Namespace) -> int:
    from engine.exchange.keys import backend_name, choose_backend, delete_keys

    exchange = _exchange_id(args.exchange, known=False)
    backend = choose_backend(prompt=True)
    if not delete_keys(exchange, backend):
        print(f"cma: no keys for {exchange} in {backend_name(backend)}", file=sys.stderr)
        return EXIT_FAIL
    print(f"deleted the keys for {exchange} from {backend_name(backend)}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from engine.exchange.keys import (
        backend_name,
        backend_note,
        choose_backend,
        has_keys,
        stored_exchanges,
    )

    exchange = getattr(args, "exchange", None)
    if exchange is not None:
        _exchange_id(exchange, known=False)
    backend = choose_backend(prompt=True)
    note = backend_note(backend)
    print(f"keyring: {backend_name(backend)}")
    if note:
        print(f"  ({note})")
    if os.environ.get("PYTHON_KEYRING_BACKEND"):
        print("PYTHON_KEYRING_BACKEND is ignored: cma chooses its keyring itself")
    if exchange is not None:
        print(f"{exchange}: {'set' if has_keys(exchange, backend) else 'not set'}")
        return EXIT_OK
    found = stored_exchanges(backend)
    if found is None:  # pragma: no cover - macOS and Windows only
        print("this keyring cannot list its entries: cma keys status EXCHANGE")
    elif not found:
        print("no exchange has keys (cma keys set EXCHANGE)")
    for name in found or []:
        print(f"{name}: set")
    return EXIT_OK
