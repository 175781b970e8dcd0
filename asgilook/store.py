"""Images and their bytes: files on disk, Pillow off the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import os
import pathlib
import secrets
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any
from typing import TypeVar

import aiofiles
import aiofiles.os
import falcon

from asgilook import pixels
from asgilook.config import Config
from asgilook.errors import ImageNotFound
from asgilook.errors import InvalidImage
from asgilook.pixels import Size

T = TypeVar('T')


class Image:
    """One stored picture: its id, pixel size and time of upload."""

    def __init__(
        self,
        config: Config,
        image_id: str,
        size: Size,
        modified: datetime.datetime | None = None,
    ) -> None:
        self._config = config
        self.image_id = image_id
        self.size = size
        self.modified = modified or datetime.datetime.now(datetime.UTC)

    @property
    def path(self) -> pathlib.Path:
        return pathlib.Path(os.fspath(self._config.storage_path)) / (
            f'{self.image_id}.jpeg'
        )

    @property
    def uri(self) -> str:
        return f'/images/{self.image_id}.jpeg'

    def thumbnail_sizes(self) -> list[Size]:
        """The fixed series of thumbnail sizes, largest first.

        Each halves the previous one (mipmap style) for as long as both sides
        stay at least ``min_thumb_size`` pixels.
        """
        return list(_reductions(self.size, self._config.min_thumb_size))

    def thumbnails(self) -> list[str]:
        return [
            f'/thumbnails/{self.image_id}/{width}x{height}.jpeg'
            for width, height in self.thumbnail_sizes()
        ]

    def serialize(self) -> dict[str, Any]:
        return {
            'id': self.image_id,
            'image': self.uri,
            'modified': falcon.dt_to_http(self.modified),
            'size': list(self.size),
            'thumbnails': self.thumbnails(),
        }


def _reductions(size: Size, min_size: int) -> Iterator[Size]:
    width, height = size
    factor = 2
    while width // factor >= min_size and height // factor >= min_size:
        yield (width // factor, height // factor)
        factor *= 2


class Store:
    """The image store: pictures as JPEG files, Pillow work in a thread pool.

    The pool has ``config.image_workers`` threads, so a burst of uploads waits
    its turn instead of decoding everything at once. It is created when first
    needed and shut down with the ASGI lifespan (``process_shutdown``), so many
    apps can start and stop in one process.
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        self._images: dict[str, Image] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._root = pathlib.Path(os.fspath(config.storage_path))
        self._root.mkdir(parents=True, exist_ok=True)

    async def process_startup(self, scope: Any, event: Any) -> None:
        """Nothing to open eagerly: the thread pool starts on first use."""

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._config.image_workers,
                thread_name_prefix='asgilook-pillow',
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    async def get(self, image_id: str) -> Image:
        """Return the image with that id, or raise ImageNotFound."""
        image = self._images.get(image_id)
        if image is None:
            raise ImageNotFound(f'There is no image with the id {image_id}.')
        return image

    async def list_images(self) -> list[Image]:
        """Return every image, oldest upload first."""
        return list(self._images.values())

    async def save(self, image_id: str, data: bytes) -> Image:
        """Convert an upload to JPEG and store it under ``image_id``.

        An existing image with the same id is replaced and becomes the newest.
        Nothing is written unless the upload decodes, and the JPEG appears
        under its final name only once it is complete.
        """
        if not data:
            raise InvalidImage('The upload is empty: send the image as the body.')
        converted, size = await self._run(pixels.convert, data, self._config.max_pixels)

        image = Image(self._config, image_id, size)
        partial = self._root / f'.{image_id}.{secrets.token_hex(8)}.partial'
        try:
            async with aiofiles.open(partial, 'wb') as output:
                await output.write(converted)
            await aiofiles.os.replace(partial, image.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                await aiofiles.os.remove(partial)
            raise

        self._images.pop(image_id, None)
        self._images[image_id] = image
        return image

    async def read(self, image: Image) -> bytes:
        """Return the stored JPEG of an image."""
        async with aiofiles.open(image.path, 'rb') as stored:
            data: bytes = await stored.read()
        return data

    async def make_thumbnail(self, image: Image, size: Size) -> bytes:
        """Render one thumbnail of the image's series as JPEG."""
        if size not in image.thumbnail_sizes():
            raise ImageNotFound(
                f'Image {image.image_id} has no {size[0]}x{size[1]} thumbnail; '
                'its sizes are listed in its "thumbnails".'
            )
        return await self._run(pixels.thumbnail, await self.read(image), size)
