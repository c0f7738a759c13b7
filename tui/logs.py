"""The log file: tracebacks and diagnostics go here, never onto the console or the status line.

``cma run`` calls :func:`setup_logging` once, for the console and the headless
run alike. The file is ``$XDG_STATE_HOME/cma/cma.log`` (``~/.local/state`` when
the variable is unset or not absolute, as the XDG spec says), created 0600 in
a 0700 folder, and rotated at :data:`MAX_BYTES` with :data:`BACKUPS` old files.

Each record is one JSON line, rendered by structlog: ``ts`` (UTC, ISO 8601),
``level``, ``logger``, ``event`` (the message), any ``extra=`` fields, and
``exception`` (the whole traceback) when there is one. The engine and the store
log through the standard library (``logging.getLogger("cma....")``); structlog
loggers (``structlog.get_logger``) land in the same file once structlog is
configured, which happens on the first record (importing structlog costs about
40 ms, so the console's first frame does not wait for it) or, when structlog is
already imported, in :func:`setup_logging`. Secrets never reach
it: pydantic ``SecretStr`` values are masked, and the secret strings handed to
:func:`setup_logging` are blotted out wherever they appear (a message, an
exception's text).
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import sys
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any, cast

from pydantic import SecretStr

MAX_BYTES = 1_000_000
BACKUPS = 3
MASK = "**********"

_configured: Path | None = None


def log_path(environ: dict[str, str] | None = None) -> Path:
    """Where the log file goes (see the module docstring)."""
    env = os.environ if environ is None else environ
    state = env.get("XDG_STATE_HOME", "")
    base = Path(state) if os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "cma" / "cma.log"


def shown(path: Path) -> str:
    """``path`` with the home folder written ``~``, as a person would type it."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


class _PrivateRotatingHandler(logging.handlers.RotatingFileHandler):
    """A rotating handler whose every new file is created 0600 (tracebacks hold data)."""

    def _open(self) -> io.TextIOWrapper:
        def opener(path: str, flags: int) -> int:
            return os.open(path, flags, 0o600)

        # The handler owns the stream and closes it.
        # Text mode (the handler's mode has no "b"): open() returns a TextIOWrapper.
        return cast(
            io.TextIOWrapper,
            open(
                self.baseFilename,
                self.mode,
                encoding=self.encoding,
                errors=self.errors,
                opener=opener,
            ),
        )


class _Redactor:
    """A structlog processor: masks ``SecretStr`` values and every known secret string."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        # An empty or one-character "secret" would blot out the whole log.
        self.secrets.update(s for s in secrets if len(s) >= 4)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        if self.secrets and ("signature" in value or "APIKEY" in value.upper()):
            # Live: an exchange's signed query strings and key headers (ccxt's own debug
            # lines and error texts) are blotted out as well as the keys themselves.
            from engine.exchange.errors import redact

            value = redact(value)
        return value

    def _value(self, value: Any) -> Any:
        if isinstance(value, SecretStr):
            return MASK
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self._value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._value(v) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        # Anything else is rendered with repr() by the JSON renderer: mask that too.
        return self.text(repr(value))

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        return {k: self._value(v) for k, v in event.items()}


def _ordered(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # The fields a person scans for first, then the rest as logged.
    first = {k: event.pop(k) for k in ("ts", "level", "logger", "event") if k in event}
    return {**first, **event}


class _JSONFormatter(logging.Formatter):
    """The log file's formatter: one JSON object a line, by structlog's ProcessorFormatter,
    built (and structlog imported and configured) when the first record comes."""

    def __init__(self, redactor: _Redactor) -> None:
        super().__init__()
        self.redactor = redactor
        self._inner: logging.Formatter | None = None

    def format(self, record: logging.LogRecord) -> str:
        if self._inner is None:
            _configure_structlog()
            self._inner = _processor_formatter(self.redactor)
        return self._inner.format(record)


def _processor_formatter(redactor: _Redactor) -> logging.Formatter:
    import structlog

    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.StackInfoRenderer(),
            redactor,
            _ordered,
            structlog.processors.JSONRenderer(),
        ],
    )


def json_handler(path: Path, secrets: Iterable[str] = ()) -> logging.Handler:
    """A private (0600) rotating handler writing JSON lines to ``path``."""
    handler = _PrivateRotatingHandler(
        path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(_JSONFormatter(_Redactor(secrets)))
    return handler


def secrets_of(settings: Any) -> list[str]:
    """Every ``SecretStr`` value in a settings model (one level of sections), unwrapped."""
    found: list[str] = []
    for section_name in type(settings).model_fields:
        section = getattr(settings, section_name)
        for name in getattr(type(section), "model_fields", {}):
            value = getattr(section, name)
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
    return found


_structlog_configured = False


def _configure_structlog() -> None:
    global _structlog_configured
    if _structlog_configured:
        return
    _structlog_configured = True
    import structlog

    # structlog loggers go through the standard library, so one handler (the file) sees all.
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def setup_logging(path: Path | None = None, secrets: Iterable[str] = ()) -> Path | None:
    """Send warnings (and the engine's own info) to the log file; return its path.

    ``secrets`` (for example :func:`secrets_of` the settings) are masked in every line.
    Idempotent: a second call returns the first call's path. When the file
    cannot be written, logging is switched off with one line on stderr, and
    None is returned: a log is never a reason not to run.
    """
    global _configured
    root = logging.getLogger()
    if _configured is not None:
        for handler in root.handlers:
            if isinstance(handler.formatter, _JSONFormatter):
                handler.formatter.redactor.add(secrets)
        return _configured
    target = path if path is not None else log_path()
    try:
        # Only a folder cma creates gets 0700; an existing one is left as it is.
        for folder in reversed([target.parent, *target.parent.parents]):
            if not folder.exists():
                folder.mkdir(mode=0o700)
        handler = json_handler(target, secrets)
    except OSError as exc:
        print(
            f"cma: cannot write the log {target}: {exc.strerror or exc}; logging is off",
            file=sys.stderr,
        )
        # Without a handler, logging's last resort would print tracebacks on the terminal.
        root.addHandler(logging.NullHandler())
        return None
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("cma").setLevel(logging.INFO)
    if "structlog" in sys.modules:  # otherwise on the first record, see the module docstring
        _configure_structlog()
    _configured = target
    return target
