"""The response cache: whole responses in Redis, as a Falcon middleware.

Redis is an accelerator here, never a dependency: when it is down, paused or
unreachable, every request is still answered, by the app, only more slowly
(see :mod:`asgilook.caching.guard`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any
from typing import cast

import falcon.asgi
import msgpack

from asgilook.caching import status
from asgilook.caching.guard import FAILURES
from asgilook.caching.guard import RedisGuard
from asgilook.caching.guard import Unavailable
from asgilook.caching.keys import ENTRY
from asgilook.caching.keys import GENERATION
from asgilook.caching.keys import Keys
from asgilook.caching.memory import Remembered
from asgilook.caching.memory import ResponseMemory
from asgilook.config import Config

logger = logging.getLogger(__name__)

Headers = list[tuple[str, str]]


@dataclasses.dataclass(frozen=True)
class Versioned:
    """What a responder says of a response: the version of what it shows.

    Such a response stays right while that version is current (see
    :data:`asgilook.caching.memory.Current`), so this process may answer it again
    from memory until then.
    """

    #: The canonical request target that the response answers.
    key: str
    #: An image id, or None for the listing.
    subject: str | None
    #: The image's file, or the index's state.
    version: object
    #: What the cache keys add for the format sent, if it was negotiated
    #: (see :func:`asgilook.pictures.renditions.variant`).
    variant: str = ''


class RedisCache:
    """Cache whole GET responses in Redis, serialised with msgpack.

    Two kinds of responses are cached:

    * Responses of a resource that has a ``cache_key(req, params)`` method
      (the listing): the whole response, ``[content_type, body, status,
      headers, stamp]``, under ``PREFIX`` + its canonical key, where
      ``stamp`` is the generation it was rendered in. A lookup reads the entry
      together with the deployment's generation (``GENERATION_KEY:<scope>``,
      one ``MGET``) and serves it only if the stamp is still the generation.
      Every invalidation sets a new, random generation, so a render that an
      invalidation overtook is never served, whoever stored it, and nothing
      needs to be deleted one by one; nor is another deployment's entry under
      the same key, stamped with its own generation.
    * Other responses whose responder set ``resp.context.versioned`` (an
      image or a thumbnail): their entry is the response without its body,
      whose bytes live in the image version's file, and the deployment's
      scope; the first GET stores it and says ``Miss``, a GET that finds the
      same entry says ``Hit``. A GET that finds another version's entry (or
      another deployment's) replaces it and says ``Miss``.

    Which deployment it caches for is ``scope`` (the store's
    :meth:`~asgilook.storage.store.Store.scope`); without one, the cache finds
    the scope of the index that ``config`` names. Every key's name is in
    :attr:`keys` (see :mod:`asgilook.caching.keys`).

    A response with ``resp.context.versioned`` is also given to this
    process's :class:`~asgilook.caching.memory.ResponseMemory`, which keeps it
    whole if it fits its rules, and answers repeats without Falcon or Redis
    while its version is current. A listing that Redis has and
    that memory lacks is rendered again rather than answered from Redis, so
    that memory keeps it: once per process and change of the index (and
    again if memory let it go).

    Every response says in ``CACHE_HEADER`` whether it came from the cache
    (``Hit``), from the app (``Miss``), or from the app while Redis could not
    be used (``Bypass``), and the same in ``Cache-Status`` (see
    :mod:`asgilook.caching.status`). ``HEAD`` is answered like ``GET`` but
    never stored.
    Entries over ``config.cache_max_entry`` bytes are never stored.
    """

    PREFIX = ENTRY
    # NOTE: Outside PREFIX, so that a user's SCAN of entries skips it; the
    #   deployment's scope follows it (see asgilook.caching.keys).
    GENERATION_KEY = GENERATION
    INVALIDATE_ON = frozenset({'DELETE', 'POST', 'PUT'})
    CACHE_HEADER = status.HEADER
    TTL = 3600
    # Headers that an entry keeps apart from its list of headers, or never.
    _SEPARATE = frozenset(
        {'content-type', 'content-length', 'x-asgilook-cache', 'cache-status'}
    )

    def __init__(
        self,
        config: Config,
        memory: ResponseMemory | None = None,
        scope: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self._config = config
        #: The names of this deployment's keys, shared with the events.
        self.keys = Keys.of(config, scope)
        # NOTE: One client for the app's whole life: falcon.testing runs a new
        #   lifespan (and event loop) around every simulate_* call, and a test
        #   factory may hand out a new fake server on every call.
        self.redis = config.redis_from_url(config.redis_host)
        #: Keeps Redis from hurting the app; whatever else uses ``redis``
        #: (the events) goes through it too, so all share one breaker.
        self.guard = RedisGuard(config.redis_timeout, logger, self._new_generation)
        self._memory = memory

    async def process_startup(self, scope: Any, event: Any) -> None:
        # NOTE: The ping always goes out, breaker or not (one per lifespan),
        #   and its failure only opens the breaker: the app starts without
        #   Redis and picks it up later.
        try:
            await self.guard.call(self.redis.ping, probe=True)
        except Unavailable:
            pass

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        try:
            await self.guard.timed(self.redis.aclose())
        except FAILURES as ex:
            logger.warning(
                'Could not close the Redis client: %s', self.guard.reason(ex)
            )

    async def process_request(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        status.say(resp, status.MISS, req.method)
        resp.context.cache_key = None
        if req.method in self.INVALIDATE_ON:
            resp.context.before_commit = lambda: self._invalidate_for(req, resp)

    async def process_resource(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: object,
        params: dict[str, Any],
    ) -> None:
        if req.method != 'GET' and req.method != 'HEAD':
            return
        cache_key = getattr(resource, 'cache_key', None)
        key = cache_key(req, params) if cache_key is not None else None
        if key is None:
            return
        # NOTE: Under a path prefix, answers are kept apart from those of
        #   other prefixes: a listing's documents name the prefix.
        target, key = key, self.keys.entry(f'{req.root_path}{key}')
        resp.context.cache_key = key
        resp.context.cache_stamp = None
        try:
            generation = self.keys.generation(await self.keys.scope())
            data, stamp = await self.guard.call(
                lambda: self.redis.mget(key, generation)
            )
        except Unavailable:
            status.say(resp, status.BYPASS)
            return
        # The generation the render will be stamped with (empty: there is none
        # yet, and the store makes one).
        resp.context.cache_stamp = stamp or b''
        resp.context.cache_generation = generation
        entry = None if data is None else _decode(key, cast(bytes, data))
        if entry is None or stamp is None or entry.stamp != stamp:
            return
        if self._to_remember(req, target, entry):
            return
        resp.content_type = entry.content_type
        resp.data = entry.body
        resp.status = entry.status
        for name, value in entry.headers:
            resp.set_header(name, value)
        resp.complete = True
        resp.context.cache_key = None
        status.say(resp, status.HIT)

    def _to_remember(
        self, req: falcon.asgi.Request, target: str, entry: _Entry
    ) -> bool:
        """Whether to render a response that Redis has, for this process's memory.

        NOTE: Redis's entry is never remembered: the version it shows (the
        index's state it was read in) is not in it, and PostgreSQL's states
        mean nothing in another process. Only a render is. Without this, a process
        whose memory lacks a listing that Redis has (one started after the
        render, or one that another process's change made forget it) answered
        every repeat through Falcon and Redis, about four times slower than
        from memory, until it happened to render one itself. It renders it
        once instead (and stores it again), if its memory would keep it.
        """
        return (
            self._memory is not None
            and req.method == 'GET'
            and _target(req) == target
            and self._memory.lacks(req.root_path + target, len(entry.body))
        )

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
            return
        versioned: Versioned | None = getattr(resp.context, 'versioned', None)
        if resp.context.cache_key is not None:
            if req.method == 'GET':
                await self._store(resp)
        elif versioned is not None:
            await self._given(req, resp, versioned)
        if versioned is not None and req.method == 'GET' and resp.status_code == 200:
            self._remember(req, resp, versioned)

    def _remember(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, versioned: Versioned
    ) -> None:
        """Keep a response in this process's memory, if it was asked for by its key.

        NOTE: Only by its canonical spelling: other spellings of a URL would
        each take memory for the same response.
        """
        if self._memory is None or _target(req) != versioned.key:
            return
        body = resp.data
        length = len(body) if body is not None else int(resp.content_length or 0)
        # NOTE: The memory decides which bodies it keeps, and when: a body
        #   bigger than Redis keeps, from its second answer.
        self._memory.remember(
            req.root_path + versioned.key + versioned.variant,
            Remembered.of(
                req.uri_template or '',
                versioned.subject,
                versioned.version,
                resp.content_type or '',
                _headers(resp),
                body,
                length,
            ),
            self._config.cache_max_entry,
        )

    async def _invalidate_for(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        """Make every cached whole response stale, and drop the request's own.

        It runs after the responder and also, through
        ``resp.context.before_commit``, just before the store makes the change
        visible: a process that dies between the two has still made stale
        what its change affects.
        """
        # NOTE: Shielded: if the request is cancelled (a server that cancels
        #   on disconnect), the invalidation still finishes, or records that
        #   it could not.
        if not await asyncio.shield(self.invalidate(req.path)):
            status.say(resp, status.BYPASS)

    async def invalidate(self, path: str | None = None) -> bool:
        """Make every cached whole response stale, and drop ``path``'s own entry.

        Returns:
            Whether Redis took it; if not, the guard repairs (sets a new
            generation) before Redis is used again.
        """
        try:
            generation = self.keys.generation(await self.keys.scope())
            await self.guard.call(lambda: self._invalidate(generation, path))
        except Unavailable:
            self.guard.owe_repair()
            return False
        return True

    async def _invalidate(self, generation: str, path: str | None) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(generation, new_generation())
            if path is not None:
                pipe.delete(self.keys.entry(path))
            await pipe.execute()

    async def _new_generation(self) -> None:
        """The repair after an outage: every entry stored before it is stale.

        NOTE: While the scope cannot be found, Unavailable: the repair stays
        owed.
        """
        generation = self.keys.generation(await self.keys.scope())
        await self.redis.set(generation, new_generation())

    async def _store(self, resp: falcon.asgi.Response) -> None:
        stamp = resp.context.cache_stamp
        if stamp is None or resp.status_code != 200:
            # NOTE: Without the generation of the lookup, nothing proves that
            #   this render is younger than the last invalidation.
            return
        body = await resp.render_body()
        if body is None:
            # NOTE: A streamed body cannot be replayed, so it is not cached.
            return
        key = resp.context.cache_key
        headers = _headers(resp)
        try:
            if not stamp:
                generation = resp.context.cache_generation
                stamp = await self.guard.call(
                    lambda: self._first_generation(generation)
                )
                if stamp is None:
                    return
            entry = msgpack.packb(
                [resp.content_type, body, 200, headers, stamp], use_bin_type=True
            )
            if len(entry) > self._config.cache_max_entry:
                return
            await self.guard.call(lambda: self.redis.set(key, entry, ex=self.TTL))
        except Unavailable:
            status.say(resp, status.BYPASS)

    async def _first_generation(self, key: str) -> bytes | None:
        """A generation for a render looked up when Redis had none (it was empty).

        NOTE: Only a generation made here will do: if another one is there by
        now, an invalidation set it after the lookup, and the render may
        already be stale.
        """
        generation = new_generation()
        if await self.redis.set(key, generation, nx=True):
            return generation
        return None

    async def _given(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        versioned: Versioned,
    ) -> None:
        """Say whether an image version's response was given before.

        This process's memory answers first; Redis tells whether any process
        gave it. A GET that gives it records that in Redis.
        """
        if (
            self._memory is not None
            and _target(req) == versioned.key
            and self._memory.given(
                req.root_path + versioned.key + versioned.variant, versioned.version
            )
        ):
            status.say(resp, status.HIT)
            return
        key = self.keys.entry(f'{req.root_path}{versioned.key}{versioned.variant}')
        try:
            # NOTE: The entry is the 200 response minus its body, and whose it
            #   is; a 304 or a HEAD only asks whether it is there.
            entry = msgpack.packb(
                [resp.content_type, b'', 200, _headers(resp), await self.keys.scope()],
                use_bin_type=True,
            )
            if req.method == 'GET' and resp.status_code == 200:
                before = await self.guard.call(
                    lambda: self.redis.set(key, entry, ex=self.TTL, get=True)
                )
            else:
                before = await self.guard.call(lambda: self.redis.get(key))
        except Unavailable:
            status.say(resp, status.BYPASS)
            return
        if before == entry:
            status.say(resp, status.HIT)


def _target(req: falcon.asgi.Request) -> str:
    """The request's path and query string, as the client spelt them."""
    return f'{req.path}?{req.query_string}' if req.query_string else req.path


def new_generation() -> bytes:
    """A value for ``GENERATION_KEY`` that makes every entry stored before it stale."""
    return secrets.token_hex(8).encode()


def _headers(resp: falcon.asgi.Response) -> Headers:
    """The headers the app set on ``resp``, as an entry keeps them."""
    return [
        (name, value)
        for name, value in resp.headers.items()
        if name not in RedisCache._SEPARATE
    ]


@dataclasses.dataclass(frozen=True)
class _Entry:
    content_type: str
    body: bytes
    status: int
    headers: Headers
    stamp: bytes


def _decode(key: str, data: bytes) -> _Entry | None:
    """A whole-response entry, or None if ``data`` is not one."""
    try:
        content_type, body, status, headers, stamp = msgpack.unpackb(data, raw=False)
        entry = _Entry(
            content_type,
            body,
            status,
            [(str(name), str(value)) for name, value in headers],
            stamp,
        )
    except (ValueError, TypeError):
        entry = None
    if (
        entry is not None
        and isinstance(entry.content_type, str)
        and isinstance(entry.body, bytes)
        and isinstance(entry.status, int)
        and isinstance(entry.stamp, bytes)
    ):
        return entry
    # NOTE: Something else wrote under our prefix (or a different version of
    #   this app did): answer from the app, whose render then replaces it.
    logger.warning('Ignoring an unreadable cache entry under %s', key)
    return None
