"""The log file: tracebacks and diagnostics go here, never onto the console or the status line.

``cma run`` calls :func:`setup_logging` once, for the console and the headless
run alike. The file is ``$XDG_STATE_HOME/cma/cma.log`` (``~/.local/state`` when
the variable is unset or not absolute, as the XDG spec says), created 0600 in
a 0700 folder, and rotated at :data:`MAX_BYTES` with :data:`BACKUPS` old files.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import cast

MAX_BYTES = 1_000_000
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

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


def setup_logging(path: Path | None = None) -> Path | None:
    """Send warnings (and the engine's own info) to the log file; return its path.

    Idempotent: a second call returns the first call's path. When the file
    cannot be written, logging is switched off with one line on stderr, and
    None is returned: a log is never a reason not to run.
    """
    global _configured
    root = logging.getLogger()
    if _configured is not None:
        return _configured
    target = path if path is not None else log_path()
    try:
        # Only a folder cma creates gets 0700; an existing one is left as it is.
        for folder in reversed([target.parent, *target.parent.parents]):
            if not folder.exists():
                folder.mkdir(mode=0o700)
        handler = _PrivateRotatingHandler(
            target, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8"
        )
    except OSError as exc:
        print(
            f"cma: cannot write the log {target}: {exc.strerror or exc}; logging is off",
            file=sys.stderr,
        )
        # Without a handler, logging's last resort would print tracebacks on the terminal.
        root.addHandler(logging.NullHandler())
        return None
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("cma").setLevel(logging.INFO)
    _configured = target
    return target
