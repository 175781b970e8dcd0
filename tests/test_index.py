"""The index's contract: every backend passes this same suite.

Several index objects on one database act as several processes (or
machines, for PostgreSQL): what one changes, the others see.
"""

import asyncio
import contextlib
import fcntl
import sqlite3
import threading
import time

import pytest

from asgilook.errors import DeleteForbidden
from asgilook.errors import ImageNotFound
from asgilook.errors import UnknownCursor
from asgilook.storage.index import Behind
from asgilook.storage.index import Entry
from asgilook.storage.index.sqlite import _MIGRATIONS
from asgilook.storage.index.sqlite import SQLiteIndex


def anyone(entry):
    return True


@pytest.fixture(params=['sqlite', pytest.param('postgres', marks=pytest.mark.postgres)])
def backend(request, tmp_path):
    """Makes index objects on one fresh database of the backend under test."""
    if request.param == 'sqlite':
        return lambda: SQLiteIndex(tmp_path)
    from asgilook.storage.index.postgres import PostgresIndex

    url = request.getfixturevalue('postgres_server').database()
    return lambda: PostgresIndex(url)


def run(backend, scenario, processes=2):
    """Run ``scenario(*indexes)`` with that many index objects, then close them."""

    async def main():
        indexes = [backend() for _ in range(processes)]
        try:
            return await scenario(*indexes)
        finally:
            for index in indexes:
                await index.close()

    return asyncio.run(main())


counter = iter(range(10**9))


async def put(index, image_id, token='t'):
    entry, _ = await index.put(
        image_id, f'{image_id}.{next(counter)}.jpeg', (100, 50), token
    )
    return entry


async def ids(index, **kwargs):
    entries, _ = await index.page(**kwargs)
    return [entry.image_id for entry in entries]


async def eventually(check, timeout=5.0):
    """Wait until ``check()`` holds: for a backend that learns of changes by
    notification, a moment after the change."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, 'never held'
        await asyncio.sleep(0.01)


def peeked(index, image_id):
    try:
        return index.peek(image_id)
    except Behind:
        return 'behind'


def test_processes_see_each_others_changes_at_once(backend):
    async def scenario(one, two):
        await put(one, 'a')
        assert (await two.get('a')).size == (100, 50)
        await put(two, 'b')
        assert await ids(one) == ['a', 'b']
        assert await one.count() == await two.count() == 2

        await two.delete('a', anyone)
        assert await one.get('a') is None
        assert await ids(one) == ['b']
        assert await one.count() == 1

    run(backend, scenario)


def test_replacing_moves_the_image_to_the_end_and_returns_what_it_replaced(backend):
    async def scenario(index):
        first = await put(index, 'a')
        await put(index, 'b')
        second, replaced = await index.put('a', 'a.new.jpeg', (30, 20), 'u')
        assert replaced == first
        assert second == Entry('a', 'a.new.jpeg', (30, 20), second.modified, 'u')
        assert await ids(index) == ['b', 'a']
        assert await index.get('a') == second
        assert await index.count() == 2
        assert await index.files() == {'a.new.jpeg', (await index.get('b')).file}

    run(backend, scenario, processes=1)


def test_pages_follow_the_upload_order_either_way(backend):
    async def scenario(index):
        for image_id in 'abcdef':
            await put(index, image_id)
        await index.delete('c', anyone)

        assert await ids(index, limit=2) == ['a', 'b']
        assert await ids(index, limit=2, after='b') == ['d', 'e']
        assert await ids(index, limit=2, after='e') == ['f']
        assert await ids(index, after='f') == []
        assert await ids(index, newest_first=True) == ['f', 'e', 'd', 'b', 'a']
        assert await ids(index, limit=2, after='d', newest_first=True) == ['b', 'a']
        assert await ids(index, limit=3, newest_first=True) == ['f', 'e', 'd']
        with pytest.raises(UnknownCursor, match='no image x to list after'):
            await index.page(limit=2, after='x')

    run(backend, scenario, processes=1)


def test_a_deleted_image_keeps_its_place_as_a_cursor(backend):
    async def scenario(index, other):
        for image_id in 'abcdef':
            await put(index, image_id)
        # A client's page ended with c; c and d are deleted meanwhile, by
        # another process.
        await other.delete('c', anyone)
        await other.delete('d', anyone)
        assert await ids(index, limit=2, after='c') == ['e', 'f']
        assert await ids(index, limit=2, after='d', newest_first=True) == ['b', 'a']
        # Uploaded again, it is where it is now.
        await put(other, 'c')
        assert await ids(index, after='c') == []
        assert await ids(index, after='d') == ['e', 'f', 'c']

    run(backend, scenario)


def test_delete_checks_before_it_changes_anything(backend):
    async def scenario(index, other):
        entry = await put(index, 'a', token='right')
        with pytest.raises(DeleteForbidden, match='may not delete'):
            await index.delete('a', lambda found: found.token_hash == 'wrong')
        with pytest.raises(ImageNotFound, match='no image with the id nope'):
            await index.delete('nope', anyone)
        assert await ids(other) == ['a']
        assert await other.get('a') == entry
        assert await other.check('a', lambda found: found.token_hash == 'right')
        with pytest.raises(DeleteForbidden):
            await other.check('a', lambda found: False)
        with pytest.raises(ImageNotFound):
            await other.check('nope', anyone)
        # The check inside the deletion sees the image as it is then.
        await other.put('a', 'a.replaced.jpeg', (1, 1), 'new token')
        with pytest.raises(DeleteForbidden):
            await index.delete('a', lambda found: found.token_hash == 'right')
        deleted = await index.delete('a', lambda found: found.token_hash == 'new token')
        assert deleted.file == 'a.replaced.jpeg'

    run(backend, scenario)


def test_concurrent_writers_agree_on_one_order(backend):
    async def scenario(*writers):
        async def upload(number):
            return (await put(writers[number % 4], f'id-{number:03}')).image_id

        uploaded = await asyncio.gather(*(upload(number) for number in range(120)))
        orders = [await ids(writer) for writer in writers]
        assert all(order == orders[0] for order in orders)
        assert sorted(orders[0]) == sorted(uploaded)
        entries, _ = await writers[0].page()
        stamps = [entry.modified for entry in entries]
        assert stamps == sorted(stamps) and len(set(stamps)) == 120
        assert await writers[0].count() == 120

    run(backend, scenario, processes=4)


def test_puts_that_come_at_once_are_written_in_the_order_they_came(backend):
    async def scenario(index):
        first_a = await put(index, 'a')
        names = ['b', 'a', 'c', 'd', 'b', 'e']
        written = await asyncio.gather(
            *(index.put(name, f'{name}.{number}.jpeg', (1, 1), 't')
              for number, name in enumerate(names))
        )  # fmt: skip
        assert await ids(index) == ['a', 'c', 'd', 'b', 'e']
        assert [entry.file for entry, _ in written] == [
            f'{name}.{number}.jpeg' for number, name in enumerate(names)
        ]
        stamps = [entry.modified for entry, _ in written]
        assert stamps == sorted(set(stamps)) and stamps[0] > first_a.modified
        # Each replaced the version before it, the one written at once included.
        assert [None if old is None else old.file for _, old in written] == [
            None, first_a.file, None, None, 'b.0.jpeg', None
        ]  # fmt: skip
        assert await index.count() == 5

    run(backend, scenario, processes=1)


def test_times_follow_the_upload_order_even_if_the_clock_steps_back(
    backend, monkeypatch
):
    async def scenario(index):
        first = await put(index, 'a')
        back = time.time_ns() - 3600 * 10**9
        monkeypatch.setattr(time, 'time_ns', lambda: back)
        second = await put(index, 'b')
        assert second.modified > first.modified
        assert (await index.delete('a', anyone)).modified == first.modified
        third = await put(index, 'c')
        assert third.modified > second.modified

    run(backend, scenario, processes=1)


def test_a_journal_is_adopted_once_in_its_order(backend):
    old = [
        Entry('x', 'x.1.jpeg', (10, 10), 1_000, 'hx'),
        Entry('y', 'y.1.jpeg', (20, 10), 2_000, 'hy'),
    ]

    async def scenario(index, other):
        assert await index.adopt('journal 1', old)
        assert await ids(other) == ['x', 'y']
        assert [entry for entry in (await other.page())[0]] == old
        # Newer than anything adopted.
        assert (await put(other, 'z')).modified > 2_000

        await other.delete('x', anyone)
        assert not await index.adopt('journal 1', old)
        assert await ids(index) == ['y', 'z']
        # Another source: only what the index lacks is added, after the rest.
        newer = [Entry('y', 'y.2.jpeg', (1, 1), 5, 'h'), *old[:1]]
        assert await other.adopt('journal 2', newer)
        assert await ids(index) == ['y', 'z', 'x']
        assert (await index.get('y')).file == 'y.1.jpeg'
        assert await index.count() == 3

    run(backend, scenario)


def test_the_fast_path_tells_the_current_version_or_that_it_cannot(backend):
    async def scenario(index, other):
        # Learnt by a first use, as the store makes one before peeking.
        assert await index.get('a') is None
        entry = await put(index, 'a')
        await eventually(lambda: peeked(index, 'a') in (entry, 'behind'))
        await index.get('a')
        await eventually(lambda: peeked(index, 'a') == entry)

        entries, state = await index.page()
        assert index.state() == state
        assert index.state() == state  # unchanged while nothing changes

        replaced, _ = await other.put('a', 'a.other.jpeg', (1, 1), 't')
        await eventually(lambda: peeked(index, 'a') in (replaced, 'behind'))
        await eventually(lambda: index.state() != state)
        await other.delete('a', anyone)
        await eventually(lambda: peeked(index, 'a') in (None, 'behind'))
        assert await index.get('a') is None

    run(backend, scenario)


def test_an_index_closed_opens_again_when_used(backend):
    async def scenario(index):
        await put(index, 'a')
        await index.close()
        await index.close()
        assert await ids(index) == ['a']

    run(backend, scenario, processes=1)


# SQLite only: what the fast path does when it cannot answer at once.


def test_sqlite_peek_never_waits(tmp_path):
    index = SQLiteIndex(tmp_path)
    with pytest.raises(Behind):
        index.peek('a')  # the database is not known to be ready
    entry, _ = asyncio.run(index.put('a', 'a.jpeg', (1, 1), 't'))
    assert index.peek('a') == entry

    with index._fast_lock, pytest.raises(Behind):
        index.peek('a')  # another thread is using the connection
    with index._fast_lock, pytest.raises(Behind):
        index.state()

    # A writer in the middle of a checkpoint or recovery: never a wait.
    index._fast.close()
    with pytest.raises(Behind):
        index.peek('a')
    asyncio.run(index.close())


def test_sqlite_tombstones_expire_after_a_week(tmp_path, monkeypatch):
    async def scenario(index):
        for image_id in 'abc':
            await put(index, image_id)
        await index.delete('a', anyone)
        later = time.time_ns() + 8 * 24 * 3600 * 10**9
        monkeypatch.setattr(time, 'time_ns', lambda: later)
        await index.delete('b', anyone)
        assert await ids(index, after='b') == ['c']
        with pytest.raises(UnknownCursor):
            await index.page(after='a')

    run(lambda: SQLiteIndex(tmp_path), scenario, processes=1)


def test_sqlite_keeps_a_few_idle_connections_only(tmp_path, monkeypatch):
    index = SQLiteIndex(tmp_path)
    asyncio.run(put(index, 'a'))
    # More lookups at once than connections are kept: each holds its own.
    together = threading.Barrier(SQLiteIndex.IDLE + 2)
    get = SQLiteIndex._get

    def held(connection, image_id):
        together.wait(timeout=10)
        return get(connection, image_id)

    monkeypatch.setattr(SQLiteIndex, '_get', staticmethod(held))

    async def scenario():
        await asyncio.gather(*(index.get('a') for _ in range(SQLiteIndex.IDLE + 1)))

    threading.Thread(target=together.wait, args=(10,)).start()
    asyncio.run(scenario())
    assert len(index._idle) == SQLiteIndex.IDLE
    with contextlib.closing(index._connect(1)) as connection:
        (mode,) = connection.execute('PRAGMA journal_mode').fetchone()
    assert mode == 'wal'
    asyncio.run(index.close())
    assert index._idle == []


def test_sqlite_fast_path_remembers_little_and_nothing_across_connections(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(SQLiteIndex, 'KNOWN', 2)
    index, other = SQLiteIndex(tmp_path), SQLiteIndex(tmp_path)

    async def scenario():
        for image_id in 'abc':
            await put(index, image_id)
        assert [index.peek(image_id).image_id for image_id in 'abc'] == list('abc')
        assert list(index._known) == ['b', 'c']
        # A new connection's versions say nothing of the old one's.
        await index.close()
        replaced, _ = await other.put('c', 'c.new.jpeg', (1, 1), 't')
        assert index.peek('c') == replaced

    asyncio.run(scenario())
    asyncio.run(index.close())
    asyncio.run(other.close())


def test_sqlite_a_database_of_schema_version_1_is_migrated_keeping_its_images(
    tmp_path,
):
    # What the first release with this backend made.
    with contextlib.closing(sqlite3.connect(tmp_path / SQLiteIndex.FILE)) as db:
        db.executescript(
            _MIGRATIONS[1]
            + 'INSERT INTO images (id, file, width, height, modified, token_hash) '
            + "VALUES ('a', 'a.1.jpeg', 640, 480, 7, 'h');"
            + 'UPDATE counters SET clock = 7, images = 1; PRAGMA user_version = 1;'
        )

    async def scenario(index):
        (before,), _ = await index.page()
        entry, _ = await index.put('b', 'b.1.jpeg', (2, 2), 't', 'data:x', True)
        return before, entry, await index.get('b')

    before, entry, stored = run(lambda: SQLiteIndex(tmp_path), scenario, processes=1)
    assert before == Entry('a', 'a.1.jpeg', (640, 480), 7, 'h', '', False)
    assert stored == entry
    assert (stored.placeholder, stored.animated) == ('data:x', True)


def test_sqlite_first_uses_at_once_never_find_the_database_locked(tmp_path):
    # Threads that open a new database together all switch it to WAL and
    # create its schema: SQLite answered one of them "database is locked".
    async def together(index):
        await asyncio.gather(*(put(index, f'i{number}') for number in range(6)))
        return await index.count()

    for attempt in range(40):
        (tmp_path / str(attempt)).mkdir()
        index = SQLiteIndex(tmp_path / str(attempt))
        assert run(lambda index=index: index, together, processes=1) == 6


@contextlib.contextmanager
def turn_held(root):
    """Hold the machine's writer turn of the SQLite index in ``root``, as
    another process would, until the block ends."""
    with open(root / f'{SQLiteIndex.FILE}.lock', 'a+b') as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def count_commits(monkeypatch):
    """Count the transactions the SQLite index's connections commit from now."""
    commits = []
    connect = SQLiteIndex._connect

    def traced(self, timeout):
        connection = connect(self, timeout)
        connection.set_trace_callback(
            lambda statement: commits.append(1) if statement == 'COMMIT' else None
        )
        return connection

    monkeypatch.setattr(SQLiteIndex, '_connect', traced)
    return commits


async def until(check):
    while not check():
        await asyncio.sleep(0.001)


def taken(index):
    """Whether the SQLite index's writer has taken every put queued."""
    return index._writing and not index._queued


def test_sqlite_puts_that_wait_are_written_together_in_their_order(
    tmp_path, monkeypatch
):
    async def scenario(index):
        await put(index, 'before')
        # NOTE: Its writer may still be about to find the queue empty: until
        #   it has, it would take the next puts as well, past `taken`.
        await until(lambda: not index._writing)
        commits = count_commits(monkeypatch)
        await index.close()  # New connections, traced.
        with turn_held(tmp_path):
            first = asyncio.create_task(put(index, 'first'))
            await until(lambda: taken(index))  # Its batch waits for the turn.
            rest = [
                asyncio.create_task(put(index, f'then-{number}'))
                for number in range(10)
            ]
            await asyncio.sleep(0.05)
            assert not first.done() and not any(task.done() for task in rest)
        await asyncio.gather(first, *rest)
        assert len(commits) == 2
        assert await ids(index) == ['before', 'first'] + [
            f'then-{number}' for number in range(10)
        ]
        entries, _ = await index.page()
        assert [entry.modified for entry in entries] == sorted(
            {entry.modified for entry in entries}
        )
        assert await index.count() == 12

    run(lambda: SQLiteIndex(tmp_path), scenario, processes=1)


def test_sqlite_a_batch_is_at_most_batch_puts(tmp_path, monkeypatch):
    monkeypatch.setattr(SQLiteIndex, 'BATCH', 3)

    async def scenario(index):
        await put(index, 'before')
        # NOTE: Its writer may still be about to find the queue empty: until
        #   it has, it would take the next puts as well, past `taken`.
        await until(lambda: not index._writing)
        commits = count_commits(monkeypatch)
        await index.close()
        with turn_held(tmp_path):
            waiting = [asyncio.create_task(put(index, 'i0'))]
            await until(lambda: taken(index))
            waiting += [
                asyncio.create_task(put(index, f'i{number}')) for number in range(1, 10)
            ]
            await until(lambda: len(index._queued) == 9)
        await asyncio.gather(*waiting)
        # The first alone, then 3, 3 and 3.
        assert len(commits) == 4
        assert await ids(index) == ['before'] + [f'i{number}' for number in range(10)]

    run(lambda: SQLiteIndex(tmp_path), scenario, processes=1)


def test_sqlite_a_put_given_up_before_its_batch_is_not_written(tmp_path):
    async def scenario(index):
        await put(index, 'before')
        # NOTE: Its writer may still be about to find the queue empty: until
        #   it has, it would take the next puts as well, past `taken`.
        await until(lambda: not index._writing)
        with turn_held(tmp_path):
            kept = asyncio.create_task(put(index, 'kept'))
            await until(lambda: taken(index))
            given_up = asyncio.create_task(put(index, 'given-up'))
            await until(lambda: index._queued)
            given_up.cancel()
            with pytest.raises(asyncio.CancelledError):
                await given_up
        await kept
        await until(lambda: not index._writing)
        assert await ids(index) == ['before', 'kept']
        assert await index.get('given-up') is None
        # The writer is ready for more.
        await put(index, 'after')
        assert await ids(index) == ['before', 'kept', 'after']

    run(lambda: SQLiteIndex(tmp_path), scenario, processes=1)


def test_sqlite_every_put_of_a_failed_batch_is_told_and_none_is_written(
    tmp_path, monkeypatch
):
    def broken(self, connection, entries):
        raise RuntimeError(f'{len(entries)} puts')

    async def scenario(index):
        await put(index, 'before')
        # NOTE: Its writer may still be about to find the queue empty: until
        #   it has, it would take the next puts as well, past `taken`.
        await until(lambda: not index._writing)
        monkeypatch.setattr(SQLiteIndex, '_put_all', broken)
        with turn_held(tmp_path):
            waiting = [
                asyncio.create_task(put(index, f'i{number}')) for number in range(3)
            ]
            await asyncio.sleep(0.05)
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(result, RuntimeError) for result in results)
        assert await ids(index) == ['before']

    run(lambda: SQLiteIndex(tmp_path), scenario, processes=1)
