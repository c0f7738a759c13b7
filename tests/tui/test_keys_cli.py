"""``cma keys set|delete|status`` run for real: the ``cma`` executable in a subprocess,
against the encrypted file in a temporary home, and against gnome-keyring's Secret
Service under ``dbus-run-session``, as the README has a person run it."""

from __future__ import annotations

import hashlib
import io
import os
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from secret_service import WAIT_FOR_DAEMON, require_programs
from support import home_env

from tui import cli

KEY = "kEy-5d41402abc4b2a76b9719d911017c592"
SECRET = "sEcret-7d793037a0760186574b0282f2f435e7"
PASS = "pP-3c59dc048e8850243be8079a5c74d079"
CMA = str(Path(sys.executable).parent / "cma")


def keys_env(home: Path, **more: str) -> dict[str, str]:
    return home_env(home, **{"CMA_KEYRING_PASSPHRASE": PASS, **more})


def cma_keys(
    env: dict[str, str], *args: str, stdin: str = ""
) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """Run ``cma keys ARGS``; the argv it ran with, and what it did."""
    argv = [CMA, "keys", *args]
    done = subprocess.run(
        argv, input=stdin, env=env, capture_output=True, text=True, timeout=60
    )  # fmt: skip
    return argv, done


def assert_no_key_material(*texts: str) -> None:
    for text in texts:
        for secret in (KEY, SECRET, PASS):
            # Not even a prefix: 6 characters of either key would be a leak.
            assert secret[:6] not in text and secret[-6:] not in text, text


def test_set_status_delete_through_the_encrypted_file(tmp_path: Path) -> None:
    env = keys_env(tmp_path)
    argv, done = cma_keys(env, "set", "binance", "--stdin", stdin=f"{KEY}\n{SECRET}\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "stored the API key and secret for binance in encrypted file ~/data/cma/keyring.cfg\n"
    )
    # The keys went in on stdin, never as arguments: the process list never had them.
    assert_no_key_material(" ".join(argv), done.stdout, done.stderr)
    path = tmp_path / "data" / "cma" / "keyring.cfg"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert KEY[:6].encode() not in raw and SECRET[:6].encode() not in raw

    for args in (("status",), ("status", "binance")):
        _, done = cma_keys(env, *args)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "keyring: encrypted file ~/data/cma/keyring.cfg",
            "  (not the Secret Service: no D-Bus session bus: DBUS_SESSION_BUS_ADDRESS is not set)",
            "binance: set",
        ]
        assert_no_key_material(done.stdout, done.stderr)

    _, done = cma_keys(env, "delete", "binance")
    assert (done.returncode, done.stdout) == (
        0,
        "deleted the keys for binance from encrypted file ~/data/cma/keyring.cfg\n",
    )
    _, done = cma_keys(env, "delete", "binance")
    assert done.returncode == 1
    assert done.stderr == "cma: no keys for binance in encrypted file ~/data/cma/keyring.cfg\n"
    _, done = cma_keys(env, "status")
    assert done.stdout.splitlines()[-1] == "no exchange has keys (cma keys set EXCHANGE)"


def test_a_wrong_passphrase_exits_2_with_one_clear_line(tmp_path: Path) -> None:
    env = keys_env(tmp_path)
    _, done = cma_keys(env, "set", "kraken", "--stdin", "--password", stdin=f"{KEY}\n{SECRET}\nP\n")
    assert done.returncode == 0, done.stderr
    assert "API key, secret and passphrase for kraken" in done.stdout
    wrong = keys_env(tmp_path, CMA_KEYRING_PASSPHRASE="not the passphrase")
    _, done = cma_keys(wrong, "delete", "kraken")
    assert done.returncode == 2
    assert done.stderr == (
        f"cma: wrong passphrase for the keyring {tmp_path}/data/cma/keyring.cfg\n"
    )
    _, done = cma_keys(env, "status", "kraken")
    assert done.stdout.endswith("kraken: set\n")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (
            ("set", "binanse", "--stdin"),
            "k\ns\n",
            "cma: EXCHANGE: ccxt knows no exchange 'binanse'",
        ),
        (("set", "Binance", "--stdin"), "k\ns\n", "cma: EXCHANGE: exchange id must be a ccxt id"),
        (("delete", "a:b"), "", "cma: EXCHANGE: exchange id must be a ccxt id"),
        (("set", "binance", "--stdin"), "\ns\n", "cma: the API key is empty: nothing was stored"),
        (("set", "binance", "--stdin"), "k\n \n", "cma: the API secret is empty"),
        (("set", "binance", "--stdin"), "k\n", "cma: --stdin: the API secret is missing"),
        (("set", "okx", "--stdin", "--password"), "k\ns\n", "cma: --stdin: the passphrase is"),
        (("set", "binance", "--stdin"), "k\ns\nx\n", "cma: --stdin: more lines than the 2"),
        (("set", "binance"), "", "cma: no terminal to ask for the keys on: pipe them in with"),
    ],
)
def test_bad_input_exits_2_naming_it(
    tmp_path: Path,
    args: tuple[str, ...],
    stdin: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In this process (ccxt imported once, not per case), through tui.cli.main."""
    for name, value in keys_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["keys", *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith(message), err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "data" / "cma" / "keyring.cfg").exists()


def test_without_a_passphrase_it_says_how_to_give_one(tmp_path: Path) -> None:
    env = keys_env(tmp_path)
    del env["CMA_KEYRING_PASSPHRASE"]
    _, done = cma_keys(env, "set", "binance", "--stdin", stdin=f"{KEY}\n{SECRET}\n")
    assert done.returncode == 2
    assert "needs its passphrase: set CMA_KEYRING_PASSPHRASE" in done.stderr
    env["PYTHON_KEYRING_BACKEND"] = "keyrings.alt.file.PlaintextKeyring"
    _, done = cma_keys(env, "status")  # names only: no passphrase needed
    assert "PYTHON_KEYRING_BACKEND is ignored: cma chooses its keyring itself" in done.stdout
    assert done.stdout.startswith("keyring: encrypted file ~/data/cma/keyring.cfg\n")
    assert done.returncode == 0 and done.stdout.endswith(
        "no exchange has keys (cma keys set EXCHANGE)\n"
    )


def test_a_keyring_file_others_can_read_is_refused(tmp_path: Path) -> None:
    env = keys_env(tmp_path)
    path = tmp_path / "data" / "cma" / "keyring.cfg"
    path.parent.mkdir(parents=True)
    path.write_text("")
    path.chmod(0o644)
    _, done = cma_keys(env, "status")
    assert done.returncode == 2
    assert done.stderr == (
        f"cma: the keyring {path} is open to other users (mode 0644); if nobody else "
        f"could have read it, run: chmod 600 {path}\n"
    )


def test_set_on_a_terminal_asks_without_echo(tmp_path: Path) -> None:
    """A pseudo-terminal as the controlling terminal: getpass asks there, echo off."""
    import pty

    env = keys_env(tmp_path)
    del env["CMA_KEYRING_PASSPHRASE"]
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [CMA, "keys", "set", "binance"], env=env, stdin=follower, stdout=follower,
        stderr=follower, start_new_session=True, preexec_fn=lambda: os.login_tty(follower),
    )  # fmt: skip
    os.close(follower)
    seen = b""
    answers = [
        (b"New passphrase for the keyring", PASS),
        (b"The same passphrase again", PASS),
        (b"API key for binance", KEY),
        (b"API secret for binance", SECRET),
    ]
    deadline = time.monotonic() + 30
    try:
        for prompt, answer in answers:
            while prompt not in seen:
                assert time.monotonic() < deadline, seen
                seen += os.read(leader, 1024)
            os.write(leader, answer.encode() + b"\n")
        while proc.poll() is None or b"stored the" not in seen:
            assert time.monotonic() < deadline, seen
            try:
                seen += os.read(leader, 1024)
            except OSError:  # the terminal closed with the process
                break
    finally:
        proc.wait(timeout=30)
        os.close(leader)
    assert proc.returncode == 0, seen
    assert b"stored the API key and secret for binance" in seen
    assert_no_key_material(seen.decode(errors="replace"))  # no echo
    _, done = cma_keys(keys_env(tmp_path), "status", "binance")
    assert done.stdout.endswith("binance: set\n")


def test_set_and_status_through_gnome_keyring_under_dbus_run_session(tmp_path: Path) -> None:
    """The brief's own command line: a session bus, gnome-keyring unlocked on it, cma."""
    require_programs()
    env = keys_env(tmp_path)
    del env["CMA_KEYRING_PASSPHRASE"]
    env["PATH"] = f"{Path(CMA).parent}{os.pathsep}{env.get('PATH', '')}"
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    script = (
        "printf %s login-password | gnome-keyring-daemon --foreground --unlock "
        "--components=secrets >/dev/null & daemon=$!\n"
        f"{WAIT_FOR_DAEMON}\n"
        # The keys on stdin (printf is a shell builtin: no process shows them).
        f"printf '%s\\n%s\\n' {shlex.quote(KEY)} {shlex.quote(SECRET)} "
        "| cma keys set binance --stdin\n"
        "cma keys status; cma keys status binance\n"
        "python -c 'import hashlib; from engine.exchange.keys import *; "
        'k = load_keys("binance", choose_backend()).api_key.get_secret_value(); '
        'print("round trip", hashlib.sha256(k.encode()).hexdigest())\'\n'
        "cma keys delete binance; cma keys status binance\n"
        "kill $daemon; wait $daemon\n"
    )
    argv = ["dbus-run-session", "--", "sh", "-c", script]
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "stored the API key and secret for binance in Secret Service (gnome-keyring)",
        "keyring: Secret Service (gnome-keyring)",
        "binance: set",
        "keyring: Secret Service (gnome-keyring)",
        "binance: set",
        f"round trip {digest}",
        "deleted the keys for binance from Secret Service (gnome-keyring)",
        "keyring: Secret Service (gnome-keyring)",
        "binance: not set",
    ], done.stderr
    assert not (tmp_path / "data" / "cma" / "keyring.cfg").exists()
