"""What only the PostgreSQL index does: notifications, outages, several loops.

The contract that every backend keeps is tested in test_index.py; here, on a
real PostgreSQL server (tests/postgres.py), is what it cannot see: the fast
path learning of changes from notifications, and forgetting what it knew
when it stops hearing them; restarts, crashes and hangs of the database;
several processes creating the schema at once; and, at the end, uvicorn
processes serving one database.
"""

import asyncio
import concurrent.futures
import json
import logging
import os
import signal
import threading
import time
import urllib.parse

import asyncpg
import httpx
import pytest
import redis

from asgilook.errors import StorageUnavailable
from asgilook.errors import UnknownCursor
from asgilook.storage.index import Behind
from asgilook.storage.index import Entry
from asgilook.storage.index import postgres
from asgilook.storage.index.postgres import _SCHEMA
from asgilook.storage.index.postgres import LISTENER_NAME
from asgilook.storage.index.postgres import SCHEMA_VERSION
from asgilook.storage.index.postgres import NewerSchema
from asgilook.storage.index.postgres import PostgresIndex
from asgilook.storage.index.postgres import index as index_module
from asgilook.storage.index.postgres import listener
from asgilook.storage.index.postgres import queries
from tests.helpers import decode
from tests.helpers import draw_image
from tests.servers import Uvicorn
from tests.test_index import anyone
from tests.test_index import eventually
from tests.test_index import ids
from tests.test_index import peeked

pytestmark = pytest.mark.postgres


@pytest.fixture
def server(postgres_server):
    """The session's server, for a test that stops, kills or pauses it.

    Whatever the test did, the next one finds it running.
    """
    yield postgres_server
    if postgres_server.process is None:
        postgres_server.start()
    else:
        postgres_server.resume()


@pytest.fixture
def url(postgres_server):
    return postgres_server.database()


def database_name(url):
    return urllib.parse.urlsplit(url).path.lstrip('/')


def quick(index):
    """``index``, made to notice trouble and recover from it in a blink."""
    index.TIMEOUT = 1.0
    index.CONNECT_TIMEOUT = 1.0
    index.PING_INTERVAL = 0.05
    index.PING_TIMEOUT = 0.3
    index.RETRY_MAX = 0.1
    return index


def epoch(index):
    """The number of the listener's connection, or None while it has none."""
    try:
        return index.state()[0]
    except Behind:
        return None


async def listening(index):
    """Wait until the index hears changes (its listener connects after a use)."""
    await eventually(lambda: epoch(index) is not None)
    return index.state()


async def put(index, image_id, file=None):
    entry, _ = await index.put(image_id, file or f'{image_id}.jpeg', (100, 50), 'h')
    return entry


def listener_pids(server, url):
    """The backends of the listeners on the test's database."""
    found = server.psql(
        'SELECT pid FROM pg_stat_activity '
        f"WHERE datname = '{database_name(url)}' "
        f"AND application_name = '{LISTENER_NAME}'"
    )
    return [int(pid) for pid in found.split()]


def slowed(query, seconds):
    """``query`` made to take ``seconds`` longer, after taking its snapshot."""
    return query.replace('FROM images', f'FROM pg_sleep({seconds}), images', 1)


# The fast path: what the listener hears.


def test_a_change_elsewhere_is_heard_and_what_it_changed_forgotten(url):
    async def scenario():
        index, other = PostgresIndex(url), PostgresIndex(url)
        try:
            entry = await put(other, 'a')
            assert await index.get('nobody') is None
            await listening(index)
            assert await index.get('a') == entry
            assert await index.get('nobody') is None
            assert await index.get('b') is None
            assert index.peek('a') == entry
            assert index.peek('nobody') is None  # known to be absent
            state = index.state()

            replaced = await put(other, 'a', 'a.2.jpeg')
            await eventually(lambda: peeked(index, 'a') == 'behind')
            assert index.state() != state
            assert index.peek('nobody') is None  # only what changed is forgotten
            assert await index.get('a') == replaced
            assert index.peek('a') == replaced

            state = index.state()
            await other.delete('a', anyone)
            await eventually(lambda: index.state() != state)
            assert peeked(index, 'a') == 'behind'
            assert await index.get('a') is None
            assert index.peek('a') is None

            # An adoption may bring any number of images: all is forgotten.
            state = index.state()
            assert await other.adopt('old', [Entry('b', 'b.jpeg', (1, 1), 5, 'h')])
            await eventually(lambda: index.state() != state)
            assert [peeked(index, i) for i in ('a', 'b', 'nobody')] == ['behind'] * 3
            assert (await index.get('b')).file == 'b.jpeg'
        finally:
            await index.close()
            await other.close()

    asyncio.run(scenario())


def test_an_own_change_is_known_at_once_and_its_echo_ignored(url):
    async def scenario():
        index, other = PostgresIndex(url), PostgresIndex(url)
        try:
            await index.get('a')
            state = await listening(index)
            await index.get('a')
            assert index.peek('a') is None
            entry = await put(index, 'a')  # no waiting for the notification
            assert index.state() != state
            assert peeked(index, 'a') == 'behind'
            assert await index.get('a') == entry
            state = index.state()
            # Notifications come in the order of the changes: once the next
            # one is heard, so was the echo of this index's own.
            await put(other, 'b')
            await eventually(lambda: index.state() != state)
            assert index.state() == (state[0], state[1] + 1)
            assert index.peek('a') == entry
        finally:
            await index.close()
            await other.close()

    asyncio.run(scenario())


def test_a_lookup_that_overlaps_a_change_is_not_remembered(url, monkeypatch):
    async def scenario():
        index, other = PostgresIndex(url), PostgresIndex(url)
        try:
            old = await put(other, 'a')
            await index.get('a')
            await listening(index)
            monkeypatch.setattr(index_module, '_GET', slowed(queries._GET, 0.5))
            assert await index.get('a') == old
            assert index.peek('a') == old  # nothing changed meanwhile: kept

            lookup = asyncio.create_task(index.get('a'))
            await asyncio.sleep(0.1)  # its snapshot is taken; it sleeps
            state = index.state()
            new = await put(other, 'a', 'a.2.jpeg')
            await eventually(lambda: index.state() != state)
            # The answer is true of a moment before the change, and heard
            # after it: not one to keep.
            assert await lookup == old
            assert peeked(index, 'a') == 'behind'
            assert await index.get('a') == new
            assert index.peek('a') == new
        finally:
            await index.close()
            await other.close()

    asyncio.run(scenario())


def test_a_page_is_of_the_state_before_it_was_read(url, monkeypatch):
    async def scenario():
        index, other = PostgresIndex(url), PostgresIndex(url)
        try:
            await put(other, 'a')
            await index.count()
            await listening(index)
            entries, state = await index.page()
            assert state == index.state()

            monkeypatch.setattr(index_module, '_PAGE', slowed(queries._PAGE, 0.5))
            reading = asyncio.create_task(index.page())
            await asyncio.sleep(0.1)
            await put(other, 'b')
            await eventually(lambda: index.state() != state)
            entries, state = await reading
            assert [entry.image_id for entry in entries] == ['a']
            # Older than the index as it is now: never mistaken for it.
            assert state != index.state()
        finally:
            await index.close()
            await other.close()

    asyncio.run(scenario())


def test_the_fast_path_remembers_a_bounded_number_of_images(url):
    async def scenario():
        index = PostgresIndex(url)
        index.KNOWN = 2
        try:
            await index.get('a')
            await listening(index)
            for image_id in 'abc':
                await index.get(image_id)
            index.peek('b')  # used more recently than c now
            await index.get('d')
            assert [peeked(index, i) for i in 'abcd'] == [
                'behind',
                None,
                'behind',
                None,
            ]
        finally:
            await index.close()

    asyncio.run(scenario())


def test_a_listener_cut_off_reconnects_and_forgets_meanwhile(
    url, postgres_server, caplog
):
    caplog.set_level(logging.WARNING, logger=listener.__name__)

    async def scenario():
        index = quick(PostgresIndex(url))
        deaf = PostgresIndex(url)
        deaf.RETRY_FIRST = 60.0  # does not reconnect during this test
        try:
            entry = await put(index, 'a')
            await deaf.count()
            first = await listening(index)
            await listening(deaf)
            await index.get('a')
            await deaf.get('a')
            assert index.peek('a') == deaf.peek('a') == entry

            for pid in listener_pids(postgres_server, url):
                postgres_server.psql(f'SELECT pg_terminate_backend({pid})')
            await eventually(lambda: epoch(index) not in (None, first[0]))
            assert peeked(index, 'a') == 'behind'
            assert await index.get('a') == entry
            assert index.peek('a') == entry

            # While it hears nothing, it vouches for nothing.
            await eventually(lambda: epoch(deaf) is None)
            assert peeked(deaf, 'a') == 'behind'
            assert await deaf.get('a') == entry
            assert peeked(deaf, 'a') == 'behind'
            entries, state = await deaf.page()
            assert entries == [entry]
            assert state != (await deaf.page())[1]  # equal to nothing
        finally:
            await index.close()
            await deaf.close()

    asyncio.run(scenario())
    assert 'lost its connection for change notifications' in caplog.text
    assert 'hears the change notifications from PostgreSQL again' in caplog.text


def test_a_listener_whose_server_went_silent_reconnects(url, postgres_server):
    async def scenario():
        index = quick(PostgresIndex(url))
        try:
            await index.count()
            first = await listening(index)
            [pid] = listener_pids(postgres_server, url)
            os.kill(pid, signal.SIGSTOP)  # no word, no end of the connection
            try:
                await eventually(lambda: epoch(index) not in (None, first[0]))
            finally:
                os.kill(pid, signal.SIGCONT)
            assert pid not in listener_pids(postgres_server, url)
        finally:
            await index.close()

    asyncio.run(scenario())


# Outages


def test_a_database_restart_fails_calls_while_it_is_down_only(server, url):
    async def scenario():
        index = quick(PostgresIndex(url))
        try:
            entry = await put(index, 'a')
            await listening(index)
            await index.get('a')
            # NOTE: In a thread: the event loop goes on, as in a server.
            await asyncio.to_thread(server.stop)
            calls = [
                index.get('a'),
                index.page(),
                index.count(),
                index.files(),
                put(index, 'b'),
                index.delete('a', anyone),
                index.adopt('old', []),
            ]
            for call in calls:
                started = time.monotonic()
                with pytest.raises(StorageUnavailable) as raised:
                    await call
                assert time.monotonic() - started < 2
                assert str(raised.value) == (
                    'The image index cannot be reached right now; try again later.'
                )
            for fast in (index.state, lambda: index.peek('a')):
                with pytest.raises(Behind):
                    fast()

            await asyncio.to_thread(server.start)
            # The pool's connections died with the server: new ones, unasked.
            assert await index.get('a') == entry
            assert await ids(index) == ['a']
            assert (await put(index, 'b')).image_id == 'b'
            await listening(index)
        finally:
            await index.close()

    asyncio.run(scenario())


def test_a_restart_between_two_requests_costs_nothing(server, url):
    async def scenario():
        index = PostgresIndex(url)
        try:
            # Every connection of the pool in use, and then idle.
            await asyncio.gather(*(put(index, f'i{n}') for n in range(4)))
            await asyncio.to_thread(server.restart)
            assert await index.count() == 4
            assert len(await index.files()) == 4
        finally:
            await index.close()

    asyncio.run(scenario())


def test_a_crash_of_the_database_loses_nothing_acknowledged(server, url):
    async def scenario():
        index = quick(PostgresIndex(url))
        try:
            acknowledged = []

            async def writer(name):
                for n in range(1000):
                    try:
                        await put(index, f'{name}-{n}')
                    except StorageUnavailable:
                        return
                    acknowledged.append(f'{name}-{n}')

            writers = [asyncio.create_task(writer(name)) for name in 'abc']
            await eventually(lambda: len(acknowledged) > 30)
            server.kill()  # SIGKILL, every process of it
            await asyncio.gather(*writers)
            await asyncio.to_thread(server.start)  # recovers from its WAL

            listed = await ids(index)
            assert set(acknowledged) <= set(listed)
            # Besides, at most what each writer was in the middle of.
            assert len(listed) <= len(acknowledged) + len(writers)
            assert await index.count() == len(listed)
        finally:
            await index.close()

    asyncio.run(scenario())


def test_a_hung_database_is_a_quick_error_not_a_hang(server, url):
    async def scenario():
        index = quick(PostgresIndex(url))
        index.TIMEOUT = index.CONNECT_TIMEOUT = 0.5
        try:
            entry = await put(index, 'a')
            await listening(index)
            server.pause()
            try:
                for call in (index.get('a'), put(index, 'b'), index.count()):
                    started = time.monotonic()
                    with pytest.raises(StorageUnavailable):
                        await call
                    assert time.monotonic() - started < index.TIMEOUT + 1
                await eventually(lambda: epoch(index) is None)
            finally:
                server.resume()
            assert await index.get('a') == entry
            await listening(index)
        finally:
            await index.close()

    asyncio.run(scenario())


# The schema


def test_many_processes_create_the_schema_at_once(url):
    async def scenario():
        indexes = [PostgresIndex(url) for _ in range(8)]
        try:
            # Each index has connections of its own: as many processes.
            await asyncio.gather(
                *(put(index, f'i{n}') for n, index in enumerate(indexes)),
                *(index.count() for index in indexes),
            )
            assert await indexes[0].count() == 8
        finally:
            for index in indexes:
                await index.close()

    asyncio.run(scenario())


def test_a_database_from_a_newer_release_is_left_alone(url, postgres_server):
    async def scenario(index):
        try:
            return await index.count()
        finally:
            await index.close()

    assert asyncio.run(scenario(PostgresIndex(url))) == 0
    newer = SCHEMA_VERSION + 1
    postgres_server.psql(
        f'UPDATE asgilook_schema SET version = {newer}', database_name(url)
    )
    with pytest.raises(NewerSchema, match=f'schema version {newer}'):
        asyncio.run(scenario(PostgresIndex(url)))


def test_tombstones_expire_after_a_week(url, postgres_server):
    async def scenario():
        index = PostgresIndex(url)
        try:
            for image_id in 'abc':
                await put(index, image_id)
            await index.delete('a', anyone)
            postgres_server.psql(
                f'UPDATE tombstones SET deleted = deleted - {8 * 24 * 3600 * 10**6}',
                database_name(url),
            )
            await index.delete('b', anyone)
            assert await ids(index, after='b') == ['c']
            with pytest.raises(UnknownCursor):
                await index.page(after='a')
        finally:
            await index.close()

    asyncio.run(scenario())


def test_a_page_reads_only_its_rows_at_any_depth(url, postgres_server):
    # NOTE: Not timed (tests never are): the plan shows that the cursor and
    #   the page are found through the indexes, and the page stops after its
    #   rows, however deep it is, whatever it lists: nine pictures in ten are
    #   private, and a public page never steps over them. bench/index.py
    #   measures the time.
    rows = 200_000
    pages = {
        'public': (queries._PAGE, queries._PAGE_NEWEST_FIRST),
        'owner': (queries._PAGE_OF_OWNER, queries._PAGE_OF_OWNER_NEWEST_FIRST),
        'everyone': (
            queries._PAGE_OF_EVERYONE,
            queries._PAGE_OF_EVERYONE_NEWEST_FIRST,
        ),
    }

    async def scenario():
        index = PostgresIndex(url)
        try:
            await index.count()
            postgres_server.psql(
                'INSERT INTO images (id, file, width, height, modified, token_hash, '
                'visibility, owner) '
                "SELECT 'i' || n, 'i' || n || '.jpeg', 100, 50, n, 'h', "
                "CASE WHEN n % 10 = 0 THEN 'public' ELSE 'private' END, "
                "'o' || n % 1000 "
                f'FROM generate_series(1, {rows}) AS n; '
                f'UPDATE counters SET images = {rows}, clock = {rows}; '
                'ANALYZE images',
                database_name(url),
            )
            await index.delete(f'i{rows // 2}', anyone)
            plans = {}
            async with index._connection() as connection:
                for after in (None, 'i100', f'i{rows // 2}', f'i{rows - 1000}'):
                    for which, (forward, backward) in pages.items():
                        for query in (forward, backward):
                            arguments = [after, 101] + (
                                ['o1'] if which == 'owner' else []
                            )
                            plan = await connection.fetch(
                                f'EXPLAIN (ANALYZE, FORMAT JSON) {query}', *arguments
                            )
                            plans[after, which, query] = plan[0][0]
                            entries, _ = await index.page(
                                100,
                                after,
                                query is backward,
                                owner='o1' if which == 'owner' else None,
                                everyone=which == 'everyone',
                            )
                            assert entries
            assert await index.count() == rows - 1
            return plans
        finally:
            await index.close()

    for key, plan in asyncio.run(scenario()).items():
        nodes = list(walk(json.loads(plan)[0]['Plan']))
        kinds = {node['Node Type'] for node in nodes}
        assert 'Seq Scan' not in kinds, (key, kinds)
        # Rows read from images: the page (and one more), never the table,
        # and none of them skipped. (An owner's 200 pictures may be read
        # whole and sorted, when the planner finds that cheaper.)
        reads = [node for node in nodes if node.get('Relation Name') == 'images']
        assert reads, (key, kinds)
        for node in reads:
            assert node['Actual Rows'] <= (200 if key[1] == 'owner' else 101), key
            assert node.get('Rows Removed by Filter', 0) == 0, (key, node)


def walk(node):
    yield node
    for child in node.get('Plans', []):
        yield from walk(child)


# Event loops


def test_one_index_in_several_event_loops(url):
    index = PostgresIndex(url)
    first, second, third = (asyncio.new_event_loop() for _ in range(3))
    try:
        entry = first.run_until_complete(put(index, 'a'))
        first.run_until_complete(listening(index))
        abandoned = index._binding
        # Another loop: a pool and a listener of its own; the first loop's
        # are let go of.
        assert second.run_until_complete(index.get('a')) == entry
        state = second.run_until_complete(listening(index))
        assert second.run_until_complete(index.get('a')) == entry
        # What is left of the first loop's winds down without a word to
        # the second's fast path, even if it hears a change on the way.
        first.run_until_complete(asyncio.sleep(0.1))
        index._notified(abandoned, None, 0, postgres.CHANNEL, 'a')
        assert index.state() == state
        assert index.peek('a') == entry
        # Closed from a loop it does not use: let go of as well as can be.
        third.run_until_complete(index.close())
        with pytest.raises(Behind):
            index.state()
        second.run_until_complete(asyncio.sleep(0.1))
        # And usable again, anywhere.
        assert third.run_until_complete(index.get('a')) == entry
        third.run_until_complete(index.close())
        third.run_until_complete(index.close())  # twice is harmless
    finally:
        for loop in (first, second, third):
            loop.close()


# Puts written together


async def taken(index):
    """Wait until the writer of ``index`` has taken every put queued."""
    await eventually(
        lambda: (
            index._binding is not None
            and index._binding.writer is not None
            and not index._binding.queued
        )
    )


def gated(monkeypatch):
    """Make every batch of puts wait for the event returned before it is written."""
    gate = asyncio.Event()
    put_all = PostgresIndex._put_all

    async def waiting(self, entries):
        await gate.wait()
        return await put_all(self, entries)

    monkeypatch.setattr(PostgresIndex, '_put_all', waiting)
    return gate


def test_puts_waiting_for_the_counters_row_wait_on_one_connection(url, server):
    def waiting_for_locks():
        return int(
            server.psql(
                'SELECT count(*) FROM pg_stat_activity '
                f"WHERE datname = '{database_name(url)}' AND wait_event_type = 'Lock'"
            )
        )

    async def scenario():
        index = PostgresIndex(url)
        holder = await asyncpg.connect(url)
        try:
            await put(index, 'before')
            async with holder.transaction():
                await holder.execute('SELECT FROM counters FOR UPDATE')
                first = asyncio.create_task(put(index, 'first'))
                await eventually(lambda: waiting_for_locks() == 1)
                rest = [
                    asyncio.create_task(put(index, f'then-{number}'))
                    for number in range(10)
                ]
                await eventually(lambda: len(index._binding.queued) == 10)
                await asyncio.sleep(0.1)
                assert waiting_for_locks() == 1
                assert not first.done() and not any(task.done() for task in rest)
            await asyncio.gather(first, *rest)
            assert await ids(index) == ['before', 'first'] + [
                f'then-{number}' for number in range(10)
            ]
        finally:
            await holder.close()
            await index.close()

    asyncio.run(scenario())


def test_a_batch_never_has_an_id_twice_nor_more_than_batch_puts(url, monkeypatch):
    monkeypatch.setattr(PostgresIndex, 'BATCH', 3)
    batches = []
    put_all = PostgresIndex._put_all

    async def noted(self, entries):
        batches.append([entry.image_id for entry in entries])
        return await put_all(self, entries)

    monkeypatch.setattr(PostgresIndex, '_put_all', noted)

    async def scenario():
        index = PostgresIndex(url)
        try:
            gate = gated(monkeypatch)
            waiting = [asyncio.create_task(put(index, 'x', 'x.1.jpeg'))]
            await taken(index)
            for image_id in ['y', 'z', 'y', 'w', 'v', 'u']:
                waiting.append(asyncio.create_task(put(index, image_id)))
            await eventually(lambda: len(index._binding.queued) == 6)
            gate.set()
            await asyncio.gather(*waiting)
            return await ids(index)
        finally:
            await index.close()

    assert asyncio.run(scenario()) == ['x', 'z', 'y', 'w', 'v', 'u']
    assert batches == [['x'], ['y', 'z'], ['y', 'w', 'v'], ['u']]


def test_a_put_given_up_is_written_only_if_its_batch_had_begun(url, monkeypatch):
    async def scenario():
        index = PostgresIndex(url)
        try:
            await put(index, 'before')
            gate = gated(monkeypatch)
            begun = asyncio.create_task(put(index, 'begun'))
            await taken(index)
            queued = asyncio.create_task(put(index, 'queued'))
            await eventually(lambda: index._binding.queued)
            for task in (begun, queued):
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            gate.set()
            await eventually(lambda: index._binding.writer is None)
            await put(index, 'after')
            return await ids(index)
        finally:
            await index.close()

    assert asyncio.run(scenario()) == ['before', 'begun', 'after']


def test_every_put_of_a_failed_batch_is_told(url, monkeypatch):
    async def scenario():
        index = PostgresIndex(url)
        try:
            await put(index, 'before')
            gate = asyncio.Event()

            async def broken(self, entries):
                await gate.wait()
                raise RuntimeError(f'{len(entries)} puts')

            monkeypatch.setattr(PostgresIndex, '_put_all', broken)
            given_up = asyncio.create_task(put(index, 'given-up'))
            told = asyncio.create_task(put(index, 'told'))
            await taken(index)
            given_up.cancel()
            gate.set()
            with pytest.raises(RuntimeError, match='2 puts'):
                await told
            assert given_up.cancelled()
            monkeypatch.undo()
            return await ids(index)
        finally:
            await index.close()

    assert asyncio.run(scenario()) == ['before']


def test_closing_an_index_writes_what_was_queued_first(url, monkeypatch):
    async def scenario():
        index = PostgresIndex(url)
        gate = gated(monkeypatch)
        try:
            queued = asyncio.create_task(put(index, 'queued'))
            await taken(index)
            closing = asyncio.create_task(index.close())
            await asyncio.sleep(0.05)
            assert not closing.done()
            gate.set()
            await closing
            entry = await queued
        finally:
            await index.close()
        again = PostgresIndex(url)
        try:
            return entry, await again.get('queued')
        finally:
            await again.close()

    entry, found = asyncio.run(scenario())
    assert found == entry


def test_puts_waiting_when_the_writer_is_cancelled_are_cancelled(url, monkeypatch):
    async def scenario():
        index = PostgresIndex(url)
        try:
            await put(index, 'before')
            gated(monkeypatch)
            in_batch = asyncio.create_task(put(index, 'in-batch'))
            await taken(index)
            queued = asyncio.create_task(put(index, 'queued'))
            await eventually(lambda: index._binding.queued)
            index._binding.writer.cancel()
            for task in (in_batch, queued):
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert not index._binding.queued
            monkeypatch.undo()
            await put(index, 'after')
            return await ids(index)
        finally:
            await index.close()

    assert asyncio.run(scenario()) == ['before', 'after']


# End to end: uvicorn processes on one database, one storage directory, one
# Redis, as the machines of one service would be.


@pytest.fixture
def storage(tmp_path, redis_server):
    redis.Redis.from_url(redis_server.url).flushall()
    return tmp_path / 'shared-storage'


@pytest.fixture
def apps(storage, redis_server):
    """Starts uvicorn processes on the shared storage, with a database URL."""
    started = []

    def start(database_url, *args):
        app = Uvicorn(
            storage,
            redis_server.url,
            *args,
            env={'ASGI_LOOK_DATABASE_URL': database_url},
        )
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()


def listing(url):
    resp = httpx.get(f'{url}/images', params={'limit': 1000}, timeout=30)
    assert resp.status_code == 200
    return resp.json()


def listed_ids(url):
    return [document['id'] for document in listing(url)]


def upload(url, size=(128, 128)):
    resp = httpx.post(f'{url}/images', content=draw_image(size), timeout=30)
    assert resp.status_code == 201
    return resp.json()


@pytest.mark.e2e
def test_processes_on_one_database_are_one_service(apps, url):
    pool_of_two = apps(url, '--workers', '2')
    single = apps(url)
    urls = [pool_of_two.url, single.url]

    # Uploaded through one: listed and served by the other at once (and by
    # whichever of its workers answers).
    for n in range(6):
        through, other = urls[n % 2], urls[(n + 1) % 2]
        document = upload(through)
        for _ in range(2):
            assert document['id'] in listed_ids(other)
            image = httpx.get(f'{other}{document["image"]}')
            assert decode(image.content).size == tuple(document['size'])

    def client(number):
        return [upload(urls[(number + n) % 2]) for n in range(4)]

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        per_client = list(pool.map(client, range(6)))
    everyone = [listing(url) for url in urls for _ in range(3)]
    assert all(seen == everyone[0] for seen in everyone)
    order = [document['id'] for document in everyone[0]]
    assert len(order) == len(set(order)) == 6 + 24
    for uploaded in per_client:  # each client's uploads listed in its order
        positions = [order.index(document['id']) for document in uploaded]
        assert positions == sorted(positions)

    # Deleted through one: gone from the other at once, cached or not.
    victim = per_client[0][0]
    for url_ in urls:
        assert httpx.get(f'{url_}{victim["thumbnails"][0]}').status_code == 200
    deleted = httpx.delete(
        f'{single.url}{victim["image"]}',
        headers={'Authorization': f'Bearer {victim["delete_token"]}'},
    )
    assert deleted.status_code == 204
    for _ in range(4):
        for uri in (victim['image'], victim['thumbnails'][0]):
            assert httpx.get(f'{pool_of_two.url}{uri}').status_code == 404
        assert victim['id'] not in listed_ids(pool_of_two.url)
    assert listing(pool_of_two.url) == listing(single.url)


@pytest.mark.e2e
def test_a_process_that_wrote_nothing_answers_the_listing_from_memory(
    apps, url, redis_server
):
    # As a restarted process, or another machine: Redis has the listing, and
    # this process still keeps it, once its listener hears, and asks Redis
    # nothing more.
    cache = redis.Redis.from_url(redis_server.url)
    writer = apps(url)
    document = upload(writer.url)
    assert listed_ids(writer.url) == [document['id']]
    reader = apps(url)
    seen = [document['id']]

    def quiet():
        before = cache.info('commandstats')['cmdstat_mget']['calls']
        assert all(listed_ids(reader.url) == seen for _ in range(10))
        return cache.info('commandstats')['cmdstat_mget']['calls'] == before

    deadline = time.monotonic() + 10
    while not quiet():
        assert time.monotonic() < deadline, 'the listing kept asking Redis'
    document = upload(writer.url)
    seen.append(document['id'])
    assert listed_ids(reader.url) == seen


@pytest.mark.e2e
def test_kill_9_of_an_app_mid_uploads_loses_nothing_acknowledged(apps, url):
    victim = apps(url)
    survivor = apps(url)
    acknowledged = []
    stop = threading.Event()

    def uploader(target):
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    resp = http.post(f'{target}/images', content=draw_image((320, 240)))
                except httpx.TransportError:
                    continue  # the victim is gone: it acknowledged nothing
                if resp.status_code == 201:
                    acknowledged.append(resp.json())

    threads = [
        threading.Thread(target=uploader, args=(app.url,), daemon=True)
        for app in (victim, victim, victim, survivor)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    victim.process.kill()  # kill -9, uploads in flight
    victim.process.wait()
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(30)

    listed = listing(survivor.url)
    ids_listed = {document['id'] for document in listed}
    assert {document['id'] for document in acknowledged} <= ids_listed
    for document in listed:
        image = httpx.get(f'{survivor.url}{document["image"]}')
        assert decode(image.content).size == tuple(document['size'])
        for uri in document['thumbnails']:
            assert decode(httpx.get(f'{survivor.url}{uri}').content)
    # A new process on the same database lists the same.
    assert listing(apps(url).url) == listed


@pytest.mark.e2e
def test_a_database_restart_is_a_503_while_it_lasts_then_nothing(apps, url, server):
    app = apps(url)
    kept = upload(app.url)
    assert listed_ids(app.url) == [kept['id']]

    server.stop()
    requests = [
        ('POST', '/images', draw_image((64, 64))),
        ('GET', '/images', None),
        ('GET', kept['image'], None),
        ('GET', kept['thumbnails'][0], None),
        ('DELETE', kept['image'], None),
    ]
    with httpx.Client(base_url=app.url, timeout=30) as http:
        for method, uri, body in requests:
            started = time.monotonic()
            resp = http.request(
                method,
                uri,
                content=body,
                headers={'Authorization': f'Bearer {kept["delete_token"]}'},
            )
            assert time.monotonic() - started < 5
            assert resp.status_code == 503, (method, uri)
            assert resp.headers['content-type'].startswith('application/json')
            assert resp.json()['title'] == 'Storage Unavailable'
        assert http.get('/healthz').status_code == 503

    server.start()
    # The same process, by itself: the first requests after are answered.
    again = upload(app.url)
    assert listed_ids(app.url) == [kept['id'], again['id']]
    image = httpx.get(f'{app.url}{kept["image"]}')
    assert decode(image.content).size == tuple(kept['size'])
    assert httpx.get(f'{app.url}/healthz').status_code == 200


def test_a_database_of_schema_version_1_is_migrated_keeping_its_images(
    url, postgres_server
):
    # What the first release with this backend made.
    postgres_server.psql(
        _SCHEMA
        + 'INSERT INTO asgilook_schema VALUES (true, 1);'
        + 'INSERT INTO images (id, file, width, height, modified, token_hash) '
        + "VALUES ('a', 'a.1.jpeg', 640, 480, 7, 'h');"
        + 'UPDATE counters SET clock = 7, images = 1;',
        database_name(url),
    )

    async def scenario():
        index = PostgresIndex(url)
        try:
            (before,), _ = await index.page()
            entry, _ = await index.put('b', 'b.1.jpeg', (2, 2), 't', 'data:x', True)
            return before, entry, await index.get('b')
        finally:
            await index.close()

    before, entry, stored = asyncio.run(scenario())
    assert before == Entry('a', 'a.1.jpeg', (640, 480), 7, 'h', '', False)
    assert stored == entry
    assert (stored.placeholder, stored.animated) == ('data:x', True)
