"""The local backend: each object a file under a directory, in today's layout.

The key ``images/<file>`` is the file ``ROOT/images/<file>``: a storage
directory written by an earlier release is read as it is. A file is written
under a temporary name, synced, renamed into place and its directory synced
(and the parent of a directory made for it), so a reader sees all of it or
nothing, and a crash keeps it whole once :meth:`LocalBlobs.put` returned.

The index's files (``index.sqlite3``, its lock, an old journal) and the
health probe live at the top of the directory, beside ``images/`` and
``thumbnails/``: they are not objects, and no listing shows them (nor the
temporary files of writes under way).

The blocking work runs in the event loop's default executor; an open file is
read there in chunks as it is sent, and keeps its bytes readable even if the
object is replaced or deleted meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pathlib
import secrets
import shutil
import stat
from collections.abc import AsyncIterator
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any
from typing import TypeVar

from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.storage.blobs import Blobs
from asgilook.storage.blobs import Found
from asgilook.storage.blobs import Listed
from asgilook.storage.blobs import Reader
from asgilook.storage.blobs import key_parts
from asgilook.storage.blobs import prefix_parts
from asgilook.storage.blobs import storage_error

T = TypeVar('T')

PARTIAL = '.partial'


async def _in_thread(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in the loop's default executor; OSError as the store's."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, func, *args)
    except OSError as ex:
        raise storage_error(ex) from ex


def _fsync_directory(path: pathlib.Path) -> None:
    """Make a rename, an unlink or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: pathlib.Path, data: bytes) -> None:
    """Write a file under a temporary name, sync it, and rename it into place."""
    partial = path.with_name(f'.{path.name}.{secrets.token_hex(4)}{PARTIAL}')
    try:
        with open(partial, 'wb') as output:
            output.write(data)
            output.flush()
            os.fsync(output.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


def _create_durably(path: pathlib.Path, data: bytes) -> None:
    """Write a new file in place and sync it; FileExistsError if it exists.

    NOTE: For a file nobody reads yet (see :meth:`Blobs.create_many`): without
    a temporary name to rename, a small file costs a third less to write.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with open(fd, 'wb') as output:
            output.write(data)
            output.flush()
            os.fsync(output.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise


def _make_directories(directory: pathlib.Path) -> list[pathlib.Path]:
    """Make ``directory`` and its missing parents; the ones made, top first."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    missing.reverse()
    for made in missing:
        # NOTE: Another writer may make it first: that is fine.
        made.mkdir(exist_ok=True)
    return missing


def _write(
    items: list[tuple[pathlib.Path, bytes]],
    write: Callable[[pathlib.Path, bytes], None] = _write_durably,
) -> None:
    """Write every file durably, then sync each directory touched, once."""
    touched: dict[pathlib.Path, None] = {}
    for path, data in items:
        for made in _make_directories(path.parent):
            touched[made.parent] = None
        write(path, data)
        touched[path.parent] = None
    for directory in touched:
        _fsync_directory(directory)


def _open(
    path: pathlib.Path, whole_up_to: int, start: int, end: int | None, chunk: int
) -> Found | None:
    """The bytes ``[start, end)`` of a file, whole or open; None if it is missing.

    The file is opened and read (whole, or its first chunk) in one hop to a
    thread.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with contextlib.ExitStack() as closing:
        closing.callback(os.close, fd)
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            return None
        size = status.st_size
        first = min(start, size)
        last = size if end is None else max(first, min(end, size))
        if last - first <= whole_up_to:
            return Found(size, os.pread(fd, last - first, first))
        data = os.pread(fd, min(chunk, last - first), first)
        closing.pop_all()
        return Found(size, LocalReader(fd, first, last - first, data, chunk))


class LocalReader(Reader):
    """An open file, read in chunks in the default executor as it is sent.

    Holding the file open keeps its bytes readable even if the object is
    replaced or deleted meanwhile.
    """

    def __init__(
        self, fd: int, offset: int, length: int, first: bytes, chunk: int
    ) -> None:
        self._fd: int | None = fd
        self.length = length
        self._first = first
        self._offset = offset + len(first)
        self._end = offset + length
        self._chunk = chunk

    async def __anext__(self) -> bytes:
        if self._first:
            first, self._first = self._first, b''
            return first
        if self._fd is None or self._offset >= self._end:
            await self.close()
            raise StopAsyncIteration
        size = min(self._chunk, self._end - self._offset)
        try:
            chunk = await _in_thread(os.pread, self._fd, size, self._offset)
        except (StorageFull, StorageUnavailable):
            # NOTE: Not on a cancellation: the thread may be reading still.
            await self.close()
            raise
        if not chunk:
            # The file is shorter than it was: never for a stored object.
            await self.close()
            raise StopAsyncIteration
        self._offset += len(chunk)
        return chunk

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _is_partial(name: str) -> bool:
    return name.startswith('.') and name.endswith(PARTIAL)


def _walk(directory: str, key: str) -> Generator[Listed, None, None]:
    """Every file under ``directory`` (key ``key``), depth first, lazily.

    At most one open directory per level: never every name at once. Files at
    the top of the storage directory (``key`` empty) are not objects.
    """
    try:
        entries = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        # NOTE: Gone meanwhile (a version discarded), or never there.
        return
    with entries:
        for entry in entries:
            name = f'{key}/{entry.name}' if key else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(entry.path, name)
                continue
            if not key or _is_partial(entry.name):
                continue
            try:
                status = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(status.st_mode):
                yield Listed(name, status.st_size, status.st_mtime)


def _take(walk: Iterator[Listed], count: int) -> list[Listed]:
    return list(itertools.islice(walk, count))


def _unlink(paths: list[pathlib.Path]) -> None:
    for path in paths:
        with contextlib.suppress(
            FileNotFoundError, NotADirectoryError, IsADirectoryError
        ):
            os.unlink(path)


def _remove_tree(path: pathlib.Path) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        shutil.rmtree(path)


class LocalBlobs(Blobs):
    """Objects as files under ``root``: keys are relative paths."""

    #: Bytes read at once from a file sent in chunks.
    CHUNK = 1024 * 1024
    #: Files listed per hop to a thread.
    PAGE = 1000

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.url = str(root)

    def path(self, key: str) -> pathlib.Path:
        """The file of ``key``; ValueError for a key that would leave the root."""
        return self.root.joinpath(*key_parts(key))

    async def put(self, key: str, data: bytes) -> None:
        await _in_thread(_write, [(self.path(key), data)])

    async def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Write every file, then sync each directory touched once."""
        await _in_thread(_write, [(self.path(key), data) for key, data in items])

    async def create_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Write every new file in place (none may exist), then sync each
        directory touched once."""
        paths = [(self.path(key), data) for key, data in items]
        await _in_thread(_write, paths, _create_durably)

    async def open(
        self, key: str, whole_up_to: int, start: int = 0, end: int | None = None
    ) -> Found | None:
        path = self.path(key)
        return await _in_thread(_open, path, whole_up_to, start, end, self.CHUNK)

    async def size(self, key: str) -> int | None:
        found = await self.open(key, 0, 0, 0)
        return None if found is None else found.size

    async def delete(self, keys: Iterable[str]) -> None:
        await _in_thread(_unlink, [self.path(key) for key in keys])

    async def delete_prefix(self, prefix: str) -> None:
        parts = prefix_parts(prefix)
        if not parts:
            raise ValueError('delete_prefix() needs a prefix: it never empties all.')
        await _in_thread(_remove_tree, self.root.joinpath(*parts))

    async def list(self, prefix: str = '') -> AsyncIterator[Listed]:
        parts = prefix_parts(prefix)
        walk = _walk(str(self.root.joinpath(*parts)), '/'.join(parts))
        try:
            while page := await _in_thread(_take, walk, self.PAGE):
                for listed in page:
                    yield listed
        finally:
            walk.close()

    async def probe(self) -> str:
        return await _in_thread(self._probe)

    def _probe(self) -> str:
        # NOTE: As a first put would: a new storage directory is healthy.
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f'.healthz-{os.getpid()}'
        probe.write_bytes(b'ok')
        probe.unlink()
        status = os.statvfs(self.root)
        return f'writable, {status.f_bavail * status.f_frsize / 2**30:.1f} GiB free'
