"""How ``asgilook check`` reads an object: its header and size, or all of it.

Every original, animation and thumbnail of a version of the index is read
through its :class:`~asgilook.storage.blobs.sealed.SealedBlobs`, which
authenticates a sealed object (see :mod:`asgilook.storage.crypto`):

* by default, its header and size only (:meth:`SealedBlobs.size`): one small
  read of its first bytes, a ranged GET on S3. It finds a missing or empty
  object, one sealed with a key that is not configured, one stored under
  another name (a swap), a damaged header, and a truncated or extended
  object; not a damaged byte in a segment.
* with ``verify``, all of it (:meth:`SealedBlobs.open`, read to its end a
  chunk at a time, never whole in memory): every segment is authenticated,
  so a damaged byte anywhere is found, at the cost of reading every stored
  byte once.

A plain object (stored before encryption was turned on) has nothing to
authenticate: it is found missing or empty, and with ``verify`` read to its
end. Objects are read :data:`READS` at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from typing import TypeVar

from asgilook.commands.check.report import THUMBNAIL
from asgilook.commands.check.report import Kind
from asgilook.commands.check.report import Problem
from asgilook.errors import DamagedObject
from asgilook.pictures import Size
from asgilook.storage.blobs import Body
from asgilook.storage.blobs.sealed import SealedBlobs

T = TypeVar('T')

#: Objects read at once: a round trip each on S3.
READS = 16
#: Objects whose reads wait to be made together, in a listing.
BATCH = 4 * READS

_RENDITION = re.compile(r'([1-9][0-9]*)x([1-9][0-9]*)\.([a-z]+)')


@dataclasses.dataclass(frozen=True, slots=True)
class Look:
    """What reading an object found."""

    #: Its length (of its plaintext); None if there is none, or it is damaged.
    size: int | None
    #: Why it fails authentication; '' if it does not.
    damage: str = ''


async def look(blobs: SealedBlobs, key: str, verify: bool) -> Look:
    """Read the object ``key``: its header and size, or (``verify``) all of it.

    Raises:
        StorageUnavailable, StorageFull: the backend cannot be used.
    """
    try:
        if not verify:
            return Look(await blobs.size(key))
        found = await blobs.open(key, 0)
        if found is None:
            return Look(None)
        await _drain(found.body)
        return Look(found.size)
    except DamagedObject as ex:
        # NOTE: Its message names the object, which the problem's path does.
        text = str(ex)
        return Look(None, text.partition(' cannot be read: ')[2] or text)


async def _drain(body: Body) -> None:
    """Read a body to its end, a chunk at a time, and drop it."""
    if isinstance(body, bytes):
        return
    try:
        async for _ in body:
            pass
    finally:
        await body.close()


async def bounded(jobs: Iterable[Awaitable[T]], limit: int = READS) -> list[T]:
    """Await the jobs, ``limit`` at a time; their results, in order.

    If one fails, the others are cancelled and its error raised.
    """
    semaphore = asyncio.Semaphore(limit)

    async def one(job: Awaitable[T]) -> T:
        async with semaphore:
            return await job

    tasks = [asyncio.ensure_future(one(job)) for job in jobs]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def rendition(key: str) -> tuple[Size, str] | None:
    """The size and format of a thumbnail by its key (``.../<W>x<H>.<format>``)."""
    found = _RENDITION.fullmatch(key.rpartition('/')[2])
    if found is None:
        return None
    return (int(found[1]), int(found[2])), found[3]


def damaged(key: str, role: str, image_id: str, file: str, damage: str) -> Problem:
    """The problem of the object ``key`` that fails authentication."""
    return Problem(
        Kind.DAMAGED,
        key,
        image_id,
        detail=f'{role}: {damage}',
        file=file,
        role=role,
    )


class Reads:
    """Thumbnails to read as a listing goes, :data:`BATCH` at a time.

    Args:
        blobs: Where they are kept.
        verify: Read each whole, not only its header and size.
        found: Told of each one that fails authentication, as a problem.
    """

    def __init__(
        self, blobs: SealedBlobs, verify: bool, found: Callable[[Problem], None]
    ) -> None:
        self._blobs = blobs
        self._verify = verify
        self._found = found
        #: The key of each thumbnail to read, and its version's original file.
        self._pending: list[tuple[str, str]] = []

    async def add(self, key: str, file: str) -> None:
        self._pending.append((key, file))
        if len(self._pending) >= BATCH:
            await self.flush()

    async def flush(self) -> None:
        """Read the thumbnails waiting to be read."""
        pending, self._pending = self._pending, []
        seen = await bounded(look(self._blobs, key, self._verify) for key, _ in pending)
        for (key, file), result in zip(pending, seen, strict=True):
            if result.damage:
                image_id = file.partition('.')[0]
                self._found(damaged(key, THUMBNAIL, image_id, file, result.damage))
