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
with a message for the client; never a backend's own exception.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterator
from collections.abc import Iterable


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
    async def close(self) -> None:
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

    async def close(self) -> None:
        """Release connections and threads; the object may be used again later."""
