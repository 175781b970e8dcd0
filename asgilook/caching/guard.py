"""Keeping Redis from hurting the app: a time limit, a circuit breaker, repairs.

Redis is an accelerator here, never a dependency. :class:`RedisGuard` runs
each operation on Redis within a time limit that really ends it (even against
a paused Redis), leaves Redis alone for a while after a failure, logs one
warning when an outage starts and one when it ends, and lets its owner
repair what an outage may have left behind (the cache sets a new generation)
before Redis is used again. The response cache uses it, and anything else
that talks to Redis can.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any
from typing import TypeVar

import redis.exceptions

T = TypeVar('T')

# NOTE: What a Redis that is down, restarting, paused or misbehaving makes a
#   command raise: redis-py's own errors (connection, timeout, READONLY, ...),
#   plain socket errors, and the TimeoutError of the time limit (an OSError,
#   spelt out for the reader).
FAILURES = (redis.exceptions.RedisError, OSError, TimeoutError)


class Unavailable(Exception):
    """Redis was skipped (breaker open) or failed: go on without it."""


class RedisGuard:
    """Run operations on one Redis client within a time limit and a breaker.

    Args:
        timeout: Seconds an operation may take, all its round trips together.
        logger: Where the outage and recovery warnings go.
        repair: Awaited before the next operation whenever :meth:`owe_repair`
            was called since the last repair that completed; it gets the same
            time limit. The cache passes a function that makes every cached
            response stale.
    """

    # NOTE: Short, because a probe against a Redis that answers costs nothing
    #   and brings caching back; against a hung one, it costs one request one
    #   timeout per interval in each worker.
    RETRY_INTERVAL = 1.0
    # Seconds between cancels of an operation that overran its time limit.
    CANCEL_GRACE = 0.01

    def __init__(
        self,
        timeout: float,
        logger: logging.Logger,
        repair: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self._timeout = timeout
        self._logger = logger
        self._repair = repair
        # The circuit breaker: None while Redis answers, else the monotonic
        # time from which the next operation may probe it again.
        self._retry_at: float | None = None
        # Repairs owed (say, invalidations that did not reach Redis), and how
        # many of them the last completed repair covers.
        self._owed = 0
        self._repaired = 0

    def owe_repair(self) -> None:
        """Note that Redis missed something: repair before it is used again."""
        self._owed += 1

    async def call(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        probe: bool = False,
        longer: float = 0.0,
    ) -> T:
        """Run ``operation`` against Redis, through the breaker, within the limit.

        Arguments:
            operation: Makes the awaitable that talks to Redis; not called at
                all while the breaker is open.
            probe: Try Redis even while the breaker is open.
            longer: Seconds the operation may take on top of the limit (a
                blocking read waits that long by design).

        Raises:
            Unavailable: The breaker is open, or Redis failed or did not
                answer in time (the breaker opens, and an outage is logged).
        """
        retry_at = self._retry_at
        probing = retry_at is not None
        if retry_at is not None:
            now = time.monotonic()
            if now < retry_at and not probe:
                raise Unavailable
            # NOTE: Only this caller probes; the others keep bypassing until
            #   it is done, so a hung Redis costs one request a timeout per
            #   interval, not every request.
            self._retry_at = now + self.RETRY_INTERVAL

        # NOTE: Whoever reaches Redis first while a repair is owed repairs
        #   before its own operation (a probe, as the breaker is open then;
        #   or, if more was owed during a repair, the next call).
        owed = self._owed
        repaired = False
        try:
            if owed > self._repaired and self._repair is not None:
                await self.timed(self._repair())
                repaired = True
            result = await self.timed(operation(), longer)
        except FAILURES as ex:
            self._trip(ex)
            raise Unavailable from ex

        self._repaired = max(self._repaired, owed)
        if probing:
            self._recover(repaired)
        return result

    async def timed(self, operation: Awaitable[T], longer: float = 0.0) -> T:
        """Await ``operation``; TimeoutError if it takes over the time limit.

        NOTE: Not asyncio.timeout, which cancels once: after a cancelled
        command, redis-py cleans up by talking to Redis again (closing a
        connection, resetting a pipeline), and against a paused Redis that
        can wait forever. Here the task is cancelled again every
        ``CANCEL_GRACE`` until the operation ends, and every cancel is taken
        back afterwards, so a cancel from outside still gets through. No task
        is created: this runs on every cache lookup.
        """
        task = asyncio.current_task()
        assert task is not None, 'called from a task'
        loop = asyncio.get_running_loop()
        cancels = 0
        handle: asyncio.TimerHandle | None = None

        def expire() -> None:
            nonlocal cancels, handle
            cancels += 1
            task.cancel()
            handle = loop.call_later(self.CANCEL_GRACE, expire)

        handle = loop.call_later(self._timeout + longer, expire)
        try:
            result = await operation
        except BaseException:
            if not cancels:
                raise
        finally:
            handle.cancel()
        if not cancels:
            return result
        for _ in range(cancels):
            task.uncancel()
        # NOTE: Cancelled from outside as well? Then that cancel wins.
        raise asyncio.CancelledError if task.cancelling() else TimeoutError

    def _trip(self, ex: BaseException) -> None:
        if self._retry_at is None:
            self._logger.warning(
                'Redis is unavailable (%s): serving without the cache, '
                'trying again every %g s',
                self.reason(ex),
                self.RETRY_INTERVAL,
            )
        self._retry_at = time.monotonic() + self.RETRY_INTERVAL

    def _recover(self, repaired: bool) -> None:
        self._retry_at = None
        # NOTE: A warning like the outage it ends: the app sets up no logging,
        #   and under plain uvicorn anything below WARNING is not shown.
        if repaired:
            self._logger.warning(
                'Redis answers again: caching resumed, with every response '
                'cached before it made stale, since an invalidation could not '
                'reach Redis'
            )
        else:
            self._logger.warning('Redis answers again: caching resumed')

    def reason(self, ex: BaseException) -> str:
        """Why an operation failed, in words for the log."""
        if isinstance(ex, TimeoutError):
            return f'no answer within {self._timeout:g} s'
        return f'{type(ex).__name__}: {ex}'
