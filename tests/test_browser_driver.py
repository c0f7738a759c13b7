"""The headless Chromium driver (tests/browser.py) on small hand-written pages.

These pin what the HTML report's test relies on: a drawn SVG has a box and pixels
that are not background, in light and dark; console errors, uncaught exceptions and
requests that leave the machine are caught; prefers-color-scheme is what was asked;
the browser and its profile are gone afterwards, also after a failure. One browser
serves the module (it starts in about 0.3 s); each test opens its own tabs.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from browser import (
    Box,
    Browser,
    BrowserError,
    ChromiumMissing,
    ColorScheme,
    Image,
    decode_png,
    drawn_pixels,
)

# No skip without chromium: `make test` installs it, and a missing install step must fail.
# The async tests share the module's event loop, where the module's browser runs.
in_browser = pytest.mark.asyncio(loop_scope="module")

BROWSER_PY = Path(__file__).with_name("browser.py")
LIGHT_BG, DARK_BG = (250, 250, 245), (16, 20, 24)
LIGHT_INK, DARK_INK = (20, 90, 160), (120, 200, 255)

THEMED_CSS = f"""
body {{ margin: 0; background: rgb{LIGHT_BG}; color: rgb{LIGHT_INK}; }}
@media (prefers-color-scheme: dark) {{
  body {{ background: rgb{DARK_BG}; color: rgb{DARK_INK}; }}
}}
"""

CHART = """<svg id="equity" width="400" height="200" viewBox="0 0 400 200">
  <polyline points="0,180 100,40 200,120 300,20 400,90" fill="none"
            stroke="currentColor" stroke-width="3"/>
</svg>"""

EMPTY_CHART = '<svg id="empty" width="300" height="100" viewBox="0 0 300 100"></svg>'


def write_page(folder: Path, name: str, body: str, head: str = "") -> Path:
    path = folder / name
    path.write_text(
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<style>{THEMED_CSS}</style>{head}</head><body>{body}</body></html>",
        encoding="utf-8",
    )
    return path


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with Browser() as started:
        yield started


@in_browser
@pytest.mark.parametrize(("scheme", "background"), [("light", LIGHT_BG), ("dark", DARK_BG)])
async def test_an_inline_svg_chart_draws(
    browser: Browser, tmp_path: Path, scheme: ColorScheme, background: tuple[int, int, int]
) -> None:
    path = write_page(tmp_path, "chart.html", CHART + EMPTY_CHART)
    page = await browser.open(path, color_scheme=scheme, width=640, height=480)

    assert page.problems() == []
    chart, empty = await page.boxes("svg")
    assert (chart.width, chart.height) == (400, 200)
    image = decode_png(await page.screenshot())
    assert drawn_pixels(image, chart) > 100
    assert drawn_pixels(image, chart, background=background) > 100
    # The check can fail: an SVG with nothing in it is all background.
    assert empty.width == 300
    assert drawn_pixels(image, empty) == 0
    assert drawn_pixels(image, empty, background=background) == 0


@in_browser
async def test_prefers_color_scheme_changes_the_pixels(browser: Browser, tmp_path: Path) -> None:
    path = write_page(tmp_path, "themed.html", "<p>some text</p>")
    light = decode_png(await (await browser.open(path, color_scheme="light")).screenshot())
    dark = decode_png(await (await browser.open(path, color_scheme="dark")).screenshot())

    assert light.pixel(1200, 800) == (*LIGHT_BG, 255)
    assert dark.pixel(1200, 800) == (*DARK_BG, 255)


@in_browser
async def test_console_errors_warnings_and_uncaught_exceptions_are_caught(
    browser: Browser, tmp_path: Path
) -> None:
    script = """<script>
      console.log("just a log line");
      console.error("bad total", 42);
      console.warn("careful");
      setTimeout(() => { throw new Error("late failure"); }, 0);
      missingFunction();
    </script>"""
    page = await browser.open(write_page(tmp_path, "errors.html", script))
    # Timers of the same delay run in order: when this one has run, the late one has.
    await page.evaluate("new Promise(done => setTimeout(done, 0))")

    problems = "\n".join(page.problems())
    assert "error (console): bad total 42" in problems
    assert "warning (console): careful" in problems
    assert "ReferenceError: missingFunction is not defined" in problems
    assert "Error: late failure" in problems
    assert "just a log line" not in problems
    assert page.failed_requests == []


@in_browser
async def test_a_request_to_the_internet_is_caught_and_blocked(
    browser: Browser, tmp_path: Path
) -> None:
    head = '<link rel="stylesheet" href="https://example.com/x.css">'
    script = (
        "<script>window.got = fetch('http://127.0.0.1:9/x.json')"
        ".then(() => 'through', () => 'blocked');</script>"
    )
    page = await browser.open(write_page(tmp_path, "online.html", script, head=head))
    assert await page.evaluate("window.got") == "blocked"  # the fetch has been tried

    urls = {request.url: request.error for request in page.failed_requests}
    assert set(urls) == {"https://example.com/x.css", "http://127.0.0.1:9/x.json"}
    assert "net::ERR_INTERNET_DISCONNECTED" in urls["https://example.com/x.css"]
    assert any("example.com/x.css" in problem for problem in page.problems())


@in_browser
async def test_local_files_load_offline_and_a_missing_one_is_a_failure(
    browser: Browser, tmp_path: Path
) -> None:
    (tmp_path / "local.css").write_text("p { margin-top: 77px; }")
    head = '<link rel="stylesheet" href="local.css"><link rel="stylesheet" href="gone.css">'
    page = await browser.open(write_page(tmp_path, "local.html", "<p>x</p>", head=head))

    assert await page.evaluate("getComputedStyle(document.querySelector('p')).marginTop") == "77px"
    assert [r.url for r in page.failed_requests] == [(tmp_path / "gone.css").as_uri()]
    assert "ERR_FILE_NOT_FOUND" in page.failed_requests[0].error


@in_browser
async def test_evaluate_returns_values_and_raises_on_a_script_error(
    browser: Browser, tmp_path: Path
) -> None:
    page = await browser.open(write_page(tmp_path, "eval.html", "<p>x</p>"))

    assert await page.evaluate("({a: [1, 2.5, 'three'], b: null})") == {
        "a": [1, 2.5, "three"],
        "b": None,
    }
    assert await page.evaluate("Promise.resolve(7)") == 7
    with pytest.raises(BrowserError, match="nope"):
        await page.evaluate("(() => { throw new Error('nope'); })()")
    assert page.problems() == []  # evaluate's own errors are raised, not recorded


@in_browser
async def test_full_page_and_window_screenshots(browser: Browser, tmp_path: Path) -> None:
    tall = (
        '<div style="height: 2000px"></div>'
        '<svg width="50" height="50"><rect width="50" height="50"/></svg>'
    )
    page = await browser.open(write_page(tmp_path, "tall.html", tall), width=300, height=200)

    full = decode_png(await page.screenshot())
    window = decode_png(await page.screenshot(full_page=False))
    assert (full.width, full.height) == (300, 2054)  # 2000 + the svg's line box
    assert (window.width, window.height) == (300, 200)
    (square,) = await page.boxes("svg")
    assert square.y == 2000
    assert drawn_pixels(full, square, background=LIGHT_BG) == 50 * 50

    saved = await page.save_screenshot(tmp_path / "shot.png")
    assert decode_png(saved.read_bytes()).height == 2054


@in_browser
async def test_opening_a_missing_file_raises(browser: Browser, tmp_path: Path) -> None:
    with pytest.raises(BrowserError, match="ERR_FILE_NOT_FOUND"):
        await browser.open(tmp_path / "nothing.html")


@in_browser
async def test_the_browser_and_its_profile_go_also_after_a_failure(tmp_path: Path) -> None:
    class TestFailed(Exception):
        pass

    with pytest.raises(TestFailed):
        async with Browser() as browser:
            await browser.open(write_page(tmp_path, "p.html", "<p>x</p>"))
            profile, pid = browser.profile, browser.pid
            assert profile is not None and profile.is_dir() and pid is not None
            assert pid in living_in_group(pid)  # it leads its own process group
            raise TestFailed

    assert profile is not None and pid is not None
    assert not profile.exists()
    assert living_in_group(pid) == []


def living_in_group(group: int) -> list[int]:
    """The processes of a process group that still run (zombies do not count).

    Where PID 1 does not reap orphans (some containers), Chromium's helpers stay
    as zombies after it ended, so ``os.killpg(group, 0)`` cannot tell.
    """
    living = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we looked
            continue
        state, group_id = fields[0], int(fields[2])
        if group_id == group and state not in ("Z", "X"):
            living.append(int(stat.parent.name))
    return living


def test_missing_chromium_fails_with_the_install_step(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ChromiumMissing, match="run `make system-deps`"):
        Browser()


@in_browser
async def test_a_browser_that_cannot_start_is_an_error_with_its_output(tmp_path: Path) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\necho 'no display, no luck' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrowserError, match=r"exited \(3\).*no display, no luck"):
        async with Browser(str(fake)):
            pass


def test_the_command_line_saves_a_screenshot_for_the_docs(tmp_path: Path) -> None:
    page = write_page(tmp_path, "report.html", CHART)
    shot = tmp_path / "docs" / "report.png"
    shot.parent.mkdir()
    command = [sys.executable, str(BROWSER_PY), str(page), str(shot)]
    size = ["--width", "500", "--height", "300", "--window"]

    done = subprocess.run(
        [*command, "--color-scheme", "dark", *size], capture_output=True, text=True
    )

    assert (done.returncode, done.stderr) == (0, "")
    image = decode_png(shot.read_bytes())
    assert (image.width, image.height) == (500, 300)
    assert image.pixel(450, 250) == (*DARK_BG, 255)


def test_the_command_line_reports_the_page_s_problems(tmp_path: Path) -> None:
    page = write_page(tmp_path, "bad.html", "<script>console.error('no data')</script>")
    shot = tmp_path / "bad.png"

    done = subprocess.run(
        [sys.executable, str(BROWSER_PY), str(page), str(shot)], capture_output=True, text=True
    )

    assert done.returncode == 1
    assert done.stderr == f"tests/browser.py: {page}: error (console): no data\n"
    assert decode_png(shot.read_bytes()).width == 1280  # saved all the same

    missing = subprocess.run(
        [sys.executable, str(BROWSER_PY), str(tmp_path / "nothing.html"), str(shot)],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert "page: no such file" in missing.stderr


# -- the PNG decoder on hand-made files, one per row filter ---------------------


def _filter_row(kind: int, row: bytes, previous: bytes, bpp: int) -> bytes:
    """PNG's forward filters (the encoder's side), written out plainly."""

    def left(i: int) -> int:
        return row[i - bpp] if i >= bpp else 0

    def up_left(i: int) -> int:
        return previous[i - bpp] if i >= bpp else 0

    def paeth(a: int, b: int, c: int) -> int:
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        return a if pa <= pb and pa <= pc else (b if pb <= pc else c)

    predictors: dict[int, Callable[[int], int]] = {
        0: lambda i: 0,
        1: left,
        2: lambda i: previous[i],
        3: lambda i: (left(i) + previous[i]) // 2,
        4: lambda i: paeth(left(i), previous[i], up_left(i)),
    }
    return bytes((row[i] - predictors[kind](i)) % 256 for i in range(len(row)))


def _png(width: int, rows: list[bytes], colour_type: int, filters: list[int]) -> bytes:
    bpp = 4 if colour_type == 6 else 3
    previous = bytes(width * bpp)
    raw = b""
    for row, kind in zip(rows, filters, strict=True):
        raw += bytes([kind]) + _filter_row(kind, row, previous, bpp)
        previous = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, len(rows), 8, colour_type, 0, 0, 0)
    compressed = zlib.compress(raw)
    # Two IDAT chunks: the decoder must join them.
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", compressed[:5])
        + chunk(b"IDAT", compressed[5:])
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("colour_type", [2, 6])
def test_decode_png_undoes_every_row_filter(colour_type: int) -> None:
    bpp = 4 if colour_type == 6 else 3
    width = 7
    rows = [
        bytes((x * 37 + y * 91 + c * 53) % 256 for x in range(width) for c in range(bpp))
        for y in range(6)
    ]
    image = decode_png(_png(width, rows, colour_type, filters=[0, 1, 2, 3, 4, 4]))

    assert (image.width, image.height) == (width, 6)
    for y, row in enumerate(rows):
        for x in range(width):
            expected = tuple(row[x * bpp : x * bpp + 3]) + (
                (row[x * bpp + 3],) if bpp == 4 else (255,)
            )
            assert image.pixel(x, y) == expected


def test_decode_png_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="not a PNG"):
        decode_png(b"GIF89a")
    grey = _png(2, [b"\x00\x00\x00\x00\x00\x00"], 2, [0]).replace(
        struct.pack(">IIBBBBB", 2, 1, 8, 2, 0, 0, 0), struct.pack(">IIBBBBB", 2, 1, 8, 0, 0, 0, 0)
    )
    with pytest.raises(ValueError, match="colour type 0"):
        decode_png(grey)


def test_drawn_pixels_counts_what_differs_from_the_background() -> None:
    white, red = b"\xff\xff\xff\xff", b"\xff\x00\x00\xff"
    # 4 × 3, one red pixel at (2, 1).
    pixels = bytearray(white * 12)
    pixels[(1 * 4 + 2) * 4 : (1 * 4 + 3) * 4] = red
    image = Image(4, 3, bytes(pixels))

    assert drawn_pixels(image, Box(0, 0, 4, 3)) == 1
    assert drawn_pixels(image, Box(0, 0, 2, 3)) == 0  # left of the red pixel
    assert drawn_pixels(image, Box(2, 1, 1, 1)) == 0  # only red: red is its background
    assert drawn_pixels(image, Box(2, 1, 1, 1), background=(255, 255, 255)) == 1
    assert drawn_pixels(image, Box(-5, -5, 100, 100)) == 1  # cut to the image
    assert drawn_pixels(image, Box(10, 10, 5, 5)) == 0  # outside: nothing there
