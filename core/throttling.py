"""DRF throttles on the atomic counters of ``core.ratelimit``: one class per
DRF kind (anonymous, user, scope), all counting the same way."""

from __future__ import annotations

import logging
from typing import Any

from rest_framework import throttling
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from core.exceptions import DomainError
from core.ratelimit import parse_rate, rate_hit

logger = logging.getLogger(__name__)


class ThrottleUnavailable(DomainError):
    status_code = 503
    code = "service_unavailable"
    default_message = "The request limiter is unavailable; try again shortly."
    permanent = False
    RETRY_AFTER = 5  # seconds: a Redis restart takes a few

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("retry_after", self.RETRY_AFTER)
        super().__init__(message, **kwargs)


class _AtomicRate(throttling.SimpleRateThrottle):
    """Replaces DRF's read-modify-write history with one atomic increment."""

    _wait: float | None = None
    num_requests: int | None
    duration: int | None

    def parse_rate(self, rate: str | None) -> tuple[int | None, int | None]:  # type: ignore[override]
        return (None, None) if rate is None else parse_rate(rate)

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        assert self.num_requests is not None and self.duration is not None
        try:
            hit = rate_hit(self.key, self.duration)
        except Exception:
            # The shared counter (Redis) is down: reads go on, writes wait.
            logger.warning("rate counter unavailable", exc_info=True)
            if request.method in SAFE_METHODS:
                return True
            raise ThrottleUnavailable() from None
        if hit.count <= self.num_requests:
            return True
        self._wait = hit.retry_after
        return False

    def wait(self) -> float | None:
        return self._wait


# DRF's class first: it picks the key (and, for scopes, the rate); ours counts.
class AnonRateThrottle(throttling.AnonRateThrottle, _AtomicRate):
    pass


class UserRateThrottle(throttling.UserRateThrottle, _AtomicRate):
    pass


class ScopedRateThrottle(throttling.ScopedRateThrottle, _AtomicRate):
    pass
