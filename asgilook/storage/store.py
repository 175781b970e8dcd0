"""The image store: the files of every version, and the index that lists them.

:class:`Store` is what the app uses: it saves uploads, looks images up, pages
through them, deletes them and opens their files to be sent. What it hands
out is in :mod:`asgilook.storage.image`; the threads it works in, in
:mod:`asgilook.storage.workers`; the Pillow work that makes a version's files,
in :mod:`asgilook.storage.renderer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
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

from asgilook.config import Config
from asgilook.errors import ImageNotFound
from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.errors import Unsure
from asgilook.pictures import Size
from asgilook.pictures import renditions
from asgilook.storage.blobs import Body
from asgilook.storage.blobs import Reader
from asgilook.storage.blobs.sealed import Window
from asgilook.storage.image import Image
from asgilook.storage.image import http_date
from asgilook.storage.index import PUBLIC
from asgilook.storage.index import Behind
from asgilook.storage.index import Entry
from asgilook.storage.index import Index
from asgilook.storage.index import UploadKey
from asgilook.storage.index import WrongIndex
from asgilook.storage.index import journal
from asgilook.storage.index import left_behind
from asgilook.storage.index import open_index
from asgilook.storage.objects import Content
from asgilook.storage.objects import Objects
from asgilook.storage.renderer import Renderer
from asgilook.storage.workers import Workers

__all__ = [
    'Body',
    'Commit',
    'Content',
    'Image',
    'Reader',
    'Store',
    'Window',
    'http_date',
]

logger = logging.getLogger(__name__)

Commit = Callable[[], Awaitable[None]]

#: How start-up and ``/healthz`` name each kind of index.
INDEX_NAMES = {'sqlite': 'SQLite', 'postgresql': 'PostgreSQL'}


async def deployment_scope(index: Index) -> str:
    """What sets a deployment's keys apart from others' in a shared Redis.

    For PostgreSQL, the index's deployment id: every machine on the database
    shares it, and a restore into another database gets a new one. For
    SQLite, a short hash of the id and the storage directory's real path:
    every worker of the machine agrees, and a copy of the directory (``cp
    -a``, a backup served elsewhere) has the same id but its own scope.
    """
    deployment = await index.deployment()
    if index.KIND != 'sqlite':
        return deployment
    directory = await asyncio.get_running_loop().run_in_executor(
        None, os.path.realpath, os.path.dirname(index.location)
    )
    return hashlib.sha256(f'{deployment}\0{directory}'.encode()).hexdigest()[:16]


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    """The image store: the objects of every version, and their index.

    The objects are shared by every worker and every machine that uses the
    same directory or bucket (see :mod:`asgilook.storage.objects`), and the
    index by every worker that uses the same database (see
    :mod:`asgilook.storage.index`). Each version of an image is written, with
    its whole thumbnail series, to objects of its own, each whole and durable,
    and only then recorded in the index, so a reader never sees half an
    object and a crash leaves the complete image or nothing listed. A
    version's objects never change afterwards: they are served as they are.

    Pillow work runs in a pool of ``config.image_workers`` threads, so a burst
    of uploads waits its turn instead of decoding everything at once. The
    pool is created when first needed and shut down with the ASGI lifespan
    (``process_shutdown``), so many apps can start and stop in one process.
    Disk work runs in the event loop's default executor (see
    :mod:`asgilook.storage.workers`).
    """

    def __init__(
        self,
        config: Config,
        index: Index | None = None,
        objects: Objects | None = None,
    ) -> None:
        self._config = config
        self._root = pathlib.Path(os.fspath(config.storage_path))
        self._objects = objects or Objects.of(config)
        self._objects.make()
        self._index = index or open_index(config)
        # Whether the directories are made and an old journal adopted.
        self._opened = False
        # Whether the start-up checks passed, and the scope, once known.
        self._started = False
        self._scope: str | None = None
        self._workers = Workers(config)
        self._renderer = Renderer(config, self._objects, self._workers, self._rendered)
        #: Told of each thumbnail series rendered: how many, in how long.
        self.on_render: Callable[[int, float], None] | None = None

    @property
    def config(self) -> Config:
        """The settings the store was made with."""
        return self._config

    @property
    def objects(self) -> Objects:
        """Where the store keeps the objects of its images."""
        return self._objects

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
            path = self._root / journal.FILE
            found = await self._workers.disk(journal.read, path)
            if found is not None:
                await self._index.adopt(*found)
                await self._workers.disk(_rename, path, self._root / journal.ADOPTED)
            self._opened = True
        return self._index

    @property
    def location(self) -> str:
        """Where the objects are kept: a directory, or a bucket's URL."""
        originals = self._objects.originals.url
        if not self._objects.apart:
            return originals
        return f'{originals}; renditions {self._objects.renditions.url}'

    async def scope(self) -> str:
        """The deployment's scope (see :func:`deployment_scope`), found once.

        Raises:
            StorageUnavailable: the index cannot be reached (not remembered).
        """
        if self._scope is None:
            self._scope = await deployment_scope(self._index)
        return self._scope

    async def process_startup(self, scope: Any, event: Any) -> None:
        """Refuse the wrong index, and say which one is in use; once per store.

        Nothing is opened eagerly: the thread pool starts on first use.

        Raises:
            WrongIndex: the settings name a database, and the storage
                directory holds a SQLite index with pictures in it.
        """
        if self._started:
            return
        reason = None
        if self._config.database_url and not self._config.ignore_sqlite_index:
            reason = await self._workers.disk(
                left_behind, self._root, self._config.database_url
            )
        if reason is not None:
            logger.error('%s', reason)
            raise WrongIndex(reason)
        logger.info(
            'Serving the pictures in %s, indexed by %s at %s',
            self.location,
            INDEX_NAMES[self._index.KIND],
            self._index.location,
        )
        self._started = True

    async def index_health(self) -> dict[str, Any]:
        """Which index is in use, and how many pictures it lists (None if it
        cannot be read now)."""
        try:
            pictures: int | None = await self.count()
        except (StorageFull, StorageUnavailable):
            pictures = None
        return {
            'ok': pictures is not None,
            'kind': self._index.KIND,
            'location': self._index.location,
            'pictures': pictures,
        }

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        self._workers.shutdown()
        await self._objects.close()
        await self._index.close()

    def _image(self, entry: Entry) -> Image:
        return Image(
            self._config,
            entry.image_id,
            entry.size,
            modified=datetime.datetime.fromtimestamp(
                entry.modified / 1_000_000, datetime.UTC
            ),
            path=self._root / 'images' / entry.file,
            placeholder=entry.placeholder,
            animated=entry.animated,
            name=entry.name,
            visibility=entry.visibility,
            owner=entry.owner,
            original=entry.original,
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
        """Whether an object can be written where they are kept and the index
        read, and why not."""
        try:
            seen = await self._probe()
            images = await self.count()
        except (StorageFull, StorageUnavailable) as ex:
            return False, str(ex)
        return True, f'{seen}, {images} images'

    async def _probe(self) -> str:
        return await self._objects.probe()

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
        *,
        owner: str | None = None,
        everyone: bool = False,
    ) -> tuple[list[Image], object]:
        """As :meth:`list_images` (newest first if asked), and the index's version.

        Public pictures only, unless ``owner`` names an upload key (its
        pictures, whatever their visibility) or ``everyone`` is true (every
        picture). The version is what the page was read from: see
        :data:`asgilook.caching.memory.Current`.
        """
        index = await self._open()
        entries, state = await index.page(
            limit, after, newest_first, owner=owner, everyone=everyone
        )
        return [self._image(entry) for entry in entries], state

    async def key(self, key_hash: str) -> UploadKey | None:
        """The upload key whose SHA-256 is ``key_hash``, revoked or not."""
        return await (await self._open()).key_by_hash(key_hash)

    async def url_secret(self) -> bytes:
        """The secret the index keeps for signing links."""
        return await (await self._open()).url_secret()

    async def save(
        self,
        image_id: str,
        data: bytes,
        before_commit: Commit | None = None,
        *,
        name: str = '',
        visibility: str = PUBLIC,
        owner: str = '',
    ) -> tuple[Image, str]:
        """Store an upload, and its thumbnails, under ``image_id``.

        An upright sRGB JPEG is kept as it is, minus its metadata; anything
        else is converted (see :func:`asgilook.pictures.pixels.decode`), and
        the upload kept beside it if it can be (see
        :mod:`asgilook.pictures.kept`). An existing image with the same id is
        replaced and becomes the newest. Nothing is written unless it decodes.

        Args:
            image_id: The id to store the image under.
            data: The upload, in any accepted format.
            before_commit: Awaited once the files are safely on disk, just
                before the image becomes visible (the cache drops what the
                change makes stale there).
            name: The uploaded file's name, if it had one.
            visibility: Who may see it (see :mod:`asgilook.http.sharing`).
            owner: The upload key it comes with: its pictures' sizes count
                against the key's quota, exactly (the index refuses one too
                many with QuotaExceeded, and its files are removed).

        Returns:
            The image, and the token that may delete it (only its hash is kept).
        """
        decoded, small = await self._renderer.decode(data)
        index = await self._open()
        file = f'{image_id}.{secrets.token_hex(6)}.jpeg'
        token = secrets.token_urlsafe(24)
        try:
            written = await self._renderer.write_version(file, data, decoded, small)
            if before_commit is not None:
                await before_commit()
        except BaseException:
            await self._objects.discard_version(file)
            raise
        entry, replaced = await self._commit(
            file,
            index.put(
                image_id,
                file,
                decoded.size,
                _token_hash(token),
                written.placeholder,
                animated=written.animated,
                name=name,
                visibility=visibility,
                owner=owner,
                bytes=len(data),
                original=written.original,
            ),
        )
        image = self._image(entry)
        image.replaced = replaced is not None
        return image, token

    async def _commit(
        self, name: str, put: Coroutine[Any, Any, tuple[Entry, Entry | None]]
    ) -> tuple[Entry, Entry | None]:
        """Await ``put``, the change that lists the new version ``name``.

        Then the files of the version it replaced, if any, are discarded; if
        it surely failed, the new version's are.
        """
        change = asyncio.ensure_future(put)
        try:
            # NOTE: Shielded: a request cancelled now does not cancel the
            #   change, which may be committing in a thread or a database.
            entry, replaced = await asyncio.shield(change)
        except (StorageUnavailable, asyncio.CancelledError):
            # NOTE: Whether the change committed is not known (the connection
            #   was lost during the commit, or nobody waits for it any more):
            #   its files stay, unlisted at worst.
            raise
        except BaseException:
            await self._objects.discard_version(name)
            raise
        if replaced is not None:
            await self._objects.discard_version(replaced.file)
        return entry, replaced

    def _rendered(self, thumbnails: int, started: float) -> None:
        """Tell :attr:`on_render` of a thumbnail series rendered."""
        if self.on_render is not None and thumbnails:
            self.on_render(thumbnails, time.perf_counter() - started)

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
        index = await self._open()
        # NOTE: An upload key deletes what it uploaded; an admin key, any
        #   picture. A token is both looked up as a key and compared with the
        #   picture's own token: they never collide (a key's SHA-256 is no
        #   picture's token hash but by chance).
        key = await index.key_by_hash(_token_hash(token))
        if key is not None and key.revoked is not None:
            key = None
        by_admin = (admin is not None and hmac.compare_digest(token, admin)) or (
            key is not None and key.admin
        )

        def allowed(entry: Entry) -> bool:
            return (
                by_admin
                or (key is not None and entry.owner == key.name)
                or hmac.compare_digest(_token_hash(token), entry.token_hash)
            )

        await index.check(image_id, allowed)
        if before_commit is not None:
            await before_commit()
        entry = await index.delete(image_id, allowed)
        # NOTE: An operator reading the log tells an admin's deletion from
        #   the uploader's own, and which key made it.
        how = 'its delete token'
        if key is not None:
            how = f'the {"admin" if key.admin else "upload"} key {key.name}'
        elif by_admin:
            how = 'the admin token'
        logger.info(
            'Image %s deleted with %s',
            image_id,
            how,
            extra={
                'image_id': image_id,
                'deleted_by': 'admin' if by_admin else 'owner',
                **({'upload_key': key.name} if key is not None else {}),
            },
        )
        await self._objects.discard_version(entry.file)
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
        return await self._renderer.rendered(image, size, name)

    async def read_animation(
        self, image: Image, whole_up_to: int, window: Window | None = None
    ) -> Content | None:
        """Open the version's animated rendition; None if it has none (any more)."""
        if not image.animated:
            return None
        return await self._objects.animation(image.file, whole_up_to, window)

    async def read_kept(
        self, image: Image, whole_up_to: int, window: Window | None = None
    ) -> Content | None:
        """Open the original kept as uploaded; None if it has none (any more)."""
        if not image.original:
            return None
        return await self._objects.kept(image.file, whole_up_to, window)

    async def read_rendition(
        self,
        image: Image,
        size: Size,
        name: str,
        whole_up_to: int,
        window: Window | None = None,
    ) -> Content | None:
        """Open the thumbnail of ``size`` in format ``name``; None if it is not there.

        As :meth:`read`, but a missing one is not rendered here (see
        :meth:`rendered`).
        """
        return await self._objects.thumbnail(
            image.file, size, name, whole_up_to, window
        )

    async def read(
        self,
        image: Image,
        size: Size | None,
        whole_up_to: int,
        window: Window | None = None,
    ) -> tuple[Image, Content]:
        """Open the original (or the thumbnail of ``size``) of an image.

        An object (or the part of it that ``window`` asks for) of at most
        ``whole_up_to`` bytes is read whole; a bigger one is returned as a
        :class:`Reader`, to be sent in chunks. A thumbnail that is missing (a
        version stored before thumbnails were rendered at upload) is rendered
        now, once, and stored.

        Returns:
            The image, which is the current version if ``image`` was replaced
            meanwhile, and what was read.
        """
        for _ in range(2):
            content = await self._content(image, size, whole_up_to, window)
            if (
                content is None
                and size is not None
                and await self._renderer.series(image)
            ):
                content = await self._content(image, size, whole_up_to, window)
            if content is not None:
                return image, content
            # NOTE: Another process may have replaced or deleted the image
            #   since the look-up; its old objects are gone then, so look again.
            image = await self.get(image.image_id)
            if size is not None:
                self.check_thumbnail(image, size)
        raise ImageNotFound(f'The file of image {image.image_id} is missing.')

    async def _content(
        self,
        image: Image,
        size: Size | None,
        whole_up_to: int,
        window: Window | None,
    ) -> Content | None:
        if size is None:
            return await self._objects.original(image.file, whole_up_to, window)
        return await self._objects.thumbnail(
            image.file, size, renditions.JPEG, whole_up_to, window
        )


def _rename(path: pathlib.Path, to: pathlib.Path) -> None:
    """Rename ``path``, unless another process did so first."""
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, to)
