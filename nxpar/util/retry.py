"""Calls to a service retried with back-off, for every rank: Redis (a dropped connection is
reconnected on retry) and Beacon. The one retry policy of nxpar."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from redis import exceptions as redis_errors

log = logging.getLogger("nxpar.redis")


REDIS_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError)


def call_with_backoff(func: Callable[[], Any], what: str, give_up_after_s: float,
                      before_retry: Callable[[], None] = lambda: None,
                      errors: tuple[type[BaseException], ...] = REDIS_ERRORS, service: str = "Redis") -> Any:
    """`func()`; `errors` (connection errors) are retried (0.1 s doubling to 2 s) for
    `give_up_after_s`, then RuntimeError('<service> unreachable …'). `before_retry` may reset cached
    connections, or raise to stop."""
    delay, deadline = 0.1, time.monotonic() + give_up_after_s
    while True:
        try:
            return func()
        except errors as e:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service} unreachable for {give_up_after_s:.0f} s: {e}") from e
            log.warning("%s: %s error (%s), retry in %.1f s", what, service, e, delay)
            before_retry()
            time.sleep(delay)
            delay = min(2 * delay, 2.0)
