"""The index in PostgreSQL: one database for the workers of several machines.

Set ``ASGI_LOOK_DATABASE_URL=postgresql://user@host/database``; the tables
are created in that database on first use. Every change is one transaction
that first moves on the ``counters`` row: its row lock makes writers take
turns, so the upload order (``seq``), the commit order and the times of the
changes (``modified``) all agree. Lookups and pages are queries on indexes
(the image id, and ``seq`` as the primary key), so the millionth page costs
what the first one does, and the number of images is kept in ``counters``
rather than counted.

The fast path (:meth:`PostgresIndex.peek` and :meth:`PostgresIndex.state`)
answers in the event loop without a query. Every change notifies the
``asgilook_index`` channel, in its own transaction (so only once it has
committed), with the image's id. Each index keeps one connection that
LISTENs on it, and remembers what :meth:`PostgresIndex.get` found for the
images asked about most recently, until a notification says they changed.
While that connection is down (and until it is back, reconnecting by itself),
the fast path says :class:`~asgilook.storage.index.Behind` and the store asks the
database.

Each event loop gets a pool of a few connections of its own, opened when
first needed: falcon's test client and ``asyncio.run`` may use one index
from several loops in turn, and asyncpg's connections belong to one loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import asyncpg

from asgilook.errors import StorageUnavailable
from asgilook.errors import UnknownCursor
from asgilook.storage.index import Behind
from asgilook.storage.index import Entry
from asgilook.storage.index import Index
from asgilook.storage.index import Size
from asgilook.storage.index import forbidden
from asgilook.storage.index import not_found

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
CHANNEL = 'asgilook_index'
#: The listener connection's ``application_name``, as ``pg_stat_activity``
#: shows it.
LISTENER_NAME = 'asgilook-notifications'
#: How long a deleted image stays a cursor to page on from.
TOMBSTONE_MICROSECONDS = 7 * 24 * 3600 * 1_000_000
#: The key of the advisory lock taken while the schema is created: "asgilook".
SCHEMA_LOCK = int.from_bytes(b'asgilook', 'big')

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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    file text NOT NULL,
    width integer NOT NULL,
    height integer NOT NULL,
    modified bigint NOT NULL,
    token_hash text NOT NULL
);
CREATE TABLE IF NOT EXISTS tombstones (
    id text PRIMARY KEY,
    seq bigint NOT NULL,
    deleted bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstones_by_age ON tombstones (deleted);
CREATE TABLE IF NOT EXISTS counters (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    clock bigint NOT NULL,
    images bigint NOT NULL
);
INSERT INTO counters VALUES (true, 0, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS adopted (source text PRIMARY KEY);
CREATE TABLE IF NOT EXISTS asgilook_schema (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version integer NOT NULL
);
"""
#: What version 2 added: placeholders, and animated renditions.
_SCHEMA_2 = """
ALTER TABLE images ADD COLUMN IF NOT EXISTS placeholder text NOT NULL DEFAULT '';
ALTER TABLE images ADD COLUMN IF NOT EXISTS animated boolean NOT NULL DEFAULT false;
"""

_COLUMNS = 'id, file, width, height, modified, token_hash, placeholder, animated'
_NOW = '(extract(epoch FROM clock_timestamp()) * 1000000)::bigint'

# NOTE: The first statement of a deletion (and of the put function below):
#   the counters row is locked until the change commits, so changes take
#   turns; and the clock never goes back, even if the database server's
#   clock does.
_TICK = f"""
UPDATE counters SET clock = greatest(clock + 1, {_NOW})
RETURNING clock, pg_notify('{CHANNEL}', $1::text)
"""

# NOTE: A batch of puts (see PostgresIndex.put) in one call: a function of
#   each session (in pg_temp, made when the pool opens a connection: nothing
#   is added to the database). Called on its own, the call is a transaction,
#   committed before its answer comes: one round trip while the counters row
#   is held, where a transaction of statements took five. In READ COMMITTED,
#   each statement in it sees what committed before the statement began: so,
#   after the tick, what the writer before this one did. A batch never has
#   an id twice: the versions it replaces are taken first, then its rows go
#   in, in its order. The last row returned carries the newest time only.
_PUT_FUNCTION = f"""
CREATE FUNCTION pg_temp.asgilook_put(
    p_ids text[], p_files text[], p_widths integer[], p_heights integer[],
    p_token_hashes text[], p_placeholders text[], p_animated boolean[]
) RETURNS TABLE (
    r_id text, r_file text, r_width integer, r_height integer,
    r_modified bigint, r_token_hash text, r_placeholder text, r_animated boolean
) LANGUAGE plpgsql AS $$
DECLARE
    v_count integer := cardinality(p_ids);
    v_newest bigint;
    v_replaced integer;
BEGIN
    UPDATE counters SET clock = greatest(clock + v_count, {_NOW} + v_count - 1)
    RETURNING clock INTO v_newest;
    PERFORM pg_notify('{CHANNEL}', id) FROM unnest(p_ids) AS id;
    RETURN QUERY DELETE FROM images WHERE id = ANY(p_ids) RETURNING {_COLUMNS};
    GET DIAGNOSTICS v_replaced = ROW_COUNT;
    DELETE FROM tombstones WHERE id = ANY(p_ids);
    INSERT INTO images ({_COLUMNS})
    SELECT put.id, put.file, put.width, put.height,
           v_newest - v_count + put.position, put.token_hash, put.placeholder,
           put.animated
    FROM unnest(p_ids, p_files, p_widths, p_heights, p_token_hashes,
                p_placeholders, p_animated)
         WITH ORDINALITY AS put (id, file, width, height, token_hash,
                                 placeholder, animated, position)
    ORDER BY put.position;
    UPDATE counters SET images = images + v_count - v_replaced;
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::integer, NULL::integer,
                        v_newest, NULL::text, NULL::text, NULL::boolean;
END
$$
"""
_PUT = """
SELECT r_id AS id, r_file AS file, r_width AS width, r_height AS height,
       r_modified AS modified, r_token_hash AS token_hash,
       r_placeholder AS placeholder, r_animated AS animated
FROM pg_temp.asgilook_put($1, $2, $3, $4, $5, $6, $7)
"""
_FIND_FOR_DELETE = f'SELECT seq, {_COLUMNS} FROM images WHERE id = $1 FOR UPDATE'
_BURY = """
WITH gone AS (DELETE FROM images WHERE id = $1),
     counted AS (UPDATE counters SET images = images - 1),
     expired AS (DELETE FROM tombstones WHERE deleted < $4 AND id <> $1)
INSERT INTO tombstones (id, seq, deleted) VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, deleted = excluded.deleted
"""
_ADOPT_ONCE = """
INSERT INTO adopted (source) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true
"""
# NOTE: In the given order, so that seq follows it; an image the index has
#   already is left alone.
_ADOPT = f"""
INSERT INTO images ({_COLUMNS})
SELECT {_COLUMNS}
FROM unnest($1::text[], $2::text[], $3::integer[], $4::integer[],
            $5::bigint[], $6::text[], $7::text[], $8::boolean[])
     WITH ORDINALITY AS adopted ({_COLUMNS}, position)
ORDER BY position
ON CONFLICT (id) DO NOTHING
RETURNING id, modified
"""
# NOTE: One notification without an id for all of them: "anything may have
#   changed" (an adoption may bring thousands).
_ADOPTED = f"""
WITH unburied AS (DELETE FROM tombstones WHERE id = ANY($1::text[]))
UPDATE counters
SET clock = greatest(clock + 1, coalesce(nullif($3::bigint, 0), {_NOW})),
    images = images + $2
RETURNING pg_notify('{CHANNEL}', '')
"""

_GET = f'SELECT {_COLUMNS} FROM images WHERE id = $1'


def _page_query(order: str, after: str, start: int) -> str:
    """A page following the image ``$1`` (or the start), up to ``$2`` rows.

    One statement, so that finding the cursor and reading the page are one
    snapshot. It always returns a row: one with a null ``cursor`` says there
    is no image ``$1``; one with a null ``id``, that the page is empty.
    """
    return f"""
    WITH cursor AS (
        SELECT CASE WHEN $1::text IS NULL THEN {start}::bigint ELSE coalesce(
            (SELECT seq FROM images WHERE id = $1),
            (SELECT seq FROM tombstones WHERE id = $1)
        ) END AS seq
    )
    SELECT cursor.seq AS cursor, page.*
    FROM cursor LEFT JOIN LATERAL (
        SELECT {_COLUMNS} FROM images
        WHERE seq {after} cursor.seq ORDER BY seq {order} LIMIT $2::bigint
    ) AS page ON true
    """


_PAGE = _page_query('ASC', '>', 0)
_PAGE_NEWEST_FIRST = _page_query('DESC', '<', 2**63 - 1)


class NewerSchema(RuntimeError):
    """The database was set up by a newer asgilook than this one."""


def _entry(row: Any) -> Entry:
    return Entry(
        row['id'],
        row['file'],
        (row['width'], row['height']),
        row['modified'],
        row['token_hash'],
        row['placeholder'],
        row['animated'],
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


async def create_schema(connection: Any) -> None:
    """Create the tables, or check that the database's are ones we know.

    NOTE: Under an advisory lock: ``CREATE TABLE IF NOT EXISTS`` is not safe
    against itself in another session (both may find no table and create
    it), and every worker of every machine may start at the same moment.
    """
    async with connection.transaction():
        await connection.execute('SELECT pg_advisory_xact_lock($1)', SCHEMA_LOCK)
        version: int = 0
        if await connection.fetchval("SELECT to_regclass('asgilook_schema')"):
            version = await connection.fetchval('SELECT version FROM asgilook_schema')
        if version > SCHEMA_VERSION:
            raise NewerSchema(
                f'The index in the database has schema version {version}; this '
                f'asgilook knows version {SCHEMA_VERSION} only: upgrade it.'
            )
        if version < SCHEMA_VERSION:
            # NOTE: Every step is harmless on a database that has it already.
            await connection.execute(_SCHEMA)
            await connection.execute(_SCHEMA_2)
            await connection.execute(
                'INSERT INTO asgilook_schema VALUES (true, $1) '
                'ON CONFLICT (one) DO UPDATE SET version = excluded.version',
                SCHEMA_VERSION,
            )


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


class PostgresIndex(Index):
    """The index in the PostgreSQL database at ``url``."""

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
    #: Images whose entries the fast path remembers, at most.
    KNOWN = 10_000
    #: Puts written in one transaction, at most (see :meth:`put`).
    BATCH = 64
    #: Seconds between checks that the listener's connection still answers,
    #: and how long it has to answer: a connection that went silent (a
    #: network partition, a frozen server) says nothing by itself.
    PING_INTERVAL = 5.0
    PING_TIMEOUT = 5.0
    #: Seconds before reconnecting the listener: the first, and at most.
    RETRY_FIRST = 0.05
    RETRY_MAX = 1.0

    def __init__(self, url: str) -> None:
        self.url = url
        self._binding: _Binding | None = None
        self._schema_ready = False
        # The fast path: whether the listener hears the changes, its
        # connection's number, the changes heard, and the entries known.
        self._listening = False
        self._epoch = 0
        self._changes = 0
        self._known: collections.OrderedDict[str, Entry | None] = (
            collections.OrderedDict()
        )

    # Connections

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

    # The fast path

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

    # Reading

    async def get(self, image_id: str) -> Entry | None:
        async with self._connection() as connection:
            # NOTE: Read before the query: if nothing was heard meanwhile,
            #   the answer is still true once it arrives (a change it missed
            #   would have been heard first), and the fast path may keep it.
            before = self._version()
            row = await connection.fetchrow(_GET, image_id)
        entry = None if row is None else _entry(row)
        if before is not None and self._version() == before:
            self._known[image_id] = entry
            self._known.move_to_end(image_id)
            if len(self._known) > self.KNOWN:
                self._known.popitem(last=False)
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

    # Changing

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
