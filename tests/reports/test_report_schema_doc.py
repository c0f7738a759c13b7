"""docs/report-schema.md lists every field of every record the JSON report holds."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from engine.backtest.metrics import Breakdown, Results
from reports import model

DOC = Path(__file__).resolve().parents[2] / "docs" / "report-schema.md"
RECORDS = [
    model.Report, model.SessionInfo, Results, Breakdown, model.HumanEdge, model.EdgeRow,
    model.EdgeFigure, model.Trade, model.Vote, model.Decision, model.Denial, model.EquityPoint,
]  # fmt: skip


def _section(name: str) -> str:
    text = DOC.read_text()
    title = "Report (the top level)" if name == "Report" else name
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert match, f"no section {title!r} in {DOC.name}"
    return match.group(1)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.__name__)
def test_every_field_is_documented_in_its_section(record: type) -> None:
    listed = re.findall(r"^\| `(\w+)` \|", _section(record.__name__), re.M)
    assert listed == [f.name for f in fields(record)]


def test_the_documented_version_is_the_one_written() -> None:
    assert f"schema version {model.SCHEMA_VERSION}" in DOC.read_text().splitlines()[0]
