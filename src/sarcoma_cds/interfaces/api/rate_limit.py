"""Per-client rate limits (issue 12, denial of service), shared by workers and replicas.

Each API key and each CDS client (by verified issuer) may make ``SARCOMA_CDS_RATE_LIMIT``
requests per minute (fixed one-minute windows; ``0`` turns the limit off). Anonymous local
callers (no API keys configured) are not limited. A request over the limit is answered ``429``
with ``Retry-After`` (seconds to the next window) and a problem document.

The count lives in the database (``rate_limits``: one row per client: window start, requests
claimed), so every worker process and every replica on one database shares it. It stays cheap
at thousands of requests a second: a worker does not write per request but *claims* a chunk of
the window's allowance (``ceil(limit / 60)`` requests: what the client may use in one second)
in one atomic UPDATE, serves from it locally, and claims again when it is used up; once the
database says the window is spent, the worker refuses locally until the window ends without
writing again. So at most about one write per client per second per worker, and none at all
when the limit is off. The price: a worker may hold an unused part of a chunk, so a client can
be refused up to (workers - 1) x chunk requests before its count reaches the limit (never
served more than the limit).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError

from sarcoma_cds.interfaces.api.errors import Problem
from sarcoma_cds.interfaces.api.problems import PROBLEM_TYPE, problem

log = logging.getLogger("sarcoma_cds.service.rate_limit")

WINDOW_S = 60

#: ``claim(key, window_start, wanted, limit)`` -> requests granted (``AuditStore.claim_rate``).
Claim = Callable[[str, datetime, int, int], int]


class TooManyRequests(Problem):
    """429 with ``Retry-After`` and a problem document."""

    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many requests for this client: at most the configured number "
                         f"per minute (SARCOMA_CDS_RATE_LIMIT); retry in {retry_after} s",
                         headers={"Retry-After": str(retry_after)})

    def response(self, rid: str) -> Response:
        return problem(429, self.detail, request_id=rid, headers=self.headers,
                       title="Too many requests", type=PROBLEM_TYPE + "too-many-requests")


@dataclass
class _Window:
    start: int
    allowance: int = 0
    spent: bool = False


class RateLimiter:
    """The rate limit of one worker process (see the module docstring)."""

    def __init__(self, limit_per_minute: int, claim: Claim,
                 clock: Callable[[], float] = time.time) -> None:
        self.limit = max(0, limit_per_minute)
        self.chunk = max(1, math.ceil(self.limit / WINDOW_S))
        self.claim = claim
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._claiming = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def _local(self, key: str) -> tuple[int, bool | None]:
        """(window start, True: allowed / False: refused / None: a claim is needed)."""
        start = int(self.clock() // WINDOW_S) * WINDOW_S
        with self._lock:
            w = self._windows.get(key)
            if w is None or w.start != start:
                return start, None
            if w.allowance > 0:
                w.allowance -= 1
                return start, True
            return start, False if w.spent else None

    def retry_after(self) -> int:
        now = self.clock()
        return max(1, math.ceil((int(now // WINDOW_S) + 1) * WINDOW_S - now))

    def check_local(self, key: str) -> bool | None:
        """True (allowed) or False (refused) from this worker's share; None: :meth:`check` must
        claim from the database (do that off the event loop)."""
        if not self.enabled:
            return True
        return self._local(key)[1]

    def check(self, key: str) -> bool:
        """Whether ``key`` may make one more request now (claims from the database if needed;
        blocking: call it from a worker thread)."""
        if not self.enabled:
            return True
        start, ok = self._local(key)
        if ok is not None:
            return ok
        with self._claiming:  # one claim at a time per worker: waiting threads reuse its chunk
            start, ok = self._local(key)
            if ok is not None:
                return ok
            try:
                granted = self.claim(key, datetime.fromtimestamp(start, UTC), self.chunk,
                                     self.limit)
            except SQLAlchemyError as e:
                # the store is down: not counted here (the request itself fails or not on its
                # own); the next request tries to claim again
                log.warning("rate limit not counted (store unavailable: %s)", type(e).__name__)
                return True
            with self._lock:
                if len(self._windows) > 10_000:  # forget the windows that have ended
                    self._windows = {k: v for k, v in self._windows.items() if v.start >= start}
                w = self._windows.get(key)
                if w is None or w.start != start:
                    w = self._windows[key] = _Window(start)
                if granted <= 0:
                    w.spent = True
                    return False
                w.allowance += granted - 1
                return True

    def enforce_sync(self, key: str) -> None:
        """Raise :class:`TooManyRequests` when ``key`` is over its limit (blocking)."""
        if not self.check(key):
            raise TooManyRequests(self.retry_after())

    async def enforce(self, key: str) -> None:
        """Raise :class:`TooManyRequests` when ``key`` is over its limit; a database claim, when
        one is needed, runs in a worker thread."""
        ok = self.check_local(key)
        if ok is None:
            ok = await anyio.to_thread.run_sync(self.check, key)
        if not ok:
            raise TooManyRequests(self.retry_after())


def _limiter(request: Request) -> RateLimiter | None:
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    return limiter if limiter is not None and limiter.enabled else None


def enforce_for(request: Request, client: str) -> None:
    """429 when ``client`` (``apikey:<name>``, ``cds:<iss>``) is over its limit (blocking: from
    a synchronous dependency, which runs in a worker thread)."""
    limiter = _limiter(request)
    if limiter is not None:
        limiter.enforce_sync(client)


async def enforce_async_for(request: Request, client: str) -> None:
    """Like :func:`enforce_for`, from an asynchronous dependency."""
    limiter = _limiter(request)
    if limiter is not None:
        await limiter.enforce(client)


def install(app: FastAPI, limit_per_minute: int, store: Any) -> RateLimiter:
    """Put the worker's :class:`RateLimiter` on ``app.state`` (``deps`` enforces it once the
    caller is known)."""
    limiter = RateLimiter(limit_per_minute, store.claim_rate)
    app.state.rate_limiter = limiter
    return limiter
