"""The circuit breaker in front of the exchange: repeated failures open it.

``closed``: requests go through; ``threshold`` failures within ``window_s`` seconds, with
no success between them, open it. ``open``: :meth:`CircuitBreaker.allows` is False (the
engine stays in REDUCING, the console and the status line show it) until ``cooldown_s``
has passed; then it is ``half_open`` and lets one probe through. The probe's
:meth:`~CircuitBreaker.success` closes it, its :meth:`~CircuitBreaker.failure` opens it
again for another cooldown; a probe that never reports back is given up after a
cooldown and another one is let through.

What counts as a failure is the caller's choice: network errors, timeouts, rate limits
and unknown outcomes do; an order the exchange rejects for its own rules does not.

Pure and synchronous (no asyncio, its clock injected), so the core may read it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Counts failures and opens after ``threshold`` of them within ``window_s``.

    ``on_change(old, new, reason)`` is called on every change of :attr:`state` (also the
    timed one from open to half-open, when the state is next looked at).
    """

    def __init__(
        self,
        threshold: int = 5,
        window_s: float = 60.0,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState, BreakerState, str], object] | None = None,
    ) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, got {threshold}")
        if not window_s > 0 or not cooldown_s > 0:
            raise ValueError(
                f"window_s and cooldown_s must be above 0, got {window_s} and {cooldown_s}"
            )
        self.threshold = threshold
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._on_change = on_change
        self._state: BreakerState = "closed"
        self._failures: deque[float] = deque()
        self._probe_at: float | None = None
        self.reason = ""
        """Why it opened last: the failure that opened it (kept after it closes)."""
        self.opened_at: float | None = None
        """The clock's time it opened last, None while it never has."""

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open`` or ``half_open`` now."""
        if self._state == "open" and self._clock() - self._opened() >= self.cooldown_s:
            self._move("half_open")
        return self._state

    def _opened(self) -> float:
        assert self.opened_at is not None  # set whenever the state is open
        return self.opened_at

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if new != "half_open":
            self._probe_at = None
        if self._on_change is not None and old != new:
            self._on_change(old, new, self.reason)

    def allows(self) -> bool:
        """Whether a request may go now. In half-open, True once (the probe is then under
        way) and again only when a probe has been out a whole cooldown without news."""
        state = self.state
        if state == "closed":
            return True
        if state == "open":
            return False
        now = self._clock()
        if self._probe_at is None or now - self._probe_at >= self.cooldown_s:
            self._probe_at = now
            return True
        return False

    def failure(self, reason: str) -> None:
        """A request failed (``reason``: one line, already redacted)."""
        now = self._clock()
        state = self.state
        if state == "open":
            return
        if state == "half_open":
            self._open(reason, now)
            return
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.window_s:
            self._failures.popleft()
        if len(self._failures) >= self.threshold:
            self._open(reason, now)

    def _open(self, reason: str, now: float) -> None:
        self._failures.clear()
        self.reason = reason
        self.opened_at = now
        self._move("open")

    def success(self) -> None:
        """A request went through: the failures so far are forgiven; a probe's success
        closes it. While open it stays open (a request sent before it opened may still
        come back well): only a probe after the cooldown closes it."""
        self._failures.clear()
        if self.state == "half_open":
            self._move("closed")

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, reason={self.reason!r})"
