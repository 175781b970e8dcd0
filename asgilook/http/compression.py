"""Compressed answers: Brotli or gzip, as ``Accept-Encoding`` asks, made once.

:class:`Compression` wraps the ASGI ``send`` of every GET and HEAD, so that
the memory's replays and Falcon's answers are compressed alike, after every
layer that keeps answers (Redis and memory keep the identity). It compresses:

- a ``200`` with its whole body in one message, of a type that text makes up
  (:func:`compressible`: JSON, MessagePack, HTML, CSS, JavaScript, SVG, plain
  text), of at least :data:`MIN_SIZE` bytes, with no ``Content-Encoding`` or
  ``Content-Range`` of its own. Never a picture, a ``206``, a ``304``, or a
  stream (``/events``): a body sent in parts goes as it comes, unbuffered;
- in the coding the request prefers (:func:`negotiate`): ``br``, then
  ``gzip``; the identity when it asks for neither, or sends no
  ``Accept-Encoding`` at all.

Every ``200`` of those types says ``Vary: Accept-Encoding``, compressed or
not, so that a shared cache keeps the codings apart. A compressed answer has
its own ``ETag`` (:func:`asgilook.caching.conditional.coded`), and its
``Content-Length`` is the compressed one; a ``304`` to a client that holds a
compressed copy names that copy's ``ETag``. A ``HEAD`` says what its ``GET``
would: Falcon's HEAD keeps its body for this (:meth:`Compression.process_response`),
and a HEAD from memory whose compressed length is not known raises
:class:`Unknown`, so that the app lets Falcon answer it.

Bodies with an ``ETag`` are compressed once per coding and kept in a
:class:`Memo`, least recently used out: the listing, the page, its assets and
the OpenAPI document are never compressed again while they are the same.
Bodies without one (``/metrics``) change with every answer and are
compressed every time.
"""

from __future__ import annotations

import collections
import functools
import zlib
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any

import brotli  # type: ignore[import-untyped]
import falcon.asgi

from asgilook.caching.conditional import CODINGS
from asgilook.caching.conditional import coded
from asgilook.caching.conditional import uncoded
from asgilook.caching.memory import listed

Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
#: ``compress(body, coding)``: the body in that coding.
Compressor = Callable[[bytes, str], bytes]

#: Smaller bodies go as they are: a few bytes saved, none of a packet.
MIN_SIZE = 256
#: Brotli's quality: 5 compresses the OpenAPI document (93 kB) in 1 ms, and
#: as well as 6 to 9 within 3%; 9 takes 16 ms, 11 takes 110 ms.
BROTLI_QUALITY = 5
#: zlib's level, as nginx's and Apache's: 9 gains 1% for more time.
GZIP_LEVEL = 6
#: Bytes of compressed bodies kept for their next answers, per process.
MEMO_SIZE = 4 * 1024 * 1024
#: The paths of pictures (originals, animations, thumbnails), never compressed.
PICTURES = ('/images/', '/thumbnails/')
#: Where Falcon's answer to a HEAD leaves the body it did not send (or None).
HEAD_BODY = 'asgilook.head_body'

_TYPES = frozenset(
    {
        b'application/javascript',
        b'application/json',
        b'application/msgpack',
        b'application/xml',
        b'text/css',
        b'text/html',
        b'text/javascript',
        b'text/plain',
        b'text/xml',
    }
)
_SUFFIXES = (b'+json', b'+xml')
_ALIASES = {'x-gzip': 'gzip'}
_VARY = b'Accept-Encoding'
# The request headers that make a replay's answer differ here: a coding to
# send, or coded copies that a 304 names.
_CODED_COPIES = frozenset({b'accept-encoding', b'if-none-match'})


class Unknown(Exception):
    """A HEAD from memory whose compressed length this process does not know."""


def compress(body: bytes, coding: str) -> bytes:
    """``body`` in ``coding``: ``br`` or ``gzip`` (its header says no time)."""
    if coding == 'br':
        data: bytes = brotli.compress(body, quality=BROTLI_QUALITY)
        return data
    return zlib.compress(body, GZIP_LEVEL, wbits=31)


# NOTE: An answer's type is one of a few: each is looked at once.
@functools.lru_cache(maxsize=64)
def compressible(content_type: bytes) -> bool:
    """Whether a body of this ``Content-Type`` is text that compresses."""
    media_type = content_type.partition(b';')[0].strip().lower()
    return media_type in _TYPES or media_type.endswith(_SUFFIXES)


# NOTE: Browsers send one of a few values, parsed once each here.
@functools.lru_cache(maxsize=256)
def negotiate(accept_encoding: str) -> tuple[str | None, bool]:
    """The coding to send for this ``Accept-Encoding``, and whether the
    identity is acceptable.

    The coding is the one of :data:`~asgilook.caching.conditional.CODINGS`
    with the highest ``q`` above zero (``br`` on a tie), named or through
    ``*``; None for the identity, which it is also when the identity has a
    higher ``q`` than any (RFC 9110, section 12.5.3). The identity is
    acceptable unless ``identity;q=0``, or ``*;q=0`` without ``identity``,
    refuses it. An element whose ``q`` is not a number from 0 to 1 is left out.
    """
    weights: dict[str, float] = {}
    for element in accept_encoding.split(','):
        name, _, parameters = element.partition(';')
        name = name.strip().lower()
        quality = _quality(parameters)
        if name and quality is not None:
            weights[_ALIASES.get(name, name)] = quality
    other = weights.get('*')
    identity = weights.get('identity', other)
    best, chosen = 0.0, None
    for coding in CODINGS:
        quality = weights.get(coding, other) or 0.0
        if quality > best:
            best, chosen = quality, coding
    if identity is not None and identity > best:
        chosen = None
    return chosen, identity != 0


def _quality(parameters: str) -> float | None:
    for parameter in parameters.split(';'):
        name, _, value = parameter.partition('=')
        if name.strip().lower() == 'q':
            try:
                quality = float(value)
            except ValueError:
                return None
            return quality if 0 <= quality <= 1 else None
    return 1.0


class Memo:
    """Compressed bodies by key, at most ``capacity`` bytes of them, least
    recently used out."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._size = 0
        self._entries: collections.OrderedDict[tuple[object, ...], bytes] = (
            collections.OrderedDict()
        )

    def get(self, key: tuple[object, ...]) -> bytes | None:
        data = self._entries.get(key)
        if data is not None:
            self._entries.move_to_end(key)
        return data

    def put(self, key: tuple[object, ...], data: bytes) -> None:
        if len(data) > self._capacity:
            return
        replaced = self._entries.pop(key, None)
        if replaced is not None:
            self._size -= len(replaced)
        self._entries[key] = data
        self._size += len(data)
        while self._size > self._capacity:
            _, dropped = self._entries.popitem(last=False)
            self._size -= len(dropped)


class Compression:
    """Compresses the answers of GET and HEAD requests (see the module).

    Also a Falcon middleware: a HEAD's answer keeps the body it does not
    send, for the compressed length.

    Args:
        capacity: The bytes of compressed bodies kept in all.
        compressor: Makes a body in a coding (see :data:`Compressor`);
            :func:`compress` if None.
    """

    def __init__(
        self, capacity: int = MEMO_SIZE, compressor: Compressor | None = None
    ) -> None:
        self._memo = Memo(capacity)
        self._compressor = compressor or compress

    def wrap(self, scope: dict[str, Any], send: Send, replaying: bool = False) -> Send:
        """``send`` for the answer to ``scope``, compressing it if it should.

        ``replaying``: the answer comes from memory, where a HEAD's body is
        not at hand; the wrapped ``send`` raises :class:`Unknown` for a HEAD
        whose compressed length is not known, before it sends anything.
        """
        if self._untouched(scope, replaying):
            return send
        return _Answer(self, scope, send, replaying)

    def plain(self, scope: dict[str, Any]) -> bool:
        """Whether an answer from memory to ``scope`` passes here untouched,
        so that it may be sent as it was kept."""
        return self._untouched(scope, replaying=True)

    @staticmethod
    def _untouched(scope: dict[str, Any], replaying: bool) -> bool:
        method = scope['method']
        if method != 'GET' and method != 'HEAD':
            return True
        # NOTE: A picture's route answers pictures or errors, neither of them
        #   compressed: its answers (the hot path) pass by untouched.
        if scope.get('path', '').startswith(PICTURES):
            return True
        # NOTE: A replay's headers are varied already (see varied()): to a
        #   client that takes no coding and holds no coded copy, there is
        #   nothing to add.
        return replaying and not any(name in _CODED_COPIES for name, _ in listed(scope))

    async def process_response(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: object,
        req_succeeded: bool,
    ) -> None:
        if (
            req.method == 'HEAD'
            and resp.status_code == 200
            and compressible((resp.content_type or '').encode('latin-1'))
        ):
            req.scope[HEAD_BODY] = await resp.render_body()

    def coded(self, body: bytes, coding: str, key: tuple[object, ...] | None) -> bytes:
        """``body`` in ``coding``, from the memo if ``key`` (its ETag's) is there."""
        if key is None:
            return self._compressor(body, coding)
        data = self._memo.get(key)
        if data is None:
            data = self._compressor(body, coding)
            self._memo.put(key, data)
        return data

    def known(self, key: tuple[object, ...] | None) -> bytes | None:
        """What the memo keeps under ``key``, if anything."""
        return None if key is None else self._memo.get(key)


class _Answer:
    """The ``send`` of one answer: holds a compressible ``200``'s start until
    its body comes, then sends both, compressed if it should."""

    __slots__ = ('_compression', '_scope', '_send', '_replaying', '_held', '_coding')

    def __init__(
        self,
        compression: Compression,
        scope: dict[str, Any],
        send: Send,
        replaying: bool,
    ) -> None:
        self._compression = compression
        self._scope = scope
        self._send = send
        self._replaying = replaying
        self._held: dict[str, Any] | None = None
        self._coding: tuple[str | None, bool] = (None, True)

    async def __call__(self, message: dict[str, Any]) -> None:
        start = self._held
        if start is not None:
            self._held = None
            await self._finish(start, message)
        elif message['type'] == 'http.response.start':
            started = self._started(message)
            if started is not None:
                await self._send(started)
        else:
            await self._send(message)

    def _asked(self, name: bytes) -> str | None:
        for key, value in self._scope['headers']:
            if key == name:
                asked: str = value.decode('latin-1')
                return asked
        return None

    def _started(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """The start to send now; None if it waits for the body."""
        status = message['status']
        if status != 200:
            return self._not_modified(message) if status == 304 else message
        headers: Headers = message['headers']
        if not _compressible_answer(headers):
            return message
        message = {**message, 'headers': _varied(headers)}
        accept_encoding = self._asked(b'accept-encoding')
        if accept_encoding is None:
            return message
        self._coding = negotiate(accept_encoding)
        if self._coding[0] is None:
            return message
        self._held = message
        return None

    async def _finish(self, start: dict[str, Any], message: dict[str, Any]) -> None:
        if message.get('more_body', False):
            # NOTE: A stream goes as it comes: never buffered, never compressed.
            await self._send(start)
            await self._send(message)
            return
        headers: Headers = start['headers']
        etag = _value(headers, b'etag')
        data = self._compressed(etag, headers, message.get('body', b''))
        if data is None:
            await self._send(start)
            await self._send(message)
            return
        coding = self._coding[0]
        assert coding is not None
        start = {**start, 'headers': _coded(headers, coding, etag, len(data))}
        await self._send(start)
        head = self._scope['method'] == 'HEAD'
        await self._send({**message, 'body': b'' if head else data})

    def _compressed(
        self, etag: bytes | None, headers: Headers, body: bytes
    ) -> bytes | None:
        """The compressed body; None to send the identity."""
        coding, identity = self._coding
        assert coding is not None
        if self._scope['method'] != 'HEAD':
            length = len(body)
            if length < MIN_SIZE and identity:
                return None
            data = self._compression.coded(
                body, coding, self._key(etag, coding, length)
            )
        else:
            length = int(_value(headers, b'content-length') or 0)
            if length < MIN_SIZE and identity:
                return None
            key = self._key(etag, coding, length)
            known = self._compression.known(key)
            if known is None:
                if self._replaying:
                    raise Unknown
                unsent: bytes | None = self._scope.get(HEAD_BODY)
                if unsent is None:
                    return None
                known = self._compression.coded(unsent, coding, key)
            data = known
        return None if len(data) >= length and identity else data

    def _key(
        self, etag: bytes | None, coding: str, length: int
    ) -> tuple[object, ...] | None:
        if etag is None:
            return None
        # NOTE: An ETag names a representation of one resource: the same tag of
        #   another (under another root path) may be other bytes.
        return (etag, coding, length, self._scope.get('root_path', ''))

    def _not_modified(self, message: dict[str, Any]) -> dict[str, Any]:
        """A 304 names the client's copy: by the coded ETag it asked with, if it
        holds a compressed one (the one it would get now, if it holds several)."""
        headers: Headers = message['headers']
        etag = _value(headers, b'etag')
        if_none_match = self._asked(b'if-none-match')
        if etag is None or if_none_match is None:
            return message
        tag = etag.decode('latin-1')
        held = _codings_held(if_none_match, uncoded(tag))
        accept_encoding = self._asked(b'accept-encoding')
        wanted = negotiate(accept_encoding)[0] if accept_encoding else None
        coding = wanted if wanted in held else next(filter(None, held), None)
        if coding is None:
            return message
        answer = [header for header in headers if header[0] != b'etag']
        answer.append((b'etag', coded(tag, coding).encode('latin-1')))
        return {**message, 'headers': _varied(answer)}


def _value(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def varied(headers: Headers) -> Headers:
    """``headers`` with ``Accept-Encoding`` in ``Vary`` if they are those of an
    answer that would be compressed for a client that asked.

    NOTE: The memory's answers are made with it once, when remembered: a
    replay to a client that asks for no coding and holds no coded copy then
    needs nothing of this module (see :meth:`Compression.wrap`).
    """
    return _varied(headers) if _compressible_answer(headers) else headers


def _compressible_answer(headers: Headers) -> bool:
    """Whether the answer with these headers is text that is not yet coded."""
    # NOTE: The hot path: a picture's type is the first header of a replay.
    content_type = _value(headers, b'content-type')
    if content_type is None or not compressible(content_type):
        return False
    for name, _ in headers:
        if name == b'content-encoding' or name == b'content-range':
            return False
    return True


def _varied(headers: Headers) -> Headers:
    """``headers`` whose ``Vary`` names ``Accept-Encoding`` (in its first field)."""
    first = None
    for index, (name, value) in enumerate(headers):
        if name == b'vary':
            if b'accept-encoding' in value.lower() or value.strip() == b'*':
                return headers
            if first is None:
                first = index
    if first is None:
        return [*headers, (b'vary', _VARY)]
    answer = list(headers)
    answer[first] = (b'vary', answer[first][1] + b', ' + _VARY)
    return answer


def _coded(headers: Headers, coding: str, etag: bytes | None, length: int) -> Headers:
    """The headers of a compressed answer, from the identity's."""
    answer = [
        header
        for header in headers
        if header[0] != b'content-length' and header[0] != b'etag'
    ]
    answer.append((b'content-length', str(length).encode()))
    answer.append((b'content-encoding', coding.encode()))
    if etag is not None:
        answer.append(
            (b'etag', coded(etag.decode('latin-1'), coding).encode('latin-1'))
        )
    return answer


def _codings_held(if_none_match: str, etag: str) -> list[str | None]:
    """The codings of the copies of ``etag`` (an identity's, without ``W/``)
    that ``If-None-Match`` names; None for the identity."""
    held: list[str | None] = []
    for tag in if_none_match.split(','):
        if uncoded(tag) == etag:
            tag = tag.strip().removeprefix('W/')
            held.append(None if tag == etag else tag[len(etag) : -1])
    return held
