"""API keys never leak from a live run: known fake keys (distinct strings) are stored
with ``cma keys set binance --stdin`` in the encrypted file, the local exchange checks
them, and cma runs against it: refused keys (-2015, -1022), a live headless run with
faults on its signed requests (500s, timeouts, a lost response), a paper run on the
exchange's public data; then every format of every session's report. The log file,
every run's stdout and stderr, the reports, the store's bytes and the keyring file
are searched, as is the process list while cma runs: no key, no secret, no request
signature (any 64-hex-digit string: an HMAC-SHA256), no ``signature=`` with a value.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_procs import FakeProcess, LiveHome, intents
from support import CMA, screen, tmux, tmux_session, wait_for

KEY = "LiveKeyQ7w9Zt2mXv4Nc8Rb1"
SECRET = "LiveSecretHj3Kp6Ls0Df5Gy9"
WRONG_KEY = "WrongKeyUe8Ti2Op4As6Dd0F"
WRONG_SECRET = "WrongSecretZx1Cv3Bn5Mm7L"
SECRETS = (KEY, SECRET, WRONG_KEY, WRONG_SECRET)
HEX64 = re.compile(rb"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")
SIGNED = re.compile(rb"signature=(?!\*\*\*)[^&\s\"']+")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProcess]:
    process = FakeProcess(KEY, SECRET)
    try:
        yield process
    finally:
        process.stop()


def leaks(name: str, data: bytes) -> list[str]:
    """What in ``data`` gives a key or a signature away (empty: nothing)."""
    found = [f"{name}: {s[:6]}..." for s in SECRETS if s.encode() in data]
    found += [f"{name}: a signature {m.group()[:12]!r}" for m in HEX64.finditer(data)]
    found += [f"{name}: {m.group()[:20]!r}" for m in SIGNED.finditer(data)]
    return found


def files(path: Path) -> list[tuple[str, bytes]]:
    """Every file under ``path`` (zip members unpacked)."""
    out: list[tuple[str, bytes]] = []
    for item in sorted(path.rglob("*")):
        if not item.is_file():
            continue
        out.append((str(item), item.read_bytes()))
        if item.suffix == ".zip":
            with zipfile.ZipFile(item) as z:
                out.extend((f"{item}:{n}", z.read(n)) for n in z.namelist())
    return out


def process_list() -> str:
    return subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout


def assert_no_leaks(found: list[tuple[str, bytes]]) -> None:
    problems = [p for name, data in found for p in leaks(name, data)]
    assert problems == []


def test_a_start_the_exchange_refuses_says_why_with_no_key_or_signature(
    tmp_path: Path, fake: FakeProcess
) -> None:
    """Keys refused (-2015 for the key, -1022 for the signature: exchanges that know
    other keys), and an account read failing with 503s until the retries give up (ccxt
    puts the signed URL in that message)."""
    home = LiveHome(tmp_path / "home", fake.url)
    home.set_keys(KEY, SECRET)
    store = tmp_path / "live.db"
    texts: list[tuple[str, str]] = []
    for key, secret, code in ((WRONG_KEY, SECRET, "-2015"), (KEY, WRONG_SECRET, "-1022")):
        other = FakeProcess(key, secret)
        try:
            done = home.cma(
                "run", "--headless", "--live", "--confirm-live", "--db", str(store),
                CMA_EXCHANGE__API_BASE=other.url,
            )  # fmt: skip
        finally:
            other.stop()
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith("cma: exchange binance:") and code in done.stderr
        texts += [(f"{code} stdout", done.stdout), (f"{code} stderr", done.stderr)]
    fake.post("/_fake/fault", {"kind": "503", "path": "/api/v3/account", "count": 5})
    done = home.cma("run", "--headless", "--live", "--confirm-live", "--db", str(store))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "503" in done.stderr and "/api/v3/account" in done.stderr, done.stderr
    texts += [("503 stdout", done.stdout), ("503 stderr", done.stderr)]
    found = [(name, text.encode()) for name, text in texts] + files(tmp_path)
    assert_no_leaks(found)


def test_no_key_or_signature_reaches_the_logs_reports_store_or_process_list(
    tmp_path: Path, fake: FakeProcess
) -> None:
    home = LiveHome(tmp_path / "home", fake.url)
    home.set_keys(KEY, SECRET)
    store = tmp_path / "live.db"
    texts: list[tuple[str, str]] = []

    # A live run with faults on its signed requests: the order's POST meets a 500, its
    # lookup a timeout (then a lookup that is fine), the resend loses its answer.
    fake.post("/_fake/fault", {"kind": "500", "path": "/api/v3/order"})
    fake.post("/_fake/fault", {"kind": "timeout", "path": "/api/v3/order", "seconds": 2.5})
    fake.post("/_fake/fault", {"kind": "lost_response", "path": "/api/v3/order", "count": 2})
    out = tmp_path / "live.out"
    proc = home.start(store, "--duration", "5s", out=out)
    try:
        wait_for("the live start", lambda: "cma headless:" in out.read_text(), 15, every=0.01)
        home.vote_file.touch()
        wait_for("an intent", lambda: intents(store), 15, every=0.01)
        home.vote_file.unlink()
        for _ in range(5):
            listing = process_list()
            assert any("--confirm-live" in line for line in listing.splitlines()), "cma runs"
            assert not [s for s in SECRETS if s in listing], "a key in the process list"
            time.sleep(0.2)
    finally:
        assert proc.wait(timeout=30) == 0, out.read_text()
    texts.append(("live run", out.read_text()))
    log = home.log_file.read_text()
    assert "500 Internal Server Error" in log, log
    assert log.count("looking it up") == 2, log  # the 500, and the lost answer
    assert intents(store) == {c: "filled" for c in intents(store)}

    # A paper run on the exchange's public data: no keys loaded at all.
    paper = home.cma(
        "run", "--headless", "--duration", "1s", "--db", str(tmp_path / "paper.db"),
        CMA_BROKER__KIND="paper",
    )  # fmt: skip
    assert paper.returncode == 0, paper.stderr
    texts += [("paper stdout", paper.stdout), ("paper stderr", paper.stderr)]

    # Every format of each session's report.
    reports = tmp_path / "reports"
    for db in (store, tmp_path / "paper.db"):
        for fmt in ("md", "html", "csv", "json"):
            target = reports / f"{db.stem}.{fmt}"
            done = home.cma(
                "report", "1", "--db", str(db), "--format", fmt, "--output", str(target)
            )
            assert done.returncode == 0, done.stderr
            texts.append((f"report {target.name}", done.stdout + done.stderr))

    found = [(name, text.encode()) for name, text in texts] + files(tmp_path)
    assert any(name.endswith("cma.log") for name, _ in found), "the log was written"
    assert any(name.endswith("keyring.cfg") for name, _ in found), "the keyring was searched"
    assert len([n for n, _ in found if "/reports/" in n]) >= 8
    assert_no_leaks(found)
    # The search can fail: it finds a key, a signature, a signed query.
    assert len(leaks("probe", f"{KEY} signature=abc {'ab' * 32}".encode())) == 3


@pytest.fixture
def own_fake() -> Iterator[FakeProcess]:
    """An exchange of its own: an account the other tests traded on would be a difference
    the console's recovery screen shows first (trading paused until a keypress)."""
    process = FakeProcess(KEY, SECRET)
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.slow
def test_the_live_console_screen_shows_no_key_or_signature(
    tmp_path: Path, own_fake: FakeProcess
) -> None:
    """``cma run --live`` in tmux at 100x30: the typed confirmation, the console with an
    order whose POST fails (500) and is sent again; every captured screen is searched."""
    fake = own_fake
    home = LiveHome(tmp_path / "home", fake.url)
    home.set_keys(KEY, SECRET)
    store = tmp_path / "console.db"
    exit_file = tmp_path / "exit"
    # The environment through a script, never on a command line (ps would show it).
    script = tmp_path / "run.sh"
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in home.env(TERM="xterm").items())
    script.write_text(f"{exports}{CMA} run --live --db {store}; echo CMA-EXIT=$? > {exit_file}\n")
    screens: list[str] = []
    with tmux_session(f"sh {script}", 100, 30, prefix="cma-live") as name:

        def shows(text: str) -> bool:
            screens.append(screen(name))
            return text in screens[-1]

        wait_for("the confirmation prompt", lambda: shows("binance"))
        tmux("send-keys", "-t", name, "binance", "Enter")
        wait_for("the live console", lambda: shows("LIVE"))
        fake.post("/_fake/fault", {"kind": "500", "path": "/api/v3/order"})
        home.vote_file.touch()
        wait_for("an intent", lambda: intents(store))
        home.vote_file.unlink()
        wait_for("the order", lambda: shows("LIVE") and fake.status()["ordersReceived"] >= 1)
        tmux("send-keys", "-t", name, "q")
        wait_for("the quit dialog", lambda: shows("Leave positions open"))
        tmux("send-keys", "-t", name, "l")
        wait_for("cma to exit", exit_file.exists)
    assert exit_file.read_text().strip() == "CMA-EXIT=0"
    assert len(screens) >= 4
    assert_no_leaks([(f"screen {i}", s.encode()) for i, s in enumerate(screens)])
    assert_no_leaks([*files(tmp_path / "home"), ("store", store.read_bytes())])
