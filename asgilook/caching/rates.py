"""Upload rates: how many uploads a minute an upload key may make, everywhere.

Each upload key's recent uploads are a sorted set in Redis
(``asgilook-rate:<scope>:<key name>``, see :mod:`asgilook.caching.keys`):
one member per upload, scored with its time. An attempt trims the set to the
last minute, adds itself and counts, in one ``MULTI``/``EXEC``, so every
worker of every machine that shares the Redis sees the same window and no two
attempts can both take the last place. An attempt over the rate takes itself
out again, so refused attempts never count against the key. No Lua: fakeredis
and some managed Redis services lack it.

Redis is an accelerator here as everywhere (see :mod:`asgilook.caching.guard`):
while it is away, each process keeps the same window in its own memory, so a
rate still holds per worker, only not across them.
"""

from __future__ import annotations

import collections
import logging
import math
import secrets
import time
from collections.abc import Callable

import redis.asyncio

from asgilook.caching.guard import RedisGuard
from asgilook.caching.guard import Unavailable
from asgilook.caching.keys import Keys

logger = logging.getLogger(__name__)


class Rates:
    """Count uploads per upload key in a sliding minute, shared through Redis.

    Args:
        redis: The app's Redis client, or None to count in memory only.
        guard: The guard of that client (shared with the cache), or None.
        keys: The deployment's key names (its scope, and the prefix).
        clock: The time now, in seconds since the epoch (tests inject one);
            NOTE: wall time, not monotonic, since processes on several
            machines compare their times in one sorted set.
    """

    #: The window, in seconds.
    WINDOW = 60

    def __init__(
        self,
        redis: redis.asyncio.Redis | None,
        guard: RedisGuard | None,
        keys: Keys,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._guard = guard
        self._keys = keys
        self._clock = clock
        self._memory = _Windows(self.WINDOW)
        # Whether the last attempt went without Redis: warned once an outage.
        self._without = False

    async def take(self, name: str, per_minute: int) -> float | None:
        """Count one upload by the key ``name``, if its rate allows one now.

        Returns:
            None when the upload may go ahead (it is counted), else the
            seconds until one more would be allowed (whole seconds, at least
            one: a ``Retry-After``); the refused attempt is not counted.
        """
        if self._redis is not None and self._guard is not None:
            client = self._redis
            try:
                key = self._keys.rate(await self._keys.scope(), name)
                wait = await self._guard.call(
                    lambda: self._take(client, key, per_minute)
                )
            except Unavailable:
                pass
            else:
                self._without = False
                return wait
        if not self._without:
            self._without = True
            logger.warning(
                'Upload rates are counted by each process on its own while '
                'Redis cannot be used: each worker allows the full rate'
            )
        return self._memory.take(name, per_minute, self._clock())

    async def _take(
        self, client: redis.asyncio.Redis, key: str, per_minute: int
    ) -> float | None:
        now = self._clock()
        member = f'{now:.6f}:{secrets.token_hex(8)}'
        async with client.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, '-inf', now - self.WINDOW)
            pipe.zadd(key, {member: now})
            pipe.zcard(key)
            pipe.zrange(key, 0, 0, withscores=True)
            # NOTE: A second over the window: the set goes away by itself
            #   once its key has been idle a whole window.
            pipe.expire(key, self.WINDOW + 1)
            _, _, count, oldest, _ = await pipe.execute()
        if count <= per_minute:
            return None
        await client.zrem(key, member)
        # NOTE: The oldest is another attempt's (the set held more than this
        #   one); once it leaves the window, there is a place again. Should
        #   the rate have been lowered meanwhile, that wait is too short, and
        #   the next attempt is told to wait again.
        return _wait(oldest[0][1] + self.WINDOW - now)


class _Windows:
    """The same sliding windows in this process's memory, while Redis is away.

    Each key name keeps the times of its counted attempts, oldest first, no
    more than its rate; a name idle for a whole window is forgotten (checked
    once a window), so the names that are kept are those in use.
    """

    def __init__(self, window: float) -> None:
        self._window = window
        self._times: dict[str, collections.deque[float]] = {}
        self._sweep_at = 0.0

    def take(self, name: str, per_minute: int, now: float) -> float | None:
        if now >= self._sweep_at:
            self._sweep(now)
        times = self._times.setdefault(name, collections.deque())
        while times and times[0] <= now - self._window:
            times.popleft()
        if len(times) < per_minute:
            times.append(now)
            return None
        oldest = times[-per_minute] if per_minute > 0 else now
        return _wait(oldest + self._window - now)

    def _sweep(self, now: float) -> None:
        horizon = now - self._window
        for name in [
            name
            for name, times in self._times.items()
            if not times or times[-1] <= horizon
        ]:
            del self._times[name]
        self._sweep_at = now + self._window


def _wait(seconds: float) -> float:
    """Whole seconds, rounded up, and one at least (for ``Retry-After``)."""
    return float(max(1, math.ceil(seconds)))
