"""The files of a version, made from its picture with Pillow, in threads.

When an image is uploaded, its original, its whole thumbnail series, its
animated rendition, the original kept as uploaded (see
:mod:`asgilook.pictures.kept`) and its placeholder are made at once, each in
a thread of the Pillow pool, and written to the version's objects (see
:mod:`asgilook.storage.objects`). Later, a series that is missing (a version
stored before thumbnails were rendered at upload) or that no request asked
for yet (the AVIF or WebP thumbnails) is rendered in the background: once,
however many requests find it missing at the same moment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Coroutine
from typing import Any
from typing import NamedTuple

from asgilook import logs
from asgilook.config import Config
from asgilook.pictures import Size
from asgilook.pictures import kept
from asgilook.pictures import pixels
from asgilook.pictures import renditions
from asgilook.storage.image import Image
from asgilook.storage.objects import Objects
from asgilook.storage.workers import Workers

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Written:
    """What the index records of a version whose files are written."""

    placeholder: str
    #: Whether it has an animated rendition.
    animated: bool
    #: The extension of its original kept as uploaded; '' if it has none.
    original: str = ''


class Small(NamedTuple):
    """What a picture too small for thumbnails comes with from its decoding
    (see :func:`_decode`)."""

    #: Its stored JPEG, and its placeholder.
    original: bytes
    placeholder: str
    #: The original kept as uploaded, if one is (see :mod:`asgilook.pictures.kept`).
    kept: kept.Kept | None


class Renderer:
    """Makes the files of a store's versions, at upload and after the fact.

    ``report(thumbnails, started)`` is told of each thumbnail series
    rendered: how many thumbnails, since which :func:`time.perf_counter`.
    """

    def __init__(
        self,
        config: Config,
        objects: Objects,
        workers: Workers,
        report: Callable[[int, float], None],
    ) -> None:
        self._config = config
        self._objects = objects
        self._workers = workers
        self._report = report
        # Thumbnail series being rendered after the fact, by original file.
        self._flights: dict[str, asyncio.Task[bool]] = {}

    # At upload

    async def decode(self, data: bytes) -> tuple[pixels.Decoded, Small | None]:
        """Decode an upload (see :func:`_decode`), in a thread of the pool."""
        return await self._workers.pillow(
            _decode, data, self._config.max_pixels, self._config.min_thumb_size
        )

    async def write_version(
        self,
        name: str,
        data: bytes,
        decoded: pixels.Decoded,
        small: Small | None,
    ) -> Written:
        """Make and write every file of the new version whose original is ``name``.

        If this fails, files may have been written: the caller discards the
        version.
        """
        # NOTE: Encoded at once, each in a thread of the pool: the original
        #   and the one kept as uploaded (each written as soon as it is
        #   ready), the largest thumbnail, the rest, the animation. Every one
        #   is awaited, even if another failed, so that nothing is written
        #   after the caller's cleanup. A picture too small for thumbnails, or
        #   a still one, asks no thread for what it has not got: each hop
        #   costs a small upload more than its encoding.
        started = time.perf_counter()
        jobs: dict[str, Awaitable[Any]] = {
            'original': self._store_original(name, decoded, small)
        }
        if decoded.source is not None:
            jobs['largest'] = self._workers.pillow(pixels.encode_largest, decoded)
            jobs['smaller'] = self._workers.pillow(pixels.encode_smaller, decoded)
        if pixels.may_animate(data):
            jobs['animation'] = self._workers.pillow(
                pixels.animate, data, self._config.max_pixels
            )
        if small is None and _keeps(decoded, data):
            jobs['kept'] = self._store_kept(name, data, decoded.turned)
        results = await asyncio.gather(*jobs.values(), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        done: dict[str, Any] = dict(zip(jobs, results, strict=True))
        placeholder: str | None = done['original']
        thumbnails: pixels.Series = done.get('largest', ())
        thumbnails += done.get('smaller', ())
        animation: bytes | None = done.get('animation')
        self._report(len(thumbnails), started)
        if thumbnails:
            await self._objects.write_thumbnails(name, list(thumbnails))
        if animation is not None:
            await self._objects.write_animation(name, animation)
        if placeholder is None:
            # NOTE: From the smallest thumbnail: a millisecond.
            placeholder = await self._workers.pillow(
                renditions.placeholder, thumbnails[-1][1]
            )
        extension = done.get('kept', '')
        if small is not None and small.kept is not None:
            extension = small.kept.extension
        return Written(placeholder, animation is not None, extension)

    async def _store_original(
        self, name: str, decoded: pixels.Decoded, small: Small | None
    ) -> str | None:
        """Write the original; return the placeholder of a picture without thumbnails.

        A picture with thumbnails gets its placeholder from the smallest one,
        once they are made; one without came with its original encoded and
        its placeholder made, and the original to keep as uploaded found
        (``small``, see :func:`_decode`): both originals are written at once.
        """
        if small is not None:
            found = small.kept
            await self._objects.write_original(
                name, small.original, None if found is None else found.data
            )
            return small.placeholder
        if decoded.kept is None:
            original = await self._workers.pillow(pixels.encode_original, decoded)
        else:
            original = decoded.kept
        await self._objects.write_original(name, original)
        return None

    async def _store_kept(self, name: str, data: bytes, turned: bool) -> str:
        """Write the original kept as uploaded, if any; return its extension."""
        found = await self._workers.pillow(
            kept.keep, data, turned, self._config.max_pixels
        )
        if found is None:
            return ''
        await self._objects.write_kept(name, found.data)
        return found.extension

    # After the fact

    async def rendered(self, image: Image, size: Size, name: str) -> bool:
        """Whether the thumbnail of ``size`` in format ``name`` is stored.

        If it is not, its series starts rendering in the background (once,
        however many ask), to be there for the next request.
        """
        if name == renditions.JPEG:
            return True
        if await self._objects.has_thumbnail(image.file, size, name):
            return True
        self._flight(
            f'{image.file} {name}', lambda: self._render_rendition(image, name)
        )
        return False

    async def series(self, image: Image) -> bool:
        """Render and store a version's thumbnails, once; False if it is gone."""
        task = self._flight(image.file, lambda: self._render_series(image))
        return await asyncio.shield(task)

    def _flight(
        self, key: str, render: Callable[[], Coroutine[Any, Any, bool]]
    ) -> asyncio.Task[bool]:
        """The render of ``key`` under way in this loop, else ``render()`` started.

        NOTE: Single flight: requests that find the same files missing at
        once all have one render.
        """
        loop = asyncio.get_running_loop()
        task = self._flights.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(render())
            self._flights[key] = task
            task.add_done_callback(lambda done: self._flights.pop(key, None))
        return task

    async def _render_rendition(self, image: Image, name: str) -> bool:
        """Render and store a version's thumbnail series in format ``name``."""
        try:
            original = await self._objects.read_original(image.file)
            if original is None:
                return False
            sizes = image.thumbnail_sizes()
            rendered = await self._workers.pillow(
                renditions.render, original, sizes, name
            )
            await self._objects.write_thumbnails(
                image.file, list(zip(sizes, rendered, strict=True)), name
            )
        except Exception as ex:
            # NOTE: Nobody waits for this: the JPEG stays the answer.
            logs.failure(
                logger,
                'Could not render the %s thumbnails of image %s',
                name,
                image.image_id,
                ex=ex,
                image_id=image.image_id,
            )
            return False
        return True

    async def _render_series(self, image: Image) -> bool:
        original = await self._objects.read_original(image.file)
        if original is None:
            return False
        sizes = image.thumbnail_sizes()
        started = time.perf_counter()
        rendered = await self._workers.pillow(pixels.thumbnails, original, sizes)
        self._report(len(rendered), started)
        await self._objects.write_thumbnails(
            image.file, list(zip(sizes, rendered, strict=True))
        )
        return True


def _decode(
    data: bytes, max_pixels: int, min_thumb_size: int
) -> tuple[pixels.Decoded, Small | None]:
    """Decode an upload; and, for a picture too small for thumbnails, encode
    its original, make its placeholder and find the original to keep too.

    NOTE: All in one thread's turn: for a small picture, each hop to a thread
    cost more than the work done there.
    """
    decoded = pixels.decode(data, max_pixels, min_thumb_size)
    if decoded.source is not None:
        return decoded, None
    original = pixels.encode_original(decoded)
    if decoded.pixels is None:
        placeholder = renditions.placeholder(original)
    else:
        placeholder = renditions.placeholder_of(decoded.pixels)
    found = (
        kept.keep(data, decoded.turned, max_pixels) if _keeps(decoded, data) else None
    )
    return decoded, Small(original, placeholder, found)


def _keeps(decoded: pixels.Decoded, data: bytes) -> bool:
    """Whether an original may be kept of an upload beside its JPEG: not of
    a JPEG stored as it is, and only of the formats :mod:`kept` keeps."""
    return decoded.kept is None and kept.may_keep(data)
