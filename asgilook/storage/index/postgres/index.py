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

import asyncpg

from asgilook.errors import UnknownCursor
from asgilook.storage.index import Entry
from asgilook.storage.index import KeyExists
from asgilook.storage.index import UploadKey
from asgilook.storage.index import forbidden
from asgilook.storage.index import not_found
from asgilook.storage.index.postgres.listener import _ListeningIndex
from asgilook.storage.index.postgres.queries import _ADD_KEY
from asgilook.storage.index.postgres.queries import _ADOPT
from asgilook.storage.index.postgres.queries import _ADOPT_ONCE
from asgilook.storage.index.postgres.queries import _ADOPTED
from asgilook.storage.index.postgres.queries import _BURY
from asgilook.storage.index.postgres.queries import _FIND_FOR_DELETE
from asgilook.storage.index.postgres.queries import _GET
from asgilook.storage.index.postgres.queries import _KEY_BY_HASH
from asgilook.storage.index.postgres.queries import _KEYS
from asgilook.storage.index.postgres.queries import _PAGE
from asgilook.storage.index.postgres.queries import _PAGE_NEWEST_FIRST
from asgilook.storage.index.postgres.queries import _PAGE_OF_EVERYONE
from asgilook.storage.index.postgres.queries import _PAGE_OF_EVERYONE_NEWEST_FIRST
from asgilook.storage.index.postgres.queries import _PAGE_OF_OWNER
from asgilook.storage.index.postgres.queries import _PAGE_OF_OWNER_NEWEST_FIRST
from asgilook.storage.index.postgres.queries import _REVOKE_KEY
from asgilook.storage.index.postgres.queries import _SET_URL_SECRET
from asgilook.storage.index.postgres.queries import _TICK
from asgilook.storage.index.postgres.queries import _URL_SECRET
from asgilook.storage.index.postgres.queries import TOMBSTONE_MICROSECONDS
from asgilook.storage.index.postgres.queries import _entry
from asgilook.storage.index.postgres.queries import _key
from asgilook.storage.index.postgres.writer import _BatchingIndex


class PostgresIndex(_ListeningIndex, _BatchingIndex):
    """The index in the PostgreSQL database at ``url``.

    Its settings are class attributes, of the part each is for:
    ``POOL_SIZE``, ``CONNECT_TIMEOUT``, ``TIMEOUT`` and ``IDLE_IN_TRANSACTION``
    (the connections); ``KNOWN``, ``PING_INTERVAL``, ``PING_TIMEOUT``,
    ``RETRY_FIRST`` and ``RETRY_MAX`` (the listener); ``BATCH`` (the writer).
    """

    KIND = 'postgresql'

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # The URL secret, once read: it is made with the index, for good.
        self._secret: bytes | None = None

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
        *,
        owner: str | None = None,
        everyone: bool = False,
    ) -> tuple[list[Entry], object]:
        if owner is not None:
            query = _PAGE_OF_OWNER_NEWEST_FIRST if newest_first else _PAGE_OF_OWNER
            arguments: tuple[str | int | None, ...] = (after, limit, owner)
        else:
            if everyone:
                query = (
                    _PAGE_OF_EVERYONE_NEWEST_FIRST
                    if newest_first
                    else _PAGE_OF_EVERYONE
                )
            else:
                query = _PAGE_NEWEST_FIRST if newest_first else _PAGE
            arguments = (after, limit)
        async with self._connection() as connection:
            before = self._version()
            rows = await connection.fetch(query, *arguments)
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
                [entry.name for entry in entries],
                [entry.visibility for entry in entries],
                [entry.owner for entry in entries],
                [entry.bytes for entry in entries],
                [entry.original for entry in entries],
            )
            # NOTE: As a put would, the clock moves on to the newest image.
            newest = max((row['modified'] for row in added), default=0)
            await connection.execute(
                _ADOPTED, [row['id'] for row in added], len(added), newest
            )
        return True

    # Upload keys, and the secret of signed URLs

    async def add_key(self, key: UploadKey) -> UploadKey:
        async with self._connection() as connection, connection.transaction():
            # NOTE: The counters row first, as every change takes it; then
            #   no put of this owner commits between the count of its
            #   bytes (the insert's snapshot, taken after) and the new row.
            await connection.execute('SELECT FROM counters FOR UPDATE')
            try:
                row = await connection.fetchrow(
                    _ADD_KEY, key.name, key.key_hash, key.quota, key.rate,
                    key.admin, key.created, key.revoked,
                )  # fmt: skip
            except asyncpg.UniqueViolationError as ex:
                raise KeyExists(
                    f'There is a key named {key.name} already (or one with that '
                    'secret): names are never used twice, even once revoked.'
                ) from ex
        return _key(row)

    async def keys(self) -> list[UploadKey]:
        async with self._connection() as connection:
            rows = await connection.fetch(_KEYS)
        return [_key(row) for row in rows]

    async def key_by_hash(self, key_hash: str) -> UploadKey | None:
        async with self._connection() as connection:
            row = await connection.fetchrow(_KEY_BY_HASH, key_hash)
        return None if row is None else _key(row)

    async def revoke_key(self, name: str) -> UploadKey | None:
        async with self._connection() as connection:
            row = await connection.fetchrow(_REVOKE_KEY, name)
        return None if row is None else _key(row)

    async def url_secret(self) -> bytes:
        if self._secret is None:
            async with self._connection() as connection:
                self._secret = bytes(await connection.fetchval(_URL_SECRET))
        return self._secret

    async def set_url_secret(self, secret: bytes) -> None:
        async with self._connection() as connection:
            await connection.execute(_SET_URL_SECRET, secret)
        self._secret = secret
