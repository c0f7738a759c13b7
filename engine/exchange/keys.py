"""Exchange API keys in a keyring, through a backend chosen here, never by keyring's guess.

The backend (:func:`choose_backend`):

1. the system's own store where one is running and usable without a prompt on the
   terminal: the Secret Service (gnome-keyring, KWallet, KeePassXC) when a D-Bus session
   bus is there and its default collection is unlocked; the Keychain on macOS; the
   Credential Locker on Windows;
2. otherwise an encrypted file (``keyrings.cryptfile``: an Argon2id key derivation and
   AES-GCM, so a wrong passphrase or a changed byte fails its check) at
   ``$XDG_DATA_HOME/cma/keyring.cfg``, 0600 in a 0700 folder. Its passphrase comes from
   ``$CMA_KEYRING_PASSPHRASE`` or, on a terminal, a prompt: asked when the keys are first
   read or written, which ``cma keys`` and live mode do before the console starts.

``$CMA_KEYRING=secretservice|file`` forces one. ``PYTHON_KEYRING_BACKEND`` and keyring's
own config file are ignored, so a plaintext or null backend is never used.

Entries: service ``cma``, usernames ``EXCHANGE:api_key``, ``EXCHANGE:api_secret`` and
``EXCHANGE:password``. Keys live in memory as ``SecretStr``; :func:`secret_strings` gives
the raw strings that logs and exchange errors must blot out.

Neither ccxt nor keyring is imported here at module level: paper mode touches none of it.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import SecretStr

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

__all__ = [
    "PASSPHRASE_VARIABLE",
    "SELECT_VARIABLE",
    "SERVICE",
    "ApiKeys",
    "KeysError",
    "backend_name",
    "backend_note",
    "check_exchange_id",
    "choose_backend",
    "delete_keys",
    "has_keys",
    "keyring_file",
    "load_keys",
    "require_keys",
    "secret_strings",
    "store_keys",
    "stored_exchanges",
    "unlock",
]

#: The keyring service every entry is stored under.
SERVICE = "cma"
#: Forces a backend: ``secretservice`` or ``file``.
SELECT_VARIABLE = "CMA_KEYRING"
#: The encrypted file's passphrase (for scripts and servers; a terminal is asked instead).
PASSPHRASE_VARIABLE = "CMA_KEYRING_PASSPHRASE"
#: The parts of one exchange's keys, as the usernames' suffixes.
PARTS = ("api_key", "api_secret", "password")

_EXCHANGE_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")

# Argon2id as RFC 9106 recommends where memory is short (its second option): 3 passes
# over 64 MiB in 4 lanes, about 0.2 s per entry here. keyrings.cryptfile's own default
# (15 passes) costs 0.8 s per entry, and every entry has its own salt, so reading one
# exchange's keys would take 3 s. The cost is not in the file: it is written beside the
# scheme (``cma-kdf``) and checked, so a file made with other costs is refused clearly
# instead of reading as a wrong passphrase.
_TIME_COST = 3
_MEMORY_COST = 2**16
_PARALLELISM = 4
_KDF = f"argon2id t={_TIME_COST} m={_MEMORY_COST} p={_PARALLELISM}"
_REFERENCE = "password reference value"


class KeysError(Exception):
    """Something about the keys or their keyring a person must fix (the message says what)."""


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """One exchange account's credentials. Its repr shows no secret."""

    api_key: SecretStr
    api_secret: SecretStr
    password: SecretStr | None = None
    """The passphrase some exchanges (OKX, KuCoin, ...) add to key and secret."""


def secret_strings(keys: ApiKeys) -> list[str]:
    """The raw strings redaction must blot out: each secret, and its URL-encoded form
    where that differs (a signed query string carries the key encoded)."""
    out: list[str] = []
    for secret in (keys.api_key, keys.api_secret, keys.password):
        if secret is None:
            continue
        raw = secret.get_secret_value()
        for form in (raw, quote(raw, safe="")):
            if form and form not in out:
                out.append(form)
    return out


def check_exchange_id(exchange_id: str) -> str:
    """``exchange_id`` if it is shaped like a ccxt id (``binance``, ``coinbase_advanced``);
    KeysError otherwise. Whether ccxt knows it is the caller's check (ccxt is slow to import)."""
    if not _EXCHANGE_ID.fullmatch(exchange_id):
        raise KeysError(
            f"exchange id must be a ccxt id such as binance (lowercase letters, digits, _), "
            f"got {exchange_id!r}"
        )
    return exchange_id


def _username(exchange_id: str, part: str) -> str:
    return f"{check_exchange_id(exchange_id)}:{part}"


# --- choosing the backend ---------------------------------------------------------------


def keyring_file(environ: Mapping[str, str] | None = None) -> Path:
    """Where the encrypted file backend keeps its file: ``$XDG_DATA_HOME/cma/keyring.cfg``."""
    env = os.environ if environ is None else environ
    data = env.get("XDG_DATA_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".local", "share"
    )
    return Path(data) / "cma" / "keyring.cfg"


def _tilde(path: Path, environ: Mapping[str, str]) -> str:
    home = environ.get("HOME") or os.path.expanduser("~")
    try:
        return f"~/{path.relative_to(home)}"
    except ValueError:
        return str(path)


def choose_backend(
    environ: Mapping[str, str] | None = None, *, prompt: bool = True
) -> KeyringBackend:
    """The keyring backend to use (see the module's docstring), never keyring's own guess.

    ``prompt``: whether the encrypted file may ask for its passphrase on the terminal when
    ``$CMA_KEYRING_PASSPHRASE`` is not set (only when stdin is one). False where a console
    is on screen: then a missing passphrase is a KeysError when the keys are first read.
    KeysError when ``$CMA_KEYRING`` names no backend or one that is not usable here."""
    env = dict(os.environ if environ is None else environ)
    forced = env.get(SELECT_VARIABLE, "").strip().lower()
    if forced not in ("", "secretservice", "file"):
        raise KeysError(
            f"{SELECT_VARIABLE} must be secretservice or file, got {env[SELECT_VARIABLE]!r}"
        )
    if forced == "secretservice":
        native, why = _secret_service(env)
        if native is None:
            raise KeysError(f"{SELECT_VARIABLE}=secretservice, but {why}")
        return native
    why = ""
    if forced != "file":
        native, why = _native(env)
        if native is not None:
            return native
    fallback: KeyringBackend = _file_backend(env, prompt, note=why)
    return fallback


def unlock(backend: KeyringBackend) -> None:
    """Ask for the encrypted file's passphrase now and check it (a new file is made with
    it), so nothing asks later; nothing for other backends. KeysError when it is wrong."""
    if hasattr(backend, "cma_ask"):
        try:
            getattr(backend, "keyring_key")  # noqa: B009 - the property unlocks
        except Exception as exc:
            raise _failure(exc, backend) from None


def _native(env: Mapping[str, str]) -> tuple[KeyringBackend | None, str]:
    """The system's own keyring when usable without a prompt; else None and why not."""
    if sys.platform == "darwin":  # pragma: no cover - not this platform
        from keyring.backends import macOS

        if _viable(macOS.Keyring):
            return macOS.Keyring(), ""
        return None, "the macOS Keychain is not usable"
    if sys.platform == "win32":  # pragma: no cover - not this platform
        from keyring.backends import Windows

        if _viable(Windows.WinVaultKeyring):
            return Windows.WinVaultKeyring(), ""
        return None, "the Windows Credential Locker is not usable"
    native, why = _secret_service(env)
    return native, f"not the Secret Service: {why}"


def _viable(cls: Any) -> bool:  # pragma: no cover - macOS and Windows only
    try:
        return float(cls.priority) > 0
    except Exception:  # any failure means not usable: the file is used
        return False


def _secret_service(env: Mapping[str, str]) -> tuple[KeyringBackend | None, str]:
    """The Secret Service backend when its default collection is there and unlocked (so
    nothing would prompt), with the daemon's name; else None and why not."""
    if not env.get("DBUS_SESSION_BUS_ADDRESS"):
        return None, "no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set"
    try:
        import secretstorage
        from keyring.backends.SecretService import Keyring as SecretServiceKeyring
    except ImportError as exc:  # pragma: no cover - both are dependencies of keyring
        return None, f"SecretStorage cannot be imported ({exc})"
    address = env["DBUS_SESSION_BUS_ADDRESS"]
    try:
        connection = _connect(address)
    except Exception as exc:  # shown as why the file is used (status)
        return None, f"the D-Bus session bus cannot be reached ({exc})"
    try:
        if not secretstorage.check_service_availability(connection):
            return None, "no Secret Service is running on the session bus"
        try:
            # The default alias itself: get_default_collection would create a collection
            # when there is none, which prompts.
            collection = secretstorage.Collection(connection)
        except secretstorage.exceptions.ItemNotFoundException:
            return None, "the Secret Service has no default collection"
        if collection.is_locked():
            return None, "the Secret Service's default collection is locked"
        daemon = _daemon_name(connection)
    except Exception as exc:  # shown as why the file is used (status)
        return None, f"the Secret Service does not answer ({exc})"
    finally:
        connection.close()

    class SecretService(SecretServiceKeyring):
        """keyring's Secret Service backend on the bus it was chosen on, named for
        people, refusing (not prompting) when its collection got locked since."""

        cma_label = f"Secret Service ({daemon})" if daemon else "Secret Service"
        cma_bus = address

        def get_preferred_collection(self) -> Any:
            try:
                collection = secretstorage.Collection(_connect(self.cma_bus))
            except Exception as exc:
                raise KeysError(f"the Secret Service cannot be reached ({exc})") from None
            if collection.is_locked():
                collection.connection.close()
                raise KeysError(
                    "the Secret Service's default collection is locked: unlock it "
                    "(log in to the desktop, or gnome-keyring-daemon --unlock) and run again"
                )
            return collection

    return SecretService(), ""  # type: ignore[no-untyped-call]


def _connect(address: str) -> Any:
    """A connection to the session bus at ``address``, as secretstorage.dbus_init makes
    one for the process's own bus."""
    from jeepney.io.blocking import open_dbus_connection
    from secretstorage.util import add_match_rules

    connection = open_dbus_connection(bus=address)
    add_match_rules(connection)
    return connection


#: Secret Service daemons by program name, for people.
_DAEMONS = {
    "gnome-keyring-daemon": "gnome-keyring",
    "kwalletd5": "KWallet",
    "kwalletd6": "KWallet",
    "ksecretd": "KWallet",
    "keepassxc": "KeePassXC",
}


def _daemon_name(connection: Any) -> str:
    """The program that owns ``org.freedesktop.secrets`` ("" when it cannot be told)."""
    from jeepney.bus_messages import message_bus

    try:
        reply = connection.send_and_get_reply(
            message_bus.GetConnectionUnixProcessID("org.freedesktop.secrets")
        )
        pid = int(reply.body[0])
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
    except Exception:  # the name is only a label: "Secret Service" alone
        return ""
    program = os.path.basename(argv0)
    return _DAEMONS.get(program, program)


def backend_note(backend: KeyringBackend) -> str:
    """Why the system's own keyring is not the one used ("" when it is, or when the
    encrypted file was asked for): "not the Secret Service: no D-Bus session bus ..."."""
    note = getattr(backend, "cma_note", "")
    return note if isinstance(note, str) else ""


def backend_name(backend: KeyringBackend) -> str:
    """The backend for people: "Secret Service (gnome-keyring)", "encrypted file
    ~/.local/share/cma/keyring.cfg", "macOS Keychain"."""
    label = getattr(backend, "cma_label", None)
    if isinstance(label, str):
        return label
    name = type(backend).__module__  # pragma: no cover - macOS and Windows only
    if name.endswith("macOS"):  # pragma: no cover
        return "macOS Keychain"
    if name.endswith("Windows"):  # pragma: no cover
        return "Windows Credential Locker"
    return type(backend).__name__  # pragma: no cover


# --- the encrypted file --------------------------------------------------------------------


def _file_backend(env: Mapping[str, str], prompt: bool, *, note: str) -> Any:
    path = keyring_file(env)
    _check_modes(path)
    backend = _cryptfile_class()()
    backend.file_path = str(path)
    backend.cma_label = f"encrypted file {_tilde(path, env)}"
    backend.cma_ask = _passphrase_source(env, path, prompt)
    backend.cma_note = note
    return backend


def _check_modes(path: Path) -> None:
    """Make the folder 0700; refuse a keyring file others could read or change."""
    folder = path.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
        if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
            folder.chmod(0o700)
        file_info = path.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise KeysError(f"cannot use the keyring folder {folder}: {exc.strerror}") from None
    if not stat.S_ISREG(file_info.st_mode):
        raise KeysError(f"the keyring {path} is not a regular file")
    if file_info.st_uid != os.getuid():
        raise KeysError(f"the keyring {path} belongs to another user")
    mode = stat.S_IMODE(file_info.st_mode)
    if mode & 0o077:
        raise KeysError(
            f"the keyring {path} is open to other users (mode {mode:04o}); if nobody else "
            f"could have read it, run: chmod 600 {path}"
        )


def _passphrase_source(env: Mapping[str, str], path: Path, prompt: bool) -> Callable[[bool], str]:
    given = env.get(PASSPHRASE_VARIABLE)

    def ask(new: bool) -> str:
        if given is not None:
            if not given:
                raise KeysError(f"{PASSPHRASE_VARIABLE} is empty")
            return given
        if not (prompt and sys.stdin.isatty()):
            raise KeysError(
                f"the encrypted keyring {path} needs its passphrase: set "
                f"{PASSPHRASE_VARIABLE}, or run cma on a terminal to be asked"
            )
        import getpass

        if not new:
            return getpass.getpass(f"Passphrase of the keyring {path}: ")
        first = getpass.getpass(f"New passphrase for the keyring {path}: ")
        if not first.strip():
            raise KeysError("the keyring's passphrase must not be empty")
        if getpass.getpass("The same passphrase again: ") != first:
            raise KeysError("the two passphrases differ; nothing was stored")
        return first

    return ask


@cache
def _cryptfile_class() -> Any:
    """keyrings.cryptfile's backend with the costs above, no prompt of its own, and
    atomic writes (a crash while writing leaves the old file, not half of one)."""
    import configparser

    from keyring.errors import PasswordDeleteError
    from keyrings.cryptfile.cryptfile import CryptFileKeyring
    from keyrings.cryptfile.escape import escape

    class EncryptedFile(CryptFileKeyring):  # type: ignore[misc]
        time_cost = _TIME_COST
        memory_cost = _MEMORY_COST
        parallelism = _PARALLELISM
        cma_label = "encrypted file"
        cma_ask: Callable[[bool], str]
        _keyring_key: str | None

        def _get_new_password(self) -> str:
            return self.cma_ask(True)

        def _unlock(self) -> None:
            if self._keyring_key is None:
                self._keyring_key = self.cma_ask(False)
            config = self._read()
            kdf: str | None
            try:
                kdf = config.get(escape("keyring-setting"), escape("cma-kdf"))
            except (configparser.NoSectionError, configparser.NoOptionError):
                kdf = None
            if kdf != _KDF:
                self._keyring_key = None
                raise KeysError(
                    f"the keyring {self.file_path} was not written by cma "
                    f"(its key derivation is {kdf or 'not recorded'}, cma's is {_KDF})"
                )
            reference: str | None
            try:
                reference = self.get_password("keyring-setting", "password reference")
            except (ValueError, KeyError):  # the authentication tag does not match
                reference = None
            if reference != _REFERENCE:
                self._keyring_key = None
                raise KeysError(f"wrong passphrase for the keyring {self.file_path}")

        def _init_file(self) -> None:
            # The costs first: a file is only taken as made once its reference is in.
            self._write_config_value("keyring-setting", "cma-kdf", _KDF)
            super()._init_file()

        def _read(self) -> configparser.RawConfigParser:
            config = configparser.RawConfigParser()
            try:
                config.read(self.file_path)
            except configparser.Error as exc:
                raise KeysError(f"the keyring {self.file_path} is damaged: {exc}") from None
            return config

        def _save(self, config: configparser.RawConfigParser) -> None:
            _check_modes(Path(self.file_path))
            part = f"{self.file_path}.{os.getpid()}.tmp"
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                with os.fdopen(fd, "w") as out:
                    config.write(out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(part, self.file_path)
            except BaseException:
                Path(part).unlink(missing_ok=True)
                raise

        def _ensure_file_path(self) -> None:
            _check_modes(Path(self.file_path))

        def _write_config_value(self, service: str, key: str, value: str) -> None:
            config = self._read()
            section = escape(service)
            if not config.has_section(section):
                config.add_section(section)
            config.set(section, escape(key), value)
            self._save(config)

        def delete_password(self, service: str, username: str) -> None:
            config = self._read()
            try:
                found = config.remove_option(escape(service), escape(username))
            except configparser.NoSectionError:
                found = False
            if not found:
                raise PasswordDeleteError("Password not found")
            self._save(config)

        def usernames(self, service: str) -> list[str]:
            """The usernames stored for ``service``, read without the passphrase."""
            from keyrings.cryptfile.escape import unescape

            config = self._read()
            section = escape(service)
            if not config.has_section(section):
                return []
            return [unescape(name) for name in config.options(section)]

    return EncryptedFile


# --- reading and writing keys --------------------------------------------------------------


def _failure(exc: Exception, backend: KeyringBackend) -> KeysError:
    if isinstance(exc, KeysError):
        return exc
    detail = str(exc) or type(exc).__name__
    return KeysError(f"the keyring ({backend_name(backend)}) failed: {detail}")


def _get(backend: KeyringBackend, exchange_id: str, part: str) -> str | None:
    try:
        value = backend.get_password(SERVICE, _username(exchange_id, part))
    except Exception as exc:
        raise _failure(exc, backend) from None
    return value if isinstance(value, str) else None


def load_keys(exchange_id: str, backend: KeyringBackend) -> ApiKeys | None:
    """The keys stored for ``exchange_id``; None when there are none. KeysError when
    the keyring cannot be read (a wrong passphrase, a locked collection) or holds only
    half of them."""
    unlock(backend)
    key = _get(backend, exchange_id, "api_key")
    secret = _get(backend, exchange_id, "api_secret")
    if key is None and secret is None:
        return None
    if not key or not secret:
        missing = "API key" if not key else "API secret"
        raise KeysError(
            f"the {missing} for {exchange_id} is missing in {backend_name(backend)}; "
            f"run: cma keys set {exchange_id}"
        )
    password = _get(backend, exchange_id, "password")
    return ApiKeys(SecretStr(key), SecretStr(secret), SecretStr(password) if password else None)


def store_keys(exchange_id: str, keys: ApiKeys, backend: KeyringBackend) -> None:
    """Store ``keys`` for ``exchange_id``, replacing what was there (a password stored
    before and not given now is removed)."""
    values = {
        "api_key": keys.api_key.get_secret_value(),
        "api_secret": keys.api_secret.get_secret_value(),
    }
    for part, value in values.items():
        if not value.strip():
            raise KeysError(f"the {part.replace('_', ' ')} must not be empty")
    try:
        for part, value in values.items():
            backend.set_password(SERVICE, _username(exchange_id, part), value)
        if keys.password is not None and keys.password.get_secret_value():
            backend.set_password(
                SERVICE, _username(exchange_id, "password"), keys.password.get_secret_value()
            )
        else:
            _delete(backend, exchange_id, "password")
    except Exception as exc:
        raise _failure(exc, backend) from None


def _delete(backend: KeyringBackend, exchange_id: str, part: str) -> bool:
    from keyring.errors import PasswordDeleteError

    try:
        backend.delete_password(SERVICE, _username(exchange_id, part))
    except PasswordDeleteError:
        return False
    return True


def delete_keys(exchange_id: str, backend: KeyringBackend) -> bool:
    """Remove the keys of ``exchange_id``; whether there were any. The encrypted file
    is unlocked first: a wrong passphrase removes nothing."""
    unlock(backend)
    try:
        return [_delete(backend, exchange_id, part) for part in PARTS].count(True) > 0
    except Exception as exc:
        raise _failure(exc, backend) from None


def has_keys(exchange_id: str, backend: KeyringBackend) -> bool:
    """Whether keys are stored for ``exchange_id``. The encrypted file answers without its
    passphrase (the entries' names are not secret); other backends are read."""
    usernames = getattr(backend, "usernames", None)
    if callable(usernames):
        return _username(exchange_id, "api_key") in usernames(SERVICE)
    return _get(backend, exchange_id, "api_key") is not None


def stored_exchanges(backend: KeyringBackend) -> list[str] | None:
    """The exchanges that have keys, sorted; None when the backend cannot list them
    (macOS and Windows: name the exchange)."""
    names: list[str]
    usernames = getattr(backend, "usernames", None)
    if callable(usernames):
        names = list(usernames(SERVICE))
    elif getattr(backend, "cma_bus", None):
        try:
            collection = backend.get_preferred_collection()  # type: ignore[attr-defined]
            with closing(collection.connection):
                names = [
                    item.get_attributes().get("username", "")
                    for item in collection.search_items({"service": SERVICE})
                ]
        except Exception as exc:
            raise _failure(exc, backend) from None
    else:  # pragma: no cover - macOS and Windows only
        return None
    suffix = ":api_key"
    return sorted({n[: -len(suffix)] for n in names if n.endswith(suffix)})


def require_keys(settings_or_exchange_id: Any, environ: Mapping[str, str] | None = None) -> ApiKeys:
    """The keys live mode needs, unlocked now (before the console is on screen): for an
    exchange id, or for settings (their ``exchange.id``). KeysError when there are none:
    "no API keys for binance in <backend>; run: cma keys set binance"."""
    if isinstance(settings_or_exchange_id, str):
        exchange_id = settings_or_exchange_id
    else:
        exchange_id = settings_or_exchange_id.exchange.id
    check_exchange_id(exchange_id)
    backend = choose_backend(environ, prompt=True)
    keys = load_keys(exchange_id, backend)
    if keys is None:
        raise KeysError(
            f"no API keys for {exchange_id} in {backend_name(backend)}; "
            f"run: cma keys set {exchange_id}"
        )
    return keys
