"""The objects of every version of an image, by key, in the backends configured.

A version whose original is ``<id>.<version>.jpeg`` has these objects:

- ``images/<id>.<version>.jpeg``: the original, with the originals;
- ``images/<id>.<version>.original``: the original kept as uploaded (a PNG,
  GIF or WebP, which the index names), if it has one, with the originals;
- ``images/<id>.<version>.webp``: its animated rendition, if it has one;
- ``thumbnails/<id>.<version>/<width>x<height>.<format>``: its thumbnails
  (JPEG at upload; AVIF and WebP when first asked for);

the last two with the renditions, which are kept with the originals unless
``ASGI_LOOK_RENDITIONS_URL`` puts them elsewhere (a fast local disk, say,
with the originals in a bucket). On a local directory these are the files of
the tutorial's layout. Every object is written whole, once, before the index
lists its version, and is never changed; replacing or deleting the image
removes them (see :class:`asgilook.storage.store.Store`). Each backend is
wrapped in :class:`~asgilook.storage.blobs.sealed.SealedBlobs`: objects are
encrypted at rest when a key is configured, and an encrypted object is never
served without the key that wrote it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping

from asgilook.config import Config
from asgilook.pictures import Size
from asgilook.pictures import renditions
from asgilook.storage.blobs import Blobs
from asgilook.storage.blobs import Body
from asgilook.storage.blobs import open_blobs
from asgilook.storage.blobs.sealed import SealedBlobs
from asgilook.storage.blobs.sealed import Window
from asgilook.storage.crypto import Keyring

IMAGES = 'images'
THUMBNAILS = 'thumbnails'


@dataclasses.dataclass(frozen=True, slots=True)
class Content:
    """What was read of an object: its size, and the bytes ``[start, end)`` of it."""

    #: The whole object's length, in bytes.
    size: int
    #: The bytes read (empty if the window was unsatisfiable).
    body: Body
    start: int
    end: int
    #: False if the window asked for could not be read (a 416).
    satisfiable: bool = True

    @property
    def partial(self) -> bool:
        """Whether these are not all of the object's bytes."""
        return not self.satisfiable or self.end - self.start != self.size


async def _fetch(
    blobs: SealedBlobs, key: str, whole_up_to: int, window: Window | None
) -> Content | None:
    """Read an object, or the part of it that ``window`` says; None if it is gone."""
    if window is None:
        found = await blobs.open(key, whole_up_to)
        if found is None:
            return None
        return Content(found.size, found.body, 0, found.size)
    # NOTE: A part needs the object's size first: one more small read (a
    #   stat, a HEAD or an encrypted object's header). Parts are rare.
    part = await blobs.open_part(key, whole_up_to, window)
    if part is None:
        return None
    size, span, found = part
    if span is None:
        return Content(size, b'', 0, 0, satisfiable=False)
    if found is None:
        return None
    start, end = span
    return Content(size, found.body, start, end)


def original_key(file: str) -> str:
    """The key of the original whose file name is ``file``."""
    return f'{IMAGES}/{file}'


def kept_key(file: str) -> str:
    """The key of the original kept as uploaded of the version ``file``.

    NOTE: Its format is the index's to say (``Entry.original``), not its
    name's: with an extension, a kept WebP would end as an animation does,
    and the commands that walk the objects tell those apart by their name.
    """
    return f'{IMAGES}/{file.removesuffix(".jpeg")}.original'


def animation_key(file: str) -> str:
    """The key of the animated rendition of the version whose original is ``file``."""
    return f'{IMAGES}/{file.removesuffix(".jpeg")}.webp'


def thumbnails_prefix(file: str) -> str:
    """The prefix of every thumbnail of the version whose original is ``file``."""
    return f'{THUMBNAILS}/{file.removesuffix(".jpeg")}/'


def thumbnail_key(file: str, size: Size, name: str = renditions.JPEG) -> str:
    """The key of one thumbnail of the version whose original is ``file``."""
    width, height = size
    return f'{thumbnails_prefix(file)}{width}x{height}.{name}'


def keyring(config: Config) -> Keyring | None:
    """The encryption keys the settings name, if any."""
    old = ','.join(config.encryption_old_keys)
    return Keyring.from_settings(config.encryption_key, old or None)


def open_storage(
    url: str | None, config: Config, environ: Mapping[str, str] | None = None
) -> SealedBlobs:
    """The backend at ``url`` (None: the storage directory), sealed as configured."""
    where = url or os.fspath(config.storage_path)
    inner: Blobs = open_blobs(where, config.aws if environ is None else environ)
    return SealedBlobs(inner, keyring(config))


class Objects:
    """The objects of a storage: originals in one backend, renditions in another
    (or the same)."""

    def __init__(self, originals: SealedBlobs, renditions: SealedBlobs) -> None:
        self.originals = originals
        self.renditions = renditions

    @classmethod
    def of(cls, config: Config) -> Objects:
        """The objects the settings name."""
        originals = open_storage(config.storage_url, config)
        if config.renditions_url is None:
            return cls(originals, originals)
        return cls(originals, open_storage(config.renditions_url, config))

    def make(self) -> None:
        """Create the layout's directories where objects are kept on a local disk.

        NOTE: As the tutorial's store did: its users look for images/ there.
        """
        for blobs, folder in ((self.originals, IMAGES), (self.renditions, THUMBNAILS)):
            root = getattr(blobs.inner, 'root', None)
            if isinstance(root, pathlib.Path):
                (root / folder).mkdir(parents=True, exist_ok=True)

    @property
    def apart(self) -> bool:
        """Whether the renditions are kept apart from the originals."""
        return self.renditions is not self.originals

    # Writing

    async def write_original(
        self, file: str, data: bytes, kept: bytes | None = None
    ) -> None:
        """Write the new version ``file``'s original, and the original kept as
        uploaded if given (at once: a local directory is synced once)."""
        items = [(original_key(file), data)]
        if kept is not None:
            items.append((kept_key(file), kept))
        await self.originals.create_many(items)

    async def write_kept(self, file: str, data: bytes) -> None:
        """Write the original kept as uploaded of the new version ``file``."""
        await self.originals.create_many([(kept_key(file), data)])

    async def write_thumbnails(
        self, file: str, thumbnails: list[tuple[Size, bytes]], name: str = 'jpeg'
    ) -> None:
        """Write thumbnails of the version whose original is ``file``."""
        await self.renditions.put_many(
            (thumbnail_key(file, size, name), data) for size, data in thumbnails
        )

    async def write_animation(self, file: str, data: bytes) -> None:
        await self.renditions.put(animation_key(file), data)

    async def discard_version(self, file: str) -> None:
        """Remove every object of the version whose original is ``file``."""
        # NOTE: The original last: a version whose original is gone is
        #   neither listed nor served, whatever else is left of it.
        await self.renditions.delete_prefix(thumbnails_prefix(file))
        await self.renditions.delete([animation_key(file)])
        # NOTE: In one request to S3 (which takes a key with no object as
        #   deleted): a kept original left behind is an orphan, which
        #   ``asgilook check`` finds.
        await self.originals.delete([kept_key(file), original_key(file)])

    # Reading

    async def original(
        self, file: str, whole_up_to: int, window: Window | None = None
    ) -> Content | None:
        """The original whose file name is ``file``; None if it is gone."""
        return await _fetch(self.originals, original_key(file), whole_up_to, window)

    async def kept(
        self, file: str, whole_up_to: int, window: Window | None = None
    ) -> Content | None:
        """The original kept as uploaded of the version ``file``; None if gone."""
        return await _fetch(self.originals, kept_key(file), whole_up_to, window)

    async def thumbnail(
        self,
        file: str,
        size: Size,
        name: str,
        whole_up_to: int,
        window: Window | None = None,
    ) -> Content | None:
        """One thumbnail of the version ``file``; None if it is not there."""
        key = thumbnail_key(file, size, name)
        return await _fetch(self.renditions, key, whole_up_to, window)

    async def animation(
        self, file: str, whole_up_to: int, window: Window | None = None
    ) -> Content | None:
        """The animated rendition of the version ``file``; None if there is none."""
        key = animation_key(file)
        return await _fetch(self.renditions, key, whole_up_to, window)

    async def read_original(self, file: str) -> bytes | None:
        """The whole original, for rendering; None if it is gone."""
        found = await self.originals.open(original_key(file), 1 << 62)
        if found is None:
            return None
        assert isinstance(found.body, bytes)
        return found.body

    async def has_thumbnail(self, file: str, size: Size, name: str) -> bool:
        return await self.renditions.size(thumbnail_key(file, size, name)) is not None

    async def probe(self) -> str:
        """Whether objects can be written where they are kept, and what was seen.

        Raises:
            StorageFull: nothing can be written.
            StorageUnavailable: a backend cannot be used.
        """
        seen = await self.originals.probe()
        if self.apart:
            seen = f'{seen}; renditions {await self.renditions.probe()}'
        return seen

    async def close(self) -> None:
        await self.originals.close()
        if self.apart:
            await self.renditions.close()
