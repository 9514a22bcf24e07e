"""Client-side rate limiting: stay under HubSpot's rolling windows instead of bouncing off their 429s.

HubSpot counts requests in a *rolling* window (100 per 10 s for a private app on most tiers; search:
a few per second). A classic refilling bucket lets through its capacity plus a window's worth of refill
in one window, which is a 429. So each token here goes back into the bucket only `window` seconds after
the request that spent it has *finished*: at most `capacity` requests are then in any window the server
can observe, whatever the network latency.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["RollingBucket"]

_IDLE_POLL = 0.05  # seconds to wait when every token is held by a request still in flight


class RollingBucket:
    """At most `capacity` requests in any `window` seconds; `clock`/`sleep` are injectable for tests."""

    def __init__(self, *, capacity: int, window: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if capacity < 1 or window <= 0:
            raise ValueError("a rate limit needs a capacity of at least 1 and a positive window")
        self.capacity, self.window = capacity, window
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._returns: list[float] = []  # when each spent token comes back (a heap)
        self._in_flight = 0
        self._blocked_until = 0.0
        self.waited = 0.0  # total seconds spent waiting, for reports and benchmarks

    def _try_take(self) -> float:
        """Take a token and return 0, or return how long to wait before trying again."""
        with self._lock:
            now = self._clock()
            while self._returns and self._returns[0] <= now:
                heapq.heappop(self._returns)
            if now < self._blocked_until:
                return self._blocked_until - now
            if self._in_flight + len(self._returns) < self.capacity:
                self._in_flight += 1
                return 0.0
            return self._returns[0] - now if self._returns else _IDLE_POLL

    def acquire(self) -> None:
        """Wait until a request may be sent, and count it."""
        while (delay := self._try_take()) > 0:
            self.waited += delay
            self._sleep(delay)

    def release(self) -> None:
        """The request has finished (answered or failed): its token returns one window from now."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            heapq.heappush(self._returns, self._clock() + self.window)

    def block_for(self, seconds: float) -> None:
        """The server said to wait (a 429): hand out nothing for `seconds`."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + max(0.0, seconds))

    @contextmanager
    def slot(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()
