"""The virtualised table: only changed rows are re-rendered, the cursor follows its key,
and cell text is drawn as text."""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult

from tui.widgets.table import Column, Row, VirtualTable, cell

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
