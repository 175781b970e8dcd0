"""Live events: every upload and deletion, to every open page, through Redis.

Each change is added to the deployment's Redis stream
(``asgilook-events:<scope>``, see :mod:`asgilook.caching.keys`; ``XADD``,
capped at ``MAXLEN`` entries), whichever worker or machine made it. Each
process reads the stream once, with one blocking ``XREAD`` at a time, and
fans each entry out to the event streams (``GET /events``, Server-Sent
Events) open in it; so a thousand open pages cost one Redis connection per
process, not a thousand. An entry's stream id is its event id: a page that
reconnects with ``Last-Event-ID`` is sent what it missed first, from the
stream itself.

A client that does not keep up is not buffered without bound: once
``BACKLOG`` events wait for it, its stream ends, and its ``EventSource``
reconnects and catches up from Redis with ``Last-Event-ID``. When Redis
cannot be used, a stream says ``event: unavailable`` and ends; the gallery
then polls the listing until the stream works again. Nothing else depends on
the events.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import falcon.asgi

from asgilook.caching.guard import RedisGuard
from asgilook.caching.guard import Unavailable
from asgilook.caching.keys import Keys
from asgilook.config import Config
from asgilook.http.mount import rooted

CREATED = 'image-created'
DELETED = 'image-deleted'
# Why a stream ends early.
UNAVAILABLE = 'unavailable'
BEHIND = 'behind'


@dataclasses.dataclass(frozen=True)
class Event:
    """One change, as the stream keeps it: its id, kind and JSON document."""

    event_id: str
    kind: str
    data: str

    @property
    def order(self) -> tuple[int, int]:
        """The stream id as numbers: what comes after what."""
        return _order(self.event_id)

    def sse(self, root_path: str = '') -> falcon.asgi.SSEvent:
        """The event as sent to a page of the service under ``root_path``.

        NOTE: The stream keeps documents below the root, shared by every
        process whatever its prefix; each subscriber gets its own URLs.
        """
        text = self.data
        if root_path:
            text = json.dumps(
                rooted(json.loads(text), root_path), separators=(',', ':')
            )
        return falcon.asgi.SSEvent(event=self.kind, text=text, event_id=self.event_id)


# What Redis takes as a stream id: two unsigned 64-bit numbers.
_STREAM_ID = re.compile(r'[0-9]{1,20}-[0-9]{1,20}')


def _order(event_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = event_id.partition('-')
    return int(milliseconds), int(sequence or 0)


class _Subscriber:
    """One open event stream: the events waiting for it."""

    def __init__(self, backlog: int) -> None:
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(backlog)
        # Set when the stream has to end: it fell behind, or Redis went away.
        self.ending: str | None = None

    def offer(self, event: Event) -> bool:
        """Queue ``event``; False if this subscriber fell too far behind."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    def end(self, why: str) -> None:
        self.ending = why
        # NOTE: Wakes the stream if it waits; if the queue is full, the stream
        #   is busy sending and sees ``ending`` once it has drained it.
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            pass


class Events:
    """Publish changes to Redis, and stream them to this process's open pages.

    A resource as well: ``GET /events`` is the event stream.

    Args:
        config: ``events_keepalive`` is the time between keep-alive comments.
        redis: The app's Redis client.
        guard: The guard of that client, shared with the cache: when Redis
            is known to be away, events do not wait for it either.
        keys: The names of the deployment's keys, the cache's: its stream.
    """

    MAXLEN = 1000
    # Events that may wait for one slow client before its stream ends.
    BACKLOG = 100
    # Milliseconds one XREAD waits for news before it asks again.
    # NOTE: Well under redis-py's socket timeout (5 s by default): a read
    #   that waits as long as the socket would be taken for a hung Redis.
    BLOCK = 1000
    # Milliseconds after which a browser's EventSource reconnects.
    RETRY = 2000

    def __init__(
        self, config: Config, redis: Any, guard: RedisGuard, keys: Keys
    ) -> None:
        self._config = config
        self._redis = redis
        self._guard = guard
        self._keys = keys
        self._subscribers: set[_Subscriber] = set()
        self._reader: asyncio.Task[None] | None = None
        # Done once the reader knows where the stream is now (or gave up).
        self._positioned: asyncio.Future[None] | None = None

    # Publishing

    async def publish(self, kind: str, document: dict[str, Any]) -> None:
        """Add a change to the stream; if Redis cannot take it, it is lost.

        NOTE: Losing one costs an open page a tile until its next reload (or
        poll): the listing, not the stream, is the truth.
        """
        fields = {'kind': kind, 'data': json.dumps(document, separators=(',', ':'))}
        try:
            stream = await self._stream()
            await self._guard.call(
                lambda: self._redis.xadd(
                    stream, fields, maxlen=self.MAXLEN, approximate=True
                )
            )
        except Unavailable:
            pass

    # Streaming

    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        resp.cache_control = ['no-store']
        resp.sse = self.stream(req.get_header('Last-Event-ID'), req.root_path)

    async def stream(
        self, last_event_id: str | None = None, root_path: str = ''
    ) -> AsyncIterator[falcon.asgi.SSEvent]:
        """The events from now on, after those since ``last_event_id``; their
        documents' URLs under ``root_path``."""
        subscriber = _Subscriber(self.BACKLOG)
        self._subscribers.add(subscriber)
        positioned = self._ensure_reader()
        try:
            # NOTE: Once the stream is open, nothing published is missed: the
            #   reader knows where the stream was before it says a word.
            await asyncio.shield(positioned)
            yield falcon.asgi.SSEvent(retry=self.RETRY, comment='asgilook events')
            sent = (0, 0)
            if last_event_id:
                try:
                    missed = await self._since(last_event_id)
                except Unavailable:
                    yield _unavailable()
                    return
                for event in missed:
                    sent = event.order
                    yield event.sse(root_path)
            while not (subscriber.ending and subscriber.queue.empty()):
                try:
                    news = await asyncio.wait_for(
                        subscriber.queue.get(), self._config.events_keepalive
                    )
                except TimeoutError:
                    yield falcon.asgi.SSEvent(comment='keep-alive')
                    continue
                # NOTE: What was sent from the stream's past is not sent again.
                if news is not None and news.order > sent:
                    sent = news.order
                    yield news.sse(root_path)
            if subscriber.ending == UNAVAILABLE:
                yield _unavailable()
        finally:
            self._subscribers.discard(subscriber)

    async def _since(self, last_event_id: str) -> list[Event]:
        """The events of the stream after ``last_event_id`` (those it still has)."""
        # NOTE: Checked here, not by Redis: Redis would answer an error, and
        #   an error from Redis makes the guard leave Redis alone for a while,
        #   for everyone.
        if (
            not _STREAM_ID.fullmatch(last_event_id)
            or max(_order(last_event_id)) >= 2**64
        ):
            return []
        stream = await self._stream()
        entries = await self._guard.call(
            lambda: self._redis.xrange(
                stream, min=f'({last_event_id}', max='+', count=self.MAXLEN
            )
        )
        return [_event(entry_id, fields) for entry_id, fields in entries]

    def _ensure_reader(self) -> asyncio.Future[None]:
        """A reader running; what is done once it knows where the stream is."""
        loop = asyncio.get_running_loop()
        reader, positioned = self._reader, self._positioned
        if (
            reader is None
            or positioned is None
            or reader.done()
            or reader.get_loop() is not loop
        ):
            self._positioned = positioned = loop.create_future()
            self._reader = loop.create_task(self._read(positioned))
        return positioned

    async def _read(self, positioned: asyncio.Future[None]) -> None:
        """Fan the stream out to this process's subscribers while there are any."""
        try:
            stream = await self._stream()
            last = await self._guard.call(lambda: self._last_id(stream))
            positioned.set_result(None)
            while self._subscribers:
                # NOTE: XREAD waits up to BLOCK by design: that much longer.
                found = await self._guard.call(
                    functools.partial(
                        self._redis.xread,
                        {stream: last},
                        count=self.BACKLOG,
                        block=self.BLOCK,
                    ),
                    longer=self.BLOCK / 1000,
                )
                for _, entries in found or ():
                    for entry_id, fields in entries:
                        event = _event(entry_id, fields)
                        last = event.event_id
                        self._fan_out(event)
        except Unavailable:
            for subscriber in list(self._subscribers):
                subscriber.end(UNAVAILABLE)
        finally:
            # NOTE: Gave up (or was stopped): the streams waiting on it go on,
            #   to say so or to end.
            if not positioned.done():
                positioned.set_result(None)

    async def _stream(self) -> str:
        """The name of the deployment's stream.

        Raises:
            Unavailable: the deployment's scope cannot be found now.
        """
        return self._keys.events(await self._keys.scope())

    async def _last_id(self, stream: str) -> str:
        newest = await self._redis.xrevrange(stream, count=1)
        return _text(newest[0][0]) if newest else '0-0'

    def _fan_out(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            if not subscriber.offer(event):
                # NOTE: It has BACKLOG events to send already: end its stream
                #   once they are sent; its browser reconnects and catches up.
                self._subscribers.discard(subscriber)
                subscriber.end(BEHIND)

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        """Stop reading: falcon.testing starts a new event loop for every request."""
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                pass


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _event(entry_id: bytes | str, fields: dict[Any, Any]) -> Event:
    values = {_text(name): _text(value) for name, value in fields.items()}
    return Event(_text(entry_id), values.get('kind', ''), values.get('data', '{}'))


def _unavailable() -> falcon.asgi.SSEvent:
    return falcon.asgi.SSEvent(
        event='unavailable',
        json={
            'title': 'Events Unavailable',
            'description': (
                'Live events need Redis, which cannot be used right now; poll '
                'GET /images?order=newest meanwhile, and connect again later.'
            ),
        },
    )
