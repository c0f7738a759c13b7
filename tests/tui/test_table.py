"""The virtualised table: only changed rows are re-rendered, the cursor follows its key,
and cell text is drawn as text."""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult

from tui.widgets.table import Column, Row, RowSource, VirtualTable, cell

COLUMNS = (Column("sym", "Symbol", 10), Column("px", "Price", 10, "right"))


def rows(n: int, *, changed: dict[int, str] | None = None) -> list[tuple[str, Row]]:
    changed = changed or {}
    return [(f"k{i}", (cell(f"SYM{i}"), cell(changed.get(i, f"{i}.00")))) for i in range(n)]


class TableApp(App[None]):
    def __init__(self, columns: tuple[Column, ...] = COLUMNS) -> None:
        super().__init__()
        self.columns = columns
        self.moves: list[str | None] = []

    def compose(self) -> ComposeResult:
        yield VirtualTable(self.columns, empty_text="nothing here", id="t")

    def on_virtual_table_cursor_moved(self, event: VirtualTable.CursorMoved) -> None:
        self.moves.append(event.key)


def screen_lines(app: App[Any]) -> list[str]:
    table = app.query_one(VirtualTable)
    return [table.render_line(y).text for y in range(table.size.height)]


async def test_changing_one_visible_row_renders_only_that_row() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        table = app.query_one(VirtualTable)
        table.set_rows(rows(500))
        await pilot.pause()
        before = table.rendered_rows
        assert 0 < before <= 12  # only what is on screen, not 500 rows
        assert table.set_rows(rows(500, changed={3: "9.99"})) == 1
        await pilot.pause()
        assert table.rendered_rows == before + 1
        assert "9.99" in screen_lines(app)[4]


async def test_changing_rows_off_screen_renders_nothing_until_they_scroll_in() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        table = app.query_one(VirtualTable)
        table.set_rows(rows(500))
        await pilot.pause()
        before = table.rendered_rows
        table.set_rows(rows(500, changed={i: "1.23" for i in range(100, 400)}))
        await pilot.pause()
        assert table.rendered_rows == before
        table.select_key("k250")
        await pilot.pause()
        assert table.rendered_rows > before
        assert any("1.23" in line for line in screen_lines(app))


async def test_cursor_keys_move_and_scroll() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        table = app.query_one(VirtualTable)
        table.set_rows(rows(100))
        table.focus()
        await pilot.pause()
        await pilot.press("down", "down")
        assert table.cursor_key == "k2"
        await pilot.press("pagedown")
        assert table.cursor_row > 2
        await pilot.press("end")
        assert table.cursor_key == "k99"
        assert table.scroll_y > 0
        assert "SYM99" in "".join(screen_lines(app))
        await pilot.press("home")
        assert (table.cursor_key, table.scroll_y) == ("k0", 0)
        await pilot.press("up")
        assert table.cursor_key == "k0"


async def test_cursor_follows_its_row_and_stays_in_place_when_the_row_goes() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        table = app.query_one(VirtualTable)
        table.set_rows(rows(5))
        table.select_key("k2")
        await pilot.pause()
        table.set_rows(list(reversed(rows(5))))
        assert (table.cursor_key, table.cursor_row) == ("k2", 2)
        table.set_rows([r for r in rows(5) if r[0] != "k2"])
        assert (table.cursor_key, table.cursor_row) == ("k3", 2)
        table.set_rows(())
        await pilot.pause()
        assert table.cursor_key is None
        assert app.moves[-2:] == ["k3", None]
        assert "nothing here" in screen_lines(app)[1]


async def test_markup_in_cells_is_drawn_as_text() -> None:
    app = TableApp(columns=(Column("text", "Text", 36),))
    async with app.run_test(size=(40, 6)) as pilot:
        table = app.query_one(VirtualTable)
        table.set_rows([("x", (cell("[b]bold?[/b] [@click=app.quit]q[/]"),))])
        await pilot.pause()
        assert "[b]bold?[/b] [@click=app.quit]q[/]" in screen_lines(app)[1]


async def test_long_text_is_cut_with_an_ellipsis_and_a_stretch_column_takes_the_width() -> None:
    columns = (Column("a", "A", 4), Column("b", "B", 5, stretch=True))
    app = TableApp(columns=columns)
    async with app.run_test(size=(30, 6)) as pilot:
        table = app.query_one(VirtualTable)
        table.set_rows([("x", (cell("abcdefgh"), cell("word " * 10)))])
        await pilot.pause()
        line = screen_lines(app)[1]
        assert line.startswith("abc… word word")
        assert line.rstrip().endswith("…")
        assert table.virtual_size.width <= table.size.width


async def test_duplicate_keys_are_refused() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 6)):
        table = app.query_one(VirtualTable)
        try:
            table.set_rows([("a", ()), ("a", ())])
        except ValueError as exc:
            assert "unique" in str(exc)
        else:
            raise AssertionError("duplicate keys were accepted")


# ---- a row source: cells computed on demand, for the rows on screen only ----------


class Source:
    """Prices by key, and which rows the table asked for (a plain data object, no mock)."""

    def __init__(self, n: int, *, changed: dict[int, str] | None = None) -> None:
        self.keys = [f"k{i}" for i in range(n)]
        self.prices = {i: f"{i}.00" for i in range(n)} | (changed or {})
        self.asked: list[int] = []

    def row(self, index: int) -> Row:
        self.asked.append(index)
        return (cell(f"SYM{index}"), cell(self.prices[index]))

    def reordered(self, keys: list[str]) -> tuple[list[str], RowSource]:
        """The same rows in the order of ``keys``, as (keys, source)."""
        position = {key: i for i, key in enumerate(self.keys)}

        def row(index: int) -> Row:
            return self.row(position[keys[index]])

        return keys, row


async def test_a_source_is_asked_only_for_the_rows_on_screen() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        table = app.query_one(VirtualTable)
        visible = table.scrollable_content_region.height - 1
        first = Source(500)
        table.set_source(first.keys, first.row)
        await pilot.pause()
        assert sorted(set(first.asked)) == list(range(visible))
        assert table.computed_rows == len(first.asked) == visible
        rendered = table.rendered_rows
        assert rendered == visible  # the rows on screen, not 500
        # Every row changes (a new tick): only the rows on screen are computed again.
        second = Source(500, changed={i: f"{i}.50" for i in range(500)})
        table.set_source(second.keys, second.row)
        await pilot.pause()
        assert sorted(second.asked) == list(range(visible))
        assert table.rendered_rows == rendered + visible
        assert all(".50" in line for line in screen_lines(app)[1 : visible + 1])
        # Nothing changes: rows on screen are compared, none is drawn again.
        third = Source(500, changed={i: f"{i}.50" for i in range(500)})
        table.set_source(third.keys, third.row)
        await pilot.pause()
        assert sorted(third.asked) == list(range(visible))
        assert table.rendered_rows == rendered + visible


async def test_an_off_screen_row_that_changed_shows_its_new_value_when_scrolled_in() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        table = app.query_one(VirtualTable)
        table.focus()
        first = Source(500)
        table.set_source(first.keys, first.row)
        await pilot.pause()
        table.select_key("k250")  # draws row 250 at 250.00
        await pilot.pause()
        assert any("250.00" in line for line in screen_lines(app))
        await pilot.press("home")
        second = Source(500, changed={250: "9.99"})
        table.set_source(second.keys, second.row)
        await pilot.pause()
        assert 250 not in second.asked  # off screen: not computed
        table.select_key("k250")
        await pilot.pause()
        assert 250 in second.asked
        line = next(line for line in screen_lines(app) if "SYM250 " in line)
        assert "9.99" in line and "250.00" not in line
        # Asked for directly, an off-screen row is computed from the current source too.
        third = Source(500, changed={3: "3.33"})
        table.set_source(third.keys, third.row)
        assert table.get_row("k3") == (cell("SYM3"), cell("3.33"))
        assert table.get_row("nope") is None


async def test_the_cursor_follows_its_key_when_a_source_reorders_the_rows() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        table = app.query_one(VirtualTable)
        source = Source(50)
        table.set_source(source.keys, source.row)
        table.select_key("k2")
        await pilot.pause()
        moves = len(app.moves)
        table.set_source(*source.reordered(list(reversed(source.keys))))
        await pilot.pause()
        assert (table.cursor_key, table.cursor_row) == ("k2", 47)
        assert len(app.moves) == moves  # the same row is selected: no CursorMoved
        assert table.scroll_y == 0
        assert screen_lines(app)[1].startswith("SYM49")
        # The selected row goes: the cursor stays at its position, on the row now there.
        table.set_source(*source.reordered([k for k in reversed(source.keys) if k != "k2"]))
        await pilot.pause()
        assert (table.cursor_key, table.cursor_row) == ("k1", 47)
        assert app.moves[-1] == "k1"
        try:
            table.set_source(["a", "a"], source.row)
        except ValueError as exc:
            assert "unique" in str(exc)
        else:
            raise AssertionError("duplicate keys were accepted")


async def test_a_theme_change_redraws_rows_in_the_new_theme() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 12)) as pilot:
        app.theme = "textual-dark"
        table = app.query_one(VirtualTable)
        source = Source(50)
        table.set_source(source.keys, source.row)
        await pilot.pause()
        dark = table.render_line(2)
        app.theme = "textual-light"
        await pilot.pause()
        light = table.render_line(2)
        assert light.text == dark.text
        assert light != dark
        assert {s.style for s in light if s.style} == {table.rich_style}
