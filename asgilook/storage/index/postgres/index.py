"""The index in PostgreSQL itself: reading it, and changing it.

:class:`PostgresIndex` puts its parts together: the connections
(:mod:`~asgilook.storage.index.postgres.connections`), the listener and the
fast path (:mod:`~asgilook.storage.index.postgres.listener`), and the writer
of puts (:mod:`~asgilook.storage.index.postgres.writer`). What is left here is
the rest of :class:`~asgilook.storage.index.Index`: lookups, pages, counts,
deletions and adoptions, each one statement or one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence

from asgilook.errors import UnknownCursor
from asgilook.storage.index import Entry
from asgilook.storage.index import forbidden
from asgilook.storage.index import not_found
from asgilook.storage.index.postgres.listener import _ListeningIndex
from asgilook.storage.index.postgres.queries import _ADOPT
from asgilook.storage.index.postgres.queries import _ADOPT_ONCE
from asgilook.storage.index.postgres.queries import _ADOPTED
from asgilook.storage.index.postgres.queries import _BURY
from asgilook.storage.index.postgres.queries import _FIND_FOR_DELETE
from asgilook.storage.index.postgres.queries import _GET
from asgilook.storage.index.postgres.queries import _PAGE
from asgilook.storage.index.postgres.queries import _PAGE_NEWEST_FIRST
from asgilook.storage.index.postgres.queries import _TICK
from asgilook.storage.index.postgres.queries import TOMBSTONE_MICROSECONDS
from asgilook.storage.index.postgres.queries import _entry
from asgilook.storage.index.postgres.writer import _BatchingIndex


class PostgresIndex(_ListeningIndex, _BatchingIndex):
    """The index in the PostgreSQL database at ``url``.

    Its settings are class attributes, of the part each is for:
    ``POOL_SIZE``, ``CONNECT_TIMEOUT``, ``TIMEOUT`` and ``IDLE_IN_TRANSACTION``
    (the connections); ``KNOWN``, ``PING_INTERVAL``, ``PING_TIMEOUT``,
    ``RETRY_FIRST`` and ``RETRY_MAX`` (the listener); ``BATCH`` (the writer).
    """

    KIND = 'postgresql'

    # Reading

    async def get(self, image_id: str) -> Entry | None:
        async with self._connection() as connection:
            # NOTE: Read before the query: if nothing was heard meanwhile,
            #   the answer is still true once it arrives (a change it missed
            #   would have been heard first), and the fast path may keep it.
            before = self._version()
            row = await connection.fetchrow(_GET, image_id)
        entry = None if row is None else _entry(row)
        self._remember(image_id, entry, before)
        return entry

    async def page(
        self,
        limit: int | None = None,
        after: str | None = None,
        newest_first: bool = False,
    ) -> tuple[list[Entry], object]:
        async with self._connection() as connection:
            before = self._version()
            rows = await connection.fetch(
                _PAGE_NEWEST_FIRST if newest_first else _PAGE, after, limit
            )
        if rows[0]['cursor'] is None:
            raise UnknownCursor(
                f'There is no image {after} to list after; start again without "after".'
            )
        entries = [_entry(row) for row in rows if row['id'] is not None]
        return entries, object() if before is None else before

    async def count(self) -> int:
        async with self._connection() as connection:
            images: int = await connection.fetchval('SELECT images FROM counters')
        return images

    async def files(self) -> set[str]:
        async with self._connection() as connection:
            rows = await connection.fetch('SELECT file FROM images')
        return {row['file'] for row in rows}

    async def deployment(self) -> str:
        async with self._connection() as connection:
            deployment: str = await connection.fetchval('SELECT id FROM deployment')
        return deployment

    # Changing

    async def delete(self, image_id: str, allowed: Callable[[Entry], bool]) -> Entry:
        async with self._changing([image_id]) as connection:
            deleted = await connection.fetchval(_TICK, image_id)
            row = await connection.fetchrow(_FIND_FOR_DELETE, image_id)
            if row is None:
                raise not_found(image_id)
            entry = _entry(row)
            if not allowed(entry):
                raise forbidden()
            await connection.execute(
                _BURY, image_id, row['seq'], deleted, deleted - TOMBSTONE_MICROSECONDS
            )
        return entry

    async def adopt(self, source: str, entries: Sequence[Entry]) -> bool:
        # NOTE: A source adopted before is a change for nothing: once per
        #   process at most (the store adopts when it opens).
        async with self._changing(None) as connection:
            await connection.execute('SELECT FROM counters FOR UPDATE')
            if not await connection.fetchval(_ADOPT_ONCE, source):
                return False
            added = await connection.fetch(
                _ADOPT,
                [entry.image_id for entry in entries],
                [entry.file for entry in entries],
                [entry.size[0] for entry in entries],
                [entry.size[1] for entry in entries],
                [entry.modified for entry in entries],
                [entry.token_hash for entry in entries],
                [entry.placeholder for entry in entries],
                [entry.animated for entry in entries],
            )
            # NOTE: As a put would, the clock moves on to the newest image.
            newest = max((row['modified'] for row in added), default=0)
            await connection.execute(
                _ADOPTED, [row['id'] for row in added], len(added), newest
            )
        return True
