"""The optimization report (Markdown and HTML) rendered from hand-built
:class:`~reports.optimization.Optimization` values: the input data an optimization
reads back from its study, made here so that every case (no chosen trial, one
window, None scores, markup in keys) is on purpose. The HTML is also loaded in a
real headless Chromium, light and dark."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import Browser, decode_png, drawn_pixels
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from reports.optimization import Optimization, Param, TrialRow, Window
from reports.optimization_render import (
    history_series,
    render_optimization,
    score,
    write_optimization_report,
)
from reports.svg import history_chart, running_best

DAY = 86_400_000
T0 = 1_514_764_800_000  # 2018-01-01 00:00 UTC
SECTIONS = (
    "Chosen parameters",
    "Walk-forward",
    "Parameter importances",
    "History",
    "Search space",
    "Top trials by out-of-sample mean",
)


def windows(n: int) -> tuple[Window, ...]:
    return tuple(
        Window(i, T0 + i * 7 * DAY, T0 + (i * 7 + 14) * DAY, T0 + (i * 7 + 14) * DAY,
               T0 + (i * 7 + 21) * DAY)
        for i in range(n)
    )  # fmt: skip


def complete(
    number: int, ins: tuple[float | None, ...], oos: tuple[float | None, ...], **params: object
) -> TrialRow:
    """A complete trial: its value and OOS mean are the means of its scores (None if any is)."""

    def mean(xs: tuple[float | None, ...]) -> float | None:
        return None if any(x is None for x in xs) else sum(x or 0.0 for x in xs) / len(xs)

    return TrialRow(
        number=number,
        state="complete",
        params={"risk.kelly_fraction": 0.25, "agents.rsi.period": 14, **params},  # type: ignore[dict-item]
        value=mean(ins),
        in_sample=ins,
        out_of_sample=oos,
        trades_in=tuple(10 + number + i for i in range(len(ins))),
        trades_out=tuple(3 + i for i in range(len(oos))),
        oos_mean=mean(oos),
        worker=f"box{number % 2}:{4000 + number % 2}",
    )


def stopped(number: int, state: str = "pruned") -> TrialRow:
    return TrialRow(number, state, {}, None, (), (), (), (), None, note="hopeless")  # type: ignore[arg-type]


SPACE = (
    Param("risk.kelly_fraction", "float", 0.05, 1.0, 0.05),
    Param("agents.rsi.period", "int", 5, 30),
)


def study(
    trials: tuple[TrialRow, ...],
    *,
    n_windows: int = 3,
    objective: str = "sharpe",
    space: tuple[Param, ...] = SPACE,
    importances: tuple[tuple[str, float], ...] = (
        ("risk.kelly_fraction", 0.7), ("agents.rsi.period", 0.3),
    ),
) -> Optimization:  # fmt: skip
    """An optimization of ``trials``: chosen by OOS mean, best in sample by value."""
    done = [t for t in trials if t.state == "complete"]
    by_oos = [t for t in done if t.oos_mean is not None]
    by_value = [t for t in done if t.value is not None]
    return Optimization(
        study="eth-sharpe",
        objective=objective,
        min_trades=5,
        data=("binance_ETH-BTC_5m_2018-01.csv",),
        symbols=("ETH/BTC",),
        timeframe="5m",
        agents=("rsi", "macd"),
        space=space,
        windows=windows(n_windows),
        trials=trials,
        chosen=max(by_oos, key=lambda t: t.oos_mean or 0.0) if by_oos else None,
        best_in_sample=max(by_value, key=lambda t: t.value or 0.0) if by_value else None,
        importances=importances,
        created_at=T0 + 40 * DAY,
        fragment="/home/me/.config/cma/optimized/eth-sharpe.toml",
        seed=7,
    )


def typical() -> Optimization:
    """Three windows, 12 trials: 8 complete, 3 pruned, 1 failed; the best in-sample trial
    (3) is not the chosen one (5)."""
    return study(
        (
            complete(0, (0.5, 0.7, 0.3), (0.2, 0.1, 0.0), **{"agents.rsi.period": 10}),
            stopped(1),
            complete(2, (0.9, 1.1, 1.0), (0.3, 0.2, 0.4)),
            complete(3, (2.0, 1.8, 2.2), (-0.5, 0.1, -0.2), **{"risk.kelly_fraction": 0.9}),
            stopped(4),
            complete(5, (1.2, 0.8, 1.0), (0.9, 0.7, 0.8), **{"risk.kelly_fraction": 0.35}),
            stopped(6, "failed"),
            complete(7, (0.1, 0.2, 0.3), (0.0, 0.1, 0.2)),
            complete(8, (1.5, 1.4, 1.3), (0.4, 0.5, 0.6)),
            stopped(9),
            complete(10, (0.4, 0.4, 0.4), (0.3, 0.3, 0.3)),
            complete(11, (1.0, 1.0, 1.0), (0.5, 0.5, 0.5)),
        )
    )


# ---------------------------------------------------------------- HTML structure

VOID = {"meta", "br"}
SELF_CLOSED = {"line", "path", "circle", "rect"}


class Page(HTMLParser):
    """Checks that every element is closed in order; collects ids, attributes and the
    rows (cell texts) of each table with an id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: dict[str, str] = {}
        self.attrs: list[tuple[str, str, str]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            self.attrs.append((tag, name, value or ""))
            if name == "id" and value:
                self.ids[value] = tag
                if tag == "table":
                    self._table = value
                    self.tables[value] = []
        if tag == "tr" and self._table:
            self.tables[self._table].append([])
        if tag in ("td", "th") and self._table:
            self._cell = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            self.attrs.append((tag, name, value or ""))
        if tag not in VOID | SELF_CLOSED:
            self.errors.append(f"<{tag}/> self-closed")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._table and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "table":
            self._table = None
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> Page:
    p = Page()
    p.feed(html)
    p.close()
    assert not p.errors, p.errors[:5]
    assert p.stack == [], p.stack
    return p


def md_table(md: str, heading: str) -> list[list[str]]:
    """The rows (cells, stripped) of the first table under ``## heading``, header included."""
    section = md.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines]
    return [row for row in cells if not all(re.fullmatch(r"-+:?", c) for c in row)]


# ---------------------------------------------------------------- sections


def test_every_section_is_there_in_order_in_both_formats() -> None:
    opt = typical()
    md, html = render_optimization(opt, "md"), render_optimization(opt, "html")
    assert md.startswith("# Optimization eth-sharpe\n")
    page = parse(html)
    assert "<title>cma optimization eth-sharpe</title>" in html
    assert "Objective: the Sharpe ratio; minimum trades 5." in md
    for text in (md, html):
        at = [text.index(s) for s in ("Trials: 12 run", *SECTIONS)]
        assert at == sorted(at), at
        for words in (
            "the Sharpe ratio",
            "binance_ETH-BTC_5m_2018-01.csv",
            "ETH/BTC",
            "5m",
            "rsi, macd",
            "seed 7",
            "3 walk-forward",
            "2018-01-01 → 2018-02-05 UTC",
        ):
            assert words in text, words  # fmt: skip
        assert "eth-sharpe.toml" in text
    for chart in ("history-chart", "importance-chart"):
        assert page.ids.get(chart) == "svg"
    for table in ("params", "walk-forward-table", "importance-table", "space-table", "top-table"):
        assert page.ids.get(table) == "table"
    # The history is a chart in HTML, a short table of the best so far in Markdown.
    assert "<svg" not in md
    assert md_table(md, "History")[0] == ["After trial", "Complete so far", "Best so far",
                                          "Set by trial"]  # fmt: skip


def test_the_html_is_self_contained_with_light_and_dark_styles() -> None:
    html = render_optimization(typical(), "html")
    page = parse(html)
    assert "http" not in html.lower()
    assert not [a for a in page.attrs if a[1] in ("src", "href") or "//" in a[2]]
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert "@media (prefers-color-scheme: dark)" in html


def test_the_counts_line_and_the_multiple_testing_note() -> None:
    opt = typical()
    for fmt in ("md", "html"):
        text = render_optimization(opt, fmt)
        assert "Trials: 12 run = 8 complete + 3 pruned + 1 failed." in text
        assert "12 sets of parameters were tried." in text
        assert "the more the best in-sample score looks better than it is" in text
        assert "chosen by their out-of-sample scores" in text
        assert "Run by 2 workers." in text
    timed = replace(opt, trials=tuple(replace(t, seconds=t.number * 60.5) for t in opt.trials))
    assert "Run by 2 workers, 1h 6m 33s of trial time." in render_optimization(timed, "md")
    running = replace(opt, trials=(*opt.trials, replace(stopped(12), state="running")))
    assert "13 run = 8 complete + 3 pruned + 1 failed + 1 still running" in render_optimization(
        running, "md"
    )


def test_the_chosen_parameters_stand_beside_the_best_in_sample_ones() -> None:
    opt = typical()
    assert opt.chosen is not None and opt.best_in_sample is not None
    assert (opt.chosen.number, opt.best_in_sample.number) == (5, 3)
    md = render_optimization(opt, "md")
    assert md_table(md, "Chosen parameters") == [
        ["Parameter", "Chosen", "Best in sample"],
        ["risk.kelly_fraction", "0.35", "0.9"],
        ["agents.rsi.period", "14", "14"],
    ]
    assert "Chosen: trial 5, mean out of sample 0.800 (in sample 1.000)." in md
    assert "Best in sample: trial 3, mean in sample 2.000 (out of sample -0.200)." in md
    assert "`/home/me/.config/cma/optimized/eth-sharpe.toml`" in md
    rows = parse(render_optimization(opt, "html")).tables["params"]
    assert rows[1:] == [["risk.kelly_fraction", "0.35", "0.9"], ["agents.rsi.period", "14", "14"]]
    odd = render_optimization(replace(opt, fragment="/tmp/a|b/`x`\n.toml"), "md")
    assert "Config fragment: ``/tmp/a|b/`x` .toml`` (" in odd
    no_fragment = render_optimization(replace(opt, fragment=None), "md")
    assert "No config fragment was written." in no_fragment


WALK_HEADER = [
    "Window", "Train (UTC)", "Test (UTC)", "Chosen IS", "Chosen OOS", "Trades in", "Trades out",
    "Best-IS trial IS", "Best-IS trial OOS",
]  # fmt: skip


def test_the_walk_forward_table_has_a_row_per_window_is_beside_oos() -> None:
    opt = typical()
    c, b = opt.chosen, opt.best_in_sample
    assert c is not None and b is not None
    expected = [
        [str(i + 1), "", "", f"{c.in_sample[i]:.3f}", f"{c.out_of_sample[i]:.3f}",
         str(c.trades_in[i]), str(c.trades_out[i]), f"{b.in_sample[i]:.3f}",
         f"{b.out_of_sample[i]:.3f}"]
        for i in range(3)
    ]  # fmt: skip
    expected.append(["mean", "", "", "1.000", "0.800", str(sum(c.trades_in)),
                     str(sum(c.trades_out)), "2.000", "-0.200"])  # fmt: skip
    md_rows = md_table(render_optimization(opt, "md"), "Walk-forward")
    html_rows = parse(render_optimization(opt, "html")).tables["walk-forward-table"]
    for rows in (md_rows, html_rows):
        assert rows[0] == WALK_HEADER
        assert len(rows) == 1 + 3 + 1
        # The ranges: each window trains 14 days, then tests the 7 after.
        assert rows[1][1:3] == ["2018-01-01 → 2018-01-15", "2018-01-15 → 2018-01-22"]
        assert rows[3][1:3] == ["2018-01-15 → 2018-01-29", "2018-01-29 → 2018-02-05"]
        assert [[r[0], *r[3:]] for r in rows[1:]] == [[e[0], *e[3:]] for e in expected]


def test_one_window_and_window_ends_off_midnight() -> None:
    opt = study((complete(0, (0.4,), (0.1,)), complete(1, (0.2,), (0.3,))), n_windows=1)
    odd = replace(opt.windows[0], train_start=T0 + 90_000, test_end=T0 + 30 * DAY + 60_000)
    for fmt in ("md", "html"):
        text = render_optimization(opt, fmt)
        rows = (
            md_table(text, "Walk-forward")
            if fmt == "md"
            else parse(text).tables["walk-forward-table"]
        )
        assert [r[0] for r in rows] == ["Window", "1", "mean"]  # counted from 1
        assert rows[1][3:] == ["0.200", "0.300", "11", "3", "0.400", "0.100"]
    md = render_optimization(replace(opt, windows=(odd,)), "md")
    assert "| 1 | 2018-01-01 00:01:30 → 2018-01-15 00:00:00 |" in md


def test_importances_are_sorted_largest_first_and_shown_as_shares() -> None:
    opt = replace(
        typical(),
        importances=(("agents.rsi.period", 0.15), ("risk.kelly_fraction", 0.6),
                     ("risk.max_positions", 0.25)),
    )  # fmt: skip
    order = ["risk.kelly_fraction", "risk.max_positions", "agents.rsi.period"]
    md_rows = md_table(render_optimization(opt, "md"), "Parameter importances")
    assert md_rows[1:] == [[order[0], "60.0 %"], [order[1], "25.0 %"], [order[2], "15.0 %"]]
    html = render_optimization(opt, "html")
    assert [r[0] for r in parse(html).tables["importance-table"][1:]] == order
    chart = html[html.index('<svg id="importance-chart"') :]
    chart = chart[: chart.index("</svg>")]
    labels = re.findall(r"<title>([^<]+)</title>", chart)[1:]
    assert labels == order
    widths = [float(w) for w in re.findall(r'<rect class="bar" [^>]*width="([\d.]+)"', chart)]
    assert widths == sorted(widths, reverse=True) and widths[1] / widths[0] == pytest.approx(
        25 / 60, rel=0.01
    )
    none = replace(opt, importances=())
    for fmt in ("md", "html"):
        assert "Not computed: too few complete trials to tell." in render_optimization(none, fmt)
    assert 'id="importance-chart"' not in render_optimization(none, "html")


def test_a_score_that_could_not_be_computed_reads_dash_not_none() -> None:
    opt = study(
        (
            complete(0, (0.5, None), (0.2, 0.4)),
            complete(1, (0.9, 0.7), (None, 0.1)),
            complete(2, (0.1, 0.3), (0.3, 0.5)),
        ),
        n_windows=2,
    )
    assert opt.chosen is not None and opt.chosen.number == 2
    assert opt.best_in_sample is not None and opt.best_in_sample.number == 1
    for fmt in ("md", "html"):
        text = render_optimization(opt, fmt)
        assert "None" not in text and "n/a" not in text
        assert not re.search(r"\bnan\b", text, re.I)
        rows = (
            md_table(text, "Walk-forward")
            if fmt == "md"
            else parse(text).tables["walk-forward-table"]
        )
        assert rows[1][-2:] == ["0.900", "-"]  # the best IS trial's OOS in window 0
        assert rows[-1][-1] == "-"  # and so its OOS mean
    top = md_table(render_optimization(opt, "md"), "Top trials by out-of-sample mean")
    assert [r[:3] for r in top[1:]] == [["2", "0.200", "0.400"], ["0", "-", "0.300"]]


def test_no_chosen_trial_renders_and_says_so() -> None:
    opt = study((stopped(0), stopped(1), stopped(2, "failed")), importances=())
    assert opt.chosen is None and opt.best_in_sample is None
    md = render_optimization(opt, "md")
    html = render_optimization(opt, "html")
    page = parse(html)
    for text in (md, html):
        assert "No trial was chosen: no trial completed (2 pruned, 1 failed)." in text
        assert "Trials: 3 run = 0 complete + 2 pruned + 1 failed." in text
        assert "No trial has an out-of-sample mean." in text
        assert "None" not in text
    assert "No complete trial." in md and "<p>No complete trial.</p>" in html
    assert 'id="history-chart"' not in html  # not an empty box
    rows = page.tables["walk-forward-table"]
    assert len(rows) == 1 + 3 + 1 and all(r[3:] == ["-"] * 6 for r in rows[1:])
    assert md_table(md, "Chosen parameters") == []  # no table of dashes
    assert 'id="params"' not in html
    empty = replace(opt, trials=(), windows=(), space=())
    text = render_optimization(empty, "md")
    assert "No trial was chosen: no trial was run." in text and "Trials: 0 run" in text
    assert "0 sets of parameters were tried." in text and "No parameter." in text


def test_complete_trials_without_oos_scores_leave_nothing_chosen() -> None:
    opt = study((complete(0, (0.5,), (None,)), stopped(1)), n_windows=1)
    assert opt.chosen is None and opt.best_in_sample is not None
    md = render_optimization(opt, "md")
    assert "No trial was chosen: no complete trial has an out-of-sample score (1 pruned)." in md
    assert "Best in sample: trial 0, mean in sample 0.500 (out of sample -)." in md


def test_pipes_and_markup_in_keys_and_choices_are_escaped() -> None:
    key = "agents.<script>x</script>|evil"
    space = (*SPACE, Param(key, "choice", choices=("<b>bold</b>", "a|b", True)))
    chosen = complete(0, (1.0,), (1.0,), **{key: "<b>bold</b>"})
    other = complete(1, (2.0,), (0.0,), **{key: "a|b"})
    opt = replace(
        study((chosen, other), n_windows=1, space=space, importances=((key, 1.0),)),
        study="s|<i>x</i>",
    )
    html = render_optimization(opt, "html")
    page = parse(html)
    assert "<script>" not in html and "<b>bold</b>" not in html and "<i>x</i>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;|evil" in html
    assert [key, "one of <b>bold</b>, a|b, true"] == [page.tables["space-table"][3][0],
                                                      page.tables["space-table"][3][2]]  # fmt: skip
    assert page.tables["params"][3] == [key, "<b>bold</b>", "a|b"]
    md = render_optimization(opt, "md")
    assert "<script>" not in md and "<b>" not in md and "<i>" not in md
    escaped = r"agents.&lt;script&gt;x&lt;/script&gt;\|evil"
    assert f"| {escaped} | choice | one of &lt;b&gt;bold&lt;/b&gt;, a\\|b, true |" in md
    assert f"| {escaped} | &lt;b&gt;bold&lt;/b&gt; | a\\|b |" in md
    assert f"| {escaped} | 100.0 % |" in md
    # Every table row still has its columns: no pipe split a cell.
    for heading, width in (
        ("Search space", 3),
        ("Chosen parameters", 3),
        ("Parameter importances", 2),
    ):
        assert {len(r) for r in md_table(md, heading)} == {width}, heading  # fmt: skip


def test_a_markdown_renderer_shows_the_escaped_text_as_written() -> None:
    """Through a real CommonMark parser with GFM tables (markdown-it-py, which Textual
    uses): no raw HTML gets through, and each cell reads the key and choices as given."""
    key = "agents.<script>x</script>|evil"
    space = (*SPACE, Param(key, "choice", choices=("<b>bold</b>", "a|b")))
    opt = replace(
        study((complete(0, (1.0,), (1.0,), **{key: "a|b"}),), n_windows=1, space=space),
        fragment="/tmp/a|b/<i>x</i>.toml",
    )
    tokens = MarkdownIt("commonmark").enable("table").parse(render_optimization(opt, "md"))
    children = [c for t in tokens if t.type == "inline" for c in t.children or ()]
    assert not [t for t in tokens if t.type == "html_block"]
    assert not [c for c in children if c.type == "html_inline"]
    rows: list[list[str]] = []
    in_cell = False
    for t in tokens:
        if t.type == "tr_open":
            rows.append([])
        elif t.type in ("td_open", "th_open"):
            in_cell = True
        elif t.type == "inline" and in_cell:
            rows[-1].append("".join(c.content for c in t.children or ()))
            in_cell = False
    cells = [r for r in rows if r and r[0] == key]
    assert [key, "choice", "one of <b>bold</b>, a|b"] in cells  # the search space
    assert [key, "a|b", "a|b"] in cells  # chosen beside best in sample
    assert any(c.type == "code_inline" and c.content == "/tmp/a|b/<i>x</i>.toml" for c in children)


def test_scores_read_as_the_objective_says() -> None:
    assert score(1.23456, "sharpe") == "1.235" and score(-0.5, "calmar") == "-0.500"
    assert score(0.0123, "return") == "+1.23 %" and score(-0.5, "return") == "-50.00 %"
    assert score(None, "sharpe") == "-" and score(math.nan, "return") == "-"
    assert score(math.inf, "sharpe") == "inf" and score(-math.inf, "return") == "-inf"
    opt = replace(typical(), objective="return")
    md = render_optimization(opt, "md")
    assert "Objective: the total return, shown as a percentage; minimum trades 5." in md
    assert "Chosen: trial 5, mean out of sample +80.00 % (in sample +100.00 %)." in md
    assert " %</text>" in render_optimization(opt, "html")  # the chart's ticks too


def test_the_top_trials_are_the_ten_best_out_of_sample() -> None:
    trials = tuple(complete(n, (n / 10,), ((n * 7 % 13) / 10,)) for n in range(15))
    opt = study((*trials, stopped(15)), n_windows=1)
    rows = md_table(render_optimization(opt, "md"), "Top trials by out-of-sample mean")[1:]
    expected = sorted(trials, key=lambda t: (-(t.oos_mean or 0.0), t.number))[:10]
    assert [r[0] for r in rows] == [str(t.number) for t in expected]
    assert rows[0][2] == "1.200" and rows[0][3] == expected[0].worker and rows[0][4] == "chosen"
    best = next(r for r in rows if r[0] == "14")
    assert best[4] == "best in sample"


def test_the_markdown_history_is_the_best_so_far_every_tenth() -> None:
    values = [0.1, 0.5, 0.2, 0.9, 0.3, 0.4, 1.2, 0.8, 1.1, 0.0, 1.3, 0.6, 0.2, 0.7, 0.1, 0.9,
              0.5, 0.3, 0.2, 1.0, 0.4, 0.4, 0.3]  # fmt: skip
    trials = tuple(complete(n, (v,), (v / 2,)) for n, v in enumerate(values))
    rows = md_table(render_optimization(study(trials, n_windows=1), "md"), "History")[1:]
    # 23 complete trials: every 3rd, and the last.
    assert [int(r[0]) for r in rows] == [2, 5, 8, 11, 14, 17, 20, 22]
    for after, count, best, by in rows:
        so_far = values[: int(after) + 1]
        assert int(count) == len(so_far)
        assert best == f"{max(so_far):.3f}" and values[int(by)] == max(so_far)


# ---------------------------------------------------------------- the history chart


def drawn(svg: str) -> tuple[list[tuple[float, float]], list[tuple[str, float]], str | None]:
    """The data dots (the legend left out), the best-so-far path as commands (``M`` twice:
    its x, then its y) and the chosen mark's path."""
    data = re.sub(r'<g class="legend">.*?</g>', "", svg)
    dot = r'<circle class="dot" cx="([-\d.]+)" cy="([-\d.]+)"'
    dots = [(float(x), float(y)) for x, y in re.findall(dot, data)]
    best = re.search(r'<path class="best" fill="none" d="M([-\d.]+),([-\d.]+)([^"]*)"', data)
    steps: list[tuple[str, float]] = []
    if best:
        steps = [("M", float(best.group(1))), ("M", float(best.group(2)))]
        steps += [(c, float(v)) for c, v in re.findall(r"([HVh])([-\d.]+)", best.group(3))]
    mark = re.search(r'<path class="chosen" d="([^"]+)"', data)
    return dots, steps, mark.group(1) if mark else None


trial_states = st.sampled_from(["complete", "complete", "complete", "pruned", "failed"])
scores = st.one_of(st.none(), st.floats(-5, 5, allow_nan=False), st.just(math.nan))


@given(st.lists(st.tuples(trial_states, scores), max_size=40), st.randoms())
def test_the_best_so_far_drawn_is_the_running_max_in_trial_order(
    rows: list[tuple[str, float | None]], rnd: object
) -> None:
    trials = [
        TrialRow(n, state, {}, value if state == "complete" else None, (), (), (), (), None)  # type: ignore[arg-type]
        for n, (state, value) in enumerate(rows)
    ]
    rnd.shuffle(trials)  # type: ignore[attr-defined]
    numbers, values, best = history_series(trials)
    expected = [
        (n, v)
        for n, (state, v) in enumerate(rows)
        if state == "complete" and v is not None and math.isfinite(v)
    ]
    assert numbers == [n for n, _ in expected] and values == [v for _, v in expected]
    assert best == [max(values[: i + 1]) for i in range(len(values))]
    svg = history_chart("history-chart", "History", numbers, values)
    dots, steps, _ = drawn(svg)
    assert len(dots) == len(values)
    if not values:
        assert "no complete trial" in svg and not steps
        return
    # The line starts at the first dot, moves right to each later trial and up (only up)
    # to the dot of each trial that beat the best so far.
    assert steps[:2] == [("M", dots[0][0]), ("M", dots[0][1])]
    rises = [i for i in range(1, len(values)) if best[i] > best[i - 1]]
    ups = [v for c, v in steps if c == "V"]
    assert ups == pytest.approx([dots[i][1] for i in rises], abs=0.06)
    assert [v for c, v in steps if c == "H"] == pytest.approx([x for x, _ in dots[1:]], abs=0.06)
    # Up the page is a higher score: each step of the line goes up, never down.
    assert all(b <= a for a, b in zip([dots[0][1], *ups], ups, strict=False))


def test_the_history_chart_with_none_one_and_a_chosen_mark() -> None:
    empty = history_chart("history-chart", "History", [], [])
    assert 'id="history-chart"' in empty and "no complete trial" in empty
    one = history_chart("history-chart", "History", [4], [0.7])
    dots, steps, mark = drawn(one)
    assert len(dots) == 1 and mark is None and steps[0][0] == "M" and steps[-1] == ("h", 1.0)
    assert "nan" not in one.lower()
    assert re.findall(r'text-anchor="middle">(-?\d+)</text>', one) == ["4"]  # its number only
    marked = history_chart("history-chart", "H", [0, 1, 2], [0.1, 0.3, 0.2], chosen=(2, 0.9))
    dots, _, mark = drawn(marked)
    assert mark is not None
    mark_top = float(re.match(r"M([-\d.]+),([-\d.]+)", mark).group(2))  # type: ignore[union-attr]
    assert mark_top < min(y for _, y in dots)  # 0.9 is above every dot
    only_mark = history_chart("history-chart", "H", [], [], chosen=(3, 0.5))
    assert drawn(only_mark)[2] is not None
    # In the report: the chosen trial's OOS mean, as a diamond with its own class.
    html = render_optimization(typical(), "html")
    chart = html[html.index('<svg id="history-chart"') : html.index("</svg>", html.index(
        '<svg id="history-chart"'))]  # fmt: skip
    dots, steps, mark = drawn(chart)
    assert len(dots) == 8 and mark is not None and "chosen trial, out of sample" in chart


def test_running_best() -> None:
    assert running_best([]) == []
    assert running_best([1.0, 0.5, 2.0, -1.0, 2.0, 3.0]) == [1.0, 1.0, 2.0, 2.0, 2.0, 3.0]


# ---------------------------------------------------------------- files


def test_the_files_are_written_whole_beside_the_stem(tmp_path: Path) -> None:
    opt = typical()
    stem = tmp_path / "new" / "eth.v2"
    paths = write_optimization_report(opt, stem)
    assert paths == [tmp_path / "new" / "eth.v2.md", tmp_path / "new" / "eth.v2.html"]
    assert paths[0].read_text() == render_optimization(opt, "md")
    assert paths[1].read_text() == render_optimization(opt, "html")
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["eth.v2.html", "eth.v2.md"]
    [only] = write_optimization_report(opt, tmp_path / "x", formats=("html",))
    assert only.name == "x.html" and not (tmp_path / "x.md").exists()
    with pytest.raises(ValueError, match="format must be one of md, html, got 'pdf'"):
        write_optimization_report(opt, tmp_path / "y", formats=("md", "pdf"))
    assert not (tmp_path / "y.md").exists()  # nothing written when a format is wrong
    (tmp_path / "z.md").mkdir()
    with pytest.raises(FileExistsError):
        write_optimization_report(opt, tmp_path / "z", formats=("md",))
    with pytest.raises(ValueError, match="format must be"):
        render_optimization(opt, "csv")  # type: ignore[arg-type]


# ---------------------------------------------------------------- in a browser


def near(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return all(abs(x - y) <= 40 for x, y in zip(a, b, strict=True))


def rgb(css: str) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in css[css.index("(") + 1 : -1].split(",")[:3])
    return (r, g, b)


async def test_the_html_report_draws_its_history_and_table_in_light_and_dark(
    tmp_path: Path,
) -> None:
    [page_file] = write_optimization_report(typical(), tmp_path / "opt", formats=("html",))
    backgrounds = set()
    async with Browser() as b:
        for scheme in ("light", "dark"):
            page = await b.open(page_file, color_scheme=scheme)
            assert page.problems() == [], scheme
            image = decode_png(await page.screenshot())
            (box,) = await page.boxes("svg#history-chart")
            assert box.width > 300 and box.height > 100, (scheme, box)
            assert drawn_pixels(image, box) > 500, scheme
            # The dots, the best-so-far line and the chosen mark each show in their colour.
            for selector, prop, least in (("circle.dot", "fill", 60), ("path.best", "stroke", 60),
                                          ("path.chosen", "fill", 30)):  # fmt: skip
                colour = rgb(
                    await page.evaluate(
                        f"getComputedStyle(document.querySelector("
                        f"'svg#history-chart {selector}')).{prop}"
                    )
                )
                on = sum(n for c, n in image.colours(box).items() if near(c[:3], colour))
                assert on > least, (scheme, selector, colour, on)
            (table,) = await page.boxes("table#walk-forward-table")
            assert table.width > 300 and table.height > 60, (scheme, table)
            rows = await page.evaluate(
                "Array.from(document.querySelectorAll('#walk-forward-table tbody tr'),"
                " r => Array.from(r.cells, c => c.innerText))"
            )
            assert [r[0] for r in rows] == ["1", "2", "3", "mean"], rows
            assert rows[0][3:5] == ["1.200", "0.900"], rows
            assert drawn_pixels(image, table) > 500, scheme
            (bars,) = await page.boxes("svg#importance-chart")
            assert drawn_pixels(image, bars) > 200, scheme
            backgrounds.add(image.pixel(2, 2)[:3])
    assert len(backgrounds) == 2, "light and dark draw different backgrounds"
