"""Resize: absurd sizes are refused by the dialog and the engine alike, and a size
the risk limits cut is explained before it is approved."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest
from harness import SteppedFeed, make_app, make_settings, query
from hypothesis import given
from hypothesis import strategies as st
from test_console import WARM_UP, boot, settle

from engine.models import QTY_QUANTUM
from engine.runtime import MAX_ORDER_QTY, CommandError, Engine
from persistence.store import Store
from tui import format as fmt
from tui.screens.main import MainScreen
from tui.screens.modals import ResizeDialog, parse_positive_decimal

ABSURD = ["1e308", "1E+20", "9" * 300, "NaN", "-Infinity", "0.000000001", "1e-300", "0"]


@pytest.mark.parametrize("text", ABSURD)
def test_the_dialog_refuses_an_absurd_size(text: str) -> None:
    with pytest.raises(ValueError):
        parse_positive_decimal(text)


@given(
    st.one_of(
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
        st.text(alphabet="0123456789.,_-+eE%naifNI ", max_size=60),
    )
)
def test_any_accepted_size_is_a_sane_quantity(text: str) -> None:
    try:
        value = parse_positive_decimal(text)
    except ValueError:
        return
    assert QTY_QUANTUM <= value <= MAX_ORDER_QTY
    assert value == value.quantize(QTY_QUANTUM)


@pytest.mark.parametrize("qty", ["1e308", "1E+16", "0.000000001", "NaN"])
async def test_the_engine_refuses_an_absurd_size_and_stores_nothing(
    tmp_path: Path, qty: str
) -> None:
    db = tmp_path / "cma.db"
    store = await Store.open(db)
    feed = SteppedFeed()
    engine = Engine(make_settings(db), store, feed)
    try:
        await engine.start()
        await feed.advance(WARM_UP)
        proposal = engine.pending()[-1]
        with pytest.raises(CommandError, match="size"):
            await engine.approve(proposal.id, Decimal(qty))
        assert proposal.id in {p.id for p in engine.pending()}
        await engine.stop()
    finally:
        await store.close()
    assert query(db, "SELECT COUNT(*) FROM decisions WHERE proposal_id = ?", proposal.id) == [(0,)]
    sizes = query(db, "SELECT qty FROM order_intents")
    assert all(len(q) < 30 for (q,) in sizes)


async def test_a_size_the_risk_cap_cuts_is_explained_before_approving(tmp_path: Path) -> None:
    db = tmp_path / "cma.db"
    feed = SteppedFeed()
    app = make_app(tmp_path, feed, make_settings(db))
    async with app.run_test(size=(120, 40)) as pilot:
        await boot(app, pilot, feed)
        await pilot.press("end")
        proposal = app.selected_proposal()
        assert proposal is not None and app.engine is not None
        await pilot.press("s")
        dialog = app.screen
        assert isinstance(dialog, ResizeDialog)
        await pilot.press("ctrl+a", "ctrl+k", *"1e308", "enter")
        await pilot.pause()
        assert app.screen is dialog
        assert "at most" in str(dialog.query_one("#resize-error").render())
        huge = proposal.size * 1000
        allowed = app.engine.preview_entry(proposal.id, huge)
        assert allowed.allowed and allowed.quantity < huge
        await pilot.press("ctrl+a", "ctrl+k", *str(huge), "enter")
        await pilot.pause()
        assert app.screen is dialog  # not approved yet: the cut is explained first
        text = str(dialog.query_one("#resize-error").render())
        cut = f"{fmt.qty_full(huge)} to {fmt.qty_full(allowed.quantity)}"
        assert f"the risk limits cut {cut}" in text
        assert "position cap" in text and "enter again" in text
        await pilot.press("enter")
        await settle(app, pilot)
        assert isinstance(app.screen, MainScreen)
    rows = query(db, "SELECT size FROM decisions WHERE proposal_id = ?", proposal.id)
    assert [Decimal(r[0]) for r in rows] == [allowed.quantity]


@pytest.mark.parametrize("text", ["1" * 10_000, "1e999999999", "1e-999999999", "∞", "0x10"])
def test_odd_text_is_a_readable_error_never_a_decimal_exception(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_positive_decimal(text)
    assert not isinstance(caught.value, InvalidOperation)
