"""engine.exchange.breaker: repeated failures open the circuit breaker; after a cooldown
one probe decides. A hand-driven clock, no sleeps."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.exchange.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker(**kwargs: float) -> tuple[CircuitBreaker, Clock, list[tuple[str, str, str]]]:
    clock, changes = Clock(), []
    breaker = CircuitBreaker(
        clock=clock, on_change=lambda old, new, why: changes.append((old, new, why)), **kwargs
    )
    return breaker, clock, changes


def test_threshold_failures_within_the_window_open_it_with_the_last_reason() -> None:
    breaker, clock, changes = _breaker(threshold=3, window_s=10.0)
    for n in range(2):
        breaker.failure(f"binance: RequestTimeout: {n}")
        clock.now += 4
    assert breaker.state == "closed" and breaker.allows()
    breaker.failure("binance: RequestTimeout: 2")
    assert breaker.state == "open" and not breaker.allows()
    assert breaker.reason == "binance: RequestTimeout: 2" and breaker.opened_at == 1008.0
    assert changes == [("closed", "open", "binance: RequestTimeout: 2")]


def test_failures_spread_wider_than_the_window_keep_it_closed() -> None:
    breaker, clock, _ = _breaker(threshold=3, window_s=10.0)
    for _ in range(10):
        breaker.failure("slow")
        clock.now += 5.1
    assert breaker.state == "closed"


def test_a_success_forgives_the_failures_before_it() -> None:
    breaker, _, _ = _breaker(threshold=3)
    breaker.failure("a")
    breaker.failure("b")
    breaker.success()
    breaker.failure("c")
    breaker.failure("d")
    assert breaker.state == "closed"


def test_after_the_cooldown_one_probe_goes_and_its_success_closes_it() -> None:
    breaker, clock, changes = _breaker(threshold=1, cooldown_s=30.0)
    breaker.failure("down")
    clock.now += 29.9
    assert breaker.state == "open" and not breaker.allows()
    clock.now += 0.1
    assert breaker.state == "half_open"
    assert breaker.allows() and not breaker.allows()
    breaker.success()
    assert breaker.state == "closed" and breaker.allows() and breaker.allows()
    assert [(old, new) for old, new, _ in changes] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_a_failed_probe_opens_it_for_another_cooldown() -> None:
    breaker, clock, _ = _breaker(threshold=2, cooldown_s=30.0)
    breaker.failure("a")
    breaker.failure("b")
    clock.now += 30
    assert breaker.allows()
    breaker.failure("probe failed")
    assert breaker.state == "open" and breaker.opened_at == clock.now
    assert breaker.reason == "probe failed"
    clock.now += 29
    assert not breaker.allows()


def test_a_probe_that_never_reports_is_given_up_after_a_cooldown() -> None:
    breaker, clock, _ = _breaker(threshold=1, cooldown_s=30.0)
    breaker.failure("down")
    clock.now += 30
    assert breaker.allows()
    clock.now += 29
    assert not breaker.allows()
    clock.now += 1
    assert breaker.allows()


def test_a_late_success_while_open_does_not_close_it() -> None:
    breaker, _, _ = _breaker(threshold=1)
    breaker.failure("down")
    breaker.success()
    assert breaker.state == "open"
    assert repr(breaker) == "CircuitBreaker(state='open', reason='down')"


def test_without_on_change_it_still_moves() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown_s=5.0, clock=clock)
    breaker.failure("down")
    clock.now += 5
    assert breaker.allows() and breaker.state == "half_open"


@pytest.mark.parametrize("kwargs", [{"threshold": 0}, {"window_s": 0.0}, {"cooldown_s": -1.0}])
def test_settings_that_could_never_work_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


step = st.one_of(
    st.tuples(st.just("failure"), st.floats(0, 40)),
    st.tuples(st.just("success"), st.floats(0, 40)),
    st.tuples(st.just("allows"), st.floats(0, 40)),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(step, max_size=60),
    threshold=st.integers(1, 6),
    window_s=st.floats(1, 60),
    cooldown_s=st.floats(1, 60),
)
def test_the_breaker_opens_exactly_on_a_run_of_failures_and_probes_one_at_a_time(
    steps: list[tuple[str, float]], threshold: int, window_s: float, cooldown_s: float
) -> None:
    breaker, clock, changes = _breaker(
        threshold=threshold, window_s=window_s, cooldown_s=cooldown_s
    )
    run: list[float] = []  # failures while closed since the last success or opening
    probe: float | None = None  # when the half-open breaker last let a request through
    for kind, wait in steps:
        clock.now += wait
        before = breaker.state
        if kind == "failure":
            breaker.failure("x")
            if before == "closed":
                run = [t for t in run if clock.now - t <= window_s] + [clock.now]
                assert (breaker.state == "open") == (len(run) >= threshold)
            else:
                assert breaker.state == "open"
            if breaker.state == "open":
                run = []
        elif kind == "success":
            breaker.success()
            run = []
            assert breaker.state == ("open" if before == "open" else "closed")
        else:
            allowed = breaker.allows()
            assert allowed if before == "closed" else (before == "half_open" or not allowed)
            if before == "half_open" and allowed:
                assert probe is None or clock.now - probe >= cooldown_s
                probe = clock.now
        state: BreakerState = breaker.state
        if state != "half_open":
            probe = None
        if state == "open":
            assert breaker.opened_at is not None
            assert clock.now - breaker.opened_at < cooldown_s
    # on_change told every change, each starting where the last one ended.
    chain = [("closed", "closed", ""), *changes]
    assert all(c[1] == d[0] and d[0] != d[1] for c, d in pairwise(chain))
    assert chain[-1][1] == breaker.state
