"""The connections of the index in PostgreSQL: a pool per event loop.

Each event loop that uses an index gets a :class:`_Binding` of its own: a
pool of a few connections, opened when first needed, and the task of the
listener (see :mod:`asgilook.storage.index.postgres.listener`). Every use of
a connection has a time limit that really ends it, and a database that
cannot be reached, or does not answer in time, is
:class:`~asgilook.errors.StorageUnavailable`.

:class:`_PooledIndex` is what the rest of :class:`PostgresIndex` stands on:
it makes the pool (and the schema, on first use), lends connections, and
counts a change once it is made.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from collections.abc import Sequence
from typing import Any

import asyncpg

from asgilook.errors import StorageUnavailable
from asgilook.storage.index import Entry
from asgilook.storage.index import Index
from asgilook.storage.index import redacted_database
from asgilook.storage.index.postgres.queries import _PUT_FUNCTION
from asgilook.storage.index.postgres.schema import create_schema

# NOTE: What a database that is down, restarting, hung or overwhelmed makes
#   asyncpg raise: socket errors and time limits (TimeoutError is an OSError),
#   lost connections (08xxx), asyncpg's own "connection is closed" and "pool
#   is closing", shutdowns and cancelled statements (57xxx: admin shutdown,
#   cannot connect now, statement timeout), and too many connections (53xxx).
#   And asyncpg's InternalClientError: a server that ends a session while it
#   is idle in a transaction (a crash, a shutdown) sends an error that asyncpg
#   does not expect then, and the next statement on that connection raises
#   this, before the connection is seen to be closed.
UNREACHABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.InternalClientError,
)


def _unreachable() -> StorageUnavailable:
    return StorageUnavailable(
        'The image index cannot be reached right now; try again later.'
    )


def _cut(connection: Any) -> None:
    """Close a connection of the pool at once, unless it is closed already.

    NOTE: asyncpg gives a connection back to the pool as soon as it sees it
    closed; then it may not be touched any more.
    """
    with contextlib.suppress(asyncpg.InterfaceError):
        connection.terminate()


async def _no_reset(connection: Any) -> None:
    """Nothing to undo when a connection goes back to the pool.

    NOTE: asyncpg's default reset (RESET ALL, UNLISTEN *, ...) is one more
    round trip per use, for session state that this module never changes.
    An open transaction is still rolled back by asyncpg itself.
    """


class _Binding:
    """What an index has in one event loop: its pool, and its listener task."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pool: Any = None
        self.listener: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()
        self.prepared = False
        #: The backends of the pool's connections, by pid.
        self.own: set[int] = set()
        #: Puts waiting to be written, and the task that writes them.
        self.queued: collections.deque[
            tuple[Entry, asyncio.Future[tuple[Entry, Entry | None]]]
        ] = collections.deque()
        self.writer: asyncio.Task[None] | None = None

    async def ready_connection(self, connection: Any) -> None:
        """Ready a new connection of the pool: what it changes, the index knows.

        NOTE: A change notifies every listener, the index's own too, a moment
        after its method returned: the index counts its own changes at once
        (see :meth:`PostgresIndex._changing`), and counting their echoes too
        would make it forget what it learnt since, for nothing. The backend's
        pid tells an echo, for as long as that backend lives.

        The session also gets the function that writes puts (``_PUT_FUNCTION``).
        """
        pid: int = connection.get_server_pid()
        self.own.add(pid)
        connection.add_termination_listener(lambda _: self.own.discard(pid))
        await connection.execute(_PUT_FUNCTION)

    def abandon(self) -> None:
        """Let go of the pool and the listener, as well as can be from elsewhere.

        NOTE: Their loop is not running, and may be closed: whatever cannot
        be done there any more is left undone.
        """
        assert self.listener is not None
        with contextlib.suppress(RuntimeError):
            self.listener.cancel()
        with contextlib.suppress(RuntimeError, asyncpg.InterfaceError):
            self.pool.terminate()

    async def close(self, timeout: float) -> None:
        assert self.listener is not None
        self.listener.cancel()
        await asyncio.wait([self.listener])
        if self.writer is not None:
            # NOTE: What was queued is written first, as a request that was
            #   answered expects.
            await asyncio.wait([self.writer], timeout=timeout)
        # NOTE: Gracefully, for the connections that are idle; a pool that
        #   takes too long is terminated by asyncpg when its close() is
        #   cancelled. A pool never used was never initialized: nothing to do.
        with contextlib.suppress(TimeoutError, asyncpg.InterfaceError):
            async with asyncio.timeout(timeout):
                await self.pool.close()


class _PooledIndex(Index):
    """The connections of a :class:`PostgresIndex`, in each event loop."""

    #: Connections per event loop (so per process) at most, besides the
    #: listener's.
    POOL_SIZE = 4
    #: Seconds to open a connection.
    CONNECT_TIMEOUT = 5.0
    #: Seconds any one use of the database may take, from the moment it has
    #: a connection; then the connection is cut.
    TIMEOUT = 10.0
    #: Seconds a session may sit in a transaction without a statement (a
    #: writer that froze must not keep the counters row locked for long).
    IDLE_IN_TRANSACTION = 5.0

    def __init__(self, url: str) -> None:
        self.url = url
        self.location = redacted_database(url)
        self._binding: _Binding | None = None
        self._schema_ready = False

    def _connect_options(self, name: str = 'asgilook') -> dict[str, Any]:
        """How every connection is made; ``name`` is what the server shows."""
        return {
            'timeout': self.CONNECT_TIMEOUT,
            'command_timeout': self.TIMEOUT,
            'server_settings': {
                'application_name': name,
                # NOTE: Also ended by the server: a statement of a client
                #   that gave up (its connection cut) may be waiting for the
                #   counters row, and a server notices a gone client late.
                'statement_timeout': f'{int(self.TIMEOUT * 1000)}',
                'idle_in_transaction_session_timeout': (
                    f'{int(self.IDLE_IN_TRANSACTION * 1000)}'
                ),
                # NOTE: Compiling a plan costs more than any of these queries.
                'jit': 'off',
            },
        }

    def _bind(self) -> _Binding:
        """This loop's pool and listener, made if this loop has none yet."""
        loop = asyncio.get_running_loop()
        binding = self._binding
        if binding is None or binding.loop is not loop:
            if binding is not None:
                binding.abandon()
            self._forget()
            binding = self._binding = _Binding(loop)
            binding.pool = asyncpg.create_pool(
                self.url,
                min_size=0,
                max_size=self.POOL_SIZE,
                init=binding.ready_connection,
                reset=_no_reset,
                **self._connect_options(),
            )
            binding.listener = loop.create_task(self._listen(binding))
        return binding

    async def _pool(self) -> Any:
        """This loop's pool, ready, and the schema, created if need be."""
        binding = self._bind()
        if not binding.prepared:
            async with binding.lock:
                await self._prepare(binding)
        return binding.pool

    async def _prepare(self, binding: _Binding) -> None:
        if binding.prepared:
            return  # by another request, while this one waited for the lock
        # NOTE: With no connections to open at first (min_size 0), this does
        #   no I/O: it cannot fail.
        await binding.pool
        if not self._schema_ready:
            async with binding.pool.acquire(timeout=self.TIMEOUT) as connection:
                await create_schema(connection)
            self._schema_ready = True
        binding.prepared = True

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A connection of the pool, for one use of at most ``TIMEOUT`` seconds.

        Raises:
            StorageUnavailable: the database cannot be reached, or did not
                answer in time.
        """
        try:
            pool = await self._pool()
            async with pool.acquire(timeout=self.TIMEOUT) as connection:
                # NOTE: A time limit that really ends it: cutting the
                #   connection fails whatever awaits it at once, even against
                #   a frozen server, where a cancelled statement would wait
                #   for the server to confirm (and a transaction, to roll
                #   back). The pool replaces the connection.
                watchdog = asyncio.get_running_loop().call_later(
                    self.TIMEOUT, _cut, connection
                )
                try:
                    yield connection
                except UNREACHABLE:
                    # NOTE: Whatever state it is in, it is not used again:
                    #   given back to the pool, it would be rolled back first,
                    #   which may fail (or wait) all over again. A connection
                    #   seen to close is given back by asyncpg at once.
                    _cut(connection)
                    raise
                finally:
                    watchdog.cancel()
        except UNREACHABLE as ex:
            raise _unreachable() from ex

    async def close(self) -> None:
        binding, self._binding = self._binding, None
        self._forget()
        if binding is None:
            return
        if binding.loop is not asyncio.get_running_loop():
            binding.abandon()
            return
        await binding.close(self.TIMEOUT)

    @contextlib.asynccontextmanager
    async def _changing(
        self, image_ids: Sequence[str] | None, transaction: bool = True
    ) -> AsyncIterator[Any]:
        """A connection (in a transaction), for a change of ``image_ids`` (None: any).

        NOTE: The change is counted here at once, not when its notification
        comes back (which is ignored, see :meth:`_Binding.ready_connection`): this
        process lists its own upload at once. Also when the database could
        not be reached: the change may have committed all the same, its
        notification heard before the lost connection was seen.
        """
        try:
            async with (
                self._connection() as connection,
                connection.transaction() if transaction else contextlib.nullcontext(),
            ):
                yield connection
        except StorageUnavailable:
            self._changed_all(image_ids)
            raise
        self._changed_all(image_ids)

    # What the listener does (see _ListeningIndex)

    @abc.abstractmethod
    async def _listen(self, binding: _Binding) -> None:
        """Hear every change from PostgreSQL, reconnecting whenever cut off."""

    @abc.abstractmethod
    def _forget(self) -> None:
        """Forget what the fast path knew: nothing vouches for it any more."""

    @abc.abstractmethod
    def _changed_all(self, image_ids: Sequence[str] | None) -> None:
        """This index changed ``image_ids`` (None: any number of images)."""
