"""Response cache in Redis, as a Falcon middleware that lives on the lifespan."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import falcon.asgi
import msgpack

from asgilook.config import Config


class RedisCache:
    """Cache successful GET responses in Redis, serialised with msgpack.

    An entry is ``[content_type, body]`` under ``PREFIX`` + the request target
    (path and query string). Every response says in ``CACHE_HEADER`` whether
    it came from the cache (``Hit``) or from the app (``Miss``).

    Responders may name what a response shows as tags in
    ``resp.context.cache_tags`` (for example ``image:<id>``); a later request
    that changes those things lists the same tags in
    ``resp.context.invalidate_tags``, and every cached response carrying one of
    them is dropped, whichever path it was cached under.
    """

    PREFIX = 'asgilook:'
    TAG_PREFIX = 'asgilook-tag:'
    INVALIDATE_ON = frozenset({'DELETE', 'POST', 'PUT'})
    CACHE_HEADER = 'X-ASGILook-Cache'
    TTL = 3600

    def __init__(self, config: Config) -> None:
        self._config = config
        # NOTE: One client for the app's whole life: falcon.testing runs a new
        #   lifespan (and event loop) around every simulate_* call, and a test
        #   factory may hand out a new fake server on every call.
        self._redis = config.redis_from_url(config.redis_host)

    async def process_startup(self, scope: Any, event: Any) -> None:
        await self._redis.ping()

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        await self._redis.aclose()

    def _key(self, req: falcon.asgi.Request) -> str:
        target = req.path
        if req.query_string:
            target = f'{target}?{req.query_string}'
        return f'{self.PREFIX}{target}'

    async def process_request(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        resp.context.cached = False
        resp.set_header(self.CACHE_HEADER, 'Miss')
        if req.method != 'GET':
            return

        data = await self._redis.get(self._key(req))
        if data is not None:
            resp.content_type, resp.data = msgpack.unpackb(data, raw=False)
            resp.complete = True
            resp.context.cached = True
            resp.set_header(self.CACHE_HEADER, 'Hit')

    async def process_response(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        if not req_succeeded:
            return
        if req.method in self.INVALIDATE_ON:
            await self._invalidate(
                [self._key(req)], getattr(resp.context, 'invalidate_tags', ())
            )
        elif (
            req.method == 'GET' and not resp.context.cached and resp.status_code == 200
        ):
            await self._store(req, resp)

    async def _store(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        body = await resp.render_body()
        if body is None:
            # NOTE: A streamed body cannot be replayed, so it is not cached.
            return
        key = self._key(req)
        entry = msgpack.packb([resp.content_type, body], use_bin_type=True)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, entry, ex=self.TTL)
            for tag in getattr(resp.context, 'cache_tags', ()):
                pipe.sadd(f'{self.TAG_PREFIX}{tag}', key)
                pipe.expire(f'{self.TAG_PREFIX}{tag}', self.TTL)
            await pipe.execute()

    async def _invalidate(self, keys: list[str], tags: Iterable[str]) -> None:
        stale: list[str | bytes] = list(keys)
        for tag in tags:
            tag_key = f'{self.TAG_PREFIX}{tag}'
            stale.extend(await self._redis.smembers(tag_key))
            stale.append(tag_key)
        await self._redis.delete(*stale)
