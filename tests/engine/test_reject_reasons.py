"""The reject reasons in words: one list, in engine/models.py, for every reason."""

from __future__ import annotations

from engine.models import REJECT_REASON_LABELS, RejectReason


def test_every_reject_reason_has_one_label() -> None:
    assert set(REJECT_REASON_LABELS) == set(RejectReason)
    for reason in RejectReason:
        assert reason.label == REJECT_REASON_LABELS[reason] == REJECT_REASON_LABELS[reason.value]
        assert reason.label and reason.label == reason.label.strip()
