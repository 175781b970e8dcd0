"""Encryption at rest over any backend: :class:`SealedBlobs` wraps a :class:`Blobs`.

With a keyring that has a current key, every object written is sealed
(:func:`asgilook.storage.crypto.seal`, under its key as its name); without
one, objects are written as they are. Every object is read back as its
plaintext, whatever is stored: a plain object (written before encryption was
turned on) as it is, a sealed one decrypted and verified. A sealed object
that does not open (damaged, truncated, swapped, or sealed with a key that is
not configured, or with no keyring at all) is never served: it raises
:class:`~asgilook.errors.DamagedObject`, logged once at ERROR level here.

Round trips to the inner backend, each a GET on S3:

* a whole read (``start=0, end=None``): one; the inner backend is asked for
  the whole object with room for the format's overhead, and the first
  :data:`~asgilook.storage.crypto.HEADER_SIZE` bytes tell plain from sealed.
* a range: two; the header, then only the segments holding the range (or,
  for a plain object, the range itself). An empty range inside a sealed
  object: one.
* :meth:`SealedBlobs.size`: one (the header; for a plain object its size).
* :meth:`SealedBlobs.reseal`: one read for an object already under the
  current key; else the header, the whole object, and a write.

Sizes: :attr:`Found.size` and :meth:`SealedBlobs.size` are plaintext lengths;
:meth:`SealedBlobs.list` shows stored lengths, as the inner backend does.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import AsyncIterator
from collections.abc import Callable
from collections.abc import Iterable
from typing import TypeVar

from asgilook.errors import DamagedObject
from asgilook.storage.blobs import Blobs
from asgilook.storage.blobs import Body
from asgilook.storage.blobs import Found
from asgilook.storage.blobs import Listed
from asgilook.storage.blobs import Reader
from asgilook.storage.crypto import CURRENT_KEY_VARIABLE
from asgilook.storage.crypto import HEADER_SIZE
from asgilook.storage.crypto import SEGMENT_SIZE
from asgilook.storage.crypto import TAG_SIZE
from asgilook.storage.crypto import Buffer
from asgilook.storage.crypto import DataKey
from asgilook.storage.crypto import Decryptor
from asgilook.storage.crypto import Header
from asgilook.storage.crypto import Keyring
from asgilook.storage.crypto import is_sealed
from asgilook.storage.crypto import needs_rewrap
from asgilook.storage.crypto import rewrap
from asgilook.storage.crypto import seal
from asgilook.storage.crypto import unseal

log = logging.getLogger(__name__)

#: Objects larger than this are sealed and unsealed whole in a thread, so that
#: the event loop goes on serving: sealing takes about 2 ms a MiB (20 MiB:
#: 40 ms), and cryptography holds the GIL per segment, not for a whole object.
OFFLOAD_SIZE = 1024 * 1024

#: Streamed chunks at least this big are decrypted in a thread. Both backends
#: stream chunks of about a MiB, decrypted on the event loop: 0.3 ms each in
#: AES-OCB3 (0.6 ms in AES-GCM, format version 1). A hop to a thread for each
#: cost more CPU than it moved off the loop (measured on a streamed 4.4 MB
#: original from SeaweedFS: 7.7 ms of the process's CPU with hops, 6.7 ms
#: without; 4.2 ms for the plain object), as the chunk and its plaintext
#: then travel between cores.
THREAD_CHUNK = 4 * 1024 * 1024

_T = TypeVar('_T')
#: The inner backend's answer to a header read: None (no object), the stored
#: size of a plain object, or a sealed object's authenticated header and key.
_Head = int | tuple[Header, DataKey] | None
#: Given an object's size, the bytes ``[start, end)`` of it to read, or None.
Window = Callable[[int], tuple[int, int] | None]


def sealed_size(length: int, segment_size: int = SEGMENT_SIZE) -> int:
    """The stored size of an object of ``length`` plaintext bytes, once sealed."""
    segments = max(1, -(-length // segment_size))
    return HEADER_SIZE + length + TAG_SIZE * segments


def _log(key: str, error: DamagedObject) -> None:
    log.error('object %s failed authentication: %s', key, error)


async def _cpu(size: int, func: Callable[[], _T]) -> _T:
    """``func()``, in a thread when it works on more than OFFLOAD_SIZE bytes."""
    if size > OFFLOAD_SIZE:
        return await asyncio.to_thread(func)
    return func()


async def _bytes(body: Body) -> bytes:
    """All of a body; a Reader is read to its end and closed."""
    if isinstance(body, bytes):
        return body
    try:
        return b''.join([chunk async for chunk in body])
    finally:
        await body.close()


async def _close(body: Body) -> None:
    if not isinstance(body, bytes):
        await body.close()


async def _shaped(body: Body, whole_up_to: int) -> Body:
    """The body whole if it is at most ``whole_up_to`` bytes, else a Reader."""
    if isinstance(body, bytes):
        return body if len(body) <= whole_up_to else _Whole(body)
    return await _bytes(body) if body.length <= whole_up_to else body


async def _prefix(reader: Reader) -> bytes:
    """The first chunks of a Reader, until HEADER_SIZE bytes (or its end).

    NOTE: Most often the first chunk alone (a MiB): it is not copied.
    """
    chunks = []
    have = 0
    while have < HEADER_SIZE:
        try:
            chunk = await reader.__anext__()
        except StopAsyncIteration:
            break
        chunks.append(chunk)
        have += len(chunk)
    return chunks[0] if len(chunks) == 1 else b''.join(chunks)


def _decrypt(decryptor: Decryptor, ciphertext: bytes) -> bytes:
    plain = decryptor.feed(ciphertext)
    decryptor.finish()
    return plain


class _Whole(Reader):
    """Bytes already in memory, as a Reader of one chunk."""

    def __init__(self, data: bytes) -> None:
        self.length = len(data)
        self._data: bytes | None = data

    async def __anext__(self) -> bytes:
        data, self._data = self._data, None
        if not data:
            raise StopAsyncIteration
        return data

    async def close(self) -> None:
        self._data = None


class _Plaintext(Reader):
    """The plaintext of an inner Reader: decrypted, or passed through if plain.

    Args:
        inner: The stored bytes, after ``first``.
        key: The object's key, for the log.
        length: How many plaintext bytes it yields in all.
        first: Stored bytes already taken from ``inner``, to come first (a
            view of them, for a sealed object: they are only decrypted).
        decryptor: Decrypts the stored bytes; None for a plain object.
    """

    def __init__(
        self,
        inner: Reader,
        key: str,
        length: int,
        first: Buffer = b'',
        decryptor: Decryptor | None = None,
    ) -> None:
        self.length = length
        self._inner = inner
        self._key = key
        self._first: Buffer | None = first
        self._decryptor = decryptor
        self._done = False

    async def __anext__(self) -> bytes:
        try:
            return await self._next()
        except DamagedObject as error:
            # NOTE: Headers are already sent: the HTTP layer aborts the
            #   response, and the plaintext of that segment never leaves.
            _log(self._key, error)
            await self.close()
            raise

    async def _next(self) -> bytes:
        while not self._done:
            if self._first is not None:
                chunk, self._first = self._first, None
            else:
                try:
                    chunk = await self._inner.__anext__()
                except StopAsyncIteration:
                    await self.close()
                    if self._decryptor:
                        self._decryptor.finish()
                    break
            # NOTE: A chunk that completes no segment gives nothing to send:
            #   the next one is read instead of yielding an empty chunk.
            plain = await self._plain(chunk)
            if plain:
                return plain
        raise StopAsyncIteration

    async def _plain(self, chunk: Buffer) -> bytes:
        decryptor = self._decryptor
        if decryptor is None:
            # NOTE: Bytes from the inner Reader: bytes() returns them as they are.
            return bytes(chunk)
        # NOTE: cryptography lets go of the GIL: an unusually big chunk is
        #   decrypted on another core while the loop goes on serving.
        if len(chunk) >= THREAD_CHUNK:
            return await asyncio.to_thread(decryptor.feed, chunk)
        return decryptor.feed(chunk)

    async def close(self) -> None:
        self._done = True
        self._first = None
        await self._inner.close()


class SealedBlobs(Blobs):
    """A backend whose objects are sealed at rest; plaintext in and out.

    Args:
        inner: Where the objects are stored.
        keyring: The service's keys: with a current key, objects are sealed
            when written; any of its keys opens them. None (or no current
            key): objects are written plain; sealed ones are refused (None)
            or opened with the old keys.
    """

    def __init__(self, inner: Blobs, keyring: Keyring | None) -> None:
        self.inner = inner
        self.keyring = keyring
        self.url = inner.url

    @property
    def encrypts(self) -> bool:
        """Whether objects written are sealed."""
        return self.keyring is not None and self.keyring.encrypts

    async def _stored(self, key: str, data: bytes) -> bytes:
        """What to store for ``data``: sealed when encryption is on."""
        keyring = self.keyring
        if keyring is None or not keyring.encrypts:
            return data
        return await _cpu(len(data), functools.partial(seal, keyring, key, data))

    async def put(self, key: str, data: bytes) -> None:
        await self.inner.put(key, await self._stored(key, data))

    async def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        stored = [(key, await self._stored(key, data)) for key, data in items]
        await self.inner.put_many(stored)

    async def create_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        stored = [(key, await self._stored(key, data)) for key, data in items]
        await self.inner.create_many(stored)

    async def open(
        self, key: str, whole_up_to: int, start: int = 0, end: int | None = None
    ) -> Found | None:
        """The plaintext ``[start, end)`` of an object; Found.size: its length.

        Raises:
            DamagedObject: The object is sealed and does not open (logged).
                A Reader raises it from ``__anext__`` at the first segment
                that fails, after the plaintext before it.
        """
        try:
            if start == 0 and end is None:
                found = await self._open_whole(key, whole_up_to)
            else:
                found = await self._open_range(key, whole_up_to, start, end)
        except DamagedObject as error:
            _log(key, error)
            raise
        if found is None:
            return None
        # NOTE: Outside the try: a Reader read whole here logs its own error.
        return Found(found.size, await _shaped(found.body, whole_up_to))

    async def _open_whole(self, key: str, whole_up_to: int) -> Found | None:
        found = await self.inner.open(key, sealed_size(whole_up_to))
        if found is None:
            return None
        body = found.body
        if isinstance(body, bytes):
            if not is_sealed(body):
                return found
            unsealed = functools.partial(unseal, self.keyring, key, body)
            plain = await _cpu(len(body), unsealed)
            return Found(len(plain), plain)
        try:
            first = await _prefix(body)
            if not is_sealed(first):
                return Found(found.size, _Plaintext(body, key, body.length, first))
            header = Header.parse(first, key)
            header.check_size(body.length)
            decryptor = Decryptor(header, header.open(self.keyring))
        except BaseException:
            await body.close()
            raise
        length = header.plain_length
        # NOTE: A view: the first chunk is most often a MiB, not to be copied.
        rest = memoryview(first)[HEADER_SIZE:]
        return Found(length, _Plaintext(body, key, length, rest, decryptor))

    async def _head(self, key: str) -> _Head:
        """Read an object's first HEADER_SIZE bytes; authenticate a header."""
        found = await self.inner.open(key, HEADER_SIZE, 0, HEADER_SIZE)
        if found is None:
            return None
        prefix = await _bytes(found.body)
        if not is_sealed(prefix):
            return found.size
        header = Header.parse(prefix, key)
        header.check_size(found.size)
        return header, header.open(self.keyring)

    async def open_part(
        self, key: str, whole_up_to: int, window: Window
    ) -> tuple[int, tuple[int, int] | None, Found | None] | None:
        """As :meth:`open` of the part ``window(size)`` names, with one read of
        the header, for a byte range whose size must be known first.

        Returns:
            None if there is no such object; else its (plaintext) size, the
            span the window gave (None: unsatisfiable, and nothing is read)
            and what was read of it (None if the object went meanwhile).
        """
        try:
            head = await self._head(key)
            if head is None:
                return None
            size = head if isinstance(head, int) else head[0].plain_length
            span = window(size)
            if span is None:
                return size, None, None
            start, end = span
            if isinstance(head, int):
                found = await self.inner.open(key, whole_up_to, start, end)
            else:
                found = await self._read_span(key, head, whole_up_to, start, end)
        except DamagedObject as error:
            _log(key, error)
            raise
        if found is None:
            return size, span, None
        return size, span, Found(found.size, await _shaped(found.body, whole_up_to))

    async def _open_range(
        self, key: str, whole_up_to: int, start: int, end: int | None
    ) -> Found | None:
        head = await self._head(key)
        if head is None:
            return None
        if isinstance(head, int):
            return await self.inner.open(key, whole_up_to, start, end)
        return await self._read_span(key, head, whole_up_to, start, end)

    async def _read_span(
        self,
        key: str,
        head: tuple[Header, DataKey],
        whole_up_to: int,
        start: int,
        end: int | None,
    ) -> Found | None:
        """Read and decrypt the segments of ``[start, end)`` of a sealed object."""
        header, data_key = head
        # NOTE: Clamped to the plaintext, as backends clamp to the object.
        end = header.plain_length if end is None else min(end, header.plain_length)
        start = min(start, end)
        decryptor = Decryptor(header, data_key, start, end)
        offset, stop = header.span(start, end)
        if offset == stop:
            # NOTE: An empty range that takes no segment (not at the end).
            return Found(header.plain_length, b'')
        length = end - start
        inner_whole = stop - offset if length <= whole_up_to else 0
        found = await self.inner.open(key, inner_whole, offset, stop)
        if found is None:
            return None
        body = found.body
        try:
            # NOTE: The object may have been replaced since its header was read.
            header.check_size(found.size)
        except DamagedObject:
            await _close(body)
            raise
        if isinstance(body, bytes):
            plain = await _cpu(len(body), functools.partial(_decrypt, decryptor, body))
            return Found(header.plain_length, plain)
        return Found(header.plain_length, _Plaintext(body, key, length, b'', decryptor))

    async def size(self, key: str) -> int | None:
        """The plaintext length of an object; one small read (its header).

        Raises:
            DamagedObject: It is sealed, and its header does not open.
        """
        try:
            head = await self._head(key)
        except DamagedObject as error:
            _log(key, error)
            raise
        if head is None or isinstance(head, int):
            return head
        return head[0].plain_length

    async def reseal(self, key: str, reencrypt: bool = False) -> str:
        """Put an object under the current key, for a key rotation.

        Args:
            key: The object.
            reencrypt: Decrypt and seal anew (a new data key) even an object
                that a new header would do for, or one already current.

        Returns:
            ``'rewrapped'`` (a new header under the current key; the segments
            are kept as they are), ``'reencrypted'``, ``'sealed'`` (it was
            plain), ``'current'`` (nothing to do), or ``'missing'`` (no such
            object, e.g. deleted since it was listed).

        Raises:
            ValueError: The keyring has no current key.
            DamagedObject: The object is sealed and does not open (logged).
        """
        keyring = self.keyring
        if keyring is None or not keyring.encrypts:
            raise ValueError(
                f'no current encryption key ({CURRENT_KEY_VARIABLE} is not set): '
                'objects cannot be resealed'
            )
        try:
            head = await self._head(key)
            if head is None:
                return 'missing'
            if not (
                isinstance(head, int) or reencrypt or needs_rewrap(keyring, head[0])
            ):
                return 'current'
            found = await self.inner.open(key, sys.maxsize)
            if found is None:
                return 'missing'
            outcome, data = await _resealed(
                keyring, key, await _bytes(found.body), reencrypt
            )
        except DamagedObject as error:
            _log(key, error)
            raise
        await self.inner.put(key, data)
        return outcome

    async def delete(self, keys: Iterable[str]) -> None:
        await self.inner.delete(keys)

    async def delete_prefix(self, prefix: str) -> None:
        await self.inner.delete_prefix(prefix)

    def list(self, prefix: str = '') -> AsyncIterator[Listed]:
        """The inner listing: sizes are stored sizes (ciphertext when sealed)."""
        return self.inner.list(prefix)

    async def probe(self) -> str:
        return await self.inner.probe()

    async def close(self) -> None:
        await self.inner.close()


async def _resealed(
    keyring: Keyring, key: str, stored: bytes, reencrypt: bool
) -> tuple[str, bytes]:
    """What :meth:`SealedBlobs.reseal` does to a whole object, and its new bytes."""
    if not is_sealed(stored):
        return 'sealed', await _cpu(
            len(stored), functools.partial(seal, keyring, key, stored)
        )
    header = Header.parse(stored, key)
    header.check_size(len(stored))
    if reencrypt:

        def reencrypted() -> bytes:
            return seal(keyring, key, unseal(keyring, key, stored))

        return 'reencrypted', await _cpu(len(stored), reencrypted)
    # NOTE: Rewrapped again if another process did it since the header was
    #   read: harmless, and the same outcome.
    return 'rewrapped', rewrap(keyring, key, stored) + stored[HEADER_SIZE:]
