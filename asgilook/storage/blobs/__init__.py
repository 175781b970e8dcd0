"""Where a storage's objects live: a local directory or an S3-compatible bucket.

A storage is a flat namespace of objects named by keys in today's layout
(``images/<id>.<version>.jpeg``, ``images/<id>.<version>.webp``,
``thumbnails/<id>.<version>/<width>x<height>.<format>``). An object is
written whole, once, and never changes: a reader sees all of it or nothing.
:class:`Blobs` is the interface; :func:`open_blobs` picks the backend from a
URL (a path, or ``s3://BUCKET[/PREFIX]``). Encryption at rest wraps a
backend (see :mod:`asgilook.storage.crypto`).

Every method raises :class:`~asgilook.errors.StorageFull` or
:class:`~asgilook.errors.StorageUnavailable` when the backend cannot be used,
with a message for the client; never a backend's own exception
(:func:`storage_error` says which, for an error of the file system). A key
that is not plain (see :func:`key_parts`) is a ValueError.

The modules:

* :mod:`asgilook.storage.blobs.local`: :class:`LocalBlobs`, files under a
  directory.
* :mod:`asgilook.storage.blobs.s3`: :class:`S3Blobs`, objects in a bucket
  (obstore's S3 client).
* :mod:`asgilook.storage.blobs.sealed`: :class:`SealedBlobs`, encryption at
  rest over either.
"""

from __future__ import annotations

import abc
import dataclasses
import errno
import os
import pathlib
import re
import urllib.parse
from collections.abc import AsyncIterator
from collections.abc import Iterable
from collections.abc import Mapping

from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable

#: What :class:`~asgilook.errors.StorageFull` says, whatever the backend.
FULL = 'The image store is out of space; try again later.'


class Reader(abc.ABC):
    """Bytes of an object, read in chunks as they are sent.

    At most about one chunk is in memory at once, whatever the object's size.
    Closing it early (a HEAD, a client gone) releases what it holds.
    """

    #: How many bytes it yields in all.
    length: int

    def __aiter__(self) -> Reader:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> bytes:
        """The next chunk; StopAsyncIteration (and closed) after the last."""

    @abc.abstractmethod
    async def close(self) -> None:  # noqa: B027 (nothing to release by default)
        """Release the file or connection; safe to call more than once."""


#: An object's bytes: whole, or a :class:`Reader` of them.
Body = bytes | Reader


@dataclasses.dataclass(frozen=True, slots=True)
class Found:
    """What :meth:`Blobs.open` found."""

    #: The whole object's length in bytes (of its plaintext, if encrypted).
    size: int
    #: The bytes asked for: all of them, or the range.
    body: Body


@dataclasses.dataclass(frozen=True, slots=True)
class Listed:
    """One object, as a listing shows it."""

    key: str
    #: Its stored length in bytes (ciphertext, if encrypted).
    size: int
    #: When it was written, in seconds since the epoch.
    modified: float


class Blobs(abc.ABC):
    """A storage backend: objects by key.

    Safe to share between the requests of one event loop; opened lazily and
    closed with :meth:`close`, so that a new event loop (falcon.testing runs
    one per request) may use it again.
    """

    #: Where it is, for people: a path, or the s3:// URL (never credentials).
    url: str

    @abc.abstractmethod
    async def put(self, key: str, data: bytes) -> None:
        """Write an object durably and atomically, replacing any of that key."""

    async def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Write several objects (a version's thumbnails); each as :meth:`put`."""
        for key, data in items:
            await self.put(key, data)

    async def create_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Write new objects under keys that nothing reads yet (a new version's).

        Each is durable once this returns, but not written atomically: a crash
        midway may leave one cut short. Nothing refers to it (the version is
        not in the index yet), so ``asgilook check`` finds it as an orphan, as
        it finds the objects of a version whose index entry never committed.
        A backend may refuse a key that already exists; this one replaces it,
        as :meth:`put_many`.
        """
        await self.put_many(items)

    @abc.abstractmethod
    async def open(
        self, key: str, whole_up_to: int, start: int = 0, end: int | None = None
    ) -> Found | None:
        """The bytes ``[start, end)`` of an object (``end`` None: to its end).

        The bytes are read whole when there are at most ``whole_up_to`` of
        them, else returned as a :class:`Reader`. ``start``/``end`` must lie
        within the object (the caller knows its size from an earlier open or
        :meth:`size`; past the end they are clamped). None if there is no
        such object.
        """

    @abc.abstractmethod
    async def size(self, key: str) -> int | None:
        """The length of an object's content, or None if there is none."""

    @abc.abstractmethod
    async def delete(self, keys: Iterable[str]) -> None:
        """Remove objects; a key with no object is no error."""

    @abc.abstractmethod
    async def delete_prefix(self, prefix: str) -> None:
        """Remove every object whose key starts with ``prefix`` (ends with /)."""

    @abc.abstractmethod
    def list(self, prefix: str = '') -> AsyncIterator[Listed]:
        """Every object under ``prefix``, a page at a time (never all in memory)."""

    @abc.abstractmethod
    async def probe(self) -> str:
        """Write and remove a small object; say what was seen (free space...).

        Raises:
            StorageFull: nothing can be written.
            StorageUnavailable: the backend cannot be reached or used.
        """

    async def close(self) -> None:  # noqa: B027 (nothing to release by default)
        """Release connections and threads; the object may be used again later."""


def unavailable(reason: str) -> StorageUnavailable:
    """The error of a backend that cannot be used; ``reason`` is short and safe."""
    return StorageUnavailable(
        f'The image store cannot be used right now ({reason}); try again later.'
    )


def storage_error(ex: OSError) -> StorageFull | StorageUnavailable:
    """What an error of the file system is to the store's callers."""
    if ex.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(FULL)
    return unavailable(os.strerror(ex.errno) if ex.errno else type(ex).__name__)


def key_parts(key: str) -> list[str]:
    """The segments of a key; ValueError unless it is relative and plain.

    A key is ``/``-separated, without empty, ``.`` or ``..`` segments and
    without NUL: on disk it must name a file under the storage directory,
    never outside it, and on S3 the same object as there.
    """
    parts = key.split('/')
    if any(part in ('', '.', '..') or '\0' in part for part in parts):
        raise ValueError(
            f'Not a storage key: {key!r} (relative, "/"-separated, '
            'no empty, "." or ".." segments).'
        )
    return parts


def prefix_parts(prefix: str) -> list[str]:
    """The segments of a prefix: ``''`` (everything) or a key, ``/`` at the end or not.

    A prefix is matched segment by segment, on both backends: ``images`` and
    ``images/`` hold ``images/a.jpeg`` but not ``images2/b.jpeg``.
    """
    return key_parts(prefix.removesuffix('/')) if prefix else []


_SCHEME = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://')


def open_blobs(url: str, environ: Mapping[str, str]) -> Blobs:
    """The backend of a storage URL: ``s3://BUCKET[/PREFIX]``, or a directory.

    Args:
        url: ``s3://BUCKET`` or ``s3://BUCKET/PREFIX`` for an S3-compatible
            bucket (credentials, region and endpoint from the standard
            ``AWS_*`` variables of ``environ``); anything else is the path of
            a local directory.
        environ: The environment to read the S3 settings from.

    Raises:
        ValueError: an s3:// URL without a bucket, or with credentials, a
            query or a fragment in it; a URL of another scheme.
    """
    if not url:
        raise ValueError('The storage URL is empty: give a directory or s3://BUCKET.')
    scheme = _SCHEME.match(url)
    if scheme is None:
        from asgilook.storage.blobs.local import LocalBlobs

        return LocalBlobs(pathlib.Path(url))
    if scheme[0].lower() != 's3://':
        raise ValueError(
            f'Unsupported storage URL scheme {scheme[0]!r}: give a directory '
            'or s3://BUCKET[/PREFIX].'
        )
    parts = urllib.parse.urlsplit(url)
    # NOTE: Nothing of the URL is quoted here: it may hold credentials.
    if not parts.hostname or '@' in parts.netloc or ':' in parts.netloc:
        raise ValueError(
            'An s3:// storage URL is s3://BUCKET[/PREFIX]: it names a bucket, '
            'and the credentials come from AWS_ACCESS_KEY_ID and '
            'AWS_SECRET_ACCESS_KEY.'
        )
    if '?' in url or '#' in url:
        raise ValueError('An s3:// storage URL has no query or fragment.')
    from asgilook.storage.blobs.s3 import S3Blobs

    return S3Blobs(parts.netloc, parts.path.strip('/'), environ)
