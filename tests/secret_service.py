"""A real Secret Service for tests: gnome-keyring on a private D-Bus session bus.

``dbus-run-session`` starts a session bus of its own and runs a shell on it; the shell
starts ``gnome-keyring-daemon`` (its login collection unlocked with a password on
stdin, or only started, so an existing one stays locked), prints the bus's address and
waits on its stdin. Closing that stdin ends the shell, so the bus, and gnome-keyring with
it. The keyring's files live in the ``home`` given. Missing programs fail the test (the
Makefile's system-deps installs them): a machine without them must not pass.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import home_dirs as session_env

PASSWORD = "login-password"  # gnome-keyring's login collection, not a cma secret

# The daemon runs in the foreground as the shell's child, so the shell ends it: a
# daemonized one can outlive its bus.
#: Waits (in sh) until the daemon whose pid is $daemon owns the Secret Service's name.
WAIT_FOR_DAEMON = """
until dbus-send --session --dest=org.freedesktop.DBus --type=method_call --print-reply \
  /org/freedesktop/DBus org.freedesktop.DBus.GetNameOwner string:org.freedesktop.secrets \
  >/dev/null 2>&1; do
  kill -0 $daemon 2>/dev/null || exit 1
  sleep 0.05
done
"""
SCRIPT = """
if [ "$1" = unlock ]; then
  printf %s "$2" | gnome-keyring-daemon --foreground --unlock --components=secrets >/dev/null &
else
  gnome-keyring-daemon --foreground --start --components=secrets >/dev/null </dev/null &
fi
daemon=$!
"""
SCRIPT += WAIT_FOR_DAEMON
SCRIPT += """
echo "$DBUS_SESSION_BUS_ADDRESS"
cat >/dev/null
kill $daemon
wait $daemon
"""


def require_programs() -> None:
    missing = [
        p for p in ("dbus-run-session", "dbus-send", "gnome-keyring-daemon") if not shutil.which(p)
    ]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not installed: make system-deps installs them "
            "(Debian: gnome-keyring, dbus)",
            pytrace=False,
        )


@contextmanager
def secret_service(home: Path, *, unlock: bool = True) -> Iterator[str]:
    """A running gnome-keyring on a bus of its own; yields the bus's address."""
    require_programs()
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", **session_env(home)}
    mode = "unlock" if unlock else "start"
    proc = subprocess.Popen(
        ["dbus-run-session", "--", "sh", "-c", SCRIPT, "sh", mode, PASSWORD],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env=env, text=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        address = proc.stdout.readline().strip()
        if not address.startswith(("unix:", "tcp:")):
            pytest.fail(f"dbus-run-session gave no bus address (exit {proc.poll()})")
        yield address
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
