"""The per-provider circuit breaker, on a fake clock."""

from __future__ import annotations

import pytest

from invoice_service.extraction.circuit import CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_opens_after_threshold_consecutive_failures(clock: Clock) -> None:
    changes: list[CircuitState] = []
    breaker = CircuitBreaker(3, 60, clock=clock, on_change=changes.append)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert not breaker.allow()
    assert changes == [CircuitState.OPEN]


def test_a_success_resets_the_count(clock: Clock) -> None:
    breaker = CircuitBreaker(3, 60, clock=clock)
    for _ in range(5):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.consecutive_failures == 0


def test_half_open_lets_exactly_one_probe_through(clock: Clock) -> None:
    breaker = CircuitBreaker(1, 60, clock=clock)
    breaker.record_failure()
    clock.now += 59.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else waits for its verdict
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allow()


def test_failed_probe_reopens_for_another_period(clock: Clock) -> None:
    changes: list[CircuitState] = []
    breaker = CircuitBreaker(2, 60, clock=clock, on_change=changes.append)
    breaker.record_failure()
    breaker.record_failure()
    clock.now += 60
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    clock.now += 59
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()
    assert changes == [CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.OPEN, CircuitState.HALF_OPEN]


def test_cancelled_probe_lets_the_next_caller_probe(clock: Clock) -> None:
    breaker = CircuitBreaker(1, 10, clock=clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.release()
    assert breaker.allow()


@pytest.mark.parametrize(("threshold", "reset"), [(0, 10), (1, 0)])
def test_rejects_nonsense_configuration(threshold: int, reset: float) -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(threshold, reset)
