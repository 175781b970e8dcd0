"""Whole responses, kept in this process's memory for as long as they are right.

Every response of this service shows one version of something: an image
version's original or thumbnail (whose bytes never change), or a page of the
listing (which changes only when the index does). So a response can be
answered again from memory, with no invalidation at all, for as long as the
version it shows is still current: a replaced or deleted image has another
version, or none, in the index, and any upload or deletion changes the
index's state. This is the fast path of the service: :class:`ResponseMemory`
answers such requests at the ASGI level, before Falcon builds a request
object, after asking the index, without waiting, which version is current
(see :meth:`asgilook.storage.index.Index.peek`).

What it keeps is bounded by its capacity, least recently used out first; no
one body takes more than an eighth of it (:data:`SHARE`). A small body (a
thumbnail, a listing, a small original: at most ``ASGI_LOOK_CACHE_MAX_ENTRY``
bytes) is kept from its first answer; a bigger one (an original of a few
megabytes) from its second, so that a single pass over many pictures (a
crawler, a backup) does not push out what is asked for again and again. Until
then, and for a body too big to keep, only that it was given is kept.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import time
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import falcon

from asgilook.caching import conditional
from asgilook.caching import ranges
from asgilook.caching import status
from asgilook.errors import Unsure
from asgilook.pictures import renditions

#: ``current(subject)``: the current version of what a response shows: for an
#: image id, its current file (or None); for None, the index's state. Raises
#: :class:`Unsure` when it cannot tell at once.
Current = Callable[[str | None], object]

Send = Callable[[dict[str, Any]], Awaitable[None]]

#: ``observe(route, method, status, seconds, cache)``: told of every answer.
Observe = Callable[[str, str, int, float, str], None]

Headers = list[tuple[bytes, bytes]]

#: The largest part of the capacity one body may take: one in eight.
SHARE = 8

#: ``edge(origin, headers)``: an answer's ``headers`` with those that every
#: answer to a request from ``origin`` gets (None: the request has no
#: ``Origin``): the app's (see :meth:`asgilook.http.edge.Edge.add`), which
#: the replay adds as the app does.
Edge = Callable[[str | None, Headers], Headers]

# Headers a 304 repeats (RFC 9110, section 15.4.5), and the cache's own.
_NOT_MODIFIED_HEADERS = frozenset(
    {
        b'cache-control',
        b'etag',
        b'last-modified',
        b'vary',
        b'x-asgilook-cache',
        b'cache-status',
    }
)
_HIT = [
    (status.HEADER.lower().encode(), status.HIT.encode()),
    (status.STATUS_HEADER.lower().encode(), status.STATUSES[status.HIT].encode()),
]


def _no_edge(origin: str | None, headers: Headers) -> Headers:
    return headers


@dataclasses.dataclass(frozen=True, slots=True)
class Remembered:
    """One response, ready to be sent again while its version is current."""

    #: The route template it answers, for the metrics.
    route: str
    #: What it shows: an image id, or None for the listing.
    subject: str | None
    #: The version of it that it shows (see :data:`Current`).
    version: object
    etag: str | None
    last_modified: datetime.datetime | None
    headers: Headers
    #: None for a response too big to keep: only that it was given is kept.
    body: bytes | None

    @property
    def cost(self) -> int:
        """The bytes this takes in memory, roughly: its body, or its headers."""
        if self.body is not None:
            return len(self.body)
        return sum(len(name) + len(value) for name, value in self.headers)

    @classmethod
    def of(
        cls,
        route: str,
        subject: str | None,
        version: object,
        content_type: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        length: int,
    ) -> Remembered:
        """Remember a 200 response: its content type, other headers and body."""
        values = dict(headers)
        last_modified = values.get('last-modified')
        sent = [
            (b'content-type', content_type.encode('latin-1')),
            (b'content-length', str(length).encode()),
            *(
                (name.encode('latin-1'), value.encode('latin-1'))
                for name, value in headers
            ),
            *_HIT,
        ]
        return cls(
            route,
            subject,
            version,
            values.get('etag'),
            falcon.http_date_to_dt(last_modified) if last_modified else None,
            sent,
            body,
        )


class ResponseMemory:
    """A bounded, least recently used store of whole immutable responses.

    Args:
        capacity: The most bytes of bodies to keep in all.
        current: Tells the current version of what a response shows (see
            :data:`Current`).
        observe: Told of every answer given (see :data:`Observe`).
        edge: The headers every answer gets besides its own (see :data:`Edge`).
    """

    def __init__(
        self,
        capacity: int,
        current: Current,
        observe: Observe | None = None,
        edge: Edge = _no_edge,
    ) -> None:
        self._capacity = capacity
        self._largest = largest(capacity)
        self._current = current
        # The versions told in this turn of the event loop (see _version).
        self._versions: dict[str | None, object] = {}
        self._turn: asyncio.AbstractEventLoop | None = None
        self._observe = observe
        self._edge = edge
        self._entries: collections.OrderedDict[str, _Kept] = collections.OrderedDict()
        self._size = 0

    def remember(self, target: str, response: Remembered, at_once: int) -> None:
        """Keep ``response`` as the answer to a GET or HEAD of ``target``.

        Its body is kept if it fits: at once if it has at most ``at_once``
        bytes, else if it was given before (see the module's docstring); if
        not, only that it was given is kept.
        """
        body = response.body
        if body is not None and (
            len(body) > self._largest
            or (len(body) > at_once and not self.given(target, response.version))
        ):
            response = dataclasses.replace(response, body=None)
        if response.cost > self._capacity:
            return
        self._forget(target)
        sent = self._edge(None, response.headers)
        whole = None
        if response.body is not None:
            whole = Replay(200, sent, response.body, response.route, 'GET')
        self._entries[target] = _Kept(response, sent, whole)
        self._size += response.cost
        while self._size > self._capacity:
            self._forget(next(iter(self._entries)))

    def given(self, target: str, version: object) -> bool:
        """Whether this process answered ``target`` with that version before."""
        kept = self._entries.get(target)
        return kept is not None and kept.response.version == version

    def lacks(self, target: str, cost: int) -> bool:
        """Whether nothing is kept for ``target`` (or the replay found it stale),
        and a body of ``cost`` bytes would fit."""
        return target not in self._entries and cost <= self._largest

    def _forget(self, target: str) -> None:
        kept = self._entries.pop(target, None)
        if kept is not None:
            self._size -= kept.response.cost

    def _version(self, subject: str | None) -> object:
        """The current version of ``subject``, told once per turn of the loop.

        NOTE: Asking the index is the dearest step of a replay, and under
        load one turn answers many requests (a dozen or more a wakeup). One
        answer serves every replay of a turn, and is as fresh for each as its
        own: a request is read from its socket before its task is scheduled,
        so every replay that runs before the callback scheduled here (the
        ready queue is first in, first out) is of a request read before the
        index was asked; any request read later is answered after it, and
        asks again. The turn is known by the loop it was seen on, still
        running: not by asking for the running loop, which costs a system
        call (``getpid``, which CPython 3.11 makes to tell a forked child).
        A loop that stopped before the callback ran ends its turn too.
        """
        turn = self._turn
        if turn is None or not turn.is_running():
            loop = asyncio.get_running_loop()
            self._turn = loop
            self._versions.clear()
            loop.call_soon(self._next_turn)
        versions = self._versions
        if subject in versions:
            return versions[subject]
        version = versions[subject] = self._current(subject)
        return version

    def _next_turn(self) -> None:
        self._turn = None
        self._versions.clear()

    def find(self, scope: dict[str, Any]) -> Replay | None:
        """The answer from memory to an ASGI HTTP request, if it has one.

        Only a GET or HEAD of a remembered request target (its path and query
        string, exactly) whose version is still current is answered;
        conditional requests get their 304. The answer's headers are its own
        and then the edge's for the request's ``Origin``, as the app's are.

        NOTE: The hot path of the service. A GET that sends none of the
        headers the memory reads (:data:`_ASKED`) gets the answer made when
        it was remembered, with nothing made anew.
        """
        method = scope['method']
        if method != 'GET' and method != 'HEAD':
            return None
        query: bytes = scope['query_string']
        path: str = scope['path']
        target = f'{path}?{query.decode("latin-1")}' if query else path
        root = scope.get('root_path')
        if root:
            # NOTE: Kept by prefix too (see RedisCache): mount() left the root.
            target = root + target
        asked = {}
        for name, value in listed(scope):
            if name in _ASKED:
                asked[name] = value.decode('latin-1')
        if asked or method != 'GET':
            return self._find_asked(target, path, method, asked)
        kept = self._current_kept(target)
        return None if kept is None else kept.whole

    def _current_kept(self, target: str) -> _Kept | None:
        """What is kept for ``target``, with its body, if its version is current."""
        kept = self._entries.get(target)
        if kept is None or kept.whole is None:
            return None
        response = kept.response
        try:
            if self._version(response.subject) != response.version:
                self._forget(target)
                return None
        except Unsure:
            return None
        self._entries.move_to_end(target)
        return kept

    def _find_asked(
        self, target: str, path: str, method: str, asked: dict[bytes, str]
    ) -> Replay | None:
        """:meth:`find`, for a HEAD or a request that sends headers the memory
        reads: the answer worked out for the request."""
        if b'authorization' in asked:
            # NOTE: Credentials may change the answer (a key lists its own
            #   pictures): the app answers them.
            return None
        accept = asked.get(b'accept')
        if accept is None:
            # Nothing to negotiate: a thumbnail is a JPEG, kept by its path.
            pass
        elif path.startswith('/thumbnails/'):
            # NOTE: A thumbnail's format is negotiated: each is kept apart.
            target += renditions.variant(renditions.negotiate(accept))
        elif 'msgpack' in accept:
            # NOTE: Only JSON is remembered; Falcon negotiates the rest.
            return None
        kept = self._current_kept(target)
        if kept is None:
            return None
        response = kept.response
        answer = _answer(response, method, asked)
        if answer is None:
            # NOTE: Unsatisfiable: the app answers the 416, with its body.
            return None
        code, headers, body = answer
        origin = asked.get(b'origin')
        if origin is None and headers is response.headers:
            # The most common answer by far: its headers were made once.
            headers = kept.sent
        else:
            headers = self._edge(origin, headers)
        return Replay(code, headers, body, response.route, method)

    def observed(self, replay: Replay, started: float) -> None:
        """Tell the observer that ``replay`` was sent, for a request whose
        answer was looked for at ``started`` (``time.perf_counter()``)."""
        if self._observe is not None:
            self._observe(
                replay.route,
                replay.method,
                replay.code,
                time.perf_counter() - started,
                status.HIT,
            )

    async def replay(self, scope: dict[str, Any], send: Send) -> bool:
        """Answer an ASGI HTTP request from memory, if it can be (see
        :meth:`find`); say whether it was."""
        started = time.perf_counter()
        found = self.find(scope)
        if found is None:
            return False
        await send(
            {
                'type': 'http.response.start',
                'status': found.code,
                'headers': found.headers,
            }
        )
        await send({'type': 'http.response.body', 'body': found.body})
        self.observed(found, started)
        return True


class Replay(NamedTuple):
    """An answer from memory, to send: status, headers (the edge's included)
    and body; the route and method that :meth:`ResponseMemory.observed` tells
    of it."""

    code: int
    headers: Headers
    body: bytes
    route: str
    method: str


def listed(scope: dict[str, Any]) -> Headers:
    """An ASGI request's headers, as a list of pairs, left so in its scope.

    NOTE: ASGI allows any iterables (falcon.testing sends iterators of
    iterators): they are read once, and Falcon and every layer after find
    a list.
    """
    headers = scope['headers']
    if not isinstance(headers, list):
        headers = scope['headers'] = [tuple(pair) for pair in headers]
    pairs: Headers = headers
    return pairs


def largest(capacity: int) -> int:
    """The bytes of the largest response a memory of ``capacity`` keeps."""
    return capacity // SHARE


@dataclasses.dataclass(frozen=True, slots=True)
class _Kept:
    """A response kept, and the headers of its whole answer to a request
    without ``Origin``, the edge's included, and that answer itself: made
    once, sent many times.

    NOTE: The same list goes out with every such answer: a layer that adds
    a header to it makes a new list, as the ASGI servers do.
    """

    response: Remembered
    sent: Headers
    #: The whole answer to a GET with none of the headers the memory reads;
    #: None for a response whose body is not kept.
    whole: Replay | None


# The request headers the replay reads.
_ASKED = frozenset(
    {
        b'if-none-match',
        b'if-modified-since',
        b'accept',
        b'range',
        b'if-range',
        b'origin',
        b'authorization',
    }
)


def _answer(
    response: Remembered, method: str, asked: dict[bytes, str]
) -> tuple[int, Headers, bytes] | None:
    """The status, headers (but the edge's) and body with which to replay
    ``response``; None if the app is to answer (an unsatisfiable range)."""
    if_none_match = asked.get(b'if-none-match')
    if_modified_since = asked.get(b'if-modified-since')
    if (
        if_none_match is not None or if_modified_since is not None
    ) and conditional.not_modified(
        if_none_match, if_modified_since, response.etag, response.last_modified
    ):
        headers = [
            header for header in response.headers if header[0] in _NOT_MODIFIED_HEADERS
        ]
        return 304, headers, b''
    if method == 'HEAD':
        return 200, response.headers, b''
    if b'range' in asked:
        return _part(response, asked)
    body = response.body
    assert body is not None
    return 200, response.headers, body


def _part(
    response: Remembered, asked: dict[bytes, str]
) -> tuple[int, Headers, bytes] | None:
    """A GET's answer with a ``Range``: the 206 of its part, else the whole 200;
    None if the range is unsatisfiable.

    Only a response that says it takes ranges (``Accept-Ranges``) is answered
    in part, as the app would (see :mod:`asgilook.caching.ranges`).
    """
    body = response.body
    assert body is not None
    whole = 200, response.headers, body
    if (b'accept-ranges', ranges.ACCEPT_RANGES.encode()) not in response.headers:
        return whole
    byte_range = ranges.parse(asked[b'range'])
    if byte_range is None or not ranges.if_range_holds(
        asked.get(b'if-range'), response.etag or '', response.last_modified
    ):
        return whole
    span = byte_range.resolve(len(body))
    if span is None:
        return None
    start, end = span
    headers = [header for header in response.headers if header[0] != b'content-length']
    headers.append((b'content-length', str(end - start).encode()))
    headers.append(
        (b'content-range', ranges.content_range(start, end, len(body)).encode())
    )
    return 206, headers, body[start:end]
