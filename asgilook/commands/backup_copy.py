"""What ``asgilook backup`` and ``asgilook restore`` share: copies as stored.

Objects are copied as they are stored, through the backends under the
encryption layer (:attr:`SealedBlobs.inner
<asgilook.storage.blobs.sealed.SealedBlobs.inner>`): a sealed object stays
sealed, under the same key name, so the keys that open it in the service
open it in the copy, and a copy never holds a plaintext the service did not.
An object already at the destination with the same stored size is taken to
be the same (objects never change once written: a new version has new
keys); with ``verify``, its bytes are read and compared instead.

Each version is copied whole, its objects named by its index entry: the
original, the original kept as uploaded and the animation if it has them,
and the thumbnails listed under its prefix (the JPEG series, and the AVIF
and WebP ones made so far).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import sqlite3
from collections.abc import Awaitable
from collections.abc import Callable

from asgilook.storage.blobs import Blobs
from asgilook.storage.blobs.local import LocalBlobs
from asgilook.storage.index import Entry
from asgilook.storage.index import Index
from asgilook.storage.objects import Objects
from asgilook.storage.objects import animation_key
from asgilook.storage.objects import kept_key
from asgilook.storage.objects import original_key
from asgilook.storage.objects import thumbnails_prefix

#: An object is read whole to be copied.
WHOLE = 1 << 62
#: Index entries read at a time.
PAGE = 500


@dataclasses.dataclass(frozen=True)
class Raw:
    """A storage's backends without the encryption layer: objects as stored."""

    originals: Blobs
    renditions: Blobs

    @classmethod
    def of(cls, objects: Objects) -> Raw:
        return cls(objects.originals.inner, objects.renditions.inner)

    @classmethod
    def directory(cls, root: pathlib.Path) -> Raw:
        """A local storage directory, in the layout the service keeps."""
        blobs = LocalBlobs(root)
        return cls(blobs, blobs)

    async def close(self) -> None:
        await self.originals.close()
        await self.renditions.close()


@dataclasses.dataclass
class Counts:
    """Objects copied, and already there, with their bytes."""

    copied: int = 0
    copied_bytes: int = 0
    there: int = 0
    there_bytes: int = 0

    def add(self, copied: bool, size: int) -> None:
        if copied:
            self.copied += 1
            self.copied_bytes += size
        else:
            self.there += 1
            self.there_bytes += size


async def copy_object(
    source: Blobs, target: Blobs, key: str, verify: bool, counts: Counts
) -> bool:
    """Copy one object as stored, unless it is there; False if it is gone."""
    if not verify:
        size = await source.size(key)
        if size is None:
            return False
        if await target.size(key) == size:
            counts.add(False, size)
            return True
    found = await source.open(key, WHOLE)
    if found is None:
        return False
    data = found.body
    assert isinstance(data, bytes)
    if verify:
        there = await target.open(key, WHOLE)
        if there is not None and there.body == data:
            counts.add(False, len(data))
            return True
    await target.put(key, data)
    counts.add(True, len(data))
    return True


@dataclasses.dataclass(frozen=True)
class Copied:
    """What was copied of a version."""

    entry: Entry
    #: Whether its original (and its kept original and animation, if it has
    #: them) was there.
    whole: bool
    #: The keys of its thumbnails that were copied or there.
    thumbnails: frozenset[str]


async def copy_version(
    entry: Entry, source: Raw, target: Raw, verify: bool, counts: Counts
) -> Copied:
    """Copy every object of a version; say what was there to copy."""
    whole = await copy_object(
        source.originals, target.originals, original_key(entry.file), verify, counts
    )
    if entry.original:
        key = kept_key(entry.file)
        kept = await copy_object(
            source.originals, target.originals, key, verify, counts
        )
        whole = whole and kept
    if entry.animated:
        key = animation_key(entry.file)
        animation = await copy_object(
            source.renditions, target.renditions, key, verify, counts
        )
        whole = whole and animation
    thumbnails = set()
    async for listed in source.renditions.list(thumbnails_prefix(entry.file)):
        key = listed.key
        if await copy_object(source.renditions, target.renditions, key, verify, counts):
            thumbnails.add(key)
    return Copied(entry, whole, frozenset(thumbnails))


async def copy_all(
    index: Index,
    source: Raw,
    target: Raw,
    jobs: int,
    verify: bool,
    counts: Counts,
    copied: Callable[[Copied], Awaitable[None]],
    wanted: Callable[[Entry], Awaitable[bool]] | None = None,
) -> None:
    """Copy every version ``index`` lists (that is ``wanted``), ``jobs`` at a
    time; tell ``copied`` what was."""
    slots = asyncio.Semaphore(jobs)

    async def one(entry: Entry) -> None:
        try:
            if wanted is None or await wanted(entry):
                await copied(await copy_version(entry, source, target, verify, counts))
        finally:
            slots.release()

    after = None
    try:
        async with asyncio.TaskGroup() as group:
            while entries := (await index.page(PAGE, after, everyone=True))[0]:
                after = entries[-1].image_id
                for entry in entries:
                    await slots.acquire()
                    group.create_task(one(entry))
    except ExceptionGroup as ex:
        # NOTE: The first failure says why; the others are alike, or its echo.
        raise ex.exceptions[0] from None


# The files beside the objects


def snapshot_sqlite(source: pathlib.Path, target: pathlib.Path) -> None:
    """Copy a SQLite database by SQLite's online backup: one consistent snapshot.

    The copy is a file of its own, without a WAL beside it.
    """
    with contextlib.closing(sqlite3.connect(source, timeout=30)) as here:
        with contextlib.closing(sqlite3.connect(target)) as there:
            # NOTE: In one step (all pages at once): one read transaction,
            #   one snapshot, however many writers come meanwhile.
            here.backup(there)
            there.execute('PRAGMA journal_mode = DELETE')


def settle_sqlite(path: pathlib.Path) -> None:
    """Fold a SQLite database's WAL into it, so that it may be replaced."""
    if path.exists():
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
            connection.execute('PRAGMA journal_mode = DELETE')


def merge_lines(source: pathlib.Path, target: pathlib.Path) -> int:
    """Add to ``target`` the lines of ``source`` it lacks; how many were added.

    For the manifest of ``asgilook import``: it holds delete tokens, so the
    file is its owner's only, and replaced whole, never half-written.
    """
    try:
        lines = source.read_bytes().splitlines()
    except FileNotFoundError:
        return 0
    try:
        kept = target.read_bytes().splitlines()
    except FileNotFoundError:
        kept = []
    known = set(kept)
    added = [line for line in lines if line.strip() and line not in known]
    if added or not target.exists():
        write_private(target, b''.join(line + b'\n' for line in [*kept, *added]))
    return len(added)


def write_private(path: pathlib.Path, data: bytes) -> None:
    """Write a file readable by its owner only, under a temporary name first."""
    partial = path.with_name(f'.{path.name}.partial')
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with open(fd, 'wb') as output:
        output.write(data)
        output.flush()
        os.fsync(output.fileno())
    os.replace(partial, path)
