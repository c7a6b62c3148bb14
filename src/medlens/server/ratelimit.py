"""Per-caller rate limit (sliding one-minute window) for the API.

The caller is the user (signed in, by token or page), else the API token (by its hash),
else the client address: never the session, which anyone gets afresh by loading a page
(the probe sent 100 uploads in 8 s through fresh sessions at a limit of 60 a minute).

In-process and exact: each request timestamp is kept for 60 s. With several server
processes each enforces its own window (documented; a shared limiter would need Redis,
which a local-first tool should not require).
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque

from fastapi import HTTPException

from medlens.server.security import Actor

WINDOW_S = 60.0


def caller_key(actor: Actor, client_host: str | None) -> str:
    """Whose allowance a request uses: the user's, the token's, else the address's."""
    if actor.user_id:
        return f"user:{actor.user_id}"
    if actor.name.startswith("token:"):  # a bootstrap token, by API or a page logged in with it
        return actor.name
    return f"addr:{client_host or 'unknown'}"  # no auth: sessions are free to make


class RateLimiter:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, key: str, now: float | None = None) -> None:
        """Record a request for `key`, or raise 429 when its window is full."""
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - WINDOW_S:
                hits.popleft()
            if len(hits) >= self.per_minute:
                retry = max(1, math.ceil(hits[0] + WINDOW_S - now))
                raise HTTPException(
                    429,
                    f"Too many requests: the limit is {self.per_minute} per minute. "
                    f"Try again in {retry} s.",
                    headers={"Retry-After": str(retry)},
                )
            hits.append(now)
            if len(self._hits) > 10_000:  # forget idle callers so memory stays bounded
                for k in [k for k, v in self._hits.items() if not v]:
                    del self._hits[k]
