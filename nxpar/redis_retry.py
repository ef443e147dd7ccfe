"""Redis calls retried with back-off, for every rank: a dropped connection is reconnected on retry."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from redis import exceptions as redis_errors

log = logging.getLogger("nxpar.redis")


def call_with_backoff(func: Callable[[], Any], what: str, give_up_after_s: float,
                      before_retry: Callable[[], None] = lambda: None) -> Any:
    """`func()`; connection errors are retried (0.1 s doubling to 2 s) for `give_up_after_s`, then
    RuntimeError('Redis unreachable …'). `before_retry` may reset cached connections, or raise to stop."""
    delay, deadline = 0.1, time.monotonic() + give_up_after_s
    while True:
        try:
            return func()
        except (redis_errors.ConnectionError, redis_errors.TimeoutError) as e:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis unreachable for {give_up_after_s:.0f} s: {e}") from e
            log.warning("%s: Redis error (%s), retry in %.1f s", what, e, delay)
            before_retry()
            time.sleep(delay)
            delay = min(2 * delay, 2.0)
