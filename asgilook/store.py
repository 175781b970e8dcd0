"""Images and their bytes: files on disk, Pillow off the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import errno
import hashlib
import hmac
import os
import pathlib
import secrets
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any
from typing import TypeVar

import aiofiles
import falcon

from asgilook import pixels
from asgilook.config import Config
from asgilook.errors import ImageNotFound
from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.journal import Entry
from asgilook.journal import Journal
from asgilook.journal import fsync_directory
from asgilook.pixels import Size

T = TypeVar('T')
Commit = Callable[[], Awaitable[None]]


class Image:
    """One stored picture: its id, pixel size and time of upload."""

    def __init__(
        self,
        config: Config,
        image_id: str,
        size: Size,
        modified: datetime.datetime | None = None,
        path: pathlib.Path | None = None,
    ) -> None:
        self._config = config
        self.image_id = image_id
        self.size = size
        self.modified = modified or datetime.datetime.now(datetime.UTC)
        # NOTE: Each version of an image has a file of its own (see Store), so
        #   the path comes from the index; the default is for images made by
        #   hand.
        self.path = path or (
            pathlib.Path(os.fspath(config.storage_path))
            / Journal.IMAGES
            / f'{image_id}.jpeg'
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


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    """The image store: JPEG files and their journal in the storage directory.

    The directory is the one source of truth, shared by every worker and
    every machine that mounts it (see :mod:`asgilook.journal`). Each version
    of an image is written to a file of its own, synced, renamed into place
    and only then recorded in the journal, so a reader never sees half a file
    and a crash leaves the complete image or nothing listed.

    Pillow work runs in a pool of ``config.image_workers`` threads, so a burst
    of uploads waits its turn instead of decoding everything at once. The
    pool is created when first needed and shut down with the ASGI lifespan
    (``process_shutdown``), so many apps can start and stop in one process.
    Disk work runs in the event loop's default executor.
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        self._journal = Journal(pathlib.Path(os.fspath(config.storage_path)))
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    async def process_startup(self, scope: Any, event: Any) -> None:
        """Nothing to open eagerly: the thread pool starts on first use."""

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def _pillow(self, func: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._config.image_workers,
                thread_name_prefix='asgilook-pillow',
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    async def _disk(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, func, *args)
        except OSError as ex:
            raise _storage_error(ex) from ex

    def _image(self, entry: Entry) -> Image:
        return Image(
            self._config,
            entry.image_id,
            entry.size,
            modified=datetime.datetime.fromtimestamp(
                entry.modified / 1_000_000, datetime.UTC
            ),
            path=self._journal.images / entry.file,
        )

    async def get(self, image_id: str) -> Image:
        """Return the image with that id as of now, or raise ImageNotFound."""
        entry = await self._disk(self._journal.get, image_id)
        if entry is None:
            raise ImageNotFound(f'There is no image with the id {image_id}.')
        return self._image(entry)

    async def list_images(
        self, limit: int | None = None, after: str | None = None
    ) -> list[Image]:
        """Return up to ``limit`` images in upload order, following ``after``.

        Raises:
            UnknownCursor: there is no image ``after``.
        """
        entries = await self._disk(self._journal.page, limit, after)
        return [self._image(entry) for entry in entries]

    async def save(
        self, image_id: str, data: bytes, before_commit: Commit | None = None
    ) -> tuple[Image, str]:
        """Convert an upload to JPEG and store it under ``image_id``.

        An existing image with the same id is replaced and becomes the newest.
        Nothing is written unless the upload decodes.

        Args:
            image_id: The id to store the image under.
            data: The upload, in any accepted format.
            before_commit: Awaited once the JPEG is safely on disk, just
                before the image becomes visible (the cache drops what the
                change makes stale there).

        Returns:
            The image, and the token that may delete it. Only a hash of the
            token is kept.
        """
        converted, size = await self._pillow(
            pixels.convert, data, self._config.max_pixels
        )
        token = secrets.token_urlsafe(24)
        name = await self._disk(self._write_file, image_id, converted)
        try:
            if before_commit is not None:
                await before_commit()
            entry = await self._disk(
                self._journal.put, image_id, name, size, _token_hash(token)
            )
        except BaseException:
            await self._disk(self._journal.discard, name)
            raise
        return self._image(entry), token

    def _write_file(self, image_id: str, data: bytes) -> str:
        """Write a new version's file durably; return its name."""
        name = f'{image_id}.{secrets.token_hex(6)}.jpeg'
        partial = self._journal.images / f'.{name}.partial'
        try:
            with open(partial, 'wb') as output:
                output.write(data)
                output.flush()
                os.fsync(output.fileno())
            os.replace(partial, self._journal.images / name)
            fsync_directory(self._journal.images)
        except BaseException:
            self._journal.discard(name)
            self._journal.discard(partial.name)
            raise
        return name

    async def delete(
        self, image_id: str, token: str, before_commit: Commit | None = None
    ) -> None:
        """Delete an image if ``token`` is its delete token or the admin token.

        ``before_commit`` is awaited, once the token is known to be good, just
        before the deletion becomes visible.

        Raises:
            ImageNotFound: there is no such image.
            DeleteForbidden: the token may not delete it; nothing changed.
        """
        admin = self._config.admin_token

        def allowed(entry: Entry) -> bool:
            if admin is not None and hmac.compare_digest(token, admin):
                return True
            return hmac.compare_digest(_token_hash(token), entry.token_hash)

        await self._disk(self._journal.check, image_id, allowed)
        if before_commit is not None:
            await before_commit()
        await self._disk(self._journal.delete, image_id, allowed)

    async def _load(
        self, image_id: str, thumbnail_size: Size | None = None
    ) -> tuple[Image, bytes]:
        # NOTE: Another process may replace or delete the image between the
        #   look-up and the read; its old file is gone then, so look again.
        for _ in range(2):
            image = await self.get(image_id)
            if thumbnail_size and thumbnail_size not in image.thumbnail_sizes():
                width, height = thumbnail_size
                raise ImageNotFound(
                    f'Image {image_id} has no {width}x{height} thumbnail; '
                    'its sizes are listed in its "thumbnails".'
                )
            try:
                async with aiofiles.open(image.path, 'rb') as stored:
                    data: bytes = await stored.read()
            except FileNotFoundError:
                continue
            except OSError as ex:
                raise _storage_error(ex) from ex
            return image, data
        raise ImageNotFound(f'The file of image {image_id} is missing.')

    async def original(self, image_id: str) -> tuple[Image, bytes]:
        """Return the image and its stored JPEG."""
        return await self._load(image_id)

    async def thumbnail(self, image_id: str, size: Size) -> tuple[Image, bytes]:
        """Render one size of the image's thumbnail series as JPEG."""
        image, data = await self._load(image_id, size)
        return image, await self._pillow(pixels.thumbnail, data, size)


def _storage_error(ex: OSError) -> StorageFull | StorageUnavailable:
    if ex.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull('The image store is out of space; try again later.')
    reason = os.strerror(ex.errno) if ex.errno else type(ex).__name__
    return StorageUnavailable(
        f'The image store cannot be used right now ({reason}); try again later.'
    )
