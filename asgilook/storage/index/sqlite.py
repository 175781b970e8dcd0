"""The index in a SQLite database beside the files: the default, for one machine.

``index.sqlite3`` in the storage directory, in WAL mode, so that every
worker and process of the machine shares it: readers never wait for a
writer, and writers take turns (``BEGIN IMMEDIATE``). A change is synced
before its method returns (``synchronous=FULL``), so an image is listed only
once both its files and its row are on disk.

Each process keeps no images in memory: SQLite's page cache, bounded per
connection, is all. Lookups and pages are queries on indexes (the image id,
the upload order as the primary key, and the upload order of the public
pictures and of each owner's), so the first page of a new worker and the
millionth page cost the same, however many pictures a page does not show.

The tables and their versions are in :mod:`.sqlite_schema`; the upload keys
and the secret of signed URLs, in :mod:`.sqlite_keys`. A put whose owner's
key has a quota is checked in the batch that writes it, each put in turn
(see :meth:`SQLiteIndex.put`).

SQLite needs a local disk: its locks do not hold on a network file system.
For several machines, use :mod:`asgilook.storage.index.postgres`.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any
from typing import TypeVar

from asgilook.errors import StorageFull
from asgilook.errors import StorageUnavailable
from asgilook.errors import UnknownCursor
from asgilook.pictures import Size
from asgilook.storage.index import PUBLIC
from asgilook.storage.index import Behind
from asgilook.storage.index import Entry
from asgilook.storage.index import Index
from asgilook.storage.index import QuotaExceeded
from asgilook.storage.index import UploadKey
from asgilook.storage.index import forbidden
from asgilook.storage.index import newer_schema
from asgilook.storage.index import not_found
from asgilook.storage.index import sqlite_keys
from asgilook.storage.index.sqlite_schema import _MIGRATIONS
from asgilook.storage.index.sqlite_schema import COLUMNS as _COLUMNS
from asgilook.storage.index.sqlite_schema import SCHEMA_VERSION
from asgilook.storage.index.sqlite_schema import entry as _entry
from asgilook.storage.index.sqlite_schema import insert
from asgilook.storage.index.sqlite_schema import migrate
from asgilook.storage.index.sqlite_schema import page_query
from asgilook.storage.index.wal import WalHeader

T = TypeVar('T')

__all__ = ['SCHEMA_VERSION', 'TOMBSTONE_MICROSECONDS', '_MIGRATIONS', 'SQLiteIndex']

#: How long a deleted image stays a cursor to page on from.
TOMBSTONE_MICROSECONDS = 7 * 24 * 3600 * 1_000_000


def _now() -> int:
    return time.time_ns() // 1000


def _error(ex: sqlite3.Error) -> StorageFull | StorageUnavailable:
    if getattr(ex, 'sqlite_errorcode', None) == sqlite3.SQLITE_FULL:
        return StorageFull('The image store is out of space; try again later.')
    return StorageUnavailable(
        f'The image index cannot be used right now ({ex}); try again later.'
    )


class SQLiteIndex(Index):
    """The index in ``index.sqlite3`` in the storage directory ``root``."""

    KIND = 'sqlite'
    FILE = 'index.sqlite3'
    #: How long a writer waits for another one, in seconds.
    BUSY_TIMEOUT = 30.0
    #: Idle connections kept for the threads, at most.
    IDLE = 4
    #: SQLite's page cache per connection, in KiB.
    CACHE_KIB = 8192
    #: Entries the fast path remembers while the database is unchanged.
    KNOWN = 10_000
    #: Puts written in one transaction, at most (see :meth:`put`).
    BATCH = 64

    def __init__(self, root: os.PathLike[str] | str) -> None:
        self.path = pathlib.Path(os.fspath(root)) / self.FILE
        self.location = str(self.path)
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._ready = False
        # The event loop's own connection, for peek() and state(): never
        # waits, and is never used by two threads at once.
        self._fast: sqlite3.Connection | None = None
        self._fast_lock = threading.Lock()
        # Writers take turns (see _turn): this process's lock, and the file
        # descriptor of the machine's.
        self._write_lock = threading.Lock()
        self._turns: int | None = None
        # Puts waiting to be written, whether a batch is being written, and
        # the thread that writes them (see put).
        self._queue_lock = threading.Lock()
        self._queued: list[
            tuple[Entry, concurrent.futures.Future[tuple[Entry, Entry | None]]]
        ] = []
        self._writing = False
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        # What the fast path has read since the database last changed: its
        # ``data_version``, the clock, and entries (None for no such image).
        self._seen_version: int | None = None
        # The WAL index's header when data_version was last asked.
        self._wal = WalHeader(str(self.path))
        self._seen_header: bytes | None = None
        self._known: collections.OrderedDict[str, Entry | None] = (
            collections.OrderedDict()
        )
        # The URL secret, once read: it is made with the index, for good.
        self._secret: bytes | None = None

    # Connections

    def _connect(self, timeout: float) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        connection.execute('PRAGMA synchronous = FULL')
        connection.execute(f'PRAGMA cache_size = -{self.CACHE_KIB}')
        return connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        """Create the schema, once per database, whoever comes first."""
        if self._ready:
            return
        # NOTE: In a writer's turn: threads and processes that start at once
        #   would otherwise switch the new file to WAL together, and SQLite
        #   answers one of them "database is locked" at once, without waiting.
        with self._turn():
            # NOTE: WAL is a property of the database file: set once, it stays.
            (mode,) = connection.execute('PRAGMA journal_mode').fetchone()
            if mode != 'wal':
                connection.execute('PRAGMA journal_mode = WAL')
            (version,) = connection.execute('PRAGMA user_version').fetchone()
            if version > SCHEMA_VERSION:
                raise newer_schema(str(self.path), version, SCHEMA_VERSION)
            if version < SCHEMA_VERSION:
                with self._transaction(connection):
                    migrate(connection, version)
        self._ready = True

    @contextlib.contextmanager
    def _borrowed(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = self._connect(self.BUSY_TIMEOUT)
        try:
            self._prepare(connection)
            yield connection
        finally:
            with self._lock:
                kept = len(self._idle) < self.IDLE
                if kept:
                    self._idle.append(connection)
            if not kept:
                connection.close()

    @staticmethod
    @contextlib.contextmanager
    def _transaction(
        connection: sqlite3.Connection, mode: str = 'IMMEDIATE'
    ) -> Iterator[None]:
        connection.execute(f'BEGIN {mode}')
        try:
            yield
        except BaseException:
            connection.execute('ROLLBACK')
            raise
        connection.execute('COMMIT')

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """Wait for this writer's turn: one at a time, on the whole machine.

        NOTE: SQLite makes a writer that finds the database locked sleep and
        try again, longer each time (1, 2, 5, 10 ms...): with several writers
        at once, most of their time went on sleeping. A lock of this process,
        then an ``flock`` beside the database (the machine's, as SQLite needs
        a local disk anyway), queue them instead, each woken as soon as the
        one before is done.
        """
        with self._write_lock:
            if self._turns is None:
                self._turns = os.open(
                    f'{self.path}.lock', os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
            fcntl.flock(self._turns, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._turns, fcntl.LOCK_UN)

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(connection, *args)`` in a thread, with a connection of the pool."""

        def run() -> T:
            try:
                with self._borrowed() as connection:
                    return work(connection, *args)
            except sqlite3.Error as ex:
                raise _error(ex) from ex

        return await asyncio.get_running_loop().run_in_executor(None, run)

    async def close(self) -> None:
        with self._queue_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            # NOTE: What it was given is still written; a put after this
            #   starts another.
            writer.shutdown(wait=False)
        with self._lock:
            idle, self._idle = self._idle, []
        with self._fast_lock:
            fast, self._fast = self._fast, None
            for connection in [*idle, *([fast] if fast else [])]:
                connection.close()
            # NOTE: Only now: closing the -shm sooner would drop the locks of
            #   connections still open (see asgilook.storage.index.wal).
            self._wal.close()
        with self._write_lock:
            turns, self._turns = self._turns, None
        if turns is not None:
            os.close(turns)

    # The fast path

    def _quick(self, key: str, query: str, args: tuple[str, ...]) -> Any:
        """What the fast path knows of ``key``, else one row of ``query``.

        Raises:
            Behind: the answer would take waiting.
        """
        if not self._ready or not self._fast_lock.acquire(blocking=False):
            raise Behind
        try:
            if self._fast is None:
                # NOTE: No waiting at all: a busy database is Behind.
                self._fast = self._connect(0)
                # The versions of another connection tell nothing.
                self._seen_version = None
            # NOTE: Read before data_version: a commit in between changes it
            #   for the next ask. Unchanged, it is the same version, asked of
            #   memory (see asgilook.storage.index.wal).
            header = None if self._seen_version is None else self._wal.read()
            if header is not None and header == self._seen_header:
                if key in self._known:
                    self._known.move_to_end(key)
                    return self._known[key]
            # NOTE: data_version changes whenever another connection, of
            #   this process or any other, has committed: until it does,
            #   what was read stays true, and costs no query.
            (version,) = self._fast.execute('PRAGMA data_version').fetchone()
            self._seen_header = header
            if version != self._seen_version:
                self._known.clear()
                self._seen_version = version
            elif key in self._known:
                self._known.move_to_end(key)
                return self._known[key]
            row = self._fast.execute(query, args).fetchone()
        except sqlite3.Error as ex:
            raise Behind from ex
        finally:
            self._fast_lock.release()
        answer = None if row is None else row[0] if len(row) == 1 else _entry(row)
        self._known[key] = answer
        if len(self._known) > self.KNOWN:
            self._known.popitem(last=False)
        return answer

    def peek(self, image_id: str) -> Entry | None:
        entry: Entry | None = self._quick(
            image_id, f'SELECT {_COLUMNS} FROM images WHERE id = ?', (image_id,)
        )
        return entry

    def state(self) -> object:
        # NOTE: The key is no image id: those are UUIDs.
        return self._quick(' clock', 'SELECT clock FROM counters', ())

    # Reading

    async def get(self, image_id: str) -> Entry | None:
        return await self._run(self._get, image_id)

    @staticmethod
    def _get(connection: sqlite3.Connection, image_id: str) -> Entry | None:
        row = connection.execute(
            f'SELECT {_COLUMNS} FROM images WHERE id = ?', (image_id,)
        ).fetchone()
        return None if row is None else _entry(row)

    async def page(
        self,
        limit: int | None = None,
        after: str | None = None,
        newest_first: bool = False,
        *,
        owner: str | None = None,
        everyone: bool = False,
    ) -> tuple[list[Entry], object]:
        return await self._run(self._page, limit, after, newest_first, owner, everyone)

    def _page(
        self,
        connection: sqlite3.Connection,
        limit: int | None,
        after: str | None,
        newest_first: bool,
        owner: str | None,
        everyone: bool,
    ) -> tuple[list[Entry], object]:
        # NOTE: One read transaction: the page and its state are one snapshot.
        with self._transaction(connection, 'DEFERRED'):
            (state,) = connection.execute('SELECT clock FROM counters').fetchone()
            if after is None:
                position = -1 if not newest_first else 2**63 - 1
            else:
                found = connection.execute(
                    'SELECT seq FROM images WHERE id = ? '
                    'UNION ALL SELECT seq FROM tombstones WHERE id = ?',
                    (after, after),
                ).fetchone()
                if found is None:
                    raise UnknownCursor(
                        f'There is no image {after} to list after; start again '
                        'without "after".'
                    )
                (position,) = found
            rows = connection.execute(
                page_query(owner, everyone, newest_first),
                (*([] if owner is None else [owner]), position,
                 -1 if limit is None else limit),
            ).fetchall()  # fmt: skip
        return [_entry(row) for row in rows], state

    async def count(self) -> int:
        return await self._run(self._count)

    @staticmethod
    def _count(connection: sqlite3.Connection) -> int:
        (images,) = connection.execute('SELECT images FROM counters').fetchone()
        return int(images)

    async def files(self) -> set[str]:
        return await self._run(self._files)

    @staticmethod
    def _files(connection: sqlite3.Connection) -> set[str]:
        return {file for (file,) in connection.execute('SELECT file FROM images')}

    async def deployment(self) -> str:
        return await self._run(self._deployment)

    @staticmethod
    def _deployment(connection: sqlite3.Connection) -> str:
        (deployment,) = connection.execute('SELECT id FROM deployment').fetchone()
        return str(deployment)

    # Changing

    @staticmethod
    def _tick(connection: sqlite3.Connection, change: int, at: int = 0) -> int:
        """Move the clock on, and the count by ``change``; return the new time.

        NOTE: Taken inside the writer's transaction and never behind the
        newest change, so times follow the upload order even if the system
        clock steps back.
        """
        (clock,) = connection.execute('SELECT clock FROM counters').fetchone()
        clock = max(clock + 1, at or _now())
        connection.execute(
            'UPDATE counters SET clock = ?, images = images + ?', (clock, change)
        )
        return int(clock)

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
        """Record a version; it is on disk when this returns.

        NOTE: Puts that come while another is being written wait and are
        written together, in the order they came, in one transaction: one
        turn, one sync, one thread for all. A put in a thread of its own
        spent more on the hops, the turn and the commit than on its rows,
        and the turn was held while its thread waited for the interpreter.
        """
        entry = Entry(image_id, file, size, 0, token_hash, placeholder, animated,
                      name, visibility, owner, bytes, original)  # fmt: skip
        done: concurrent.futures.Future[tuple[Entry, Entry | None]]
        done = concurrent.futures.Future()
        with self._queue_lock:
            self._queued.append((entry, done))
            idle, self._writing = not self._writing, True
            if self._writer is None:
                self._writer = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix='asgilook-index'
                )
            if idle:
                self._writer.submit(self._write_queued)
        return await asyncio.wrap_future(done)

    def _write_queued(self) -> None:
        """Write what is queued, a batch at a time, until nothing is."""
        while True:
            with self._queue_lock:
                batch = self._queued[: self.BATCH]
                del self._queued[: self.BATCH]
                if not batch:
                    self._writing = False
                    return
            # NOTE: A put given up before its batch began is not written.
            batch = [
                (e, done) for e, done in batch if done.set_running_or_notify_cancel()
            ]
            if not batch:
                continue
            try:
                with self._borrowed() as connection:
                    written = self._put_all(connection, [entry for entry, _ in batch])
            except Exception as ex:  # Each put of the batch is told.
                error = _error(ex) if isinstance(ex, sqlite3.Error) else ex
                for _, done in batch:
                    done.set_exception(error)
            else:
                for (_, done), result in zip(batch, written, strict=True):
                    if isinstance(result, QuotaExceeded):
                        done.set_exception(result)
                    else:
                        done.set_result(result)

    def _put_all(
        self, connection: sqlite3.Connection, entries: list[Entry]
    ) -> list[tuple[Entry, Entry | None] | QuotaExceeded]:
        """Write ``entries`` in order in one transaction: each, and what it
        replaced; or why it was refused, and it alone is not written."""
        written: list[tuple[Entry, Entry | None] | QuotaExceeded] = []
        with self._turn(), self._transaction(connection):
            (clock,) = connection.execute('SELECT clock FROM counters').fetchone()
            added = 0
            for entry in entries:
                refused = sqlite_keys.refused(connection, entry)
                if refused is not None:
                    written.append(refused)
                    continue
                row = connection.execute(
                    f'DELETE FROM images WHERE id = ? RETURNING {_COLUMNS}',
                    (entry.image_id,),
                ).fetchone()
                replaced = None if row is None else _entry(row)
                added += replaced is None
                # NOTE: Never behind the newest change, so that times follow
                #   the upload order even if the system clock steps back.
                clock = max(clock + 1, _now())
                entry = dataclasses.replace(entry, modified=clock)
                insert(connection, entry)
                connection.execute(
                    'DELETE FROM tombstones WHERE id = ?', (entry.image_id,)
                )
                written.append((entry, replaced))
            connection.execute(
                'UPDATE counters SET clock = ?, images = images + ?', (clock, added)
            )
        return written

    async def delete(self, image_id: str, allowed: Callable[[Entry], bool]) -> Entry:
        return await self._run(self._delete, image_id, allowed)

    def _delete(
        self,
        connection: sqlite3.Connection,
        image_id: str,
        allowed: Callable[[Entry], bool],
    ) -> Entry:
        with self._turn(), self._transaction(connection):
            row = connection.execute(
                f'SELECT seq, {_COLUMNS} FROM images WHERE id = ?', (image_id,)
            ).fetchone()
            if row is None:
                raise not_found(image_id)
            seq, entry = row[0], _entry(row[1:])
            if not allowed(entry):
                raise forbidden()
            connection.execute('DELETE FROM images WHERE id = ?', (image_id,))
            now = self._tick(connection, -1)
            connection.execute(
                'INSERT OR REPLACE INTO tombstones VALUES (?, ?, ?)',
                (image_id, seq, now),
            )
            connection.execute(
                'DELETE FROM tombstones WHERE deleted < ?',
                (now - TOMBSTONE_MICROSECONDS,),
            )
        return entry

    async def adopt(self, source: str, entries: Sequence[Entry]) -> bool:
        return await self._run(self._adopt, source, entries)

    def _adopt(
        self, connection: sqlite3.Connection, source: str, entries: Sequence[Entry]
    ) -> bool:
        with self._turn(), self._transaction(connection):
            done = connection.execute(
                'SELECT 1 FROM adopted WHERE source = ?', (source,)
            ).fetchone()
            if done:
                return False
            added = [
                entry
                for entry in entries
                if self._get(connection, entry.image_id) is None
            ]
            for entry in added:
                insert(connection, entry)
            newest = max((entry.modified for entry in added), default=0)
            self._tick(connection, len(added), newest)
            connection.execute('INSERT INTO adopted VALUES (?)', (source,))
        return True

    # Upload keys, and the secret of signed URLs

    async def add_key(self, key: UploadKey) -> UploadKey:
        return await self._run(self._changed, sqlite_keys.add, key, _now())

    async def keys(self) -> list[UploadKey]:
        return await self._run(sqlite_keys.every)

    async def key_by_hash(self, key_hash: str) -> UploadKey | None:
        return await self._run(sqlite_keys.by_hash, key_hash)

    async def revoke_key(self, name: str) -> UploadKey | None:
        return await self._run(self._changed, sqlite_keys.revoke, name, _now())

    async def url_secret(self) -> bytes:
        if self._secret is None:
            self._secret = await self._run(sqlite_keys.secret)
        return self._secret

    async def set_url_secret(self, secret: bytes) -> None:
        await self._run(self._changed, sqlite_keys.set_secret, secret)
        self._secret = secret

    def _changed(
        self, connection: sqlite3.Connection, change: Callable[..., T], *args: Any
    ) -> T:
        """``change(connection, *args)``, in a writer's turn and a transaction."""
        with self._turn(), self._transaction(connection):
            return change(connection, *args)
