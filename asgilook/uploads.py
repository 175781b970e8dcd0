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
import weakref
from collections.abc import AsyncIterable
from collections.abc import AsyncIterator
from typing import cast

import falcon
import falcon.asgi
import falcon.asgi.multipart

from asgilook.errors import InvalidImage

IMAGE_FIELD = 'image'

# NOTE: A form carries boundaries and part headers around the picture (and
#   perhaps a few small fields, like a title): this much more than the
#   picture's own limit is allowed for the whole form.
FORM_OVERHEAD = 64 * 1024

# NOTE: Bodies are read into memory whole, for Pillow. An event loop reads
#   at most this many largest-possible bodies at once; more uploads wait
#   their turn before their bodies are read (the server stops reading their
#   sockets meanwhile), so a burst costs waiting time, not memory.
UPLOADS_AT_ONCE = 4

_HOW = 'send the picture as the body, or as the "image" field of a form'


@contextlib.asynccontextmanager
async def upload(req: falcon.asgi.Request, max_bytes: int) -> AsyncIterator[bytes]:
    """Yield the uploaded picture's bytes: the body, or a form's ``image`` field.

    The bytes' share of the upload budget is held until the ``async with``
    block ends, so pictures waiting for a Pillow thread count too.

    Args:
        req: The ``POST /images`` request.
        max_bytes: The largest picture accepted, in bytes.

    Raises:
        falcon.HTTPContentTooLarge: The picture (or the form) is over the limit;
            it is never read further than that.
        falcon.HTTPBadRequest: The form is malformed or has no ``image`` field,
            or the body ended before its ``Content-Length``.
        InvalidImage: The picture is empty.
    """
    form = _is_form(req)
    limit = max_bytes + FORM_OVERHEAD if form else max_bytes
    length = req.content_length
    if length is not None and length > limit:
        raise _too_large(max_bytes)

    budget = _budget(UPLOADS_AT_ONCE * (max_bytes + FORM_OVERHEAD))
    async with budget.reserve(limit if length is None else length):
        if form:
            data = await _read_form(req, max_bytes, limit)
        else:
            data = await _read(req.stream, max_bytes)
            _check_complete(len(data), length)
        if not data:
            raise InvalidImage(f'The upload is empty: {_HOW}.')
        yield data


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
    # NOTE: Falcon ends the body stream early, without an error, when the
    #   client disconnects; a short body is the only sign of it. (A chunked
    #   body that is cut off cannot be told from a complete one here; Pillow
    #   refuses nearly every truncated picture anyway.)
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


async def _read_form(req: falcon.asgi.Request, max_bytes: int, limit: int) -> bytes:
    """The ``image`` field of a ``multipart/form-data`` body.

    NOTE: ``req.get_media()`` would hand Falcon's multipart parser the request
    stream itself. The same parser (the app's handler for the media type) gets
    the stream through a counter here instead, so that the form as a whole,
    other fields included, is held to the limit and not only its picture.
    """
    handler = req.options.media_handlers[falcon.MEDIA_MULTIPART]
    data = None
    try:
        # NOTE: Falcon's multipart reader takes any async iterator of bytes.
        form = cast(
            falcon.asgi.multipart.MultipartForm,
            await handler.deserialize_async(
                _counted(req.stream, limit, max_bytes),  # type: ignore[arg-type]
                req.content_type,
                req.content_length,
            ),
        )
        # NOTE: The form is read to its closing boundary, past the picture:
        #   that boundary is what proves that the whole form arrived.
        async for part in form:
            if part.name != IMAGE_FIELD:
                continue
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
    return data


def _bad_form(reason: str) -> falcon.HTTPBadRequest:
    return falcon.HTTPBadRequest(
        title='Invalid Form',
        description=(
            f'{reason}. Send the picture as the "image" field of the form, as '
            'curl -F image=@photo.jpg does, or as the whole body.'
        ),
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

    @contextlib.asynccontextmanager
    async def reserve(self, size: int) -> AsyncIterator[None]:
        """Hold ``size`` bytes of the budget for the body of the ``with``."""
        await self._acquire(size)
        try:
            yield
        finally:
            self._release(size)

    async def _acquire(self, size: int) -> None:
        if not self._waiting and size <= self.free:
            self.free -= size
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
                self._release(size)
            raise

    def _release(self, size: int) -> None:
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
