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
from asgilook.storage.index import Entry
from asgilook.storage.index.postgres.connections import _Binding
from asgilook.storage.index.postgres.connections import _PooledIndex
from asgilook.storage.index.postgres.queries import _PUT
from asgilook.storage.index.postgres.queries import _entry


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
    ) -> tuple[Entry, Entry | None]:
        """Record a version; it is committed when this returns.

        NOTE: Puts that come while another is being written wait and are
        written together, in the order they came, in one transaction: the
        counters row is taken once for all of them, and the round trips
        made while it is held are the same for one or for many.
        """
        binding = self._bind()
        entry = Entry(image_id, file, size, 0, token_hash, placeholder, animated)
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
                    if not done.done():
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

    async def _put_all(self, entries: list[Entry]) -> list[tuple[Entry, Entry | None]]:
        """Write ``entries`` (no id twice) in order in one transaction.

        Returns each as written, and the version it replaced.
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
            )
        *taken, last = rows
        replaced = {row['id']: _entry(row) for row in taken}
        first = last['modified'] - len(entries) + 1
        return [
            (
                dataclasses.replace(entry, modified=first + number),
                replaced.get(entry.image_id),
            )
            for number, entry in enumerate(entries)
        ]
