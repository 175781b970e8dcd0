"""Response cache in Redis, as a Falcon middleware that lives on the lifespan.

Redis is an accelerator here, never a dependency: when it is down, paused or
unreachable, every request is still answered, by the app, only more slowly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any
from typing import TypeVar
from typing import cast

import falcon.asgi
import msgpack
import redis.exceptions

from asgilook.config import Config

logger = logging.getLogger(__name__)

T = TypeVar('T')

# NOTE: What a Redis that is down, restarting, paused or misbehaving makes a
#   command raise: redis-py's own errors (connection, timeout, READONLY, ...),
#   plain socket errors, and the TimeoutError of asyncio.timeout (an OSError,
#   spelt out for the reader).
_FAILURES = (redis.exceptions.RedisError, OSError, TimeoutError)


class _Unavailable(Exception):
    """Redis was skipped (breaker open) or failed: go on without the cache."""


class RedisCache:
    """Cache successful GET responses in Redis, serialised with msgpack.

    An entry is ``[content_type, body]`` under ``PREFIX`` + the request target
    (path and query string). Every response says in ``CACHE_HEADER`` whether
    it came from the cache (``Hit``), from the app (``Miss``), or from the app
    while Redis could not be used (``Bypass``).

    Responders may name what a response shows as tags in
    ``resp.context.cache_tags`` (for example ``image:<id>``); a later request
    that changes those things lists the same tags in
    ``resp.context.invalidate_tags``, and every cached response carrying one of
    them is dropped, whichever path it was cached under.

    Faults: every cache operation gets ``config.redis_timeout`` seconds in
    all. After a failure, Redis is left alone for ``RETRY_INTERVAL`` seconds
    (a circuit breaker); then one request probes it again. An invalidation
    that could not reach Redis makes the next successful probe drop every
    entry before any ``Hit`` is served again.

    Races: ``GENERATION_KEY`` counts invalidations. A lookup that misses
    reads it with the entry, and the response is stored only if it has not
    moved since (WATCH/MULTI/EXEC), so a render that an invalidation overtook
    is never stored.
    """

    PREFIX = 'asgilook:'
    TAG_PREFIX = 'asgilook-tag:'
    # NOTE: Outside PREFIX on purpose: the outage flush deletes PREFIX*, and a
    #   counter that fell back to an old value could match a stale reading.
    GENERATION_KEY = 'asgilook-generation'
    INVALIDATE_ON = frozenset({'DELETE', 'POST', 'PUT'})
    CACHE_HEADER = 'X-ASGILook-Cache'
    TTL = 3600
    # NOTE: Short, because a probe against a Redis that answers costs nothing
    #   and brings caching back; against a hung one, it costs one request one
    #   timeout per interval in each worker.
    RETRY_INTERVAL = 1.0
    FLUSH_BATCH = 1000
    # Seconds between cancels of an operation that overran its timeout.
    CANCEL_GRACE = 0.01

    def __init__(self, config: Config) -> None:
        self._config = config
        # NOTE: One client for the app's whole life: falcon.testing runs a new
        #   lifespan (and event loop) around every simulate_* call, and a test
        #   factory may hand out a new fake server on every call.
        self._redis = config.redis_from_url(config.redis_host)
        # The circuit breaker: None while Redis answers, else the monotonic
        # time from which the next operation may probe it again.
        self._retry_at: float | None = None
        # Invalidations that did not reach Redis, and how many of them the
        # last completed flush covers; more missed than flushed means any
        # entry may be stale.
        self._missed = 0
        self._flushed = 0

    async def process_startup(self, scope: Any, event: Any) -> None:
        # NOTE: The ping always goes out, breaker or not (one per lifespan),
        #   and its failure only opens the breaker: the app starts without
        #   Redis and picks it up later.
        try:
            await self._call(self._redis.ping, probe=True)
        except _Unavailable:
            pass

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        try:
            await self._timed(self._redis.aclose())
        except _FAILURES as ex:
            logger.warning('Could not close the Redis client: %s', self._reason(ex))

    def _key(self, req: falcon.asgi.Request) -> str:
        target = req.path
        if req.query_string:
            target = f'{target}?{req.query_string}'
        return f'{self.PREFIX}{target}'

    async def process_request(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        resp.context.cached = False
        # The generation a miss read: set only when the lookup reached Redis.
        resp.context.cache_generation = None
        resp.set_header(self.CACHE_HEADER, 'Miss')
        if req.method in self.INVALIDATE_ON:
            resp.context.before_commit = lambda: self._invalidate_for(req, resp)
        if req.method != 'GET':
            return

        key = self._key(req)
        try:
            data, generation = await self._call(
                lambda: self._redis.mget(key, self.GENERATION_KEY)
            )
        except _Unavailable:
            resp.set_header(self.CACHE_HEADER, 'Bypass')
            return
        entry = None if data is None else _decode(key, cast(bytes, data))
        if entry is None:
            resp.context.cache_generation = generation or b'0'
            return
        resp.content_type, resp.data = entry
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
            await self._invalidate_for(req, resp)
        elif (
            req.method == 'GET' and not resp.context.cached and resp.status_code == 200
        ):
            await self._store(req, resp)

    async def _invalidate_for(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        """Drop the request's own entry and everything its invalidate_tags name.

        It runs after the responder and also, through
        ``resp.context.before_commit``, just before the store makes the change
        visible: a process that dies between the two has still dropped what
        its change makes stale.
        """
        # NOTE: Shielded: if the request is cancelled (a server that cancels
        #   on disconnect), the invalidation still finishes, or records that
        #   it could not.
        invalidated = await asyncio.shield(
            self._invalidate(
                [self._key(req)], getattr(resp.context, 'invalidate_tags', ())
            )
        )
        if not invalidated:
            resp.set_header(self.CACHE_HEADER, 'Bypass')

    async def _store(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        generation = resp.context.cache_generation
        if generation is None:
            # NOTE: Without the generation of the lookup, nothing proves that
            #   this render is younger than the last invalidation.
            return
        body = await resp.render_body()
        if body is None:
            # NOTE: A streamed body cannot be replayed, so it is not cached.
            return
        key = self._key(req)
        entry = msgpack.packb([resp.content_type, body], use_bin_type=True)
        tag_keys = [
            f'{self.TAG_PREFIX}{tag}' for tag in getattr(resp.context, 'cache_tags', ())
        ]
        try:
            await self._call(
                lambda: self._store_if_current(key, entry, tag_keys, generation)
            )
        except _Unavailable:
            resp.set_header(self.CACHE_HEADER, 'Bypass')

    async def _store_if_current(
        self,
        key: str,
        entry: bytes,
        tag_keys: list[str],
        generation: bytes,
    ) -> bool:
        """Store ``entry`` unless an invalidation came after ``generation``.

        Returns:
            Whether the entry was stored.
        """
        # NOTE: Leaving the block resets the pipeline, which UNWATCHes; see
        #   _timed for why that cannot hang against a paused Redis.
        async with self._redis.pipeline(transaction=True) as pipe:
            await pipe.watch(self.GENERATION_KEY)
            if (await pipe.get(self.GENERATION_KEY) or b'0') != generation:
                return False
            # NOTE: redis-py leaves Pipeline.multi unannotated.
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.set(key, entry, ex=self.TTL)
            for tag_key in tag_keys:
                pipe.sadd(tag_key, key)
                pipe.expire(tag_key, self.TTL)
            try:
                await pipe.execute()
            except redis.exceptions.WatchError:
                # An invalidation moved the generation after the WATCH.
                return False
        return True

    async def _invalidate(self, keys: list[str], tags: Iterable[str]) -> bool:
        """Drop ``keys`` and every entry tagged with one of ``tags``.

        Returns:
            Whether Redis confirmed it; if not, it is counted as missed, and
            the next successful probe drops every entry.
        """
        tag_keys = [f'{self.TAG_PREFIX}{tag}' for tag in tags]
        try:
            await self._call(lambda: self._drop(keys, tag_keys))
        except _Unavailable:
            self._missed += 1
            return False
        return True

    async def _drop(self, keys: list[str], tag_keys: list[str]) -> None:
        # NOTE: INCR first: a request that looked up before it and is still
        #   rendering will find the generation moved and not store its render.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(self.GENERATION_KEY)
            for tag_key in tag_keys:
                pipe.smembers(tag_key)
            _, *members = await pipe.execute()
        # NOTE: SREM what was read rather than DEL the tag set: an entry stored
        #   since the INCR (a fresh render) keeps its tag and stays reachable
        #   by the next invalidation.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*keys, *set().union(*members))
            for tag_key, tagged in zip(tag_keys, members, strict=True):
                if tagged:
                    pipe.srem(tag_key, *tagged)
            await pipe.execute()

    async def _flush(self) -> int:
        """Drop every entry under ``PREFIX``, in batches; return how many."""
        # NOTE: INCR first, as for any invalidation: stores of renders that
        #   started before the flush (in any worker) are then refused.
        await self._timed(self._redis.incr(self.GENERATION_KEY))
        dropped = 0
        cursor = 0
        while True:
            cursor, keys = await self._timed(
                self._redis.scan(
                    cursor, match=f'{self.PREFIX}*', count=self.FLUSH_BATCH
                )
            )
            if keys:
                dropped += await self._timed(self._redis.delete(*keys))
            if not cursor:
                return dropped

    async def _timed(self, operation: Awaitable[T]) -> T:
        """Await ``operation``; TimeoutError if it takes over ``redis_timeout``.

        NOTE: Not asyncio.timeout, which cancels once: after a cancelled
        command, redis-py cleans up by talking to Redis again (a pipeline
        that WATCHes sends UNWATCH, over a new connection), and against a
        paused Redis that waits forever. Run in a task of its own, the
        operation is cancelled again every ``CANCEL_GRACE`` until it ends;
        redis-py shields its pool's bookkeeping against such second cancels.
        """
        task = asyncio.ensure_future(operation)
        try:
            await asyncio.wait({task}, timeout=self._config.redis_timeout)
        finally:
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=self.CANCEL_GRACE)
        if task.cancelled():
            raise TimeoutError
        return task.result()

    async def _call(
        self, operation: Callable[[], Awaitable[T]], *, probe: bool = False
    ) -> T:
        """Run ``operation`` against Redis, through the breaker, within the timeout.

        Arguments:
            operation: Makes the awaitable that talks to Redis; not called at
                all while the breaker is open.
            probe: Try Redis even while the breaker is open.

        Raises:
            _Unavailable: The breaker is open, or Redis failed or did not
                answer in time (the breaker opens, and an outage is logged).
        """
        retry_at = self._retry_at
        probing = retry_at is not None
        if retry_at is not None:
            now = time.monotonic()
            if now < retry_at and not probe:
                raise _Unavailable
            # NOTE: Only this caller probes; the others keep bypassing until
            #   it is done, so a hung Redis costs one request a timeout per
            #   interval, not every request.
            self._retry_at = now + self.RETRY_INTERVAL

        # NOTE: Whoever reaches Redis first while invalidations are missed
        #   flushes before its own operation (a probe, as the breaker is open
        #   then; or, if more were missed during a flush, the next call), so
        #   no Hit is served from before a missed invalidation.
        missed = self._missed
        dropped = None
        try:
            if missed > self._flushed:
                dropped = await self._flush()
            result = await self._timed(operation())
        except _FAILURES as ex:
            self._trip(ex)
            raise _Unavailable from ex

        self._flushed = max(self._flushed, missed)
        if probing:
            self._recover(dropped)
        return result

    def _trip(self, ex: BaseException) -> None:
        if self._retry_at is None:
            logger.warning(
                'Redis is unavailable (%s): serving without the cache, '
                'trying again every %g s',
                self._reason(ex),
                self.RETRY_INTERVAL,
            )
        self._retry_at = time.monotonic() + self.RETRY_INTERVAL

    def _recover(self, dropped: int | None) -> None:
        self._retry_at = None
        # NOTE: A warning like the outage it ends: the app sets up no logging,
        #   and under plain uvicorn anything below WARNING is not shown.
        if dropped is None:
            logger.warning('Redis answers again: caching resumed')
        else:
            logger.warning(
                'Redis answers again: caching resumed after dropping %d cached '
                'responses, since an invalidation could not reach Redis',
                dropped,
            )

    def _reason(self, ex: BaseException) -> str:
        if isinstance(ex, TimeoutError):
            return f'no answer within {self._config.redis_timeout:g} s'
        return f'{type(ex).__name__}: {ex}'


def _decode(key: str, data: bytes) -> tuple[str, bytes] | None:
    """The ``[content_type, body]`` of an entry, or None if it is not one."""
    try:
        content_type, body = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError):
        content_type = body = None
    if isinstance(content_type, str) and isinstance(body, bytes):
        return content_type, body
    # NOTE: Something else wrote under our prefix (or a different version of
    #   this app did): answer from the app, whose render then replaces it.
    logger.warning('Ignoring an unreadable cache entry under %s', key)
    return None
