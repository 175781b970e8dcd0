"""Reading an upload's bytes from a request: the HTTP side of ``POST /images``.

There are two ways in. The body is the picture itself (``curl --data-binary
@photo.jpg``), as in the tutorial app; or it is an HTML form,
``multipart/form-data``, with the picture in its ``image`` field (``curl -F
image=@photo.jpg``). Either way no more than the limit is ever read, whether
or not the client said in ``Content-Length`` how much it would send, and one
event loop holds at most a few uploads' worth of bodies at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import weakref
from collections.abc import AsyncIterable
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any
from typing import cast

import falcon
import falcon.asgi
import falcon.asgi.multipart

from asgilook.config import Config
from asgilook.errors import InvalidImage

IMAGE_FIELD = 'image'
#: The small text fields a form may carry beside the picture, and the most
#: characters each may have: the picture's name, and who may see it.
TEXT_FIELDS = {'name': 255, 'visibility': 16}

# NOTE: A form carries boundaries and part headers around the picture (and
#   perhaps a few small fields, like a title): this much more than the
#   picture's own limit is allowed for the whole form.
FORM_OVERHEAD = 64 * 1024

# NOTE: Bodies are read into memory whole, for Pillow. An event loop holds
#   at most this many largest-possible bodies' worth of bytes at once; when
#   it holds that much, more bytes wait their turn before they are read (the
#   server stops reading those sockets meanwhile), so a burst costs waiting
#   time, not memory.
UPLOADS_AT_ONCE = 4

# NOTE: A body's bytes take their share of the budget as they arrive, so a
#   client that announces a large body and sends none of it holds nothing.
#   When the budget is full a body waits for room (its socket is not read
#   meanwhile) at most this long, and is then turned away with a 503; the
#   wait does not count against the client's time (see Body).
BUDGET_WAIT = 10.0

#: The first seconds of a body in which it need not keep to the minimum rate
#: yet: a slow start (a phone waking its radio, a TCP window growing) is fine.
UPLOAD_GRACE = 10.0

#: The key of a request's :class:`Body` in its ASGI scope (see asgilook.http.app).
BODY = 'asgilook.body'

#: How much of Falcon's stream is read at once, when there is no Body.
CHUNK = 64 * 1024

_HOW = 'send the picture as the body, or as the "image" field of a form'


@contextlib.asynccontextmanager
async def upload(req: falcon.asgi.Request, max_bytes: int) -> AsyncIterator[bytes]:
    """Yield the uploaded picture's bytes: the body, or a form's ``image`` field.

    The body is read from the request's :class:`Body` (see :data:`BODY`), so
    it must arrive in time and cannot be cut off unnoticed. Its bytes take
    their share of the upload budget as they arrive, and hold it until the
    ``async with`` block ends, so pictures waiting for a Pillow thread count
    too.

    Args:
        req: The ``POST /images`` request.
        max_bytes: The largest picture accepted, in bytes.

    Raises:
        falcon.HTTPContentTooLarge: The picture (or the form) is over the limit;
            it is never read further than that.
        falcon.HTTPBadRequest: The form is malformed or has no ``image`` field,
            or the body ended (or the client went away) before it was whole.
        falcon.HTTPError: ``408 Request Timeout``: the body came too slowly.
        falcon.HTTPServiceUnavailable: The budget stayed full for too long.
        InvalidImage: The picture is empty.
    """
    form = _is_form(req)
    limit = max_bytes + FORM_OVERHEAD if form else max_bytes
    length = req.content_length
    if length is not None and length > limit:
        raise _too_large(max_bytes)

    body: Body | None = req.scope.get(BODY)
    if body is None:
        # NOTE: In a plain Falcon app (the tutorial's contract), read Falcon's
        #   stream, on the default deadline: it ends quietly at a disconnect.
        body = Body(
            _events_of(req.stream),
            Config.DEFAULT_UPLOAD_TIMEOUT,
            Config.DEFAULT_UPLOAD_MIN_RATE,
        )
    share = _Share(_budget(UPLOADS_AT_ONCE * (max_bytes + FORM_OVERHEAD)), body)
    try:
        chunks = share.admit(body.chunks())
        if form:
            data, req.context.form_fields = await _read_form(
                req, chunks, max_bytes, limit
            )
        else:
            data = await _read(chunks, max_bytes)
            _check_complete(len(data), length)
        if not data:
            raise InvalidImage(f'The upload is empty: {_HOW}.')
        yield data
    finally:
        share.release()


def _events_of(stream: falcon.asgi.BoundedStream) -> Receive:
    """An ASGI ``receive`` that reads a Falcon request stream."""

    async def receive() -> dict[str, Any]:
        chunk = await stream.read(CHUNK)
        return {'type': 'http.request', 'body': chunk, 'more_body': bool(chunk)}

    return receive


def _is_form(req: falcon.asgi.Request) -> bool:
    media_type, _ = falcon.parse_header(req.content_type or '')
    return media_type.lower() == falcon.MEDIA_MULTIPART


def _too_large(max_bytes: int) -> falcon.HTTPContentTooLarge:
    return falcon.HTTPContentTooLarge(
        title='Upload Too Large',
        description=(
            f'The upload is larger than this service accepts: at most '
            f'{max_bytes:,} bytes ({max_bytes / 2**20:.3g} MiB).'
        ),
    )


def _check_complete(received: int, length: int | None) -> None:
    # NOTE: A disconnect is told apart by Body.chunks; this is a body that
    #   ended, as far as the server is concerned, short of what it announced.
    if length is not None and received < length:
        raise falcon.HTTPBadRequest(
            title='Incomplete Upload',
            description=(
                f'The body ended after {received:,} of the {length:,} bytes that '
                'its Content-Length announced.'
            ),
        )


async def _read(stream: AsyncIterable[bytes], max_bytes: int) -> bytes:
    """Read a stream whole, stopping as soon as it is over ``max_bytes``."""
    chunks = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b''.join(chunks)


async def _counted(
    stream: AsyncIterable[bytes], limit: int, max_bytes: int
) -> AsyncIterator[bytes]:
    """Pass a stream on, failing once more than ``limit`` bytes went through."""
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise _too_large(max_bytes)
        yield chunk


async def _read_form(
    req: falcon.asgi.Request, chunks: AsyncIterable[bytes], max_bytes: int, limit: int
) -> tuple[bytes, dict[str, str]]:
    """The ``image`` field of a ``multipart/form-data`` body, and its text fields.

    The text fields are those of :data:`TEXT_FIELDS`, and ``filename``: the
    name the picture's part was sent under, if any. Others are read past.

    NOTE: ``req.get_media()`` would hand Falcon's multipart parser the request
    stream itself. The same parser (the app's handler for the media type) gets
    the body's chunks through a counter here instead, so that the form as a
    whole, other fields included, is held to the limit and not only its
    picture.
    """
    handler = req.options.media_handlers[falcon.MEDIA_MULTIPART]
    data = None
    fields: dict[str, str] = {}
    try:
        # NOTE: Falcon's multipart reader takes any async iterator of bytes.
        form = cast(
            falcon.asgi.multipart.MultipartForm,
            await handler.deserialize_async(
                _counted(chunks, limit, max_bytes),  # type: ignore[arg-type]
                req.content_type,
                req.content_length,
            ),
        )
        # NOTE: The form is read to its closing boundary, past the picture:
        #   that boundary is what proves that the whole form arrived.
        async for part in form:
            if part.name in TEXT_FIELDS:
                fields[part.name] = await _text_field(part, TEXT_FIELDS[part.name])
                continue
            if part.name != IMAGE_FIELD:
                continue
            if part.filename:
                fields['filename'] = part.filename
            if data is not None:
                raise _bad_form(
                    'The form has more than one "image" field, and an upload '
                    'is one picture'
                )
            data = await _read(part.stream, max_bytes)
    except (falcon.MediaMalformedError, falcon.HTTPInvalidHeader) as ex:
        raise _bad_form(
            f'The multipart/form-data body is malformed ({ex.description})'
        ) from ex
    except UnicodeDecodeError as ex:
        raise _bad_form('A part header of the form is not UTF-8') from ex
    if data is None:
        raise _bad_form('The form has no "image" field')
    return data, fields


async def _text_field(part: falcon.asgi.multipart.BodyPart, most: int) -> str:
    """A small text field of the form, as UTF-8 text of at most ``most`` characters."""
    too_long = _bad_form(f'The "{part.name}" field is longer than {most} characters')
    chunks: list[bytes] = []
    size = 0
    async for chunk in part.stream:
        size += len(chunk)
        if size > 4 * most:  # UTF-8 takes at most 4 bytes a character.
            raise too_long
        chunks.append(chunk)
    try:
        text = b''.join(chunks).decode()
    except UnicodeDecodeError:
        raise _bad_form(f'The "{part.name}" field is not UTF-8 text') from None
    if len(text) > most:
        raise too_long
    return text


def _bad_form(reason: str) -> falcon.HTTPBadRequest:
    return falcon.HTTPBadRequest(
        title='Invalid Form',
        description=(
            f'{reason}. Send the picture as the "image" field of the form, as '
            'curl -F image=@photo.jpg does, or as the whole body.'
        ),
    )


Receive = Callable[[], Awaitable[dict[str, Any]]]


class Disconnected(falcon.HTTPBadRequest):
    """The client went away before its body ended: nothing of it is kept."""


class Body:
    """A request's body as its ASGI events arrive, on a deadline.

    The app (asgilook.http.app) makes one for every request that Falcon answers
    and hands it to Falcon as the request's ``receive``. Falcon's first call,
    which Falcon makes before it even routes the request, is answered at
    once with an empty chunk, so a client that stalls after its headers holds
    nothing up; the body itself is read, by whoever needs it, with
    :meth:`chunks`.

    The whole body must arrive within ``timeout`` seconds of the request;
    and, after :data:`UPLOAD_GRACE` seconds, at ``min_rate`` bytes a second
    or more, on average since the request began. Time that the server spends
    waiting for room in the upload budget (see :meth:`paused`) is not the
    client's and is left out of both.
    """

    def __init__(
        self,
        receive: Receive,
        timeout: float,
        min_rate: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._receive = receive
        self._timeout = timeout
        self._min_rate = min_rate
        self._clock = clock
        self._started = clock()
        self._paused = 0.0
        self._first = True
        #: The bytes of the body received so far.
        self.received = 0

    async def __call__(self) -> dict[str, Any]:
        """The ASGI ``receive`` Falcon is given: nothing, at first."""
        if self._first:
            self._first = False
            return {'type': 'http.request', 'body': b'', 'more_body': True}
        return await self._receive()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's chunks until its end.

        Raises:
            falcon.HTTPError: ``408 Request Timeout``, when the client is too
                slow (the connection is closed after the answer).
            Disconnected: The client went away before the end of the body;
                Falcon's own stream would end there as if the body were whole.
        """
        while True:
            event = await self._next()
            if event['type'] == 'http.disconnect':
                raise Disconnected(
                    title='Incomplete Upload',
                    description=(
                        f'The connection was closed after {self.received:,} '
                        'bytes of the body, before its end.'
                    ),
                )
            chunk = event.get('body', b'')
            self.received += len(chunk)
            if chunk:
                yield chunk
            if not event.get('more_body', False):
                return

    def paused(self, seconds: float) -> None:
        """Leave ``seconds`` that the server kept the body waiting off its time."""
        self._paused += seconds

    async def _next(self) -> dict[str, Any]:
        # NOTE: The average rate falls below the minimum at the moment
        #   received / elapsed == min_rate; until the next chunk, that moment
        #   (or the deadline, or the end of the grace) bounds the wait.
        allowed = min(self._timeout, max(UPLOAD_GRACE, self.received / self._min_rate))
        left = allowed - (self._clock() - self._started - self._paused)
        if left <= 0:
            raise self._too_slow()
        try:
            async with asyncio.timeout(left):
                return await self._receive()
        except TimeoutError:
            raise self._too_slow() from None

    def _too_slow(self) -> falcon.HTTPError:
        return falcon.HTTPError(
            falcon.HTTP_408,
            title='Upload Too Slow',
            description=(
                f'Only {self.received:,} bytes of the body arrived in time. A '
                f'body must arrive whole within {self._timeout:g} seconds and, '
                f'after the first {UPLOAD_GRACE:g}, at {self._min_rate:,.0f} '
                'bytes a second or more: send it again, over a faster '
                'connection, or send a smaller picture.'
            ),
            headers={'Connection': 'close'},
        )


class _Share:
    """The bytes of one body that it holds of the upload budget."""

    def __init__(self, budget: _Budget, body: Body) -> None:
        self._budget = budget
        self._body = body
        self.held = 0

    async def admit(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """Pass each chunk on once the budget has room for it."""
        async for chunk in chunks:
            size = len(chunk)
            if not self._budget.take_now(size):
                started = time.monotonic()
                try:
                    await asyncio.wait_for(self._budget.acquire(size), BUDGET_WAIT)
                except TimeoutError:
                    raise _busy() from None
                finally:
                    self._body.paused(time.monotonic() - started)
            self.held += size
            yield chunk

    def release(self) -> None:
        self._budget.release(self.held)
        self.held = 0


def _busy() -> falcon.HTTPServiceUnavailable:
    return falcon.HTTPServiceUnavailable(
        title='Too Many Uploads',
        description=(
            'This server is reading as many uploads as it can hold at once: '
            f'send the picture again in {BUDGET_WAIT:g} seconds.'
        ),
        retry_after=max(1, round(BUDGET_WAIT)),
        headers={'Connection': 'close'},
    )


class _Budget:
    """Bytes of upload bodies that one event loop may be reading at once.

    Reservations are granted first come, first served: one waits until all
    earlier ones were granted and enough bytes are free, so a large upload
    is not overtaken forever by small ones.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.free = capacity
        self._waiting: collections.deque[tuple[int, asyncio.Future[None]]] = (
            collections.deque()
        )

    def take_now(self, size: int) -> bool:
        """Take ``size`` bytes if they are free and nobody waits before."""
        if not self._waiting and size <= self.free:
            self.free -= size
            return True
        return False

    async def acquire(self, size: int) -> None:
        """Take ``size`` bytes, waiting for them in turn."""
        if self.take_now(size):
            return
        waiter = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiting.append(entry)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                self._waiting.remove(entry)
                self._grant()
            else:
                # Granted, then cancelled before it could run: give it back.
                self.release(size)
            raise

    def release(self, size: int) -> None:
        """Give back ``size`` bytes and grant the waits they now cover."""
        self.free += size
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self._waiting[0][0] <= self.free:
            size, waiter = self._waiting[0]
            if waiter.cancelled():
                # Its task takes it off the queue when it runs.
                return
            self._waiting.popleft()
            self.free -= size
            waiter.set_result(None)


# NOTE: One budget per event loop (and capacity), made on first use: asyncio
#   objects belong to one loop, and falcon.testing runs a new loop for every
#   simulate_* call. Memory is the process's, so apps on one loop share it.
_BUDGETS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _Budget]] = (
    weakref.WeakKeyDictionary()
)


def _budget(capacity: int) -> _Budget:
    budgets = _BUDGETS.setdefault(asyncio.get_running_loop(), {})
    return budgets.setdefault(capacity, _Budget(capacity))
