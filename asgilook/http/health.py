"""``GET /healthz``: can this process store pictures, and does Redis answer?

Cheap enough to poll every second: a tiny file written and removed in the
storage directory, its volume's free space asked for (``statvfs``, see
:mod:`asgilook.storage.space`), and one ``PING`` through the Redis guard (so a
Redis known to be away costs nothing).

NOTE: Only storage decides the status. A process that cannot write its
storage cannot take uploads, and a load balancer should stop sending it
requests: ``503``. Without Redis the service answers everything, only
uncached, and every process shares that Redis, so taking them out would
turn a slower service into none: ``200``, with ``"status": "degraded"``.
Where the pictures are (``storage.location``) and which index lists them
(``index``: SQLite's file or PostgreSQL's database, and how many pictures
it lists) are said too, for an operator to see which ones are in use.

A storage volume with too little room for the largest upload allowed is
``degraded`` too (``space``: uploads may fail with ``507``, everything else
works); one so full that no photo fits (below
:data:`asgilook.storage.space.FLOOR`) cannot take uploads: ``503``, as if it
could not be written.
"""

from __future__ import annotations

import time
from typing import Any

import falcon
import falcon.asgi

from asgilook.caching.guard import RedisGuard
from asgilook.caching.guard import Unavailable
from asgilook.http import formats
from asgilook.storage.space import measure
from asgilook.storage.store import Store


class Health:
    """The health report of this process."""

    def __init__(self, store: Store, redis: Any, guard: RedisGuard) -> None:
        self._store = store
        self._redis = redis
        self._guard = guard

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        storage_ok, storage = await self._store.check()
        space = await measure(self._store.objects, self._store.config.max_upload_bytes)
        if storage_ok and space.full:
            storage_ok, storage = False, space.detail
        redis_ok, redis = await self._ping()
        resp.status = falcon.HTTP_200 if storage_ok else falcon.HTTP_503
        resp.cache_control = ['no-store']
        formats.send(
            req,
            resp,
            {
                'status': (
                    'ok' if storage_ok and redis_ok and space.enough else 'degraded'
                ),
                'storage': {
                    'ok': storage_ok,
                    'detail': storage,
                    'location': self._store.location,
                },
                'index': await self._store.index_health(),
                'space': space.report(),
                'redis': {'ok': redis_ok, 'detail': redis},
            },
        )

    on_head = on_get

    async def _ping(self) -> tuple[bool, str]:
        started = time.perf_counter()
        try:
            await self._guard.call(self._redis.ping)
        except Unavailable as ex:
            reason = (
                self._guard.reason(ex.__cause__)
                if ex.__cause__
                else (
                    'left alone after a failure; tried again within '
                    f'{RedisGuard.RETRY_INTERVAL:g} s'
                )
            )
            return False, f'Redis cannot be used ({reason}): serving uncached'
        milliseconds = (time.perf_counter() - started) * 1000
        return True, f'answers in {milliseconds:.1f} ms'
