"""Puts to the index in PostgreSQL, written a batch at a time.

Puts that come while another is being written wait in the event loop's
:class:`~asgilook.storage.index.postgres.connections._Binding`, and are
written together, in the order they came, in one call of the session's
``pg_temp.asgilook_put`` (see :mod:`asgilook.storage.index.postgres.queries`):
the counters row is taken once for all of them, and the round trips made
while it is held are the same for one or for many.
"""

from __future__ import annotations

import asyncio
import dataclasses

from asgilook.pictures import Size
from asgilook.storage.index import PUBLIC
from asgilook.storage.index import Entry
from asgilook.storage.index import QuotaExceeded
from asgilook.storage.index import UploadKey
from asgilook.storage.index.postgres.connections import _Binding
from asgilook.storage.index.postgres.connections import _PooledIndex
from asgilook.storage.index.postgres.queries import _KEY_BY_NAME
from asgilook.storage.index.postgres.queries import _PUT
from asgilook.storage.index.postgres.queries import _entry
from asgilook.storage.index.postgres.queries import _key


class _BatchingIndex(_PooledIndex):
    """The writer of a :class:`PostgresIndex`: its puts, in batches."""

    #: Puts written in one transaction, at most (see :meth:`put`).
    BATCH = 64

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
        """Record a version; it is committed when this returns.

        NOTE: Puts that come while another is being written wait and are
        written together, in the order they came, in one transaction: the
        counters row is taken once for all of them, and the round trips
        made while it is held are the same for one or for many.
        """
        binding = self._bind()
        entry = Entry(image_id, file, size, 0, token_hash, placeholder, animated,
                      name, visibility, owner, bytes, original)  # fmt: skip
        done: asyncio.Future[tuple[Entry, Entry | None]] = binding.loop.create_future()
        binding.queued.append((entry, done))
        if binding.writer is None:
            binding.writer = binding.loop.create_task(self._write_queued(binding))
        return await done

    async def _write_queued(self, binding: _Binding) -> None:
        """Write what ``binding`` has queued, a batch at a time, until nothing is."""
        try:
            while binding.queued:
                batch = self._next_batch(binding)
                if not batch:
                    continue
                try:
                    written = await self._put_all([entry for entry, _ in batch])
                except asyncio.CancelledError:
                    for _, done in batch:
                        done.cancel()
                    raise
                except Exception as ex:  # Each put of the batch is told.
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(ex)
                    continue
                for (_, done), result in zip(batch, written, strict=True):
                    if done.done():
                        continue
                    if isinstance(result, QuotaExceeded):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
        finally:
            # NOTE: Cancelled (the loop is closing): so is whatever waits.
            binding.writer = None
            while binding.queued:
                binding.queued.popleft()[1].cancel()

    def _next_batch(
        self, binding: _Binding
    ) -> list[tuple[Entry, asyncio.Future[tuple[Entry, Entry | None]]]]:
        """The next puts to write together: up to ``BATCH``, no id twice.

        A put given up before its batch begins is not written.
        """
        batch: list[tuple[Entry, asyncio.Future[tuple[Entry, Entry | None]]]] = []
        ids: set[str] = set()
        queued = binding.queued
        while queued and len(batch) < self.BATCH and queued[0][0].image_id not in ids:
            entry, done = queued.popleft()
            if not done.cancelled():
                batch.append((entry, done))
                ids.add(entry.image_id)
        return batch

    async def _put_all(
        self, entries: list[Entry]
    ) -> list[tuple[Entry, Entry | None] | QuotaExceeded]:
        """Write ``entries`` (no id twice) in order in one transaction.

        Returns each as written, and the version it replaced; or why it was
        refused (then it alone was not written).
        """
        ids = [entry.image_id for entry in entries]
        async with self._changing(ids, transaction=False) as connection:
            rows = await connection.fetch(
                _PUT,
                ids,
                [entry.file for entry in entries],
                [entry.size[0] for entry in entries],
                [entry.size[1] for entry in entries],
                [entry.token_hash for entry in entries],
                [entry.placeholder for entry in entries],
                [entry.animated for entry in entries],
                [entry.name for entry in entries],
                [entry.visibility for entry in entries],
                [entry.owner for entry in entries],
                [entry.bytes for entry in entries],
                [entry.original for entry in entries],
            )
            # NOTE: Only for a put refused, a read after the change.
            refused: dict[str, tuple[UploadKey, int]] = {}
            for row in rows:
                if row['refused']:
                    key = await connection.fetchrow(_KEY_BY_NAME, row['owner'])
                    refused[row['id']] = (_key(key), row['bytes'])
        replaced = {row['id']: _entry(row) for row in rows if row['refused'] is False}
        newest = next((row['modified'] for row in rows if row['id'] is None), 0)
        time = newest - (len(entries) - len(refused))
        written: list[tuple[Entry, Entry | None] | QuotaExceeded] = []
        for entry in entries:
            if entry.image_id in refused:
                key, used = refused[entry.image_id]
                written.append(QuotaExceeded(key, used, entry.bytes))
                continue
            time += 1
            written.append(
                (
                    dataclasses.replace(entry, modified=time),
                    replaced.get(entry.image_id),
                )
            )
        return written
