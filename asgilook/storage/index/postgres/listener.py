"""The fast path of the index in PostgreSQL: LISTEN, and what it vouches for.

Every change notifies the :data:`~asgilook.storage.index.postgres.queries.CHANNEL`
once it has committed. Each index keeps one connection of its own (named
:data:`LISTENER_NAME`) that LISTENs on it, pinged now and then, and
reconnecting by itself whenever it is cut off or goes silent. While it hears,
:meth:`_ListeningIndex.peek` and :meth:`_ListeningIndex.state` answer in the
event loop from what :meth:`PostgresIndex.get` found lately; while it does
not, they say :class:`~asgilook.storage.index.Behind`, and nothing is kept.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from asgilook.storage.index import Behind
from asgilook.storage.index import Entry
from asgilook.storage.index.postgres.connections import _Binding
from asgilook.storage.index.postgres.connections import _PooledIndex
from asgilook.storage.index.postgres.queries import CHANNEL

logger = logging.getLogger(__name__)

#: The listener connection's ``application_name``, as ``pg_stat_activity``
#: shows it.
LISTENER_NAME = 'asgilook-notifications'


class _ListeningIndex(_PooledIndex):
    """The listener of a :class:`PostgresIndex`, and the fast path it keeps."""

    #: Images whose entries the fast path remembers, at most.
    KNOWN = 10_000
    #: Seconds between checks that the listener's connection still answers,
    #: and how long it has to answer: a connection that went silent (a
    #: network partition, a frozen server) says nothing by itself.
    PING_INTERVAL = 5.0
    PING_TIMEOUT = 5.0
    #: Seconds before reconnecting the listener: the first, and at most.
    RETRY_FIRST = 0.05
    RETRY_MAX = 1.0

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # The fast path: whether the listener hears the changes, its
        # connection's number, the changes heard, and the entries known.
        self._listening = False
        self._epoch = 0
        self._changes = 0
        self._known: collections.OrderedDict[str, Entry | None] = (
            collections.OrderedDict()
        )

    async def _listen(self, binding: _Binding) -> None:
        """Hear every change from PostgreSQL, reconnecting whenever cut off."""
        pause = self.RETRY_FIRST
        lost_before = False
        while True:
            try:
                connection = await asyncpg.connect(
                    self.url, **self._connect_options(LISTENER_NAME)
                )
            # NOTE: Whatever went wrong, the fast path is off until this
            #   works; the requests meanwhile ask the database, and say if
            #   it cannot be reached.
            except Exception:
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.RETRY_MAX)
                continue
            pause = self.RETRY_FIRST
            lost = asyncio.Event()

            def on_termination(_: Any, lost: asyncio.Event = lost) -> None:
                self._deaf(binding)
                lost.set()

            connection.add_termination_listener(on_termination)
            try:
                await connection.add_listener(
                    CHANNEL, functools.partial(self._notified, binding)
                )
                # NOTE: Only now: a change that committed before the LISTEN
                #   was not heard, but nothing was remembered before it either.
                self._epoch += 1
                self._listening = True
                if lost_before:
                    logger.warning(
                        'The image index hears the change notifications from '
                        'PostgreSQL again.'
                    )
                while not lost.is_set():
                    # NOTE: asyncio.timeout, not wait_for: before Python
                    #   3.12, wait_for may swallow a cancellation that comes
                    #   as the wait ends, and close() would wait for good.
                    try:
                        async with asyncio.timeout(self.PING_INTERVAL):
                            await lost.wait()
                    except TimeoutError:
                        await connection.execute('SELECT 1', timeout=self.PING_TIMEOUT)
            except Exception:
                pass  # NOTE: Cut off, or silent: either way, connect again.
            finally:
                self._deaf(binding)
                connection.terminate()
            logger.warning(
                'The image index lost its connection for change notifications '
                'from PostgreSQL; reconnecting. Until then, every request asks '
                'the database.'
            )
            lost_before = True
            await asyncio.sleep(pause)

    def _deaf(self, binding: _Binding | None) -> None:
        """The listener of ``binding`` stopped hearing: forget what it vouched for.

        NOTE: Only if ``binding`` is still this index's: an abandoned one may
        still be winding down in its own loop.
        """
        if binding is self._binding:
            self._forget()

    def _forget(self) -> None:
        self._listening = False
        self._known.clear()

    def _notified(
        self, binding: _Binding, connection: Any, pid: int, channel: str, payload: str
    ) -> None:
        # NOTE: An abandoned binding's listener may still hear a change, as
        #   its loop winds it down: the current one vouches for what is known.
        if binding is self._binding and pid not in binding.own:
            self._changed(payload or None)

    def _changed(self, image_id: str | None) -> None:
        """Something changed: one image, or (None) any number of them."""
        self._changes += 1
        if image_id is None:
            self._known.clear()
        else:
            self._known.pop(image_id, None)

    def _changed_all(self, image_ids: Sequence[str] | None) -> None:
        for image_id in [None] if image_ids is None else image_ids:
            self._changed(image_id)

    def _version(self) -> tuple[int, int] | None:
        """The fast path's version of the index, or None while it is deaf."""
        return (self._epoch, self._changes) if self._listening else None

    def peek(self, image_id: str) -> Entry | None:
        if not self._listening or image_id not in self._known:
            raise Behind
        self._known.move_to_end(image_id)
        return self._known[image_id]

    def state(self) -> object:
        version = self._version()
        if version is None:
            raise Behind
        return version

    def _remember(
        self, image_id: str, entry: Entry | None, before: tuple[int, int] | None
    ) -> None:
        """Keep what :meth:`get` found, unless a change was heard meanwhile.

        ``before`` is the :meth:`_version` read before its query; the oldest
        entry known goes once there are more than ``KNOWN``.
        """
        if before is not None and self._version() == before:
            self._known[image_id] = entry
            self._known.move_to_end(image_id)
            if len(self._known) > self.KNOWN:
                self._known.popitem(last=False)
