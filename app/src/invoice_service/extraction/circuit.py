"""A circuit breaker per provider (state kept per process).

closed: calls go through; `failure_threshold` consecutive failures open the circuit.
open: calls are refused (the chain skips the provider) for `reset_seconds`.
half_open: after that, exactly one call (the probe) goes through while others are still refused; its
success closes the circuit, its failure opens it again for another `reset_seconds`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class CircuitState(StrEnum):
    """The three states, as circuit_states() and /health/ready report them."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Consecutive-failure circuit breaker. Use: `if breaker.allow(): ...` then exactly one of
    `record_success()`, `record_failure()` or `release()` (call ended without a verdict)."""

    def __init__(
        self,
        failure_threshold: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitState], None] | None = None,
    ) -> None:
        if failure_threshold < 1 or reset_seconds <= 0:
            raise ValueError("failure_threshold must be >= 1 and reset_seconds > 0")
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._on_change = on_change
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> CircuitState:
        """Current state; an open circuit whose reset time has passed reports half_open."""
        if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self.reset_seconds:
            return CircuitState.HALF_OPEN
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success."""
        return self._failures

    def _set(self, state: CircuitState) -> None:
        if state is not self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(state)

    def allow(self) -> bool:
        """May a call go through now? In half-open state only the first caller (the probe) may."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.OPEN or self._probe_in_flight:
            return False
        self._set(CircuitState.HALF_OPEN)
        self._probe_in_flight = True
        return True

    def record_success(self) -> None:
        """The call succeeded (or the provider answered about the image): close the circuit."""
        self._failures = 0
        self._probe_in_flight = False
        self._set(CircuitState.CLOSED)

    def record_failure(self) -> None:
        """The call failed: count it; open the circuit at the threshold or when the probe failed."""
        self._failures += 1
        probe_failed = self._probe_in_flight or self._state is CircuitState.HALF_OPEN
        self._probe_in_flight = False
        if probe_failed or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._set(CircuitState.OPEN)

    def release(self) -> None:
        """The call ended without a verdict (cancelled): let another caller probe."""
        self._probe_in_flight = False
