"""A headless Chromium for tests that look at HTML pages, over the DevTools protocol.

    async with Browser() as browser:
        page = await browser.open(tmp_path / "report.html", color_scheme="dark")
        assert page.problems() == []
        image = decode_png(await page.screenshot())
        for box in await page.boxes("svg"):
            assert box.width > 0 and box.height > 0
            assert drawn_pixels(image, box) > 0

Debian's ``chromium`` (``make system-deps``) is started with a fresh profile in a
temporary folder and a DevTools port it picks itself; every page is a new tab
reached through its websocket (aiohttp). Pages are offline: any request that is
not ``file:`` or ``data:`` is recorded as a problem, and the network is switched
off so none gets through. The browser and its profile go when the ``async with``
ends, also when the test failed.

No skip without chromium: ``Browser()`` raises :class:`ChromiumMissing`, so a
missing install step fails the tests.

For the docs, ``python tests/browser.py PAGE.html SHOT.png [--color-scheme dark]``
saves a screenshot taken the same way (see ``main``).

The PNG decoder is the standard library's zlib and struct; it is enough
for the screenshots Chromium takes (8-bit RGB or RGBA, not interlaced).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import struct
import sys
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import aiohttp
import numpy as np

ColorScheme = Literal["light", "dark"]

# Long enough for a loaded CI machine; the waits end as soon as the browser answers.
TIMEOUT = 30.0
LOCAL_SCHEMES = ("file:", "data:")


class ChromiumMissing(RuntimeError):
    """There is no ``chromium`` to start."""


class BrowserError(RuntimeError):
    """The browser did not start, or a DevTools command failed."""


@dataclass(frozen=True)
class ConsoleMessage:
    """An error or warning the page printed, or an exception it did not catch."""

    level: str  # "error", "warning" or "exception"
    text: str
    source: str  # "console", "javascript", "network", ... (where Chromium saw it)

    def __str__(self) -> str:
        return f"{self.level} ({self.source}): {self.text}"


@dataclass(frozen=True)
class FailedRequest:
    """A request the page made that failed, or that left the machine's files."""

    url: str
    error: str

    def __str__(self) -> str:
        return f"request {self.url}: {self.error}"


@dataclass(frozen=True)
class Box:
    """A rectangle in CSS pixels from the top left of the page (= screenshot pixels)."""

    x: float
    y: float
    width: float
    height: float


class _Connection:
    """One DevTools websocket: commands with ids, and events handed to listeners."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._awaited: set[asyncio.Future[dict[str, Any]]] = set()  # from next_event
        self._listeners: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self._reader = asyncio.create_task(self._read())

    def on(self, method: str, listener: Callable[[dict[str, Any]], None]) -> None:
        self._listeners.setdefault(method, []).append(listener)

    def next_event(self, method: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the next ``method`` event; ask before the command that causes it."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def resolve(params: dict[str, Any]) -> None:
            if not future.done():
                future.set_result(params)
            self._listeners[method].remove(resolve)
            self._awaited.discard(future)

        self.on(method, resolve)
        self._awaited.add(future)
        return future

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        if self._reader.done():
            raise BrowserError(f"{method}: the DevTools connection is closed")
        id_ = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[id_] = future
        await self._socket.send_str(json.dumps({"id": id_, "method": method, "params": params}))
        try:
            async with asyncio.timeout(TIMEOUT):
                return await future
        finally:
            self._pending.pop(id_, None)

    async def _read(self) -> None:
        try:
            async for message in self._socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(message.data)
                if "id" in data:
                    future = self._pending.get(data["id"])
                    if future is None or future.done():
                        continue
                    if "error" in data:
                        error = data["error"]
                        future.set_exception(BrowserError(f"{error.get('message')} ({error})"))
                    else:
                        future.set_result(data.get("result", {}))
                else:
                    for listener in list(self._listeners.get(data.get("method", ""), [])):
                        listener(data.get("params", {}))
        finally:  # nothing waits for an answer that cannot come
            for future in [*self._pending.values(), *self._awaited]:
                if not future.done():
                    future.set_exception(BrowserError("the DevTools connection closed"))

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # the cancel just asked for
            await self._reader
        await self._socket.close()


class Page:
    """One tab with one page loaded; what it printed and requested is recorded as it comes.

    ``messages`` and ``failed_requests`` keep filling while the page lives (until
    the browser closes); ``problems()`` is both, as lines to assert on.
    """

    def __init__(self, connection: _Connection, url: str, color_scheme: ColorScheme) -> None:
        self._cdp = connection
        self.url = url
        self.color_scheme = color_scheme
        self.messages: list[ConsoleMessage] = []
        self._failed: dict[str, FailedRequest] = {}
        self._requested: dict[str, str] = {}  # request id -> url
        connection.on("Runtime.consoleAPICalled", self._console_called)
        connection.on("Runtime.exceptionThrown", self._exception_thrown)
        connection.on("Log.entryAdded", self._log_entry)
        connection.on("Network.requestWillBeSent", self._request_sent)
        connection.on("Network.loadingFailed", self._loading_failed)

    @property
    def failed_requests(self) -> list[FailedRequest]:
        return list(self._failed.values())

    def problems(self) -> list[str]:
        """Every console error or warning, uncaught exception and failed or outside request."""
        return [str(m) for m in self.messages] + [str(r) for r in self.failed_requests]

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON would carry it."""
        result = await self._cdp.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r}: {_exception_text(result['exceptionDetails'])}")
        return result["result"].get("value")

    async def boxes(self, selector: str) -> list[Box]:
        """The boxes of the elements ``selector`` matches, in page (= screenshot) pixels."""
        rects = await self.evaluate(
            f"Array.from(document.querySelectorAll({json.dumps(selector)}), e => {{"
            " const r = e.getBoundingClientRect();"
            " return [r.x + window.scrollX, r.y + window.scrollY, r.width, r.height]; })"
        )
        return [Box(*rect) for rect in rects]

    async def screenshot(self, *, full_page: bool = True, small: bool = False) -> bytes:
        """A PNG of the whole page (or of the window only), one pixel per CSS pixel.

        Encoded for speed (every row Up-filtered, which decode_png undoes in whole rows),
        unless ``small``: Chromium's default, smaller, with Paeth rows byte by byte."""
        params: dict[str, Any] = {"format": "png", "optimizeForSpeed": not small}
        if full_page:
            metrics = await self._cdp.send("Page.getLayoutMetrics")
            size = metrics["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": math.ceil(size["width"]),
                "height": math.ceil(size["height"]),
                "scale": 1,
            }
        shot = await self._cdp.send("Page.captureScreenshot", **params)
        return base64.b64decode(shot["data"])

    async def save_screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        """Write the screenshot to ``path`` (a .png), e.g. for the README."""
        png = await self.screenshot(full_page=full_page, small=True)
        await asyncio.to_thread(path.write_bytes, png)
        return path

    def _console_called(self, params: dict[str, Any]) -> None:
        kind = params.get("type", "")
        if kind in ("error", "assert", "warning"):
            text = " ".join(_remote_text(arg) for arg in params.get("args", []))
            level = "warning" if kind == "warning" else "error"
            self.messages.append(ConsoleMessage(level, text, "console"))

    def _exception_thrown(self, params: dict[str, Any]) -> None:
        text = _exception_text(params.get("exceptionDetails", {}))
        self.messages.append(ConsoleMessage("exception", text, "javascript"))

    def _log_entry(self, params: dict[str, Any]) -> None:
        entry = params.get("entry", {})
        if entry.get("level") in ("error", "warning"):
            text = entry.get("text", "")
            if entry.get("url"):
                text = f"{text} ({entry['url']})"
            self.messages.append(ConsoleMessage(entry["level"], text, entry.get("source", "")))

    def _request_sent(self, params: dict[str, Any]) -> None:
        url = params.get("request", {}).get("url", "")
        self._requested[params["requestId"]] = url
        if not url.startswith(LOCAL_SCHEMES):
            error = "not a local file: the page must work offline"
            self._failed[params["requestId"]] = FailedRequest(url, error)

    def _loading_failed(self, params: dict[str, Any]) -> None:
        url = self._requested.get(params["requestId"], "?")
        error = params.get("errorText", "failed")
        if params.get("blockedReason"):
            error = f"{error}, blocked: {params['blockedReason']}"
        earlier = self._failed.get(params["requestId"])
        if earlier is not None:
            error = f"{earlier.error} ({error})"
        self._failed[params["requestId"]] = FailedRequest(url, error)


class Browser:
    """Headless Chromium with a throwaway profile, for ``async with``.

    ``executable`` defaults to ``chromium`` on the PATH. ``open`` loads a local
    file in a new tab and returns its :class:`Page` once the page's load event
    has fired.
    """

    def __init__(self, executable: str | None = None) -> None:
        found = executable or shutil.which("chromium")
        if found is None:
            raise ChromiumMissing(
                "chromium is not installed: run `make system-deps` "
                "(it installs Debian's chromium for the browser tests)"
            )
        self.executable = found
        self.profile: Path | None = None
        self.pid: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._port = 0
        self._connections: list[_Connection] = []

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _start(self) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="cma-chromium-"))
        args = [
            "--headless=new",
            "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",  # the page's width does not depend on its height
            "--mute-audio",
            # No connections of the browser's own (updates, sync, field trials): the
            # machine's network is closed, and nothing but the page should be asked for.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-gpu",
        ]
        if os.geteuid() == 0:  # Chromium's sandbox refuses to run as root
            args.append("--no-sandbox")
        log = (self.profile / "chromium.log").open("wb")
        with log:
            self._process = await asyncio.create_subprocess_exec(
                self.executable,
                *args,
                "about:blank",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own process group: close() ends all of it
            )
        self.pid = self._process.pid
        self._port = await self._wait_for_port()
        self._http = aiohttp.ClientSession()

    async def _wait_for_port(self) -> int:
        """The port Chromium picked, from the DevToolsActivePort file it writes when ready."""
        assert self.profile is not None and self._process is not None
        port_file = self.profile / "DevToolsActivePort"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while loop.time() < deadline:
            if self._process.returncode is not None:
                raise BrowserError(f"chromium exited ({self._process.returncode}): {self._log()}")
            with contextlib.suppress(FileNotFoundError):  # not written yet
                lines = port_file.read_text().splitlines()
                if len(lines) >= 2:  # written in full: the port, then the browser's path
                    return int(lines[0])
            await asyncio.sleep(0.02)
        raise BrowserError(f"chromium did not start in {TIMEOUT:.0f} s: {self._log()}")

    def _log(self) -> str:
        assert self.profile is not None
        try:
            return (self.profile / "chromium.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    async def _json(self, method: str, path: str) -> Any:
        assert self._http is not None
        async with asyncio.timeout(TIMEOUT):
            url = f"http://127.0.0.1:{self._port}{path}"
            async with self._http.request(method, url) as response:
                response.raise_for_status()
                return await response.json(content_type=None)

    async def open(
        self,
        path: Path,
        *,
        color_scheme: ColorScheme = "light",
        width: int = 1280,
        height: int = 900,
    ) -> Page:
        """Load ``path`` in a new tab of ``width`` × ``height`` CSS pixels, offline."""
        if self._http is None:
            raise BrowserError("open() outside `async with Browser()`")
        if color_scheme not in ("light", "dark"):
            raise ValueError(f"color_scheme must be 'light' or 'dark', not {color_scheme!r}")
        url = file_url(path)
        target = await self._json("PUT", "/json/new?about:blank")
        socket = await self._http.ws_connect(
            target["webSocketDebuggerUrl"], max_msg_size=0, timeout=aiohttp.ClientWSTimeout()
        )
        cdp = _Connection(socket)
        self._connections.append(cdp)
        page = Page(cdp, url, color_scheme)
        for domain in ("Page", "Runtime", "Log", "Network"):
            await cdp.send(f"{domain}.enable")
        await cdp.send(
            "Network.emulateNetworkConditions",
            offline=True,
            latency=0,
            downloadThroughput=-1,
            uploadThroughput=-1,
        )
        await cdp.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        await cdp.send(
            "Emulation.setEmulatedMedia",
            features=[{"name": "prefers-color-scheme", "value": color_scheme}],
        )
        loaded = cdp.next_event("Page.loadEventFired")
        navigation = await cdp.send("Page.navigate", url=url)
        if "errorText" in navigation:
            loaded.cancel()
            raise BrowserError(f"could not open {url}: {navigation['errorText']}")
        async with asyncio.timeout(TIMEOUT):
            await loaded
        await page.evaluate("document.fonts.ready.then(() => true)")
        return page

    async def close(self) -> None:
        """End the browser (all its processes) and remove its profile; safe to call twice."""
        for cdp in self._connections:
            with contextlib.suppress(Exception):  # the browser may have dropped it already
                await cdp.close()
        self._connections.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._process is not None:
            if self._process.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # it ended on its own
                    self._process.terminate()
                try:
                    async with asyncio.timeout(5):
                        await self._process.wait()
                except TimeoutError:
                    pass  # too slow to end: the SIGKILL below ends it
            with contextlib.suppress(ProcessLookupError):  # helpers left behind, if any
                os.killpg(self._process.pid, signal.SIGKILL)
            await self._process.wait()
            self._process = None
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
            if self.profile.exists():  # a straggler wrote after the first pass
                shutil.rmtree(self.profile)
            self.profile = None


def file_url(path: Path) -> str:
    """The ``file://`` URL of ``path``, made absolute."""
    return path.resolve().as_uri()


def _remote_text(value: dict[str, Any]) -> str:
    if "value" in value:
        return str(value["value"])
    return str(value.get("description", value.get("type", "?")))


def _exception_text(details: dict[str, Any]) -> str:
    description = details.get("exception", {}).get("description")
    if description:  # the message and its stack, with file and line
        return str(description)
    line = details.get("lineNumber")
    where = f" ({details['url']}:{line + 1})" if details.get("url") and line is not None else ""
    return f"{details.get('text', 'exception')}{where}"


# -- pixels --------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """Decoded pixels: ``pixels`` holds ``width * height`` RGBA quadruples, row by row."""

    width: int
    height: int
    pixels: bytes = field(repr=False)

    def pixel(self, x: int, y: int) -> tuple[int, int, int, int]:
        i = (y * self.width + x) * 4
        r, g, b, a = self.pixels[i : i + 4]
        return (r, g, b, a)

    def colours(self, box: Box) -> Counter[tuple[int, int, int, int]]:
        """How many pixels of each colour lie inside ``box`` (cut to the image)."""
        left, top = max(0, math.floor(box.x)), max(0, math.floor(box.y))
        right = min(self.width, math.ceil(box.x + box.width))
        bottom = min(self.height, math.ceil(box.y + box.height))
        counts: Counter[tuple[int, int, int, int]] = Counter()
        for y in range(top, bottom):
            row = self.pixels[(y * self.width + left) * 4 : (y * self.width + right) * 4]
            counts.update(struct.iter_unpack("4B", row))
        return counts


def drawn_pixels(image: Image, box: Box, background: tuple[int, int, int] | None = None) -> int:
    """How many pixels inside ``box`` are not the background colour.

    The background is the box's most common colour unless given (RGB, opaque).
    0 means nothing was drawn there.
    """
    counts = image.colours(box)
    if not counts:
        return 0
    ground = (*background, 255) if background else counts.most_common(1)[0][0]
    return sum(n for colour, n in counts.items() if colour != ground)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_png(data: bytes) -> Image:
    """Decode an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes)."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG")
    offset = len(_PNG_SIGNATURE)
    header = b""
    compressed = bytearray()
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        offset += 12 + length  # length, type, body, CRC
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            compressed += body
        elif kind == b"IEND":
            break
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour_type not in (2, 6) or interlace:
        raise ValueError(
            f"unsupported PNG: depth {depth}, colour type {colour_type}, interlace {interlace}"
        )
    channels = 4 if colour_type == 6 else 3
    raw = zlib.decompress(bytes(compressed))
    stride = width * channels
    rows = _unfilter(raw, height, stride, channels)
    if channels == 3:  # add an opaque alpha byte to every pixel
        rgba = bytearray(width * height * 4)
        rgba[3::4] = b"\xff" * (width * height)
        for c in range(3):
            rgba[c::4] = rows[c::3]
        return Image(width, height, bytes(rgba))
    return Image(width, height, bytes(rows))


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> bytearray:
    """Undo the PNG row filters (None, Sub, Up, Average, Paeth); rows joined.

    Sub and Up (nearly every row Chromium writes) are whole-row sums of bytes, which wrap
    at 256 as the filters do; Average and Paeth predict each byte from the one just
    decoded, so they go byte by byte."""
    rows = np.frombuffer(raw, dtype=np.uint8, count=height * (stride + 1))
    rows = rows.reshape(height, stride + 1)
    out = np.empty((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind = int(rows[y, 0])
        row = rows[y, 1:]
        if kind == 0:  # None
            out[y] = row
        elif kind == 1:  # Sub: each byte plus the decoded one bpp before it
            out[y] = np.cumsum(row.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:  # Up
            out[y] = row + previous
        elif kind in (3, 4):
            decoded = _unfilter_row(kind, bytearray(row.tobytes()), previous.tobytes(), bpp)
            out[y] = np.frombuffer(decoded, dtype=np.uint8)
        else:
            raise ValueError(f"bad PNG filter type {kind} in row {y}")
        previous = out[y]
    return bytearray(out.tobytes())


def _unfilter_row(kind: int, row: bytearray, previous: bytes, bpp: int) -> bytearray:
    """One row's Average (3) or Paeth (4) filter undone, byte by byte."""
    stride = len(row)
    if kind == 3:  # Average
        for i in range(stride):
            left = row[i - bpp] if i >= bpp else 0
            row[i] = (row[i] + ((left + previous[i]) >> 1)) & 0xFF
        return row
    for i in range(stride):  # Paeth
        a = row[i - bpp] if i >= bpp else 0
        b = previous[i]
        c = previous[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
        row[i] = (row[i] + predictor) & 0xFF
    return row


# -- screenshots for the docs ----------------------------------------------------


async def _save(page_path: Path, png_path: Path, args: argparse.Namespace) -> list[str]:
    async with Browser() as browser:
        page = await browser.open(
            page_path, color_scheme=args.color_scheme, width=args.width, height=args.height
        )
        await page.save_screenshot(png_path, full_page=not args.window)
        return page.problems()


def main(argv: list[str] | None = None) -> int:
    """Save a screenshot of a page; exit 1 (screenshot saved) if the page had problems."""
    parser = argparse.ArgumentParser(
        prog="tests/browser.py",
        description="Screenshot a local HTML page in headless Chromium, offline.",
    )
    parser.add_argument("page", type=Path, help="the HTML file")
    parser.add_argument("png", type=Path, help="where to write the PNG")
    parser.add_argument("--color-scheme", choices=("light", "dark"), default="light")
    parser.add_argument("--width", type=int, default=1280, help="CSS pixels (default 1280)")
    parser.add_argument("--height", type=int, default=900, help="CSS pixels (default 900)")
    parser.add_argument("--window", action="store_true", help="the window only, not the page")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        parser.error(f"page: no such file: {args.page}")
    if args.width <= 0 or args.height <= 0:
        parser.error("--width and --height must be positive")
    problems = asyncio.run(_save(args.page, args.png, args))
    for problem in problems:
        print(f"tests/browser.py: {args.page}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
