"""The HTML report in a real headless Chromium, offline, in light and dark: no console
error and no request at all beyond the file, and both charts drawn (their SVG boxes
have a size and the pixels inside them are not all background)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from browser import Browser, decode_png, drawn_pixels
from report_helpers import CMA, backtest, clean_env


def near(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return all(abs(x - y) <= 40 for x, y in zip(a, b, strict=True))


def html_report(home: Path, out: Path) -> Path:
    backtest(home, None, "--approve", "person", "--reject-rate", "0.3", "--seed", "5")
    done = subprocess.run(
        [CMA, "report", "--last", "--format", "html", "--output", str(out)],
        env=clean_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return out


async def test_the_html_report_draws_its_charts_offline_in_light_and_dark(tmp_path: Path) -> None:
    report = html_report(tmp_path / "home", tmp_path / "report.html")
    backgrounds = set()
    async with Browser() as b:
        for scheme in ("light", "dark"):
            page = await b.open(report, color_scheme=scheme)
            assert page.problems() == [], scheme
            image = decode_png(await page.screenshot())
            charts = {
                name: await page.boxes(f"svg#{name}") for name in ("equity-chart", "drawdown-chart")
            }
            for name, boxes in charts.items():
                (box,) = boxes
                assert box.width > 100 and box.height > 50, (scheme, name, box)
                assert drawn_pixels(image, box) > 200, (scheme, name)
                # The data line itself is on screen, in its own colour.
                stroke = await page.evaluate(
                    f"getComputedStyle(document.querySelector('svg#{name} path.line')).stroke"
                )
                rgb = tuple(int(v) for v in stroke[stroke.index("(") + 1 : -1].split(",")[:3])
                on_line = sum(n for c, n in image.colours(box).items() if near(c[:3], rgb))
                assert on_line > 50, (scheme, name, stroke)
            backgrounds.add(image.pixel(2, 2)[:3])
            assert await page.evaluate("document.styleSheets.length") >= 1  # inline, applied
    assert len(backgrounds) == 2, "light and dark draw different backgrounds"
