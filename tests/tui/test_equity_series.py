"""The equity chart's model on its own: no widget, no app."""

from __future__ import annotations

from tui.equity_series import EQUITY_POINTS, EquitySeries


def test_points_are_kept_in_order_and_each_bumps_the_version() -> None:
    series = EquitySeries()
    series.add(60_000, 100.0, 0.0)
    series.add(120_000, 99.0, 0.01)
    assert len(series) == 2
    assert (series.ts, series.equity, series.drawdown) == (
        [60_000, 120_000],
        [100.0, 99.0],
        [0.0, 0.01],
    )
    assert series.version == 2


def test_past_the_limit_every_other_point_goes_and_the_stride_doubles() -> None:
    series = EquitySeries(limit=4)
    for i in range(5):
        series.add(i, float(i), 0.0)
    # Five points overflowed four: the even ones stay.
    assert series.ts == [0, 2, 4]
    version = series.version
    series.add(5, 5.0, 0.0)  # the 6th call: skipped, the stride is now 2
    assert series.ts == [0, 2, 4] and series.version == version
    series.add(6, 6.0, 0.0)  # the 7th: kept
    assert series.ts == [0, 2, 4, 6] and series.version == version + 1


def test_a_long_session_stays_bounded_and_evenly_sampled() -> None:
    series = EquitySeries()
    for i in range(100 * EQUITY_POINTS):
        series.add(i * 60_000, 100.0 + i, 0.0)
    assert EQUITY_POINTS // 2 <= len(series) <= EQUITY_POINTS
    steps = {b - a for a, b in zip(series.ts, series.ts[1:], strict=False)}
    assert len(steps) == 1  # one spacing from start to end
    assert series.ts[0] == 0
