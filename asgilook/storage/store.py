"""Images and their bytes: files on disk, Pillow off the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import errno
import hashlib
import hmac
import logging
import os
import pathlib
import secrets
import time
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Coroutine
from typing import Any
from typing import TypeVar

from asgilook.config import Config
from asgilook.errors import ImageNotFound
from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.errors import Unsure
from asgilook.pictures import pixels
from asgilook.pictures import renditions
from asgilook.pictures.pixels import Size
from asgilook.storage.files import Files
from asgilook.storage.index import Behind
from asgilook.storage.index import Entry
from asgilook.storage.index import Index
from asgilook.storage.index import journal
from asgilook.storage.index import open_index

T = TypeVar('T')
logger = logging.getLogger(__name__)
Commit = Callable[[], Awaitable[None]]


class Image:
    """One stored version of a picture: its id, pixel size and time of upload."""

    def __init__(
        self,
        config: Config,
        image_id: str,
        size: Size,
        modified: datetime.datetime | None = None,
        path: pathlib.Path | None = None,
        placeholder: str = '',
        animated: bool = False,
    ) -> None:
        self._config = config
        self.image_id = image_id
        self.size = size
        self.modified = modified or datetime.datetime.now(datetime.UTC)
        #: A tiny stand-in, as a data URI ('' if there is none).
        self.placeholder = placeholder
        #: Whether there is an animated rendition (:attr:`animation_path`).
        self.animated = animated
        # NOTE: Each version of an image has a file of its own (see Store), so
        #   the path comes from the index; the default is for images made by
        #   hand.
        self.path = path or (
            pathlib.Path(os.fspath(config.storage_path))
            / Files.IMAGES
            / f'{image_id}.jpeg'
        )

    @property
    def uri(self) -> str:
        return f'/images/{self.image_id}.jpeg'

    @property
    def animation_uri(self) -> str:
        return f'/images/{self.image_id}.webp'

    @property
    def animation_path(self) -> pathlib.Path:
        """Where this version's animated rendition is, if it has one."""
        return self.path.with_suffix('.webp')

    @property
    def version(self) -> str:
        """What tells this version of the picture from every other one."""
        return self.path.stem.partition('.')[2] or '0'

    def etag(self, size: Size | None = None, name: str = renditions.JPEG) -> str:
        """The strong entity tag of the original (or its animation), or of one
        thumbnail in a format."""
        suffix = '' if name == renditions.JPEG else f'-{name}'
        if size is None:
            return f'"{self.version}{suffix}"'
        width, height = size
        return f'"{self.version}-{width}x{height}{suffix}"'

    def thumbnail_sizes(self) -> list[Size]:
        """The fixed series of thumbnail sizes, largest first.

        Each halves the previous one (mipmap style) for as long as both sides
        stay at least ``min_thumb_size`` pixels.
        """
        return pixels.thumbnail_sizes(self.size, self._config.min_thumb_size)

    def thumbnail_uri(self, size: Size) -> str:
        width, height = size
        return f'/thumbnails/{self.image_id}/{width}x{height}.jpeg'

    def thumbnail_path(self, size: Size, name: str = renditions.JPEG) -> pathlib.Path:
        """Where this version's thumbnail of ``size`` in format ``name`` is stored."""
        width, height = size
        return (
            self.path.parent.parent
            / Files.THUMBNAILS
            / self.path.name.removesuffix('.jpeg')
            / f'{width}x{height}.{name}'
        )

    def thumbnails(self) -> list[str]:
        return [self.thumbnail_uri(size) for size in self.thumbnail_sizes()]

    def srcset(self) -> str:
        """Every rendition with its width, smallest first, for ``<img srcset>``.

        The URLs name this version (``?v=``): they never change, and browsers
        may keep them for good.
        """
        renditions = [
            (self.thumbnail_uri(size), size[0])
            for size in reversed(self.thumbnail_sizes())
        ]
        renditions.append((self.uri, self.size[0]))
        return ', '.join(
            f'{uri}?v={self.version} {width}w' for uri, width in renditions
        )

    def serialize(self) -> dict[str, Any]:
        return {
            'id': self.image_id,
            'image': self.uri,
            'modified': http_date(self.modified),
            'size': list(self.size),
            'thumbnails': self.thumbnails(),
            'version': self.version,
            'srcset': self.srcset(),
            'placeholder': self.placeholder or None,
            'animation': self.animation_uri if self.animated else None,
        }


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Blob:
    """An open file of an image version, read in chunks as it is sent.

    Holding the file open keeps its bytes readable even if the version is
    replaced or deleted meanwhile. At most ``CHUNK`` bytes of it are in
    memory at once, whatever its size.
    """

    CHUNK = 1024 * 1024

    def __init__(self, fd: int, length: int, first: bytes) -> None:
        self._fd: int | None = fd
        self.length = length
        self._first: bytes | None = first
        self._offset = len(first)

    def __aiter__(self) -> Blob:
        return self

    async def __anext__(self) -> bytes:
        first, self._first = self._first, None
        if first is not None:
            return first
        if self._fd is None or self._offset >= self.length:
            await self.close()
            raise StopAsyncIteration
        loop = asyncio.get_running_loop()
        chunk = await loop.run_in_executor(
            None, os.pread, self._fd, self.CHUNK, self._offset
        )
        if not chunk:
            # The file is shorter than it was: never for a stored version.
            await self.close()
            raise StopAsyncIteration
        self._offset += len(chunk)
        return chunk

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


Body = bytes | Blob


class Store:
    """The image store: JPEG files in the storage directory, and their index.

    The files are shared by every worker and every machine that mounts the
    directory (see :mod:`asgilook.storage.files`), and the index by every worker
    that uses the same database (see :mod:`asgilook.storage.index`). Each version
    of an image is written, with its whole thumbnail series, to files of its
    own, synced, renamed into place and only then recorded in the index, so
    a reader never sees half a file and a crash leaves the complete image or
    nothing listed. A version's files never change afterwards: they are
    served as they are, from disk.

    Pillow work runs in a pool of ``config.image_workers`` threads, so a burst
    of uploads waits its turn instead of decoding everything at once. The
    pool is created when first needed and shut down with the ASGI lifespan
    (``process_shutdown``), so many apps can start and stop in one process.
    Disk work runs in the event loop's default executor.
    """

    def __init__(self, config: Config, index: Index | None = None) -> None:
        self._config = config
        self._files = Files(pathlib.Path(os.fspath(config.storage_path)))
        self._files.make()
        self._index = index or open_index(config)
        # Whether the directories are made and an old journal adopted.
        self._opened = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # Thumbnail series being rendered after the fact, by original file.
        self._renders: dict[str, asyncio.Task[bool]] = {}
        #: Told of each thumbnail series rendered: how many, in how long.
        self.on_render: Callable[[int, float], None] | None = None

    @property
    def config(self) -> Config:
        """The settings the store was made with."""
        return self._config

    @property
    def index(self) -> Index:
        """The index the store keeps its images in."""
        return self._index

    async def _open(self) -> Index:
        """The index, once the storage directory is ready to use.

        The first time, this moves the journal of an earlier release into
        the index (see :mod:`asgilook.storage.index.journal`).
        """
        if not self._opened:
            # NOTE: Requests that come at once may all do this: every step
            #   may be done twice, and an index adopts a journal only once.
            path = self._files.root / journal.FILE
            found = await self._disk(journal.read, path)
            if found is not None:
                await self._index.adopt(*found)
                await self._disk(_rename, path, self._files.root / journal.ADOPTED)
            self._opened = True
        return self._index

    async def process_startup(self, scope: Any, event: Any) -> None:
        """Nothing to open eagerly: the thread pool starts on first use."""

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        await self._index.close()

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
            path=self._files.images / entry.file,
            placeholder=entry.placeholder,
            animated=entry.animated,
        )

    async def get(self, image_id: str) -> Image:
        """Return the image with that id as of now, or raise ImageNotFound."""
        try:
            # NOTE: Answered in the event loop when the index can tell at
            #   once; cheaper than a hop to a thread or a round trip.
            if not self._opened:
                raise Behind
            entry = self._index.peek(image_id)
        except Behind:
            entry = await (await self._open()).get(image_id)
        if entry is None:
            raise ImageNotFound(f'There is no image with the id {image_id}.')
        return self._image(entry)

    async def check(self) -> tuple[bool, str]:
        """Whether a file can be written in the storage directory and the index
        read, and why not."""
        try:
            free = await self._disk(self._probe)
            images = await self.count()
        except (StorageFull, StorageUnavailable) as ex:
            return False, str(ex)
        return True, f'writable, {free / 2**30:.1f} GiB free, {images} images'

    def _probe(self) -> int:
        probe = self._files.root / f'.healthz-{os.getpid()}'
        probe.write_bytes(b'ok')
        probe.unlink()
        stat = os.statvfs(self._files.root)
        return stat.f_bavail * stat.f_frsize

    def current(self, subject: str | None) -> object:
        """The current version of an image (its file, or None), or of the index.

        Never waits; this is :data:`asgilook.caching.memory.Current`.

        Raises:
            Unsure: the index may be behind.
        """
        try:
            if not self._opened:
                raise Behind
            if subject is None:
                return self._index.state()
            entry = self._index.peek(subject)
        except Behind as ex:
            raise Unsure from ex
        return None if entry is None else entry.file

    async def count(self) -> int:
        """How many images are stored, as of now."""
        return await (await self._open()).count()

    async def list_images(
        self, limit: int | None = None, after: str | None = None
    ) -> list[Image]:
        """Return up to ``limit`` images in upload order, following ``after``.

        Raises:
            UnknownCursor: there is no image ``after``.
        """
        images, _ = await self.page(limit, after)
        return images

    async def page(
        self,
        limit: int | None = None,
        after: str | None = None,
        newest_first: bool = False,
    ) -> tuple[list[Image], object]:
        """As :meth:`list_images` (newest first if asked), and the index's version.

        The version is what the page was read from: see
        :data:`asgilook.caching.memory.Current`.
        """
        index = await self._open()
        entries, state = await index.page(limit, after, newest_first)
        return [self._image(entry) for entry in entries], state

    async def save(
        self, image_id: str, data: bytes, before_commit: Commit | None = None
    ) -> tuple[Image, str]:
        """Store an upload, and its thumbnails, under ``image_id``.

        An upright sRGB JPEG is kept as it is, minus its metadata; anything
        else is converted (see :func:`asgilook.pictures.pixels.decode`). An existing
        image with the same id is replaced and becomes the newest. Nothing is
        written unless the upload decodes.

        Args:
            image_id: The id to store the image under.
            data: The upload, in any accepted format.
            before_commit: Awaited once the files are safely on disk, just
                before the image becomes visible (the cache drops what the
                change makes stale there).

        Returns:
            The image, and the token that may delete it. Only a hash of the
            token is kept.
        """
        decoded, small = await self._pillow(
            _decode, data, self._config.max_pixels, self._config.min_thumb_size
        )
        index = await self._open()
        name = f'{image_id}.{secrets.token_hex(6)}.jpeg'
        token = secrets.token_urlsafe(24)
        try:
            # NOTE: Encoded at once, each in a thread of the pool: the original
            #   (written as soon as it is ready), the largest thumbnail, the
            #   rest, the animation. Every one is awaited, even if another
            #   failed, so that nothing is written after the cleanup below. A
            #   picture too small for thumbnails, or a still one, asks no
            #   thread for what it has not got: each hop costs a small upload
            #   more than its encoding.
            started = time.perf_counter()
            jobs: dict[str, Awaitable[Any]] = {
                'original': self._store_original(name, decoded, small)
            }
            if decoded.source is not None:
                jobs['largest'] = self._pillow(pixels.encode_largest, decoded)
                jobs['smaller'] = self._pillow(pixels.encode_smaller, decoded)
            if pixels.may_animate(data):
                jobs['animation'] = self._pillow(
                    pixels.animate, data, self._config.max_pixels
                )
            results = await asyncio.gather(*jobs.values(), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            done: dict[str, Any] = dict(zip(jobs, results, strict=True))
            placeholder: str | None = done['original']
            thumbnails: pixels.Series = done.get('largest', ())
            thumbnails += done.get('smaller', ())
            animation: bytes | None = done.get('animation')
            self._rendered(len(thumbnails), started)
            if thumbnails:
                await self._disk(self._files.write_thumbnails, name, thumbnails)
            if animation is not None:
                await self._disk(self._files.write_animation, name, animation)
            if placeholder is None:
                # NOTE: From the smallest thumbnail: a millisecond.
                placeholder = await self._pillow(
                    renditions.placeholder, thumbnails[-1][1]
                )
            if before_commit is not None:
                await before_commit()
        except BaseException:
            await self._disk(self._files.discard_version, name)
            raise
        put = asyncio.ensure_future(
            index.put(
                image_id,
                name,
                decoded.size,
                _token_hash(token),
                placeholder,
                animated=animation is not None,
            )
        )
        try:
            # NOTE: Shielded: a request cancelled now does not cancel the
            #   change, which may be committing in a thread or a database.
            entry, replaced = await asyncio.shield(put)
        except (StorageUnavailable, asyncio.CancelledError):
            # NOTE: Whether the change committed is not known (the connection
            #   was lost during the commit, or nobody waits for it any more):
            #   its files stay, unlisted at worst.
            raise
        except BaseException:
            await self._disk(self._files.discard_version, name)
            raise
        if replaced is not None:
            await self._disk(self._files.discard_version, replaced.file)
        return self._image(entry), token

    def _rendered(self, thumbnails: int, started: float) -> None:
        if self.on_render is not None and thumbnails:
            self.on_render(thumbnails, time.perf_counter() - started)

    async def _store_original(
        self, name: str, decoded: pixels.Decoded, small: tuple[bytes, str] | None
    ) -> str | None:
        """Write the original; return the placeholder of a picture without thumbnails.

        A picture with thumbnails gets its placeholder from the smallest one,
        once they are made; one without came with its original encoded and
        its placeholder made (``small``, see :func:`_decode`).
        """
        placeholder = None
        if small is not None:
            original, placeholder = small
        elif decoded.kept is None:
            original = await self._pillow(pixels.encode_original, decoded)
        else:
            original = decoded.kept
        await self._disk(self._files.write_original, name, original)
        return placeholder

    async def delete(
        self, image_id: str, token: str, before_commit: Commit | None = None
    ) -> Image:
        """Delete an image if ``token`` is its delete token or the admin token.

        Returns the image that was deleted.

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

        index = await self._open()
        await index.check(image_id, allowed)
        if before_commit is not None:
            await before_commit()
        entry = await index.delete(image_id, allowed)
        await self._disk(self._files.discard_version, entry.file)
        return self._image(entry)

    def check_thumbnail(self, image: Image, size: Size) -> None:
        """Raise ImageNotFound unless ``size`` is in the image's series."""
        sizes = image.thumbnail_sizes()
        if size not in sizes:
            width, height = size
            listed = ', '.join(f'{w}x{h}' for w, h in sizes)
            raise ImageNotFound(
                f'Image {image.image_id} has no {width}x{height} thumbnail; '
                + (
                    f'its sizes are {listed} (its "thumbnails" lists them).'
                    if sizes
                    else f'it is too small for any: see {image.uri}.'
                )
            )

    async def rendered(self, image: Image, size: Size, name: str) -> bool:
        """Whether the thumbnail of ``size`` in format ``name`` is stored.

        If it is not, its series starts rendering in the background (once,
        however many ask), to be there for the next request.
        """
        if name == renditions.JPEG:
            return True
        if await self._disk(image.thumbnail_path(size, name).exists):
            return True
        self._flight(
            f'{image.path.name} {name}', lambda: self._render_rendition(image, name)
        )
        return False

    def _flight(
        self, key: str, render: Callable[[], Coroutine[Any, Any, bool]]
    ) -> asyncio.Task[bool]:
        """The render of ``key`` under way in this loop, else ``render()`` started.

        NOTE: Single flight: requests that find the same files missing at
        once all have one render.
        """
        loop = asyncio.get_running_loop()
        task = self._renders.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(render())
            self._renders[key] = task
            task.add_done_callback(lambda done: self._renders.pop(key, None))
        return task

    async def _render_rendition(self, image: Image, name: str) -> bool:
        """Render and store a version's thumbnail series in format ``name``."""
        try:
            original = await self._disk(_read, image.path)
            if original is None:
                return False
            sizes = image.thumbnail_sizes()
            rendered = await self._pillow(renditions.render, original, sizes, name)
            await self._disk(
                self._files.write_thumbnails,
                image.path.name,
                list(zip(sizes, rendered, strict=True)),
                name,
            )
        except Exception:
            # NOTE: Nobody waits for this: the JPEG stays the answer.
            logger.exception(
                'Could not render the %s thumbnails of %s', name, image.uri
            )
            return False
        return True

    async def read_animation(self, image: Image, whole_up_to: int) -> Body | None:
        """Open the version's animated rendition; None if it has none (any more)."""
        if not image.animated:
            return None
        return await self._disk(_open, image.animation_path, whole_up_to)

    async def read_rendition(
        self, image: Image, size: Size, name: str, whole_up_to: int
    ) -> Body | None:
        """Open the thumbnail of ``size`` in format ``name``; None if it is not there.

        As :meth:`read`, but a missing file is not rendered here (see
        :meth:`rendered`).
        """
        return await self._disk(_open, image.thumbnail_path(size, name), whole_up_to)

    async def read(
        self, image: Image, size: Size | None, whole_up_to: int
    ) -> tuple[Image, Body]:
        """Open the original (or the thumbnail of ``size``) of an image.

        A file of at most ``whole_up_to`` bytes is read whole; a bigger one is
        returned as a :class:`Blob`, to be sent in chunks. A thumbnail that is
        missing (a version stored before thumbnails were rendered at upload)
        is rendered now, once, and stored.

        Returns:
            The image, which is the current version if ``image`` was replaced
            meanwhile, and the body of its file.
        """
        for _ in range(2):
            path = image.path if size is None else image.thumbnail_path(size)
            body = await self._disk(_open, path, whole_up_to)
            if body is None and size is not None and await self._render(image):
                body = await self._disk(_open, path, whole_up_to)
            if body is not None:
                return image, body
            # NOTE: Another process may have replaced or deleted the image
            #   since the look-up; its old files are gone then, so look again.
            image = await self.get(image.image_id)
            if size is not None:
                self.check_thumbnail(image, size)
        raise ImageNotFound(f'The file of image {image.image_id} is missing.')

    async def _render(self, image: Image) -> bool:
        """Render and store a version's thumbnails, once; False if it is gone."""
        task = self._flight(image.path.name, lambda: self._render_series(image))
        return await asyncio.shield(task)

    async def _render_series(self, image: Image) -> bool:
        original = await self._disk(_read, image.path)
        if original is None:
            return False
        sizes = image.thumbnail_sizes()
        started = time.perf_counter()
        rendered = await self._pillow(pixels.thumbnails, original, sizes)
        self._rendered(len(rendered), started)
        await self._disk(
            self._files.write_thumbnails,
            image.path.name,
            list(zip(sizes, rendered, strict=True)),
        )
        return True


def _rename(path: pathlib.Path, to: pathlib.Path) -> None:
    """Rename ``path``, unless another process did so first."""
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, to)


def _open(path: pathlib.Path, whole_up_to: int) -> Body | None:
    """The file's bytes, or an open :class:`Blob` of it; None if it is missing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with contextlib.ExitStack() as closing:
        closing.callback(os.close, fd)
        length = os.fstat(fd).st_size
        # NOTE: Read in this same hop to a thread: the whole file, or its
        #   first chunk.
        data = os.pread(fd, length if length <= whole_up_to else Blob.CHUNK, 0)
        if length <= whole_up_to:
            return data
        closing.pop_all()
        return Blob(fd, length, data)


def _read(path: pathlib.Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _storage_error(ex: OSError) -> StorageFull | StorageUnavailable:
    if ex.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull('The image store is out of space; try again later.')
    reason = os.strerror(ex.errno) if ex.errno else type(ex).__name__
    return StorageUnavailable(
        f'The image store cannot be used right now ({reason}); try again later.'
    )


def _decode(
    data: bytes, max_pixels: int, min_thumb_size: int
) -> tuple[pixels.Decoded, tuple[bytes, str] | None]:
    """Decode an upload; and, for a picture too small for thumbnails, encode
    its original and make its placeholder too.

    NOTE: All in one thread's turn: for a small picture, each hop to a thread
    cost more than the work done there.
    """
    decoded = pixels.decode(data, max_pixels, min_thumb_size)
    if decoded.source is not None:
        return decoded, None
    original = pixels.encode_original(decoded)
    return decoded, (original, renditions.placeholder(original))


def http_date(moment: datetime.datetime) -> str:
    """An HTTP date (RFC 9110, 5.6.7), as :func:`falcon.dt_to_http` writes it."""
    return moment.strftime('%a, %d %b %Y %H:%M:%S GMT')
