"""The index of stored images, and the backends that keep it.

The images' objects live in a directory or a bucket (see
:mod:`asgilook.storage.objects`); the index says which of them is the current
version of each image, and in what order the images were uploaded. It is
shared by every worker of every machine that serves the same pictures, and no
worker keeps it in memory:

* :mod:`asgilook.storage.index.sqlite` (the default): a SQLite database in WAL mode
  in the storage directory, shared by every process of one machine.
* :mod:`asgilook.storage.index.postgres`: a PostgreSQL database, for several
  machines (``ASGI_LOOK_DATABASE_URL=postgresql://...``).

The rest of the app talks to :class:`Index` only, through the store.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import os
import pathlib
import sqlite3
import urllib.parse
from collections.abc import Callable
from collections.abc import Sequence
from typing import TYPE_CHECKING

from asgilook.errors import DeleteForbidden
from asgilook.errors import ImageNotFound
from asgilook.pictures import Size

if TYPE_CHECKING:  # pragma: no cover
    from asgilook.config import Config

#: Who sees a picture: everyone, in the listings (``PUBLIC``); whoever has its
#: URL, but no listing but its owner's shows it (``UNLISTED``); its owner only
#: (``PRIVATE``).
PUBLIC, UNLISTED, PRIVATE = 'public', 'unlisted', 'private'
VISIBILITIES = (PUBLIC, UNLISTED, PRIVATE)


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """What the index knows of one image."""

    image_id: str
    #: The name of the version's original in ``images/``.
    file: str
    size: Size
    #: When the version was stored: microseconds since the epoch, UTC. Never
    #: behind the newest image's, so it follows the upload order.
    modified: int
    #: The SHA-256 of the image's delete token, in hex.
    token_hash: str
    #: A tiny stand-in for the picture, as a data URI; empty for versions
    #: stored before there were placeholders.
    placeholder: str = ''
    #: Whether the version has an animated rendition beside its still JPEG.
    animated: bool = False
    #: The uploaded file's name as it was given; empty when none was.
    name: str = ''
    #: One of :data:`VISIBILITIES`: which listings show the picture.
    visibility: str = PUBLIC
    #: The name of the upload key it was uploaded with; empty for an open
    #: upload, or one made before there were keys.
    owner: str = ''
    #: The bytes uploaded: what the version counts against its owner's quota.
    bytes: int = 0
    #: The extension of the original kept as uploaded beside the JPEG
    #: (``png``, ``gif``, ``webp``, ``heic`` or ``avif``); empty when the
    #: JPEG is the original.
    original: str = ''


@dataclasses.dataclass(frozen=True, slots=True)
class UploadKey:
    """An upload key: who may upload, how much, and how often.

    The secret key itself is never stored, only its SHA-256: whoever reads
    the index (or a backup of it) learns no key from it.
    """

    #: What the key is called: the owner of the pictures uploaded with it.
    #: Never used again for another key, even once it is revoked.
    name: str
    #: The SHA-256 of the secret key, in hex.
    key_hash: str
    #: The bytes that the key's pictures may hold together; None: no quota.
    quota: int | None = None
    #: Uploads a minute at most; None: no limit.
    rate: int | None = None
    #: Whether the key may manage every picture, as the admin token may.
    admin: bool = False
    #: When it was made: microseconds since the epoch, UTC (0: when stored).
    created: int = 0
    #: When it was revoked (microseconds, as ``created``); None: in use.
    revoked: int | None = None
    #: The sum of the ``bytes`` of the key's current pictures, as read.
    used: int = 0


class KeyExists(Exception):
    """A key of that name exists (or existed: names are never reused)."""


class QuotaExceeded(Exception):
    """An upload would take its key's pictures over the key's quota.

    Attributes:
        key: the key, as it was when the upload was refused.
        used: the bytes its pictures held then.
        size: the bytes of the upload refused.
    """

    def __init__(self, key: UploadKey, used: int, size: int) -> None:
        super().__init__(
            f'The upload of {size} bytes would take the pictures of the key '
            f'{key.name} to {used + size} bytes, over its quota of {key.quota}.'
        )
        self.key = key
        self.used = used
        self.size = size


def key_hash(key: str) -> str:
    """What the index keeps of an upload key: its SHA-256, in hex.

    The one spelling that ``asgilook keys add`` stores and the service looks
    keys up by.
    """
    return hashlib.sha256(key.encode()).hexdigest()


class Behind(Exception):
    """The index cannot tell at once, without waiting: ask it the long way."""


class NewerSchema(RuntimeError):
    """The index was set up by a newer asgilook than this one."""


def newer_schema(where: str, version: int, known: int) -> NewerSchema:
    return NewerSchema(
        f'The index in {where} has schema version {version}; this '
        f'asgilook knows version {known} only: upgrade it.'
    )


class WrongIndex(RuntimeError):
    """The settings name one index, and the storage directory holds another.

    ``str(ex)`` names both, and how to go on.
    """


def not_found(image_id: str) -> ImageNotFound:
    return ImageNotFound(f'There is no image with the id {image_id}.')


def forbidden() -> DeleteForbidden:
    return DeleteForbidden(
        'That token may not delete this image: send the delete_token '
        'its upload returned, or the admin token.'
    )


class Index(abc.ABC):
    """One view of the shared index: what a process uses to read and change it.

    ``KIND`` names the backend (``sqlite`` or ``postgresql``), and
    ``location`` says where it is (a path, or a database URL without its
    password), for start-up and ``/healthz`` to say which index is in use.

    Every change is atomic and durable when its method returns: an image is
    listed with its new version, or not at all. The upload order is the order
    in which changes commit; an image stored again (replaced) becomes the
    newest. A deleted image keeps its place as a cursor for paging, so a
    client whose page ended with it does not lose its place.

    When the database cannot be reached, methods raise
    :class:`asgilook.errors.StorageUnavailable`; they recover by themselves
    once it is back.
    """

    KIND: str
    location: str

    # The fast path: answers in the event loop, without waiting.

    @abc.abstractmethod
    def peek(self, image_id: str) -> Entry | None:
        """The image's entry as of now, if the index can tell without waiting.

        Raises:
            Behind: it cannot; await :meth:`get`.
        """

    @abc.abstractmethod
    def state(self) -> object:
        """A version of the whole index: it changes with every change.

        The value is only compared with others from this same object (a page's
        state, from :meth:`page`): equal means no change in between.

        Raises:
            Behind: it cannot tell without waiting.
        """

    # Reading.

    @abc.abstractmethod
    async def get(self, image_id: str) -> Entry | None:
        """The image's entry as of now, or None."""

    @abc.abstractmethod
    async def page(
        self,
        limit: int | None = None,
        after: str | None = None,
        newest_first: bool = False,
        *,
        owner: str | None = None,
        everyone: bool = False,
    ) -> tuple[list[Entry], object]:
        """Up to ``limit`` entries in upload order, following image ``after``.

        With ``newest_first``, the newest first, and ``after`` an image that
        the page is older than. Also returns the :meth:`state` the page was
        read in, or an object that equals no state if that is not known.

        Which entries: the :data:`PUBLIC` ones; with ``owner``, that key's
        of every visibility (``owner`` wins over ``everyone``); with
        ``everyone``, all of them (for admins, and the commands that copy or
        check the whole index). ``after`` may be any image ever indexed, one
        that the page would not show included: a page still fills ``limit``.

        Raises:
            UnknownCursor: there is no image ``after``, and never was.
        """

    @abc.abstractmethod
    async def count(self) -> int:
        """How many images there are, as of now."""

    @abc.abstractmethod
    async def files(self) -> set[str]:
        """The original file names of every image's current version."""

    @abc.abstractmethod
    async def deployment(self) -> str:
        """The random id (hex) that the index was given when it was made.

        Every process that uses this index gets the same one; a copy of it
        made by any other means than copying its files gets another.
        """

    async def check(self, image_id: str, allowed: Callable[[Entry], bool]) -> Entry:
        """The image's entry, if it exists and ``allowed(entry)``.

        Raises:
            ImageNotFound: there is no such image (any more).
            DeleteForbidden: ``allowed`` said no.
        """
        entry = await self.get(image_id)
        if entry is None:
            raise not_found(image_id)
        if not allowed(entry):
            raise forbidden()
        return entry

    # Changing.

    @abc.abstractmethod
    async def put(
        self,
        image_id: str,
        file: str,
        size: Size,
        token_hash: str,
        placeholder: str = '',
        animated: bool = False,
        *,
        name: str = '',
        visibility: str = PUBLIC,
        owner: str = '',
        bytes: int = 0,
        original: str = '',
    ) -> tuple[Entry, Entry | None]:
        """Record that ``file`` (already durable) is the image's version now.

        Returns the new entry (its time of upload is the index's), and the
        one it replaced (whose files the caller removes), if any.

        Raises:
            QuotaExceeded: ``owner`` names a key with a quota, and its
                pictures would hold more than that: their ``bytes`` now,
                less the version replaced if it is the owner's, plus
                ``bytes``. Checked in the change itself, so puts at once
                never pass it together; nothing was changed.
        """

    @abc.abstractmethod
    async def delete(self, image_id: str, allowed: Callable[[Entry], bool]) -> Entry:
        """Delete the image if ``allowed(entry)``; return what was deleted.

        ``allowed`` is asked again inside the change: the image may have
        been replaced, with another token, since any earlier :meth:`check`.

        Raises:
            ImageNotFound: there is no such image (any more).
            DeleteForbidden: ``allowed`` said no; nothing was changed.
        """

    @abc.abstractmethod
    async def adopt(self, source: str, entries: Sequence[Entry]) -> bool:
        """Add ``entries`` (in upload order) from an older index, once.

        ``source`` names what they came from; a source adopted before is
        not adopted again (False), so images deleted since stay deleted.
        Entries for images the index has already are left out.
        """

    # Upload keys, and the secret of signed URLs.

    @abc.abstractmethod
    async def add_key(self, key: UploadKey) -> UploadKey:
        """Store a new key (made now, if its ``created`` is 0); return it as stored.

        Its ``revoked`` and ``created`` are kept as given (a copied key);
        ``used`` is counted from the pictures the index has of that owner.

        Raises:
            KeyExists: a key of that name (or with that hash) was ever stored.
        """

    @abc.abstractmethod
    async def keys(self) -> list[UploadKey]:
        """Every key, revoked ones too, in the order they were stored."""

    @abc.abstractmethod
    async def key_by_hash(self, key_hash: str) -> UploadKey | None:
        """The key whose secret hashes to ``key_hash``, revoked or not; or None."""

    @abc.abstractmethod
    async def revoke_key(self, name: str) -> UploadKey | None:
        """Revoke the key ``name`` (once: again keeps the first time); None if
        there is no such key."""

    @abc.abstractmethod
    async def url_secret(self) -> bytes:
        """The 32 random bytes that sign URLs, made once with the index.

        Every process of every machine using the index reads the same; the
        copies that ``asgilook migrate``, ``backup`` and ``restore`` make
        carry it, so that signed URLs handed out stay good.
        """

    @abc.abstractmethod
    async def set_url_secret(self, secret: bytes) -> None:
        """Make ``secret`` the index's: for a copy of another index only.

        NOTE: Processes that read the old secret already keep it until they
        start again: copy an index before serving from it.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Let go of connections; the index opens them again if used."""


def open_index(config: Config) -> Index:
    """The index that ``config`` names: PostgreSQL if it has a database URL."""
    if config.database_url:
        from asgilook.storage.index.postgres import PostgresIndex

        return PostgresIndex(config.database_url)
    from asgilook.storage.index.sqlite import SQLiteIndex

    return SQLiteIndex(config.storage_path)


def redacted_database(url: str) -> str:
    """A database URL as ``user@host:port/database``: never its password."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = f':{parts.port}' if parts.port else ''
    except ValueError:
        port = ''
    user = f'{parts.username}@' if parts.username else ''
    return f'{user}{parts.hostname or ""}{port}{parts.path or "/"}'


def left_behind(
    storage: os.PathLike[str] | str, database_url: str | None, ignore: bool = False
) -> str | None:
    """Why a service on ``database_url`` must not start on ``storage``; None if
    it may.

    It must not when the storage directory holds a SQLite index with
    pictures in it: they would not be listed, and nothing would say why.
    The SQLite file is only read.
    """
    if not database_url or ignore:
        return None
    from asgilook.storage.index.sqlite import SQLiteIndex

    path = pathlib.Path(os.fspath(storage)) / SQLiteIndex.FILE
    pictures = _pictures_in(path)
    if not pictures:
        return None
    return (
        f'{path} holds the SQLite index of {pictures} pictures, but '
        f'ASGI_LOOK_DATABASE_URL names the PostgreSQL database '
        f'{redacted_database(database_url)}, which would be used instead and '
        'would not list them. Move them into that database with '
        '`asgilook migrate --to-database URL` (it renames the SQLite file '
        f'{SQLiteIndex.FILE}.migrated once done), or set '
        'ASGI_LOOK_IGNORE_SQLITE_INDEX=1 to start without them.'
    )


def _pictures_in(path: pathlib.Path) -> int:
    """How many pictures the SQLite index at ``path`` lists; 0 if none is there."""
    if not path.is_file():
        return 0
    try:
        connection = sqlite3.connect(f'{path.resolve().as_uri()}?mode=ro', uri=True)
        try:
            (pictures,) = connection.execute('SELECT images FROM counters').fetchone()
        finally:
            connection.close()
    except sqlite3.Error:
        # NOTE: Not an index of ours (or not a database at all): it lists
        #   nothing that the service would lose.
        return 0
    return int(pictures)
