"""First frame of the console against a bare Textual app with the same layout, and ccxt.

Run: ``.venv/bin/python benchmarks/tui_startup.py [--rounds N]``

1. First frame. Each run starts a fresh process under a pseudo-terminal of
   120×40 (``TERM=xterm-256color``) and reads what it writes to the terminal
   into a small screen model (cursor moves, text; colours ignored). The clock
   starts just before the fork, so the interpreter's start and every import
   count. The first *full* frame is the moment the screen shows all five pane
   titles (Proposals, Positions, Activity, Risk, Equity), ``PAPER`` on the top
   line and the key bindings (``Approve``) on the bottom line: the footer is
   filled in after the first paint, so a screen without it is not full yet.
   - ``cma``: ``python -m tui`` (the real command, no arguments) with
     ``XDG_DATA_HOME`` and ``XDG_CONFIG_HOME`` in a fresh temporary directory,
     so it opens a new store on the demo market.
   - bare: ``benchmarks/support/bare_console.py``, a Textual app importing only
     ``textual`` that composes the same containers and panes, empty.
   Both run from compiled bytecode, kept in a temporary ``PYTHONPYCACHEPREFIX``
   and filled by one unmeasured warm-up run of each: the steady state of every
   start after the first (see ``base_env``).
   Runs alternate (cma, bare, cma, ...), ``--rounds`` of each; it reports the
   medians and their ratio (target ≤ 1.5×). For ``cma`` it also reports when
   the engine shows as ``running`` (the store is open and the feed started).
2. ccxt. (a) One more run of the real command with ``-X importtime`` (stderr
   to a file): which ccxt modules, if any, were imported by the time the engine
   was running a second; (b) a subprocess that imports ``tui.app``, builds the
   engine on the sim feed, runs it a second and prints whether ``ccxt`` is in
   ``sys.modules``. Target: not imported.

It prints figures; it is not a test and exits 0 unless something crashes.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import fcntl
import json
import os
import platform
import pty
import re
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BARE = ROOT / "benchmarks" / "support" / "bare_console.py"
COLS, ROWS = 120, 40
TARGET = 1.5
TIMEOUT = 30.0
TITLES = ("Proposals", "Positions", "Activity", "Risk", "Equity")

# Escape sequences: CSI (with its final byte), OSC (to BEL or ST), and short ESC forms.
_TOKEN = re.compile(
    r"\x1b\[([0-9;?<>=$!]*)[ -/]*([@-~])"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[()#][0-9A-Za-z]"
    r"|\x1b[^\[\]()#]"
    r"|[\x00-\x1f]"
    r"|[^\x00-\x1f\x1b]+"
)


class Terminal:
    """Just enough of a terminal to read a Textual screen: cursor moves, text, erase."""

    def __init__(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        self.grid = [[" "] * cols for _ in range(rows)]
        self.x = self.y = 0
        self._pending = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes) -> None:
        text = self._pending + self._decoder.decode(data)
        self._pending = ""
        # An escape sequence cut by the read boundary waits for the next read.
        cut = text.rfind("\x1b")
        if cut != -1 and len(text) - cut < 256:
            m = _TOKEN.match(text, cut)
            if m is None or m.end() - cut == 1:
                text, self._pending = text[:cut], text[cut:]
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:  # a lone ESC at the end of a long sequence: skip it
                pos += 1
                continue
            pos = m.end()
            token = m.group(0)
            if token.startswith("\x1b["):
                self._csi(m.group(1) or "", m.group(2))
            elif token[0] == "\x1b":
                continue
            elif token == "\r":
                self.x = 0
            elif token == "\n":
                self.y = min(self.y + 1, self.rows - 1)
            elif token == "\x08":
                self.x = max(0, self.x - 1)
            elif token[0] >= " ":
                self._text(token)

    def _csi(self, params: str, final: str) -> None:
        if params.startswith(("?", "<", ">", "=")):
            return
        nums = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else []
        if final in "Hf":
            row = nums[0] if nums and nums[0] else 1
            col = nums[1] if len(nums) > 1 and nums[1] else 1
            self.y, self.x = min(row, self.rows) - 1, min(col, self.cols) - 1
        elif final == "K":
            mode = nums[0] if nums else 0
            line = self.grid[self.y]
            start, end = (self.x, self.cols) if mode == 0 else (0, self.cols)
            if mode == 1:
                start, end = 0, self.x + 1
            for i in range(start, end):
                line[i] = " "
        elif final == "J" and nums and nums[0] in (2, 3):
            self.grid = [[" "] * self.cols for _ in range(self.rows)]
        elif final in "ABCD":
            n = nums[0] if nums and nums[0] else 1
            if final == "A":
                self.y = max(0, self.y - n)
            elif final == "B":
                self.y = min(self.rows - 1, self.y + n)
            elif final == "C":
                self.x = min(self.cols - 1, self.x + n)
            else:
                self.x = max(0, self.x - n)

    def _text(self, text: str) -> None:
        line = self.grid[self.y]
        for ch in text:
            wide = unicodedata.east_asian_width(ch) in "WF"
            if self.x < self.cols:
                line[self.x] = ch
                if wide and self.x + 1 < self.cols:
                    line[self.x + 1] = ""
            self.x += 2 if wide else 1

    def lines(self) -> list[str]:
        return ["".join(row) for row in self.grid]


def full_frame(lines: list[str]) -> bool:
    """Whether the screen shows the whole layout: titles, status line and footer keys."""
    screen = "\n".join(lines)
    return (
        all(title in screen for title in TITLES) and "PAPER" in lines[0] and "Approve" in lines[-1]
    )


def engine_running(lines: list[str]) -> bool:
    return "running" in lines[0]


@dataclass
class Run:
    full: float | None = None
    live: float | None = None
    first_output: float | None = None
    screen: list[str] = field(default_factory=list)


def run_in_pty(
    argv: list[str],
    env: dict[str, str],
    *,
    want_live: bool,
    raw: list[bytes] | None = None,
    duration: float | None = None,
) -> Run:
    """Start ``argv`` in a 120×40 pty; time the first full frame (and engine running).

    With ``duration``, it runs that long whatever it shows; ``raw`` collects every byte.
    """
    result = Run()
    term = Terminal(COLS, ROWS)
    t0 = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: size the terminal before anything runs, then exec
        try:
            fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
            os.chdir(ROOT)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    deadline = t0 + (TIMEOUT if duration is None else duration)
    try:
        while True:
            now = time.perf_counter()
            if now > deadline:
                break
            ready, _, _ = select.select([fd], [], [], 0.01)
            if not ready:
                continue
            try:
                data = os.read(fd, 1 << 16)
            except OSError:
                break
            if not data:
                break
            t = time.perf_counter() - t0
            if result.first_output is None:
                result.first_output = t
            if raw is not None:
                raw.append(data)
            term.feed(data)
            lines = term.lines()
            if result.full is None and full_frame(lines):
                result.full = t
            if want_live and result.live is None and engine_running(lines):
                result.live = t
            live_done = not want_live or result.live is not None
            if duration is None and result.full is not None and live_done:
                break
        result.screen = term.lines()
    finally:
        stop(pid, fd)
    return result


def stop(pid: int, fd: int) -> None:
    """SIGTERM (the console shuts down as on a hang-up), drain the pty, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.perf_counter() + 10
    exited = False
    while time.perf_counter() < deadline:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited:
            exited = True
            break
        ready, _, _ = select.select([fd], [], [], 0.02)
        if ready:
            with contextlib.suppress(OSError):
                os.read(fd, 1 << 16)
    if not exited:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(fd)


#: Where every measured process keeps its compiled bytecode (see :func:`base_env`).
PYCACHE = Path(tempfile.mkdtemp(prefix="cma-bench-pycache-"))


def base_env(home: Path) -> dict[str, str]:
    """A clean environment for one run, with bytecode cached under :data:`PYCACHE`.

    Both sides run from compiled bytecode, as on any start after the first: with
    ``PYTHONDONTWRITEBYTECODE`` (set on some machines) the project's modules, which
    an editable install does not precompile, would be compiled from source on every
    run while Textual's came precompiled by pip. ``PYTHONPYCACHEPREFIX`` keeps the
    bytecode of both sides in one temporary folder (nothing is written into the
    project), and an unmeasured warm-up run of each side fills it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEXTUAL", "CMA_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        TERM="xterm-256color",
        COLORTERM="",
        XDG_DATA_HOME=str(home / "data"),
        XDG_CONFIG_HOME=str(home / "config"),
        PYTHONPYCACHEPREFIX=str(PYCACHE),
    )
    env.pop("NO_COLOR", None)
    return env


def cma_argv() -> list[str]:
    return [sys.executable, "-m", "tui"]


def bare_argv() -> list[str]:
    return [sys.executable, str(BARE)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.0f} ms"


def first_frame(rounds: int) -> None:
    print(f"== 1. First frame at {COLS}×{ROWS} (fresh process, from fork to full frame) ==")
    times: dict[str, list[float]] = {"cma": [], "bare": []}
    first_bytes: dict[str, list[float]] = {"cma": [], "bare": []}
    live: list[float] = []
    last_screen: dict[str, list[str]] = {}
    for name, argv in (("cma", cma_argv()), ("bare", bare_argv())):
        with tempfile.TemporaryDirectory(prefix="cma-bench-") as tmp:
            run_in_pty(argv, base_env(Path(tmp)), want_live=name == "cma")  # warm-up
    for i in range(rounds):
        for name, argv in (("cma", cma_argv()), ("bare", bare_argv())):
            with tempfile.TemporaryDirectory(prefix="cma-bench-") as tmp:
                run = run_in_pty(argv, base_env(Path(tmp)), want_live=name == "cma")
            if run.full is None:
                print(f"  round {i + 1} {name}: no full frame within {TIMEOUT:.0f} s; screen:")
                print("\n".join("    |" + line for line in run.screen))
                raise SystemExit(1)
            times[name].append(run.full)
            first_bytes[name].append(run.first_output or 0.0)
            if run.live is not None:
                live.append(run.live)
            last_screen[name] = run.screen
            extra = f", engine running at {ms(run.live).strip()}" if run.live is not None else ""
            first = ms(run.first_output or 0).strip()
            print(
                f"  round {i + 1} {name:4}: full frame {ms(run.full)} (first output {first}{extra})"
            )
    cma, bare = statistics.median(times["cma"]), statistics.median(times["bare"])
    ratio = cma / bare
    print(f"  median cma  : {ms(cma)}   (min {ms(min(times['cma'])).strip()})")
    print(f"  median bare : {ms(bare)}   (min {ms(min(times['bare'])).strip()})")
    if live:
        print(f"  median cma engine running: {ms(statistics.median(live))}")
    # Where the time goes: the first byte comes once the interpreter, the imports and the
    # app's constructor are done and the driver starts; the rest is compose, CSS, mount,
    # the first paints (and for cma the store opening and the engine starting).
    for name in ("cma", "bare"):
        before = statistics.median(first_bytes[name])
        after = statistics.median(
            f - b for f, b in zip(times[name], first_bytes[name], strict=True)
        )
        print(
            f"  {name:4}: to the first byte {ms(before).strip()}, "
            f"first byte to full frame {ms(after).strip()}"
        )
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(f"  ratio cma / bare = {ratio:.2f}×  (target ≤ {TARGET}×)  {verdict}")
    print("  cma's first full frame, as read from the pty (top and bottom lines):")
    screen = last_screen["cma"]
    for line in (screen[0], screen[1], screen[-1]):
        print("    |" + line.rstrip())


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)([\w.]+)")
_TOKEN_ESC = re.compile(r"\x1b\[[0-9;?<>=$!]*[ -/]*[@-~]")
IMPORTTIME_RUN = 4.0

_ENGINE_PROBE = """
import asyncio, json, sys, tempfile, pathlib
import tui.app
from engine.config import Settings
from engine.runtime import Engine, make_feed
from persistence.store import Store

async def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="cma-bench-"))
    settings = Settings(store={"path": tmp / "cma.db"}, feed={"kind": "sim", "speed": 100})
    store = await Store.open(settings.store.resolved_path(), settings.store.busy_timeout_ms)
    engine = Engine(settings, store, make_feed(settings))
    await engine.start()
    await asyncio.sleep(1.0)
    candles = engine.candles_seen
    await engine.stop()
    await store.close()
    return candles

candles = asyncio.run(main())
ccxt = sorted(m for m in sys.modules if m == "ccxt" or m.startswith("ccxt."))
print(json.dumps({"candles": candles, "ccxt": ccxt, "modules": len(sys.modules)}))
"""


def ccxt_check() -> None:
    print()
    print("== 2. Is ccxt imported on the demo market? ==")
    # Textual draws on stderr, where -X importtime writes too: the log is read from the
    # pty's byte stream, and the screen is not modelled in this run.
    raw: list[bytes] = []
    with tempfile.TemporaryDirectory(prefix="cma-bench-") as tmp:
        env = base_env(Path(tmp))
        env["PYTHONPROFILEIMPORTTIME"] = "1"
        run_in_pty(cma_argv(), env, want_live=False, raw=raw, duration=IMPORTTIME_RUN)
    stream = b"".join(raw).decode("utf-8", "replace")
    rows = list(_IMPORTTIME.finditer(stream))
    ccxt_rows = [m.group(4) for m in rows if m.group(4).split(".")[0] == "ccxt"]
    running = "yes" if "running" in _TOKEN_ESC.sub("", stream) else "NO"
    print(
        f"  (a) `python -X importtime -m tui` for {IMPORTTIME_RUN:.0f} s, engine shown running: "
        f"{running}; "
        f"{len(rows)} modules imported, ccxt modules among them: {len(ccxt_rows)}"
        + (f" ({', '.join(ccxt_rows[:5])}...)" if ccxt_rows else "")
    )
    top = [m for m in rows if len(m.group(3)) <= 1]  # top-level imports (the log indents)
    top.sort(key=lambda m: -int(m.group(2)))
    print("      heaviest top-level imports (cumulative):")
    for m in top[:8]:
        print(f"        {int(m.group(2)) / 1000:7.1f} ms  {m.group(4)}")
    out = subprocess.run(
        [sys.executable, "-c", _ENGINE_PROBE],
        cwd=ROOT,
        env=base_env(Path(tempfile.gettempdir())),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"  (b) import tui.app + Engine on the sim feed, run 1 s ({probe['candles']} candles): "
        f"'ccxt' in sys.modules: {bool(probe['ccxt'])}"
    )
    ok = not ccxt_rows and not probe["ccxt"]
    verdict = "PASS" if ok else "FAIL"
    print(f"  ccxt imported: {'no' if ok else 'YES'}  (target: not imported)  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs of each side (default 5)")
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {sys.executable}"
    )
    try:
        first_frame(args.rounds)
        ccxt_check()
    finally:
        shutil.rmtree(PYCACHE, ignore_errors=True)


if __name__ == "__main__":
    main()
