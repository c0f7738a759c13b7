"""Three-line block letters, for the trading state that must be seen from across a room."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

_GLYPHS: dict[str, tuple[str, str, str]] = {
    "A": ("▄▀▄", "█▀█", "▀ ▀"),
    "C": ("▄▀▀", "█  ", " ▀▀"),
    "D": ("█▀▄", "█ █", "▀▀ "),
    "E": ("█▀▀", "█▀ ", "▀▀▀"),
    "G": ("▄▀▀ ", "█ ▀█", " ▀▀ "),
    "H": ("█ █", "█▀█", "▀ ▀"),
    "I": ("▀█▀", " █ ", "▀▀▀"),
    "L": ("█  ", "█  ", "▀▀▀"),
    "N": ("█▄ █", "█ ▀█", "▀  ▀"),
    "R": ("█▀▄", "█▀▄", "▀ ▀"),
    "T": ("▀█▀", " █ ", " ▀ "),
    "U": ("█ █", "█ █", "▀▀▀"),
    "V": ("█ █", "▀▄▀", " ▀ "),
    " ": ("  ", "  ", "  "),
}


def big_lines(word: str) -> tuple[str, str, str]:
    """``word`` in three lines of block letters; unknown letters stay plain."""
    rows: list[list[str]] = [[], [], []]
    for letter in word.upper():
        glyph = _GLYPHS.get(letter, (" ", letter, " "))
        for row, part in zip(rows, glyph, strict=True):
            row.append(part)
    top, middle, bottom = (" ".join(row) for row in rows)
    return top, middle, bottom


class BigText(Static):
    """A word in large letters (falls back to plain text when too narrow)."""

    DEFAULT_CSS = """
    BigText { height: 3; width: 1fr; text-align: center; }
    """

    def __init__(self, word: str = "", *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.word = word

    def set_word(self, word: str) -> None:
        """Show ``word``."""
        if word != self.word:
            self.word = word
            self.refresh(layout=True)

    def render(self) -> Text:
        lines = big_lines(self.word)
        if self.size.width and len(lines[0]) > self.size.width:
            return Text(f"\n{self.word}\n", justify="center")
        return Text("\n".join(lines))
